class TargetIsNotMigrated:
    """Keep Django's tables out of the `target` test database, which holds only what a test loads."""

    def allow_migrate(self, db, app_label, **hints):
        if db == "target":
            return False
        return None
