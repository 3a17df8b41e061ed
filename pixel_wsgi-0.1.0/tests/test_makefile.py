"""The Makefile, as the README and CI use it: what each target would run (``make -n``),
and how ``make test`` treats an interpreter it cannot find."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def dry_run(*args: str, tmp_path: Path) -> list[str]:
    """The commands ``make ARGS`` would run, with its environment in ``tmp_path``."""
    result = make("-n", *args, f"VENV={tmp_path / 'venv'}")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def readme_commands(prefix: str) -> list[str]:
    """The README's shell lines starting with ``prefix``, comments cut off."""
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    lines = (line.split("#")[0].strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line.startswith(prefix)]


@pytest.mark.parametrize(
    ("args", "port"),
    [
        pytest.param((), "8000", id="default"),
        pytest.param(("PORT=8123",), "8123", id="port"),
    ],
)
def test_demo_takes_a_port(args: tuple[str, ...], port: str, tmp_path: Path) -> None:
    *_, command = dry_run("demo", *args, tmp_path=tmp_path)
    venv = tmp_path / "venv"
    assert command == f"{venv}/bin/pixel-wsgi --storage sqlite:///demo.db demo --port {port}"


def test_demo_installs_the_runtime_dependencies_and_flask_only(tmp_path: Path) -> None:
    lines = dry_run("demo", tmp_path=tmp_path)
    extras = [extra for line in lines for extra in re.findall(r"'\.\[([^]]*)\]'", line)]
    assert extras == ["demo"]


def test_the_readmes_make_commands_are_targets(tmp_path: Path) -> None:
    commands = readme_commands("make ")
    assert "make demo" in commands and "make test" in commands and "make dist" in commands
    for command in commands:
        # A dry run of each (make -n runs nothing but says what it would run).
        assert dry_run(*command.split()[1:], tmp_path=tmp_path), command
    assert "http://127.0.0.1:8000" in README  # what `make demo` serves by default


def test_the_readme_installs_from_a_checkout_or_a_wheel() -> None:
    """pixel-wsgi is not on PyPI: every install line names a path, not a package."""
    installs = readme_commands("pip install")
    assert installs
    for line in installs:
        for requirement in line.split()[2:]:
            target = requirement.strip("'\"").split("[")[0]
            assert target == "." or target.startswith(("dist/", "./", "../")), line
    for wheel in re.findall(r"pixel_wsgi-[^\s'\[]+\.whl", README):
        version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
        assert version is not None
        assert wheel == f"pixel_wsgi-{version.group(1)}-py3-none-any.whl"


@pytest.mark.parametrize(
    ("ci", "status", "said"),
    [
        pytest.param("", 0, "skipped: no python9.99\n", id="locally-skipped"),
        pytest.param("true", 2, "no python9.99", id="in-ci-a-failure"),
    ],
)
def test_a_missing_interpreter(ci: str, status: int, said: str) -> None:
    result = make("pytest-9.99", env={"CI": ci})
    assert result.returncode == status
    assert said in (result.stdout if status == 0 else result.stderr)


def test_an_interpreter_can_be_named(tmp_path: Path) -> None:
    """PYTHON_X.Y picks the interpreter; the suite then runs in .venv-X.Y."""
    python = shutil.which("python3")
    assert python is not None
    lines = make("-n", "pytest-9.99", f"PYTHON_9.99={python}").stdout
    assert f'py="{python}"' in lines and ".venv-9.99" in lines


def test_make_test_runs_the_suite_under_each_python() -> None:
    result = make("-n", "test", "PYTHONS=3.10 3.13", "PYENV_ROOT=/nonexistent", env={"CI": ""})
    assert result.returncode == 0, result.stderr
    # Dry-run shows each interpreter's recipe once, after lint, typecheck and pytest.
    assert result.stdout.count("ruff check") == 1
    assert result.stdout.count("mypy --strict src") == 1
    for version in ("3.10", "3.13"):
        assert f".venv-{version}" in result.stdout


def test_a_pytest_run_that_runs_no_test_fails(tmp_path: Path) -> None:
    """pytest exits 5 when it collects nothing: make, and so CI, must fail, not pass."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pytest"
    fake.write_text("#!/bin/sh\necho 'no tests ran in 0.01s'\nexit 5\n")
    fake.chmod(0o755)
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: nothing to install
    result = make("pytest", f"BIN={bin_dir}", f"DEV_STAMP={stamp}")
    assert "no tests ran" in result.stdout
    assert result.returncode == 2, result.stderr
