"""``pixel-wsgi dashboard`` and the dashboard mounted in the demo shop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from webtest import TestApp

from pixel_wsgi import SQLiteStorage
from pixel_wsgi.cli.serve import dashboard
from pixel_wsgi.cli.state import State
from pixel_wsgi.dashboard import Dashboard
from pixel_wsgi.demo import create_demo_app, run_demo
from pixel_wsgi.serving import PASSWORD_ENV

from .conftest import SECRET, basic_authorization, pixel_src
from .servers import free_port
from .test_demo import buy


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    storage = SQLiteStorage(tmp_path / "pixel.db")
    storage.migrate()
    storage.add_advertiser("Acme")
    storage.add_advertiser("Beta")
    storage.close()
    return f"sqlite:///{tmp_path / 'pixel.db'}"


def test_serves_with_the_password_from_the_environment(
    db_url: str, served: list[tuple[Any, ...]]
) -> None:
    result = CliRunner().invoke(
        dashboard, [], obj=State(db_url), env={PASSWORD_ENV: "s3cret"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "pixel-wsgi dashboard on http://127.0.0.1:8050/ (user admin)\n" in result.output
    assert "s3cret" not in result.output
    [(host, port, app, options)] = served
    assert (host, port, options) == ("127.0.0.1", 8050, {"threaded": True})
    assert isinstance(app, Dashboard)

    browser = TestApp(app)
    browser.get("/", status=401)
    browser.get("/", headers=basic_authorization("admin", "wrong"), status=401)
    page = browser.get("/", headers=basic_authorization("admin", "s3cret"))
    assert "Acme" in page.text
    assert "Beta" in page.text


def test_prompts_for_a_password(db_url: str, served: list[tuple[Any, ...]]) -> None:
    result = CliRunner().invoke(
        dashboard, ["--port", "9001"], obj=State(db_url), input="typed pw\n"
    )
    assert result.exit_code == 0, result.output
    assert "Dashboard password for user admin" in result.output
    assert "typed pw" not in result.output  # hidden input
    [(_host, port, app, _options)] = served
    assert port == 9001
    TestApp(app).get("/", headers=basic_authorization("admin", "typed pw"))


def test_refuses_an_empty_password(db_url: str, served: list[tuple[Any, ...]]) -> None:
    result = CliRunner().invoke(
        dashboard, [], obj=State(db_url), input="\n", env={PASSWORD_ENV: ""}
    )
    assert result.exit_code == 2
    assert "the dashboard needs a password" in result.output
    assert served == []


def test_warns_when_listening_beyond_this_machine(
    db_url: str, served: list[tuple[Any, ...]]
) -> None:
    result = CliRunner().invoke(
        dashboard,
        ["--host", "0.0.0.0", "--port", "8060"],
        obj=State(db_url),
        env={PASSWORD_ENV: "pw"},
    )
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8060/" in result.stdout
    assert "Warning: listening beyond this machine" in result.stderr
    for loopback in ("localhost", "::1", "127.0.0.2"):
        result = CliRunner().invoke(
            dashboard, ["--host", loopback], obj=State(db_url), env={PASSWORD_ENV: "pw"}
        )
        assert "Warning" not in result.stderr
    assert (
        "http://[::1]:8050/"
        in CliRunner()
        .invoke(dashboard, ["--host", "::1"], obj=State(db_url), env={PASSWORD_ENV: "pw"})
        .stdout
    )


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_rejects_a_bad_port(db_url: str, served: list[tuple[Any, ...]], port: str) -> None:
    result = CliRunner().invoke(
        dashboard, ["--port", port], obj=State(db_url), env={PASSWORD_ENV: "pw"}
    )
    assert result.exit_code == 2
    assert served == []


# -- a real server ---------------------------------------------------------------------

_SERVE = """
import sys
from pixel_wsgi.cli.state import State
from pixel_wsgi.cli.serve import dashboard
dashboard.main(args=sys.argv[2:], obj=State(sys.argv[1]), prog_name="pixel-wsgi dashboard")
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, db_url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, PASSWORD_ENV: "over http"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=2)
            except urllib.error.HTTPError as answer:
                answer.close()
                break  # it answers (401)
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert f"pixel-wsgi dashboard on {base}/ (user admin)" in log.read_text()


def test_a_real_server(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server + "/advertisers/1", timeout=5)
    assert info.value.code == 401
    assert info.value.headers["WWW-Authenticate"] == 'Basic realm="pixel-wsgi dashboard"'
    info.value.close()

    request = urllib.request.Request(
        server + "/advertisers/1", headers=basic_authorization("admin", "over http")
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "Acme: overview" in response.read().decode()
    request = urllib.request.Request(
        server + "/advertisers/1/conversions.csv", headers=basic_authorization("admin", "over http")
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.read().decode().startswith("conversion_id,")


# -- the demo ------------------------------------------------------------------------------


def test_the_demo_mounts_the_dashboard(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    shop = TestApp(create_demo_app(storage, secret_key=SECRET))
    assert '<a href="/dashboard/">the operator dashboard</a>' in shop.get("/").text
    shop.get("/dashboard/", status=401)
    shop.get("/dashboard/advertisers/1", headers=basic_authorization("admin", "wrong"), status=401)

    shop.get("/publisher").click(description="Shop the Spring sale").follow()
    shop.get(pixel_src(buy(shop, "Stoneware mug", "2")))

    signed_in = basic_authorization("admin", "demo")
    index = shop.get("/dashboard/", headers=signed_in, status=302)
    assert index.headers["Location"] == "/dashboard/advertisers/1"
    overview = shop.get("/dashboard/advertisers/1", headers=signed_in)
    assert "<span>Sales</span><b>24.00 USD</b>" in overview.text
    assert "<span>Payouts</span><b>2.40 USD</b>" in overview.text
    assert 'href="/dashboard/advertisers/1/conversions?' in overview.text
    # The shop's own pages and the pixel routes are untouched by the mount.
    assert shop.get("/report").status_int == 200


def test_the_demo_dashboard_password_comes_from_the_environment(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from env")
    shop = TestApp(create_demo_app(storage, secret_key=SECRET))
    shop.get("/dashboard/advertisers/1", headers=basic_authorization("admin", "demo"), status=401)
    shop.get("/dashboard/advertisers/1", headers=basic_authorization("admin", "from env"))
    chosen = TestApp(create_demo_app(storage, secret_key=SECRET, dashboard_password="given"))
    chosen.get("/dashboard/advertisers/1", headers=basic_authorization("admin", "given"))


def test_run_demo_prints_the_dashboard(
    tmp_path: Path,
    served: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PIXEL_WSGI_SECRET_KEY", raising=False)
    run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host="127.0.0.1", port=8123)
    out = capsys.readouterr().out
    assert (
        "  the operator dashboard:   http://127.0.0.1:8123/dashboard/"
        ' (user admin, password "demo")\n' in out
    )
    monkeypatch.setenv(PASSWORD_ENV, "hidden one")
    run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host="127.0.0.1", port=8124)
    out = capsys.readouterr().out
    assert f"(user admin, password from ${PASSWORD_ENV})" in out
    assert "hidden one" not in out
    # The served app is the shop with the dashboard inside.
    app = served[1][2]
    TestApp(app).get("/dashboard/", headers=basic_authorization("admin", "hidden one"), status=302)
