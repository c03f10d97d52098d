"""Run a command or a shell-free pipeline and measure its wall time and peak memory.

Peak memory is that of the whole process tree, children included, because the operations under
test are trees: `manage.py backup_create` runs pg_dump, `backup_restore` runs pg_restore and psql,
and the raw baseline is the two-process pipeline `pg_dump | zstd`. `ru_maxrss` (wait4() or
getrusage(RUSAGE_CHILDREN)) cannot give that: it is the peak of one process, never the sum of
processes running at the same time, and Linux carries it over exec(), so every child would report
at least this benchmark's own RSS at the moment it forked. Instead a sampler thread walks the tree
in /proc every 50 ms and sums, over its processes, the PSS (proportional set size, from
smaps_rollup: private pages plus a fair share of the pages shared with other processes) and the
RSS. The PSS sum is what the tree costs the machine; the RSS sum counts shared libraries (libc,
libpq, ...) once per process and so errs high. It also keeps the largest VmHWM (the kernel's exact
peak RSS of one process since its exec) seen, which catches a single process's short peaks that
fall between two samples. The PostgreSQL server's backends are not children and are not counted:
they do the same work for the raw tools and the project.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL = 0.05


class StepFailed(Exception):
    """A measured command exited with an error; the message carries its stderr's end."""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_pss_bytes: int  # whole tree, sampled
    peak_rss_bytes: int  # whole tree, sampled, shared pages counted once per process
    max_single_rss_bytes: int  # the largest peak RSS (VmHWM) of one process of the tree
    cpu_seconds: float  # user + system time of the whole tree (waited-for descendants included)
    stdout: bytes


def _children(pid: int) -> list[int]:
    """Return the child pids of every thread of `pid` (empty when it is gone)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _read_kb(path: str, fields: tuple[str, ...]) -> list[int]:
    """Return the values in bytes of `fields` ("Pss:", ...) of a /proc file; zeros when it is gone."""
    values = dict.fromkeys(fields, 0)
    try:
        with open(path) as handle:
            for line in handle:
                key = line.split(None, 1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return list(values.values())


def tree_memory(roots: list[int]) -> tuple[int, int, int]:
    """Return the summed PSS and RSS of `roots` and all their descendants, and their largest VmHWM."""
    pss = rss = hwm = 0
    pending, seen = list(roots), set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        process_pss, process_rss = _read_kb(f"/proc/{pid}/smaps_rollup", ("Pss:", "Rss:"))
        (process_hwm,) = _read_kb(f"/proc/{pid}/status", ("VmHWM:",))
        pss, rss, hwm = pss + process_pss, rss + process_rss, max(hwm, process_hwm)
        pending += _children(pid)
    return pss, rss, hwm


def run(
    commands: list[list[str]],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout_path: str | Path | None = None,
    timeout: float = 6 * 3600,
) -> Measurement:
    """Run `commands` as a pipeline (each one's stdout into the next one's stdin) and measure it.

    The last command's stdout goes to `stdout_path`, or is captured and returned. Raise
    StepFailed when any command exits non-zero.
    """
    processes: list[subprocess.Popen] = []
    with contextlib.ExitStack() as files:
        stderrs = [files.enter_context(tempfile.TemporaryFile()) for _ in commands]
        captured = files.enter_context(tempfile.TemporaryFile())
        target = files.enter_context(open(stdout_path or os.devnull, "wb"))
        last_out = target if stdout_path else captured
        # RUSAGE_CHILDREN sums the CPU time of every reaped child and of the descendants each waited for.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        try:
            for index, args in enumerate(commands):
                stdin = processes[-1].stdout if processes else subprocess.DEVNULL
                stdout = last_out if index == len(commands) - 1 else subprocess.PIPE
                processes.append(subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderrs[index], env=env, cwd=cwd))
                if stdin is not subprocess.DEVNULL:
                    stdin.close()  # the next process holds it now; this lets a reader see EOF and SIGPIPE
            peak_pss, peak_rss, peak_single, statuses = _watch(processes, timeout)
            seconds = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        finally:
            for process in processes:
                if process.returncode is None and process.poll() is None:
                    process.kill()
                    process.wait()
        failures = []
        for args, status, stderr in zip(commands, statuses, stderrs):
            if status != 0:
                stderr.seek(0)
                tail = stderr.read()[-2000:].decode("utf-8", "replace").strip()
                failures.append(f"{Path(args[0]).name} exited {status}: {tail}")
        if failures:
            raise StepFailed("; ".join(failures))
        captured.seek(0)
        return Measurement(seconds, peak_pss, peak_rss, peak_single, cpu, captured.read())


def _watch(processes: list[subprocess.Popen], timeout: float) -> tuple[int, int, int, list[int]]:
    """Wait for every process, sampling the tree meanwhile; return (peak PSS, peak RSS, largest VmHWM, exit codes).

    The main thread blocks in wait() so that the wall time ends exactly when the last process
    does; a thread samples /proc until then.
    """
    done = threading.Event()
    peaks = [0, 0, 0]

    def sample() -> None:
        roots = [p.pid for p in processes]
        while not done.is_set():
            peaks[:] = map(max, peaks, tree_memory(roots))
            done.wait(SAMPLE_INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(timeout, lambda: [p.kill() for p in processes])
    timer.start()
    try:
        statuses = [process.wait() for process in processes]
    finally:
        timer.cancel()
        done.set()
        sampler.join()
    return peaks[0], peaks[1], peaks[2], statuses
