"""The PasteDeploy filter, loaded from real ``.ini`` files with ``paste.deploy.loadapp``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.endpoints.filters import DEFAULT_BOT_USER_AGENTS
from pixel_wsgi.integrations.paste import NOT_TEXT, OPTIONS

from .conftest import SECRET, World

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def host_factory(global_conf: dict[str, str], **local_conf: str) -> WSGIApplication:
    """The ``[app:shop]`` of the test files: a page that names its path."""

    def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"shop {environ['PATH_INFO']}".encode()]

    return shop


def write_ini(directory: Path, db: Path, options: str) -> Path:
    ini = directory / "site.ini"
    ini.write_text(
        "[pipeline:main]\n"
        "pipeline = pixel shop\n\n"
        "[filter:pixel]\n"
        "use = egg:pixel-wsgi#pixel\n"
        f"storage = sqlite:///{db}\n"
        f"secret_key = {SECRET}\n"
        f"{options}\n\n"
        "[app:shop]\n"
        "use = call:tests.test_paste:host_factory\n"
    )
    return ini


def load(directory: Path, db: Path, options: str) -> PixelMiddleware:
    app = loadapp(f"config:{write_ini(directory, db, options)}")
    assert isinstance(app, PixelMiddleware)
    return app


# Every option the README recommends, and the rest of what text can express.
EVERY_OPTION = """\
old_secret_keys = retired-key-0123456789 another-retired-key-0123
prefix = /t
legacy_prefix = /old/web_sale
default_currency = EUR
attribution_window = 7d
reload_window = 90m
honor_gpc = off
allowed_redirect_hosts = partner.example, www.partner.example
    cdn.partner.example
advertiser_id = 1
api_allowed_origins = https://admin.shop.example,https://ops.shop.example
environ_key = pixel_reporter
migrate = yes
bot_user_agents = default,
    Screaming Frog SEO Spider
    MyMonitor/1.0
min_seconds_to_convert = 2.5
spool_dir = %(here)s/spool-here
max_query_length = 4096
max_items = 10
"""


def test_every_option_of_the_readme_is_taken_and_converted(world: World, tmp_path: Path) -> None:
    middleware = load(tmp_path, world.storage.path, EVERY_OPTION)
    assert (middleware.prefix, middleware.legacy_prefix) == ("/t", "/old/web_sale")
    assert middleware.default_currency == "EUR"
    assert middleware.cookies.window == timedelta(days=7)
    assert middleware.ledger.reload_window == timedelta(minutes=90)
    assert middleware.tracking_link.honor_gpc is False
    assert middleware.tracking_link.allowed_redirect_hosts == {
        "partner.example",
        "www.partner.example",
        "cdn.partner.example",
    }
    assert middleware.reporter.advertiser_id == 1
    assert middleware.api.authenticate.allowed_origins == {
        "https://admin.shop.example",
        "https://ops.shop.example",
    }
    assert middleware.environ_key == "pixel_reporter"
    bots = middleware.filters.bots.substrings
    assert bots[: len(DEFAULT_BOT_USER_AGENTS)] == DEFAULT_BOT_USER_AGENTS
    assert bots[len(DEFAULT_BOT_USER_AGENTS) :] == ("screaming frog seo spider", "mymonitor/1.0")
    assert middleware.filters.min_seconds_to_convert == 2.5
    assert middleware.spool is not None
    assert middleware.spool.directory == tmp_path / "spool-here"
    assert middleware.conversion_pixel.limits.max_query_length == 4096
    assert middleware.conversion_pixel.limits.max_items == 10
    # The retired keys verify; the new one signs.
    signed = middleware.cookies.sign(1, world.percent_link_id)
    assert middleware.cookies.verify(signed).link_id == world.percent_link_id


def test_the_options_work_end_to_end(world: World, tmp_path: Path) -> None:
    middleware = load(tmp_path, world.storage.path, EVERY_OPTION)
    try:
        requests_through(TestApp(middleware), world)
    finally:
        middleware.storage.close()


def requests_through(browser: TestApp, world: World) -> None:
    assert browser.get("/checkout").text == "shop /checkout"
    assert browser.get(f"/t/click/{world.percent_link_id}", status=302).location.endswith(
        "/landing?from=blog"
    )
    # A bot from the added list gets the redirect but no cookie.
    bot = browser.get(
        f"/t/click/{world.percent_link_id}",
        headers={"User-Agent": "Mozilla/5.0 (compatible; Screaming Frog SEO Spider/19.0)"},
        status=302,
    )
    assert "Set-Cookie" not in bot.headers


@pytest.mark.parametrize(
    ("options", "check"),
    [
        pytest.param(
            "bot_user_agents = none", lambda m: m.filters.bots.substrings == (), id="no-bots"
        ),
        pytest.param(
            "bot_user_agents = default",
            lambda m: m.filters.bots.substrings == DEFAULT_BOT_USER_AGENTS,
            id="default-bots",
        ),
        pytest.param("spool_dir = none", lambda m: m.spool is None, id="no-spool"),
        pytest.param(
            "spool_dir = auto",
            lambda m: m.spool is not None and m.spool.directory.name == "pixel.db.spool",
            id="spool-auto",
        ),
        pytest.param(
            "spool_max_bytes = 1048576",
            lambda m: m.spool is not None and m.spool.max_bytes == 1048576,
            id="spool-cap",
        ),
        pytest.param("environ_key = none", lambda m: m.environ_key is None, id="no-environ-key"),
        pytest.param(
            "attribution_window_days = 45",
            lambda m: m.cookies.window == timedelta(days=45),
            id="window-in-days",
        ),
        pytest.param(
            "reload_window = 30s",
            lambda m: m.ledger.reload_window == timedelta(seconds=30),
            id="seconds",
        ),
        pytest.param(
            "min_seconds_to_convert = 3",
            lambda m: m.filters.min_seconds_to_convert == 3.0,
            id="whole-seconds",
        ),
    ],
)
def test_special_values(world: World, tmp_path: Path, options: str, check: Any) -> None:
    assert check(load(tmp_path, world.storage.path, options))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            "min_seconds_to_convert = soon",
            "min_seconds_to_convert must be a number",
            id="seconds-word",
        ),
        pytest.param(
            "min_seconds_to_convert = -1",
            "min_seconds_to_convert must be a number",
            id="seconds-negative",
        ),
        pytest.param(
            "min_seconds_to_convert = nan",
            "min_seconds_to_convert must be a number",
            id="seconds-nan",
        ),
        pytest.param(
            "advertiser_id = one", "advertiser_id must be a whole number", id="advertiser-word"
        ),
        pytest.param(
            "advertiser_id = 1.5", "advertiser_id must be a whole number", id="advertiser-fraction"
        ),
        pytest.param("honor_gpc = maybe", "honor_gpc must be true or false", id="bool"),
        pytest.param("migrate = 2", "migrate must be true or false", id="bool-number"),
        pytest.param(
            "attribution_window = 30", "attribution_window must be a duration", id="no-unit"
        ),
        pytest.param(
            "attribution_window = 2w", "attribution_window must be a duration", id="weeks"
        ),
        pytest.param("attribution_window = 500d", "400 days", id="window-too-long"),
        pytest.param("reload_window = -5m", "reload_window must be a duration", id="negative"),
        pytest.param("attribution_window_days = 1.5", "whole number of days", id="days-fraction"),
        pytest.param(
            "attribution_window = 3d\nattribution_window_days = 3", "not both", id="both-windows"
        ),
        pytest.param(
            "max_query_length = 0", "max_query_length must be a positive integer", id="limit-zero"
        ),
        pytest.param("max_items = many", "max_items must be a whole number", id="limit-word"),
        pytest.param("environ_key =", "environ_key must be a name", id="environ-key-empty"),
        pytest.param("bot_user_agents =", "bot_user_agents must be a list", id="bots-empty"),
        pytest.param("default_currency = dollars", "ISO 4217", id="currency"),
        pytest.param("prefix = pixels", "prefix must start with '/'", id="prefix"),
        pytest.param(
            "spool_dirs = /tmp/x", "unknown pixel-wsgi filter option(s): spool_dirs", id="misspelt"
        ),
    ],
)
def test_a_bad_value_is_a_clear_error(
    world: World, tmp_path: Path, options: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load(tmp_path, world.storage.path, options)


def test_the_secret_key_may_come_from_the_environment(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = write_ini(tmp_path, world.storage.path, "")
    ini.write_text(ini.read_text().replace(f"secret_key = {SECRET}\n", ""))
    monkeypatch.delenv("PIXEL_WSGI_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="needs the option: secret_key") as raised:
        loadapp(f"config:{ini}")
    assert "PIXEL_WSGI_SECRET_KEY" in str(raised.value)
    assert "secrets.token_urlsafe(32)" in str(raised.value)
    monkeypatch.setenv("PIXEL_WSGI_SECRET_KEY", SECRET)
    middleware = loadapp(f"config:{ini}")
    assert isinstance(middleware, PixelMiddleware)


def test_every_middleware_option_is_a_filter_option_or_said_not_to_be_text() -> None:
    """A new PixelMiddleware option must be added to the filter (or to NOT_TEXT)."""
    arguments = set(inspect.signature(PixelMiddleware.__init__).parameters) - {"self"}
    covered = set(OPTIONS) | set(NOT_TEXT) | {"limits"}
    assert arguments - covered == set()
