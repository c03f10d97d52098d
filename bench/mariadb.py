"""Benchmark the project's MariaDB backup and restore against the raw tools.

    .venv/bin/python bench/mariadb.py --scales 100 --repeat 3 --json bench/mariadb-results.json
    .venv/bin/python bench/mariadb.py --smoke

The baselines are `mariadb-dump ... | zstd` and `mariadb DB < dump` (into an empty database);
the project's operations are `manage.py backup_create` and `backup_restore` (into an empty
database, and over the existing one, which is what a real restore does). Wall time and the peak
memory of each process tree are measured by bench/measure.py, the table is bench/report.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/mariadb.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import measure, report

ROOT = Path(__file__).resolve().parent.parent
DUMP_OPTIONS = ["--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--quick",
                "--skip-lock-tables", "--skip-add-locks", "--tz-utc", "--no-tablespaces", "--skip-dump-date",
                "--default-character-set=utf8mb4"]
BASELINES = {"project backup": "mariadb-dump | zstd", "project restore (empty db)": "mariadb < dump",
             "project restore (over existing)": "mariadb < dump"}
ROW_BYTES = 260  # about what one generated `events` row takes in the dump


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="100", help="comma-separated MB of table data (default: 100)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every operation (default: 3)")
    parser.add_argument("--json", dest="json_path", help="write the results to this file")
    parser.add_argument("--smoke", action="store_true", help="one round at 2 MB, to check that it all works")
    parser.add_argument("--server", default="mysql://root@127.0.0.1:3306", help="MariaDB server URL, no database")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scales, args.repeat = "2", 1
    args.prefix = f"bench_mdb_{os.getpid()}"
    return args


class Server:
    def __init__(self, url: str):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.args = [f"--host={parts.hostname or '127.0.0.1'}", f"--port={parts.port or 3306}",
                     f"--user={parts.username or 'root'}"]
        self.env = {**os.environ, "MYSQL_PWD": parts.password or ""}

    def sql(self, sql: str, database: str = "mysql") -> str:
        # The client's default character set is utf8mb3, in which emoji do not fit.
        args = ["mariadb", *self.args, "--default-character-set=utf8mb4", "--batch", "--skip-column-names", database]
        return subprocess.run(args, input=sql, env=self.env, capture_output=True, text=True, check=True).stdout

    def fresh(self, database: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{database}`; CREATE DATABASE `{database}` CHARACTER SET utf8mb4")

    def counts(self, database: str) -> dict[str, int]:
        return {table: int(self.sql(f"SELECT COUNT(*) FROM `{table}`", database)) for table in ("customers", "events")}


def generate(server: Server, database: str, scale_mb: float) -> dict[str, int]:
    rows = max(1000, int(scale_mb * 2**20 / ROW_BYTES))
    server.fresh(database)
    server.sql(f"""
        CREATE TABLE customers (id int PRIMARY KEY, name varchar(100), profile json);
        CREATE TABLE events (id bigint PRIMARY KEY AUTO_INCREMENT, customer_id int NOT NULL, kind varchar(20),
          payload varchar(200), created datetime(6), blob_data varbinary(32),
          FOREIGN KEY (customer_id) REFERENCES customers (id));
        INSERT INTO customers SELECT seq, CONCAT('customer ', seq, ' 😀'), JSON_OBJECT('n', seq) FROM seq_1_to_10000;
        INSERT INTO events (customer_id, kind, payload, created, blob_data)
          SELECT 1 + seq % 10000, ELT(1 + seq % 3, 'view', 'cart', 'order'), REPEAT(MD5(seq), 5),
                 '2025-01-01' + INTERVAL seq SECOND, UNHEX(MD5(seq)) FROM seq_1_to_{rows};
        CREATE VIEW orders_per_customer AS SELECT customer_id, COUNT(*) AS n FROM events WHERE kind = 'order'
          GROUP BY customer_id;
        CREATE TRIGGER events_kind BEFORE INSERT ON events FOR EACH ROW SET NEW.kind = LOWER(NEW.kind);
    """, database)
    return server.counts(database)


def run_round(server: Server, database: str, expected: dict, work: Path, env: dict, samples: dict) -> None:
    def record(operation: str, m: measure.Measurement, size: int | None = None) -> None:
        samples.setdefault(operation, []).append({
            "seconds": m.seconds, "peak_pss_bytes": m.peak_pss_bytes, "peak_rss_bytes": m.peak_rss_bytes,
            "max_single_rss_bytes": m.max_single_rss_bytes, "cpu_seconds": m.cpu_seconds, "size_bytes": size})
        print(f"  {operation:34s} {m.seconds:8.2f} s {m.peak_pss_bytes / report.MB:6.0f} MB", flush=True)

    def check(target: str, what: str) -> None:
        if server.counts(target) != expected:
            raise measure.StepFailed(f"{what}: row counts {server.counts(target)}, expected {expected}")

    def manage(*args: str, target: str) -> measure.Measurement:
        return measure.run([[sys.executable, str(ROOT / "manage.py"), *args]], cwd=ROOT,
                           env={**env, "DATABASE_URL_BENCH": f"{server.url}/{target}"})

    zst, plain = work / "raw.sql.zst", work / "raw.sql"
    m = measure.run([["mariadb-dump", *server.args, *DUMP_OPTIONS, database], ["zstd", "-T2", "-3", "-q", "-c"]],
                    env=server.env, stdout_path=zst)
    record("mariadb-dump | zstd", m, zst.stat().st_size)
    m = manage("backup_create", "--database", "bench", "--json", target=database)
    job = json.loads(m.stdout)
    record("project backup", m, job["size"])

    subprocess.run(["zstd", "-d", "-q", "-f", str(zst), "-o", str(plain)], check=True)
    raw_target = f"{database}_raw"
    server.fresh(raw_target)
    load = ["mariadb", *server.args, "--default-character-set=utf8mb4", raw_target]
    record("mariadb < dump", measure.run([["cat", str(plain)], load], env=server.env))
    check(raw_target, "mariadb < dump")
    project_target = f"{database}_project"
    server.fresh(project_target)
    restore = ["backup_restore", str(job["id"]), "--database", "bench", "--no-input", "--no-safety-backup"]
    record("project restore (empty db)", manage(*restore, target=project_target))
    check(project_target, "project restore")
    record("project restore (over existing)", manage(*restore, target=raw_target))
    check(raw_target, "project restore over existing")
    for path in (zst, plain):
        path.unlink()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    server = Server(args.server)
    results: dict = {"ok": False, "errors": [], "scales": []}
    work = Path(tempfile.mkdtemp(prefix="bench-mariadb-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_SETTINGS_MODULE"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true",
                "DATABASE_URL": f"sqlite:///{work / 'catalog.sqlite3'}", "BACKUP_DIRECTORY": str(work / "backups")})
    databases = []
    try:
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--no-input", "--verbosity", "0"],
                       env=env, cwd=ROOT, check=True)
        for scale in [float(value) for value in args.scales.split(",")]:
            database = f"{args.prefix}_s{scale:g}".replace(".", "_")
            databases += [database, f"{database}_raw", f"{database}_project"]
            expected = generate(server, database, scale)
            print(f"\n== scale {scale:g} MB: {expected['events']} events", flush=True)
            samples: dict = {}
            for _ in range(args.repeat):
                run_round(server, database, expected, work, env, samples)
            summary = {operation: report.summarize(values) for operation, values in samples.items()}
            for operation, baseline in BASELINES.items():
                summary[operation]["ratio"] = summary[operation]["median_s"] / summary[baseline]["median_s"]
            results["scales"].append({"scale_mb": scale, "rows": expected, "summary": summary})
            print(report.table(summary))
        results["ok"] = True
    except (measure.StepFailed, subprocess.CalledProcessError, json.JSONDecodeError, KeyError, OSError) as exc:
        results["errors"].append(f"{type(exc).__name__}: {exc}")
        print(f"\nFAILED: {results['errors'][-1]}", file=sys.stderr)
    finally:
        for database in databases:
            server.sql(f"DROP DATABASE IF EXISTS `{database}`")
        shutil.rmtree(work, ignore_errors=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
