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


# Each script exits 2 when it broke its own check, here: hot_path.py, a variant did not
# write the rows it claims to time; dashboard.py, a page did not answer or did not show
# its rows; deliver.py, a row was not delivered exactly once to the loopback server;
# group_commit.py, a store does not hold exactly its hits' rows, or a writer failed.
@pytest.mark.parametrize(
    ("script", "name", "argv", "expected"),
    [
        pytest.param(
            "hot_path.py",
            "hot_path",
            ["--quick"],
            ["pass-through overhead", "pixel hit / raw INSERT+COMMIT"],
            id="hot_path",
        ),
        pytest.param(
            "dashboard.py",
            "dashboard_bench",
            ["--quick"],
            ["100 rows in range with 2,000 outside vs none: x"],
            id="dashboard",
        ),
        pytest.param(
            "deliver.py",
            "deliver_bench",
            ["--rows", "3000"],
            ["delivered 3,000 rows in 3 requests in", "growth after the first tenth:"],
            id="deliver",
        ),
        pytest.param(
            "group_commit.py",
            "group_commit_bench",
            ["--quick"],
            ["FULL / default, 8 threads", "FULL / default, 2 processes x 4 threads"],
            id="group_commit",
        ),
    ],
)
def test_a_benchmark_runs_and_passes_its_own_checks(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    script: str,
    name: str,
    argv: list[str],
    expected: list[str],
) -> None:
    module = load(script, name, monkeypatch)
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    for line in expected:
        assert line in out
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
