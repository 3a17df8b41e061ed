"""Which SQLite file a command uses: read commands never create one, and never write."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pixel_wsgi.cli import STORAGE_ENV, cli

from .cli_helpers import Run, cli_runner, failed, ok, set_up

READ_COMMANDS = [
    pytest.param(("conversions",), id="conversions"),
    pytest.param(("conversions", "--json"), id="conversions-json"),
    pytest.param(("transactions",), id="transactions"),
    pytest.param(("rejections", "--json"), id="rejections"),
    pytest.param(("advertiser", "list"), id="advertiser-list"),
    pytest.param(("publisher", "list"), id="publisher-list"),
    pytest.param(("campaign", "list"), id="campaign-list"),
    pytest.param(("link", "list", "--json"), id="link-list"),
    pytest.param(("credential", "list"), id="credential-list"),
    pytest.param(("export", "--advertiser", "1"), id="export"),
]


def in_directory(*args: str) -> Result:
    """``pixel-wsgi ARGS`` with the default storage (``sqlite:///pixel-wsgi.db``)."""
    return CliRunner(env={STORAGE_ENV: None}).invoke(cli, list(args), catch_exceptions=False)


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` and a digest of its bytes."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_read_command_in_the_wrong_directory_creates_nothing_and_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    stderr = failed(in_directory(*command), 1)
    looked_for = elsewhere / "pixel-wsgi.db"
    assert f"Error: no database at {looked_for} " in stderr
    assert "pixel-wsgi migrate" in stderr
    assert list(elsewhere.iterdir()) == []


def test_the_dashboard_in_the_wrong_directory_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[tuple[Any, ...]]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXEL_WSGI_DASHBOARD_PASSWORD", "a-password")
    stderr = failed(in_directory("dashboard"), 1)
    assert f"Error: no database at {tmp_path / 'pixel-wsgi.db'} " in stderr
    assert served == []
    assert list(tmp_path.iterdir()) == []


def test_a_relative_path_names_the_file_it_resolved_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    created = in_directory("advertiser", "add", "Acme")
    assert created.exit_code == 0, created.output
    assert created.stdout == "Created advertiser 1 (Acme)\n"
    assert created.stderr == f"pixel-wsgi: creating {tmp_path / 'pixel-wsgi.db'}\n"
    listed = in_directory("advertiser", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert listed.stderr == f"pixel-wsgi: using {tmp_path / 'pixel-wsgi.db'}\n"
    # --json output stays one parseable document on stdout.
    assert [a["name"] for a in json.loads(listed.stdout)] == ["Acme"]


def test_an_absolute_path_prints_nothing_more(run: Run) -> None:
    ok(run("migrate"))
    assert ok(run("conversions")) == "No conversions.\n"


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_read_command_writes_nothing(tmp_path: Path, command: tuple[str, ...]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    run = cli_runner(f"sqlite:///{store / 'pixel.db'}")
    set_up(run)
    before = fingerprint(store)
    assert list(before) == ["pixel.db"]
    ok(run(*command))
    # Not a byte changed, and no -wal or -shm file left beside it.
    assert fingerprint(store) == before


def test_a_database_that_lacks_migrations_says_to_migrate(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a valid SQLite file without our schema
    run = cli_runner(f"sqlite:///{empty}")
    stderr = failed(run("conversions"), 1)
    assert stderr.startswith(f"Error: the database {empty} lacks the schema migrations 0001_")
    assert "run `pixel-wsgi migrate`" in stderr
    # A command that writes still migrates it.
    ok(run("advertiser", "add", "Acme"))
    assert ok(run("conversions")) == "No conversions.\n"


def test_a_file_that_is_not_a_database_is_one_error_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to have a header page of sorts\n" * 20)
    stderr = failed(cli_runner(f"sqlite:///{text}")("conversions"), 1)
    assert re.match(rf"Error: cannot (open|read) SQLite database {re.escape(str(text))}: ", stderr)
    assert stderr.count("\n") == 1
