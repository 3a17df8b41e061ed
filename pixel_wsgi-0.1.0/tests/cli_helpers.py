"""Driving the ``pixel-wsgi`` command line in-process, and checking what it printed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner, Result

from pixel_wsgi.cli import cli

Run = Callable[..., Result]

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def cli_runner(storage_url: str) -> Run:
    """``run(*args)``: ``pixel-wsgi --storage <storage_url> *args``, its result."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        # catch_exceptions=False: an exception escaping a command is a bug to see here.
        return runner.invoke(cli, ["--storage", storage_url, *args], catch_exceptions=False)

    return invoke


def ok(result: Result) -> str:
    """The standard output of a command that succeeded and wrote nothing on stderr."""
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout


def as_json(result: Result) -> Any:
    """The JSON document a ``--json`` command that succeeded printed."""
    return json.loads(ok(result))


def created_at(document: dict[str, Any]) -> dict[str, Any]:
    """The document without its timestamp, after checking the timestamp's form."""
    rest = dict(document)
    assert ISO_UTC.fullmatch(rest.pop("created_at"))
    return rest


def failed(result: Result, exit_code: int) -> str:
    """The standard error of a command that failed cleanly with ``exit_code``."""
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    return result.stderr


def set_up(run: Run, payout: tuple[str, ...] = ("--payout-percent", "10")) -> None:
    """Advertiser 1, publisher 1, campaign 1 and link 1 to /landing."""
    ok(run("advertiser", "add", "Acme"))
    ok(run("publisher", "add", "Deals Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring sale", *payout))
    ok(run("link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing"))
