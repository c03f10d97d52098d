from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backups_app.errors import BackupError, DatabaseBusy, NotFound


def exception_handler(exc, context):
    """Answer every error as {"detail": "<one sentence>"}: a service's BackupError with the commands' own
    sentence (404 for an unknown id, 409 for a busy database, else 400), bad input as its first problem."""
    if isinstance(exc, BackupError):
        code = status.HTTP_404_NOT_FOUND if isinstance(exc, NotFound) else (
            status.HTTP_409_CONFLICT if isinstance(exc, DatabaseBusy) else status.HTTP_400_BAD_REQUEST
        )
        return Response({"detail": str(exc)}, status=code)
    if isinstance(exc, ValidationError):
        return Response({"detail": _first_problem(exc.detail)}, status=exc.status_code)
    return drf_exception_handler(exc, context)


def _first_problem(detail, field: str = "") -> str:
    if isinstance(detail, dict):
        name, value = next(iter(detail.items()))
        return _first_problem(value, "" if name == "non_field_errors" else name)
    if isinstance(detail, list) and detail:
        return _first_problem(detail[0], field)
    return _("%(field)s: %(problem)s") % {"field": field, "problem": detail} if field else str(detail)
