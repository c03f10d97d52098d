from django.contrib.auth import get_permission_codename
from rest_framework.permissions import BasePermission

from backups_app.models import BackupJob


class StaffWithModelPermission(BasePermission):
    """The admin's rule: an active staff member holding the BackupJob permission the operation needs.

    Each view names it per action (or per method) in `permission_actions`: view, add, delete, restore,
    download, as BackupJobAdmin's has_*_permission do; an operation without one is refused.
    """

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        action = view.permission_actions.get(getattr(view, "action", None) or request.method.lower())
        if action is None:
            return False
        opts = BackupJob._meta
        return user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
