"""Benchmark the project's backup, restore and download commands against the raw PostgreSQL tools.

    .venv/bin/python bench/run.py --scales 100,500 --repeat 3 --json bench/results.json
    .venv/bin/python bench/run.py --smoke

For each scale it builds a database (bench/generate.py), then runs every operation once per
round, `--repeat` rounds, so that the raw tools and the project's commands are measured
alternately under the same machine noise. Each operation's wall time, peak memory of its whole
process tree (bench/measure.py says how) and archive size go to a table, the goals of issue 5
are checked, and everything is written as JSON. `main(argv)` returns the same results, with
"ok" false when a step failed; run as a script, the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from bench import generate, measure, report

ROOT = Path(__file__).resolve().parent.parent
SMOKE_SCALE_MB = 3.0
TABLES = ("customers", "products", "orders", "events")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="100,500", help="comma-separated MB of table data (default: 100,500)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every operation (default: 3)")
    parser.add_argument("--json", dest="json_path", help="write the results to this file")
    parser.add_argument("--reuse", action="store_true", help="reuse a database built earlier at the same scale")
    parser.add_argument("--keep", action="store_true", help="keep the databases (and the work directory) at the end")
    parser.add_argument("--smoke", action="store_true", help=f"one round at {SMOKE_SCALE_MB:g} MB, to check that it all works")
    parser.add_argument("--server-url", default=generate.DEFAULT_SERVER_URL, help="PostgreSQL server, without database")
    parser.add_argument("--prefix", default="bench", help="database name prefix (default: bench)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scales, args.repeat = str(SMOKE_SCALE_MB), 1
        args.prefix = f"{args.prefix}_smoke_{os.getpid()}"  # may run beside a real benchmark
    args.scale_list = [float(value) for value in args.scales.split(",") if value.strip()]
    if args.repeat < 1 or not args.scale_list:
        parser.error("--repeat must be at least 1 and --scales must name at least one scale")
    return args


def _tool_version(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return "missing"


def machine_info(server_url: str) -> dict:
    """Describe the machine, the server and the tools."""
    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    with generate.connect(generate.database_url(server_url, "postgres")) as cur:
        cur.execute("SELECT version()")
        server_version = cur.fetchone()[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_bytes": int(meminfo[meminfo.index("MemTotal:") + 1]) * 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "pg_dump": _tool_version(["pg_dump", "--version"]),
        "zstd": _tool_version(["zstd", "--version"]),
        "git_commit": commit.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class Bench:
    """The state of one run: work directory, project environment, databases made."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.created: set[str] = set()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("DATABASE_URL") and k not in ("BACKUP_COMPRESSION", "DJANGO_SETTINGS_MODULE")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{workdir / 'catalog.sqlite3'}",
            "BACKUP_DIRECTORY": str(workdir / "backups"),
        })

    def url(self, dbname: str) -> str:
        return generate.database_url(self.args.server_url, dbname)

    def manage(self, *args: str, database: str | None = None, stdout_path: Path | None = None) -> measure.Measurement:
        """Run a manage.py command, with the alias `bench` pointing at `database`."""
        env = {**self.env, **({"DATABASE_URL_BENCH": self.url(database)} if database else {})}
        return measure.run([[sys.executable, str(ROOT / "manage.py"), *args]], env=env, cwd=ROOT, stdout_path=stdout_path)

    def fresh_database(self, dbname: str) -> None:
        generate.create_empty_database(self.args.server_url, dbname)
        self.created.add(dbname)

    def row_counts(self, dbname: str) -> dict[str, int]:
        with generate.connect(self.url(dbname)) as cur:
            return {table: _count(cur, table) for table in TABLES}

    def drop_kept(self, dbname: str) -> None:
        """Drop the databases restores by swap kept for an undo of `dbname`."""
        with generate.connect(self.url("postgres")) as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [dbname + "\\_\\_%"])
            names = [name for (name,) in cur.fetchall()]
        for name in names:
            generate.drop_database(self.args.server_url, name)

    def drop_created(self) -> list[str]:
        """Drop the databases this run made; return what could not be dropped, and why."""
        problems = []
        for dbname in sorted(self.created):
            try:
                generate.drop_database(self.args.server_url, dbname)
            except psycopg2.Error as exc:
                problems.append(f"could not drop {dbname}: {exc}".strip())
        return problems


def _count(cur, table: str) -> int:
    cur.execute(f"SELECT count(*) FROM {table}")  # table names from TABLES only
    return cur.fetchone()[0]


def _sample(m: measure.Measurement, size: int | None = None) -> dict:
    return {"seconds": m.seconds, "peak_pss_bytes": m.peak_pss_bytes, "peak_rss_bytes": m.peak_rss_bytes,
            "max_single_rss_bytes": m.max_single_rss_bytes, "cpu_seconds": m.cpu_seconds, "size_bytes": size}


def prepare_database(bench: Bench, scale: float) -> tuple[str, dict]:
    """Build (or reuse) the source database of a scale; return its name and description."""
    dbname = f"{bench.args.prefix}_s{scale:g}".replace(".", "_")
    server = bench.args.server_url
    if bench.args.reuse and generate.existing_scale(server, dbname) == scale:
        info = {**generate.describe(server, dbname), "seconds": 0.0, "reused": True}
    else:
        info = {**generate.generate(server_url=server, dbname=dbname, scale_mb=scale), "reused": False}
    bench.created.add(dbname)
    return dbname, info


def run_round(bench: Bench, dbname: str, samples: dict[str, list], expected: dict[str, int]) -> int:
    """Run every operation once; append to `samples`; return the id of the project backup made."""
    work, url = bench.workdir, bench.url(dbname)

    def record(operation: str, m: measure.Measurement, size: int | None = None) -> None:
        samples.setdefault(operation, []).append(_sample(m, size))
        print(f"  {operation:34s} {m.seconds:8.2f} s {m.peak_pss_bytes / report.MB:6.0f} MB"
              + (f" {size / report.MB:9.1f} MB" if size else ""), flush=True)

    gz, zst, plain = work / "raw.gz.pgdump", work / "raw.pgdump.zst", work / "raw.pgdump"
    record("django startup (manage.py --help)", bench.manage("backup_create", "--help"))
    m = measure.run([["pg_dump", "-Fc", "-d", url, "-f", str(gz)]])
    record("pg_dump -Fc", m, gz.stat().st_size)
    m = measure.run([["pg_dump", "-Fc", "-Z0", "-d", url], ["zstd", "-T2", "-3", "-q", "-c"]], stdout_path=zst)
    record("pg_dump -Fc -Z0 | zstd", m, zst.stat().st_size)
    m = bench.manage("backup_create", "--database", "bench", "--json", database=dbname)
    job = json.loads(m.stdout)
    if job.get("status") != "completed":
        raise measure.StepFailed(f"backup_create reported status {job.get('status')!r}")
    record("project backup", m, job["size"])

    subprocess.run(["zstd", "-d", "-q", "-f", str(zst), "-o", str(plain)], check=True)
    target = f"{dbname}_raw"
    bench.fresh_database(target)
    record("pg_restore -1 (empty db)", measure.run([["pg_restore", "-1", "-d", bench.url(target), str(plain)]]))
    _check_restored(bench, target, expected, "pg_restore")

    target = f"{dbname}_project"
    bench.fresh_database(target)
    restore = ["backup_restore", str(job["id"]), "--database", "bench", "--no-input", "--no-safety-backup", "--json"]
    in_place = [*restore, "--strategy", "in-place"]
    record("project restore (empty db)", bench.manage(*in_place, database=target))
    _check_restored(bench, target, expected, "project restore")
    # Over the database the raw pg_restore just filled: what a real restore does.
    record("project restore (over existing)", bench.manage(*in_place, database=f"{dbname}_raw"))
    _check_restored(bench, f"{dbname}_raw", expected, "project restore over existing")
    # By swap: a parallel load into a new database, then the rename (the replaced one is then dropped here).
    record("project restore swap (over existing)",
           bench.manage(*restore, "--strategy", "swap", "--jobs", str(os.cpu_count() or 1), database=f"{dbname}_raw"))
    _check_restored(bench, f"{dbname}_raw", expected, "project restore by swap")
    bench.drop_kept(f"{dbname}_raw")
    for path in (gz, zst, plain):
        path.unlink()
    return job["id"]


def _check_restored(bench: Bench, dbname: str, expected: dict[str, int], what: str) -> None:
    counts = bench.row_counts(dbname)
    if counts != expected:
        raise measure.StepFailed(f"{what} into {dbname}: row counts {counts}, expected {expected}")


def bench_scale(bench: Bench, scale: float) -> dict:
    """Build the database of one scale and measure every operation `--repeat` times."""
    print(f"\n== scale {scale:g} MB: building the database", flush=True)
    dbname, info = prepare_database(bench, scale)
    built = "reused" if info["reused"] else f"built in {info['seconds']:.0f} s"
    print(f"   {info['table_bytes'] / report.MB:.0f} MB of table data, {info['database_bytes'] / report.MB:.0f} MB "
          f"database, {built}", flush=True)
    samples: dict[str, list] = {}
    backup_ids = []
    for round_number in range(1, bench.args.repeat + 1):
        print(f"-- round {round_number}/{bench.args.repeat}", flush=True)
        backup_ids.append(run_round(bench, dbname, samples, info["rows"]))
    summary = {operation: report.summarize(values) for operation, values in samples.items()}
    report.add_ratios(summary)
    print("-- longest wait of a client reading every 0.1 s during a restore", flush=True)
    gaps = {strategy: bench_gap(bench, dbname, backup_ids[-1], strategy) for strategy in ("in-place", "swap")}
    return {"scale_mb": scale, "database": info, "samples": samples, "summary": summary,
            "backup_ids": backup_ids, "dbname": dbname, "gaps": gaps}


def bench_gap(bench: Bench, dbname: str, backup_id: int, strategy: str) -> dict:
    """Restore over the database while a client reads one row every 0.1 s (reconnecting when its session is
    ended); return the restore's time and the longest time between two answers."""
    target = f"{dbname}_raw"
    url = bench.url(target)
    answers: list[float] = []
    failures = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal failures
        connection = None
        while not stop.is_set():
            try:
                if connection is None:
                    connection = psycopg2.connect(url, connect_timeout=5)
                    connection.autocommit = True
                with connection.cursor() as cur:
                    cur.execute("SELECT id FROM customers ORDER BY id LIMIT 1")
                    cur.fetchone()
                answers.append(time.monotonic())
            except psycopg2.Error:
                failures += 1
                with contextlib.suppress(psycopg2.Error, AttributeError):
                    connection.close()
                connection = None
            time.sleep(0.1)
        if connection is not None:
            connection.close()

    reader = threading.Thread(target=client, daemon=True)
    reader.start()
    time.sleep(1)
    started = time.monotonic()
    m = bench.manage("backup_restore", str(backup_id), "--database", "bench", "--no-input", "--no-safety-backup",
                     "--strategy", strategy, "--json", database=target)
    finished = time.monotonic()
    time.sleep(1)
    stop.set()
    reader.join()
    bench.drop_kept(target)
    during = [t for t in answers if started - 0.5 <= t <= finished + 1]
    steps = [later - earlier for earlier, later in zip(during, during[1:])]
    gap = max(steps, default=finished - started)
    print(f"  {strategy:9s} restore {m.seconds:6.2f} s, longest wait for an answer {gap:6.2f} s "
          f"({len(during)} answers, {failures} failed reads)", flush=True)
    return {"strategy": strategy, "restore_seconds": m.seconds, "longest_gap_seconds": gap, "answers": len(during),
            "failed_reads": failures}


def bench_download(bench: Bench, backup_id: int, size: int) -> dict:
    """Measure `backup_download` of one archive, `--repeat` times."""
    samples = []
    output = bench.workdir / "download.bin"
    for _ in range(bench.args.repeat):
        m = bench.manage("backup_download", str(backup_id), "--output", str(output))
        if output.stat().st_size != size:
            raise measure.StepFailed(f"backup_download wrote {output.stat().st_size} bytes, expected {size}")
        output.unlink()
        samples.append(_sample(m, size))
    summary = report.summarize(samples)
    summary["mb_per_s"] = size / report.MB / summary["median_s"]
    return {"backup_id": backup_id, "samples": samples, "summary": summary}


def bench_admin_list(bench: Bench) -> dict:
    """Time the admin change list over a catalog of 10,000 backups (bench/admin_list.py)."""
    jobs = 200 if bench.args.smoke else 10_000
    print(f"\n== admin change list with {jobs} backups", flush=True)
    output = subprocess.run([sys.executable, str(Path(__file__).with_name("admin_list.py")), "--jobs", str(jobs)],
                            env=bench.env, cwd=Path(__file__).resolve().parent.parent, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the tables and goals; return the results ("ok" says whether all steps passed)."""
    args = parse_args(argv)
    missing = [tool for tool in ("pg_dump", "pg_restore", "psql", "zstd") if not shutil.which(tool)]
    results: dict = {"ok": False, "errors": [], "scales": [], "download": None,
                     "command": "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if missing:
        results["errors"].append(f"not on PATH: {', '.join(missing)}")
        print(results["errors"][-1], file=sys.stderr)
        return results
    results["smoke"] = args.smoke
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    bench = Bench(args, workdir)
    try:
        results["machine"] = machine_info(args.server_url)
        bench.manage("migrate", "--no-input")
        for scale in args.scale_list:
            results["scales"].append(bench_scale(bench, scale))
        last = results["scales"][-1]
        size = last["samples"]["project backup"][-1]["size_bytes"]
        print(f"\n== download of the largest archive ({size / report.MB:.1f} MB)", flush=True)
        results["download"] = bench_download(bench, last["backup_ids"][-1], size)
        results["scales"][-1]["summary"]["project download"] = results["download"]["summary"]
        results["admin_list"] = bench_admin_list(bench)
        results["ok"] = True
    except (measure.StepFailed, subprocess.CalledProcessError, json.JSONDecodeError, KeyError, OSError,
            psycopg2.Error) as exc:
        results["errors"].append(f"{type(exc).__name__}: {exc}")
        print(f"\nFAILED: {results['errors'][-1]}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"\nKept databases {', '.join(sorted(bench.created))} and the work directory {workdir}")
        else:
            results["errors"] += bench.drop_created()
            shutil.rmtree(workdir, ignore_errors=True)
    results["goals"] = report.goals(results["scales"], results.get("admin_list"), results.get("download"))
    print_results(results)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")
    return results


def print_results(results: dict) -> None:
    """Print one table per scale, the download throughput and the goal lines."""
    machine = results.get("machine", {})
    print(f"\nMachine: {machine.get('nproc')} CPUs ({machine.get('cpu')}), "
          f"{machine.get('memory_bytes', 0) / 2**30:.0f} GB RAM; {machine.get('postgresql', '').split(' on ')[0]}")
    for result in results["scales"]:
        db = result["database"]
        print(f"\nScale {result['scale_mb']:g} MB ({db['table_bytes'] / report.MB:.0f} MB of table data, "
              f"{db['database_bytes'] / report.MB:.0f} MB database), {len(result['backup_ids'])} round(s)")
        print(report.table(result["summary"]))
        for gap in result.get("gaps", {}).values():
            print(f"  client reading every 0.1 s during a {gap['strategy']} restore ({gap['restore_seconds']:.2f} s): "
                  f"longest wait {gap['longest_gap_seconds']:.2f} s, {gap['failed_reads']} failed reads")
    if results["download"]:
        s = results["download"]["summary"]
        print(f"\nDownload: {s['size_bytes'] / report.MB:.1f} MB in {s['median_s']:.2f} s (median) = "
              f"{s['mb_per_s']:.0f} MB/s, peak {s['peak_pss_bytes'] / report.MB:.0f} MB (PSS of the process tree)")
    if results.get("admin_list"):
        a = results["admin_list"]
        print(f"\nAdmin change list with {a['jobs']} backups ({a['vendor']} catalog): {a['queries']} queries, "
              f"server time median {a['median_ms']:.0f} ms (min {a['min_ms']:.0f}, max {a['max_ms']:.0f})")
    print("\nGoals (issues 5 and 13)" + (", not meaningful at the smoke scale, where start-up dominates:" if results.get("smoke") else ":"))
    for goal in results["goals"]:
        print(f"  {'ok    ' if goal['met'] else 'MISSED'} {goal['text']}")
    for error in results["errors"]:
        print(f"  error: {error}")


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
