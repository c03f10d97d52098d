class TargetIsNotMigrated:
    """Keep Django's tables out of the `target` and `mariadb` test databases, which hold only what a test loads."""

    def allow_migrate(self, db, app_label, **hints):
        if db in ("target", "mariadb"):
            return False
        return None
