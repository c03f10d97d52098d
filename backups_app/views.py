"""The health endpoint for uptime monitors, and the download response the admin and the API share."""

import base64
import os
from typing import BinaryIO

from django.http import FileResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import archives, monitoring
from .models import BackupJob


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


def archive_response(job: BackupJob, archive: BinaryIO) -> FileResponse:
    """Stream a backup's archive (from services.open_backup) as an attachment, with its size and its
    SHA-256 from the catalog, so that the receiver can check what it got."""
    response = FileResponse(
        archive, as_attachment=True, filename=os.path.basename(job.file_name), content_type="application/octet-stream"
    )
    response.block_size = archives.CHUNK_SIZE
    response["Content-Length"] = job.size_bytes  # the archive is a stream, not a file FileResponse can measure
    response["X-Checksum-SHA256"] = job.checksum_sha256
    response["Repr-Digest"] = "sha-256=:%s:" % base64.b64encode(bytes.fromhex(job.checksum_sha256)).decode()
    return response
