"""Summaries, goal checks and the printed tables of a benchmark run."""

from __future__ import annotations

import statistics

MB = 1024 * 1024
# Each project operation is compared with the raw tool that does the same job.
BASELINES = {
    "project backup": "pg_dump -Fc -Z0 | zstd",
    "project restore (empty db)": "pg_restore -1 (empty db)",
    "project restore (over existing)": "pg_restore -1 (empty db)",
    "project restore swap (over existing)": "pg_restore -1 (empty db)",
}
PROJECT_OPERATIONS = ("project backup", "project restore (empty db)", "project restore (over existing)",
                      "project restore swap (over existing)", "project download")
# The goals of issue 13: a swap restore against raw pg_restore -1, and the longest wait of a reading client.
SWAP_MAX_RATIO = 0.85
SWAP_MAX_GAP_SECONDS = 1.0
# The goals of issue 5.
BACKUP_MAX_RATIO = 1.10
RESTORE_MAX_RATIO = 1.05
PEAK_MAX_BYTES = 80 * MB
# "Flat across scales": the largest scale's peak within this much of the smallest scale's.
PEAK_FLAT_BYTES = 10 * MB


def summarize(samples: list[dict]) -> dict:
    """Return median, min and max seconds, the peak memory and the archive size of one operation's samples."""
    seconds = [s["seconds"] for s in samples]
    sizes = [s["size_bytes"] for s in samples if s.get("size_bytes") is not None]
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "peak_pss_bytes": max(s["peak_pss_bytes"] for s in samples),
        "peak_rss_bytes": max(s["peak_rss_bytes"] for s in samples),
        "max_single_rss_bytes": max(s["max_single_rss_bytes"] for s in samples),
        "cpu_s": statistics.median(s["cpu_seconds"] for s in samples),
        "size_bytes": max(sizes) if sizes else None,
    }


def add_ratios(summary: dict[str, dict]) -> None:
    """Add each project operation's median ratio to its raw baseline, in place."""
    for operation, baseline in BASELINES.items():
        if operation in summary and baseline in summary:
            summary[operation]["ratio"] = summary[operation]["median_s"] / summary[baseline]["median_s"]


def table(summary: dict[str, dict]) -> str:
    """Return the per-scale table as aligned text."""
    header = ("operation", "median s", "min s", "max s", "ratio", "client CPU s", "peak MB", "RSS sum MB",
              "1 proc MB", "archive MB")
    rows = [header]
    for operation, s in summary.items():
        rows.append((
            operation,
            f"{s['median_s']:.2f}",
            f"{s['min_s']:.2f}",
            f"{s['max_s']:.2f}",
            f"{s['ratio']:.2f}x" if "ratio" in s else "",
            f"{s['cpu_s']:.2f}",
            f"{s['peak_pss_bytes'] / MB:.0f}",
            f"{s['peak_rss_bytes'] / MB:.0f}",
            f"{s['max_single_rss_bytes'] / MB:.0f}",
            f"{s['size_bytes'] / MB:.1f}" if s.get("size_bytes") else "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


ADMIN_MAX_QUERIES, ADMIN_MAX_MS, DOWNLOAD_MIN_MB_S = 10, 300, 500


def _goal(name: str, value: float, limit: float, unit: str, fmt: str = ".2f", strict: bool = False) -> dict:
    met = value < limit if strict else value <= limit
    margin = limit - value
    if unit == "x":
        detail = f"{value:{fmt}}x vs <= {limit:{fmt}}x"
    else:
        detail = f"{value:{fmt}} {unit} vs {'<' if strict else '<='} {limit:{fmt}} {unit}"
    how = f"met, {abs(margin):{fmt}}{unit} to spare" if met else f"MISSED by {abs(margin):{fmt}}{unit}"
    return {"goal": name, "value": value, "limit": limit, "met": met, "text": f"{name}: {detail}: {how}"}


def goals(scales: list[dict], admin_list: dict | None = None, download: dict | None = None) -> list[dict]:
    """Check the goals of issue 5 against each scale's summary, the admin list and the download."""
    checks = []
    if admin_list:
        label = f"[admin, {admin_list['jobs']} backups]"
        checks.append(_goal(f"{label} change list queries <= {ADMIN_MAX_QUERIES}", admin_list["queries"],
                            ADMIN_MAX_QUERIES, "queries", ".0f"))
        checks.append(_goal(f"{label} change list server time < {ADMIN_MAX_MS} ms", admin_list["median_ms"],
                            ADMIN_MAX_MS, "ms", ".0f", strict=True))
    if download:
        # A floor, not a ceiling.
        rate = download["summary"]["mb_per_s"]
        checks.append({"goal": "download", "value": rate, "limit": DOWNLOAD_MIN_MB_S, "met": rate >= DOWNLOAD_MIN_MB_S,
                       "text": f"download >= {DOWNLOAD_MIN_MB_S} MB/s: {rate:.0f} MB/s: "
                               + ("met" if rate >= DOWNLOAD_MIN_MB_S else f"MISSED by {DOWNLOAD_MIN_MB_S - rate:.0f} MB/s")})
    peaks = []
    for result in scales:
        s, label = result["summary"], f"[{result['scale_mb']:g} MB]"
        if "ratio" in s.get("project backup", {}):
            checks.append(_goal(f"{label} backup time <= {BACKUP_MAX_RATIO}x the zstd pipeline",
                                s["project backup"]["ratio"], BACKUP_MAX_RATIO, "x"))
        if s.get("project backup", {}).get("size_bytes") and s.get("pg_dump -Fc", {}).get("size_bytes"):
            checks.append(_goal(f"{label} archive <= pg_dump -Fc size", s["project backup"]["size_bytes"] / MB,
                                s["pg_dump -Fc"]["size_bytes"] / MB, "MB", ".1f"))
        if "ratio" in s.get("project restore (empty db)", {}):
            checks.append(_goal(f"{label} restore time <= {RESTORE_MAX_RATIO}x raw pg_restore -1",
                                s["project restore (empty db)"]["ratio"], RESTORE_MAX_RATIO, "x"))
        if "ratio" in s.get("project restore swap (over existing)", {}):
            checks.append(_goal(f"{label} swap restore time <= {SWAP_MAX_RATIO}x raw pg_restore -1",
                                s["project restore swap (over existing)"]["ratio"], SWAP_MAX_RATIO, "x"))
        if "swap" in result.get("gaps", {}):
            checks.append(_goal(f"{label} longest wait of a client during a swap restore < {SWAP_MAX_GAP_SECONDS:g} s",
                                result["gaps"]["swap"]["longest_gap_seconds"], SWAP_MAX_GAP_SECONDS, "s", strict=True))
        peak = max((s[op]["peak_pss_bytes"] for op in PROJECT_OPERATIONS if op in s), default=None)
        if peak is not None:
            peaks.append(peak)
            checks.append(_goal(f"{label} project peak memory (PSS of the process tree) < {PEAK_MAX_BYTES // MB} MB",
                                peak / MB, PEAK_MAX_BYTES / MB, "MB", ".0f", strict=True))
    if len(peaks) > 1:
        checks.append(_goal(f"project peak memory flat across scales (spread <= {PEAK_FLAT_BYTES // MB} MB)",
                            (max(peaks) - min(peaks)) / MB, PEAK_FLAT_BYTES / MB, "MB", ".0f"))
    return checks
