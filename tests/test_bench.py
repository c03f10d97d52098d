"""A smoke run of the benchmark (bench/run.py --smoke): every step of it works on a tiny database.

The benchmark's figures are not judged here (timed tests on shared machines are noise); the full
run is `make bench`, documented in bench/README.md.
"""

import pytest

from bench import run

from .conftest import database_url


@pytest.mark.postgresql
@pytest.mark.django_db(databases=[])
def test_benchmark_smoke_run_completes_every_step(capsys):
    server = database_url("default").rsplit("/", 1)[0]  # the server of TEST_DATABASE_URL, like every test
    results = run.main(["--smoke", "--server-url", server])
    assert results["ok"], results["errors"]
    summary = results["scales"][0]["summary"]
    for operation in ("pg_dump -Fc -Z0 | zstd", "project backup", "pg_restore -1 (empty db)",
                      "project restore (empty db)", "project restore (over existing)",
                      "project restore swap (over existing)", "project download"):
        assert summary[operation]["median_s"] > 0, operation
    assert summary["project backup"]["size_bytes"] <= summary["pg_dump -Fc"]["size_bytes"]
    assert results["admin_list"]["queries"] <= 10
    assert {gap["strategy"] for gap in results["scales"][0]["gaps"].values()} == {"in-place", "swap"}
    assert all(gap["answers"] > 0 for gap in results["scales"][0]["gaps"].values())
    assert "Goals (issues 5 and 13)" in capsys.readouterr().out
