"""The health endpoint for uptime monitors."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import monitoring


@never_cache
@require_GET
def health(request):
    """Return the backups' health as JSON: 200 when OK or WARNING, 503 when CRITICAL.

    Public (a monitor has no login), so it says only statuses, ages and problem codes: no error
    messages, file names, host names or settings. It writes nothing and reuses the costly probes
    for a minute (see monitoring); backup_check changes and probes for real.
    """
    report = monitoring.check_health(light=True)
    status = 503 if report.level == monitoring.Level.CRITICAL else 200
    return JsonResponse(report.to_public_dict(), status=status)
