"""The load script runs end to end (its figures are a report, never a test).

A functional check of ``benchmarks/load.py``: it starts gunicorn for the bare app,
the synchronous pixel and the queued pixel, fires its small ``--quick`` load, waits
for the queued log to be applied, counts the rows, prints the table and the criteria
and stops every server it started. No figure is asserted: the throughput and lag
criteria may say PASS or FAIL; the correctness ones (rows, lock errors, duplicates)
must PASS for both pixel modes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    if Path("/proc/self/stat").exists():  # CPU per request: Linux only
        numbers = r"(\d+) \+ 0 \+ (\d+) = (\d+)"
        line = re.search(
            rf"^    CPU per request, us \(server \+ database \+ client = total\):"
            rf" bare {numbers}; pixel {numbers} \((\d\.\d\d)\); queued {numbers} \(",
            out,
            re.MULTILINE,
        )
        assert line, out
        bare_server, _, bare_total, pixel_server, _, pixel_total, allowed = line.groups()[:7]
        assert int(bare_server) > 0 and int(pixel_server) > 0
        assert float(allowed) == pytest.approx(int(bare_total) / int(pixel_total), abs=0.011)
    assert list(tmp_path.iterdir()) == []  # the temporary stores are gone


def _load_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "load", module)  # its dataclasses look it up
    monkeypatch.setattr(sys, "path", list(sys.path))  # it adds benchmarks/ to it
    spec.loader.exec_module(module)
    return module


def _sleeping(shell: int) -> bool:
    """Whether the shell's only child is ``sleep``: the spinning one was reaped."""
    children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    try:
        names = [Path(f"/proc/{child}/comm").read_text().strip() for child in children]
    except FileNotFoundError:  # a child ended meanwhile
        return False
    return names == ["sleep"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_process_tree_cpu_counts_the_children_it_reaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load = _load_module(monkeypatch)
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    # A shell whose child spins, ends and is reaped, then which sleeps.
    shell = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -c '{spin}'; sleep 30"], start_new_session=True
    )
    try:
        before = load.process_tree_cpu_ns(shell.pid)
        assert before is not None
        deadline = time.monotonic() + 20
        while not _sleeping(shell.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sleeping(shell.pid), "the spinning child did not end"
        # It is gone now: its CPU is in the shell's count of its reaped children.
        spent = load.process_tree_cpu_ns(shell.pid) - before
        assert 0.25e9 <= spent < 5e9
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell and its sleep
        shell.wait()
    assert load.process_tree_cpu_ns(shell.pid) is None  # gone: nothing to measure
    assert load.process_tree_cpu_ns(os.getpid()) > 0
