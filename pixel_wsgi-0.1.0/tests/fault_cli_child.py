"""The operator side of ``tests/test_faults_permissions.py``: CLI commands as another user.

Run as ``python fault_cli_child.py '<json config>'``: ``db`` (the SQLite file),
``commands`` (argument lists for ``pixel-wsgi``), and optionally ``uid``/``gid``. It
prints one JSON list on stdout: each command's exit code, stdout and stderr.

Like ``fault_wsgi_child.py`` it starts as root, runs every command once on a scratch
store of its own (so that nothing is imported lazily after the drop, from a file the
user could not read), then drops to ``uid``/``gid`` and runs them on ``db``. The
dashboard command serves one request (``/advertisers/1``, with the password) instead of serving
until Ctrl-C.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from werkzeug.test import EnvironBuilder, run_wsgi_app

from pixel_wsgi.cli import cli

PASSWORD = "a-dashboard-password"


def serve_once(host: str, port: int, app: Any, **options: Any) -> None:
    """Stands in for Werkzeug's ``run_simple``: one request, its status on stdout."""
    token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    environ = EnvironBuilder(
        path="/advertisers/1", headers=[("Authorization", f"Basic {token}")]
    ).get_environ()
    body, status, _ = run_wsgi_app(app, environ)
    b"".join(body)
    print(f"served: {status}")


def run_all(url: str, commands: list[list[str]]) -> list[dict[str, Any]]:
    runner = CliRunner(env={"PIXEL_WSGI_DASHBOARD_PASSWORD": PASSWORD})
    results = []
    for command in commands:
        result = runner.invoke(cli, ["--storage", url, *command])
        results.append(
            {
                "command": command,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "exception": None if result.exception is None else repr(result.exception),
            }
        )
    return results


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    import werkzeug.serving

    werkzeug.serving.run_simple = serve_once  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="pixel-wsgi-warm-up-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'warm.db'}"
        set_up = [
            ["advertiser", "add", "Acme"],
            ["publisher", "add", "Blog"],
            ["campaign", "add", "--advertiser", "1", "Spring", "--payout-percent", "10"],
            ["link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing"],
        ]
        run_all(url, [*set_up, *config["commands"]])
    if config.get("uid") is not None:
        os.setgroups([])
        os.setgid(int(config["gid"]))
        os.setuid(int(config["uid"]))
    results = run_all(f"sqlite:///{config['db']}", config["commands"])
    print(json.dumps({"euid": os.geteuid(), "results": results}), flush=True)


if __name__ == "__main__":
    main()
