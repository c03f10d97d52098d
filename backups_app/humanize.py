"""How sizes and times read in the commands' output and in the messages of the services."""

from django.utils import dateformat, timezone


def human_size(size):
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


def human_time(moment):
    """Return a moment as '09:23, 26 Nov' in the server's time zone, with the year if it is not this one."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment)
    same_year = local.year == timezone.localtime().year
    return dateformat.format(local, "H:i, j M" if same_year else "H:i, j M Y")
