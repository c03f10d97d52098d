class TargetIsNotMigrated:
    """Keep Django's tables out of the `target` and MariaDB test databases, which hold only what a test loads."""

    def allow_migrate(self, db, app_label, **hints):
        if db in ("target", "mariadb", "mariadb_copy"):
            return False
        return None
