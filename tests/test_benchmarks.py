"""The benchmark script runs end to end (its figures are a report, never a test)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(script: str, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``benchmarks/<script>`` as module ``name``, in sys.modules for the test only (its
    dataclasses look their module up there). A script that imports ``hot_path.py``
    puts ``benchmarks/`` on ``sys.path``: for the test only too."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_hot_path_benchmark_runs_and_checks_its_own_row_counts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("hot_path.py", "hot_path", monkeypatch)
    # Exit 2 would mean a variant did not write the rows it claims to time.
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "pass-through overhead" in out
    assert "pixel hit / raw INSERT+COMMIT" in out
    assert "BENCHMARK BROKEN" not in out


def test_dashboard_benchmark_runs_and_prints_the_ratio(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("dashboard.py", "dashboard_bench", monkeypatch)
    # Exit 2 would mean a page did not answer or did not show the rows it should.
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "100 rows in range with 2,000 outside vs none: x" in out
    assert "BENCHMARK BROKEN" not in out


@pytest.mark.parametrize(
    "options", [pytest.param([], id="plain"), pytest.param(["--keep-context"], id="keep-context")]
)
def test_the_callgrind_script_runs_its_hits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    module = load("pixel_callgrind.py", "pixel_callgrind", monkeypatch)
    # Exit 2 would mean a hit did not write its row.
    assert module.main(["5", *options]) == 0
    assert capsys.readouterr().out == "55 rows for 55 hits\n"


def test_the_delivery_benchmark_delivers_every_row_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("deliver.py", "deliver_bench", monkeypatch)
    # Exit 2 would mean a row was not delivered exactly once to the loopback server.
    assert module.main(["--rows", "3000"]) == 0
    out = capsys.readouterr().out
    assert "delivered 3,000 rows in 3 requests in" in out
    assert "growth after the first tenth:" in out
    assert "BENCHMARK BROKEN" not in out


def test_the_group_commit_benchmark_writes_every_hit_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("group_commit.py", "group_commit_bench", monkeypatch)
    # Exit 2 would mean a store does not hold exactly its hits' rows, or a writer
    # process failed.
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "FULL / default, 8 threads" in out
    assert "FULL / default, 2 processes x 4 threads" in out
    assert "BENCHMARK BROKEN" not in out


def test_the_cold_cache_benchmark_times_warm_and_cold_hits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load("cold_cache.py", "cold_cache_bench", monkeypatch)
    # Exit 2 would mean a hit did not store its attributed row.
    assert module.main(["--hits", "40", "--megabytes", "1"]) == 0
    out = capsys.readouterr().out
    phases = re.findall(r"^(warm|cold) +40 +(\d+) +(\d+) +(\d+)$", out, re.MULTILINE)
    assert [name for name, *_ in phases] == ["warm", "cold", "warm", "cold"], out
    for _, whole, write, rest in phases:
        assert int(write) > 0 and int(rest) > 0
        assert abs(int(whole) - int(write) - int(rest)) <= 1  # rounding
    assert re.search(r"^cold / warm: whole hit \d+\.\d\dx, write \d+\.\d\dx, rest", out, re.M)
