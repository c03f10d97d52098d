"""Benchmark the backup storage: backup and restore on local disk against a local S3 server, and the
cost of age encryption on backup time.

    .venv/bin/python bench/storage.py --scale 500 --repeat 3
    .venv/bin/python bench/storage.py --scale 3 --repeat 1      # a quick check that it all works

Builds a database (bench/generate.py), starts `moto_server` (in memory) as a child, then for each
round runs, alternately: `backup_create` to local disk and to S3, each plain and encrypted to a fresh
age key; then `backup_restore` of the local and of the S3 backup (plain and encrypted) into new empty
databases, checked by row counts. Time is the wall time of the
`manage.py` process tree, memory its peak PSS (bench/measure.py); the S3 server is not part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/storage.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import generate, measure, report
from bench.run import TABLES, _count

ROOT = Path(__file__).resolve().parent.parent
MEMORY_GOAL_MB = 120
ENCRYPTION_GOAL = 1.10
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _age_recipient(workdir: Path) -> str:
    """Return a fresh age public key, its identity saved in workdir."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    (workdir / "age.key").write_text(f"{identity}\n")
    (workdir / "age.key").chmod(0o600)
    return str(identity.to_public())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=100, help="MB of table data (default: 100)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--server-url", default=generate.DEFAULT_SERVER_URL)
    parser.add_argument("--json", dest="json_path", help="write the results to this file")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    prefix = f"bench_storage_{os.getpid()}"
    source = f"{prefix}_src"
    created = [source]
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[str, list] = {}
    results = {"command": "bench/storage.py " + " ".join(argv if argv is not None else sys.argv[1:]), "ok": False}
    try:
        import boto3

        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise measure.StepFailed("moto_server did not start")
            time.sleep(0.1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **{
            "region_name": "us-east-1", "aws_access_key_id": "bench", "aws_secret_access_key": "bench"
        }).create_bucket(Bucket=bucket)
        print(f"== building {args.scale:g} MB of table data", flush=True)
        info = generate.generate(server_url=args.server_url, dbname=source, scale_mb=args.scale)
        expected = info["rows"]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BACKUP_", "AWS_"))}
        base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true",
                     "DATABASE_URL": f"sqlite:///{workdir / 'catalog.sqlite3'}"})
        local = {**base, "BACKUP_STORAGE_URL": f"file://{workdir / 'backups'}"}
        s3 = {**base, **CREDENTIALS, "BACKUP_STORAGE_URL": f"s3://{bucket}/backups", "AWS_S3_ENDPOINT_URL": endpoint}
        recipient = _age_recipient(workdir)
        variants = {"backup to local disk": local, "backup to S3": s3,
                    "backup to local disk, encrypted": {**local, "BACKUP_AGE_RECIPIENTS": recipient},
                    "backup to S3, encrypted": {**s3, "BACKUP_AGE_RECIPIENTS": recipient}}
        restore_env = {"local disk": {**local, "BACKUP_AGE_IDENTITY_FILE": str(workdir / "age.key")},
                       "S3": {**s3, "BACKUP_AGE_IDENTITY_FILE": str(workdir / "age.key")}}

        def manage(env: dict, *command: str, database: str) -> measure.Measurement:
            env = {**env, "DATABASE_URL_BENCH": generate.database_url(args.server_url, database)}
            return measure.run([[sys.executable, str(ROOT / "manage.py"), *command]], env=env, cwd=ROOT)

        def record(operation: str, m: measure.Measurement, size: int | None = None) -> None:
            samples.setdefault(operation, []).append({
                "seconds": m.seconds, "peak_pss_bytes": m.peak_pss_bytes, "peak_rss_bytes": m.peak_rss_bytes,
                "max_single_rss_bytes": m.max_single_rss_bytes, "cpu_seconds": m.cpu_seconds, "size_bytes": size})
            print(f"  {operation:34s} {m.seconds:8.2f} s {m.peak_pss_bytes / report.MB:6.0f} MB", flush=True)

        manage(local, "migrate", "--no-input", database=source)
        for round_number in range(1, args.repeat + 1):
            print(f"-- round {round_number}/{args.repeat}", flush=True)
            ids = {}
            for operation, env in variants.items():
                m = manage(env, "backup_create", "--database", "bench", "--json", database=source)
                job = json.loads(m.stdout)
                if job.get("status") != "completed":
                    raise measure.StepFailed(f"{operation}: status {job.get('status')!r}")
                ids[operation] = job["id"]
                record(operation, m, job["size"])
            for number, operation in enumerate(variants):
                where = operation.removeprefix("backup to ")
                target = f"{prefix}_r{round_number}_{number}"
                generate.create_empty_database(args.server_url, target)
                created.append(target)
                m = manage(restore_env[where.split(",")[0]], "backup_restore", str(ids[operation]), "--database", "bench",
                           "--no-input", "--no-safety-backup", "--json", database=target)
                record(f"restore from {where}", m)
                with generate.connect(generate.database_url(args.server_url, target)) as cur:
                    counts = {table: _count(cur, table) for table in TABLES}
                if counts != expected:
                    raise measure.StepFailed(f"restore from {where}: row counts {counts}, expected {expected}")
        results["ok"] = True
    except (measure.StepFailed, subprocess.CalledProcessError, json.JSONDecodeError, OSError) as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        print(f"FAILED: {results['error']}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
        for dbname in created:
            generate.drop_database(args.server_url, dbname)
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {operation: report.summarize(values) for operation, values in samples.items()}
    results.update(scale_mb=args.scale, summary=summary)
    print_results(results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return results


def print_results(results: dict) -> None:
    summary = results["summary"]
    print(f"\nScale {results['scale_mb']:g} MB of table data")
    print(f"{'operation':36s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'peak MB':>8s} {'archive MB':>11s}")
    for operation, s in summary.items():
        size = f"{s['size_bytes'] / report.MB:11.1f}" if s.get("size_bytes") else ""
        print(f"{operation:36s} {s['median_s']:9.2f} {s['min_s']:7.2f} {s['max_s']:7.2f} "
              f"{s['peak_pss_bytes'] / report.MB:8.0f} {size}")

    def ratio(a: str, b: str) -> str:
        return f"{summary[a]['median_s'] / summary[b]['median_s']:.2f}x" if a in summary and b in summary else "n/a"

    peak = max((s["peak_pss_bytes"] for s in summary.values()), default=0) / report.MB
    print(f"\nS3 against local disk: backup {ratio('backup to S3', 'backup to local disk')}, "
          f"restore {ratio('restore from S3', 'restore from local disk')}")
    print(f"Encryption's cost on backup time: {ratio('backup to local disk, encrypted', 'backup to local disk')} "
          f"on local disk, {ratio('backup to S3, encrypted', 'backup to S3')} on S3 (goal under {ENCRYPTION_GOAL:.2f}x)")
    print(f"Peak memory of any operation: {peak:.0f} MB (goal under {MEMORY_GOAL_MB} MB)")


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
