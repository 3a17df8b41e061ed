"""The bulk import benchmark runs end to end (its figures are a report, never a test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bulk_import.py"


def test_the_bulk_import_benchmark_runs_and_reports_both_checkpoints(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--rows", "2000", "--tmpdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pixel-wsgi bulk import: 2,000 rows into ")
    assert "tracemalloc on" in lines[1]
    checkpoint = r"at +{} \( +{} rows\): +[0-9,]+ rows/s, tracemalloc peak [0-9.]+ MiB,"
    assert re.match(checkpoint.format("10%", "200"), lines[2]), lines[2]
    assert re.match(checkpoint.format("50%", "1,000"), lines[3]), lines[3]
    assert re.match(checkpoint.format("100%", "2,000"), lines[4]), lines[4]
    assert lines[5].startswith("peak memory at 100% / at 10%: tracemalloc ")
    assert lines[6] == "result: 2,000 created, 0 unchanged, 0 unmatched, 0 failed"
    assert list(tmp_path.iterdir()) == []  # the temporary store is gone
