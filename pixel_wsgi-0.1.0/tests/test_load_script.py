"""The load script runs end to end (its figures are a report, never a test).

A functional check of ``benchmarks/load.py``: it starts gunicorn, fires its small
``--quick`` load, counts the rows, prints the table and the PASS/FAIL lines and
stops every server it started. No figure is asserted.
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
    assert re.search(r"^sqlite 2xsync +[0-9,]+ +[0-9,]+ +[0-9.]+ ", out, re.MULTILINE), out
    for criterion in (
        "stored rows == 200 responses",
        "0 lock errors surfaced",
        "0 duplicates (100 ids x 20 hits)",
    ):
        assert re.search(rf"^  {re.escape(criterion)} +PASS  1/1 configurations$", out, re.M), out
    assert list(tmp_path.iterdir()) == []  # the temporary stores are gone
