"""The load script runs end to end (its figures are a report, never a test).

A functional check of ``benchmarks/load.py``: it starts gunicorn for the bare app,
the synchronous pixel and the queued pixel, fires its small ``--quick`` load, waits
for the queued log to be applied, counts the rows, prints the table and the criteria
and stops every server it started. No figure is asserted: the throughput and lag
criteria may say PASS or FAIL; the correctness ones (rows, lock errors, duplicates)
must PASS for both pixel modes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gunicorn")

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "load.py"


def test_the_load_script_runs_a_quick_sqlite_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--quick", "--backends", "sqlite"),
            *("--workers", "2", "--worker-classes", "sync", "--tmpdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "BENCHMARK BROKEN" not in out
    for mode in ("bare", "pixel", "queued"):
        assert re.search(rf"^sqlite 2xsync +{mode} +[0-9,]+ ", out, re.MULTILINE), out
    for criterion in (
        "pixel >= 0.75 x bare req/s (SQLite, sync x2 and gthread x2)",
        "pixel p99 <= 1.5 x bare p99 (SQLite, sync x2 and gthread x2)",
        "queued >= 0.9 x bare req/s (gunicorn sync x2)",
        "queued apply lag < 1 s (every round, applier done)",
    ):
        assert re.search(rf"^  {re.escape(criterion)} +(PASS|FAIL)  [01]/1 runs ", out, re.M), out
    assert re.search(r"^  pixel >= 0.5 x bare req/s \(PostgreSQL\) +n/a ", out, re.M), out
    for criterion in (
        "stored rows == 200 responses",
        "0 lock errors surfaced",
        "0 duplicates (100 ids x 20 hits)",
    ):
        assert re.search(rf"^  {re.escape(criterion)} +PASS  2/2 runs$", out, re.M), out
    assert list(tmp_path.iterdir()) == []  # the temporary stores are gone
