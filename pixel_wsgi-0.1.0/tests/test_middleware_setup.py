"""Setting the middleware up: a missing key fails clearly; the host starts whatever
the disk does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware, SQLiteStorage
from pixel_wsgi.outage.spool import Spool, SpoolError

from .conftest import SECRET, World, host_app

SECRET_KEY_ENV = "PIXEL_WSGI_SECRET_KEY"  # the documented name
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


# -- the secret key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
    ],
)
def test_no_secret_key_and_no_variable_is_a_clear_error(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch, secret_key: str | None
) -> None:
    """``secret_key=os.environ.get("PIXEL_WSGI_SECRET_KEY")`` with the variable unset."""
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with pytest.raises(ConfigurationError) as raised:
        PixelMiddleware(host_app, storage, secret_key=secret_key)
    message = str(raised.value)
    assert SECRET_KEY_ENV in message
    assert MAKE_A_KEY in message


def test_no_secret_key_argument_is_a_clear_error(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with pytest.raises(ConfigurationError, match=SECRET_KEY_ENV):
        PixelMiddleware(host_app, storage)


@pytest.mark.parametrize(
    "secret_key",
    [
        pytest.param("short", id="short"),
        pytest.param([], id="empty-list"),
        pytest.param(["a-long-enough-secret-key", None], id="none-in-a-list"),
        pytest.param(12345678901234567890, id="a-number"),
    ],
)
def test_an_unusable_secret_key_says_how_to_make_one(
    storage: SQLiteStorage, secret_key: object
) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 characters") as raised:
        PixelMiddleware(host_app, storage, secret_key=secret_key)  # type: ignore[arg-type]
    assert MAKE_A_KEY in str(raised.value)


def test_the_key_comes_from_the_environment_when_none_is_given(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, SECRET)
    from_environment = PixelMiddleware(host_app, world.storage)
    explicit = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    click = TestApp(from_environment).get(f"/pixels/click/{world.percent_link_id}", status=302)
    [cookie] = click.headers.getall("Set-Cookie")
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    # Signed with the variable's key: a middleware given that key explicitly verifies it.
    assert explicit.cookies.verify(value) is not None


def test_an_explicit_key_wins_over_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_KEY_ENV, "x")  # too short: used, it would fail
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    assert middleware.pixel_urls is not None


# -- a spool that cannot be set up -------------------------------------------------------

SPOOL_CRITICAL = "pixel-wsgi has no outage spool"


def critical_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


def test_a_spool_directory_that_cannot_be_made_leaves_the_host_serving(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, spool_dir=blocker / "spool"
    )
    assert middleware.spool is None
    [line] = [m for m in critical_lines(caplog) if SPOOL_CRITICAL in m]
    assert str(blocker / "spool") in line
    browser = TestApp(middleware)
    assert browser.get("/checkout").text == "host page /checkout"
    assert browser.get(f"/pixels/click/{world.percent_link_id}", status=302).location.endswith(
        "/landing?from=blog"
    )
    assert browser.get(f"/pixels/conversion/{world.advertiser_id}.gif").content_type == (
        "image/gif"
    )
    health = browser.get("/pixels/health", status=503).json
    assert health["status"] == "degraded"
    assert health["store"] == "ok"
    assert health["spool"].startswith("unavailable: cannot create the spool directory")
    assert browser.head("/pixels/health", status=503).body == b""
    # Said once, at start-up, not per request.
    assert len([m for m in critical_lines(caplog) if SPOOL_CRITICAL in m]) == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(ConfigurationError("spool directory is writable by others"), id="refused"),
        pytest.param(SpoolError("cannot lock the spool"), id="spool-error"),
        pytest.param(PermissionError(13, "Permission denied"), id="os-error"),
    ],
)
def test_any_spool_set_up_failure_is_degraded_not_fatal(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    def refuse(directory: object, **options: object) -> Spool:
        raise failure

    monkeypatch.setattr("pixel_wsgi.middleware.Spool", refuse)
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    assert middleware.spool is None and middleware.ledger.spool is None
    assert any(str(failure) in line for line in critical_lines(caplog))
    health = TestApp(middleware).get("/pixels/health", status=503).json
    assert health["spool"] == f"unavailable: {failure}"


def test_no_spool_asked_for_is_not_a_problem(world: World) -> None:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET, spool_dir=None)
    assert TestApp(middleware).get("/pixels/health").json == {"status": "ok"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"prefix": "pixels"}, "prefix", id="bad-prefix"),
        pytest.param({"default_currency": "DOLLARS"}, "ISO 4217", id="bad-currency"),
        pytest.param({"secret_key": "short"}, "at least 16", id="bad-key"),
    ],
)
def test_a_wrong_option_still_fails_at_construction_with_a_broken_spool(
    storage: SQLiteStorage, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    kwargs: dict[str, Any] = {"secret_key": SECRET, "spool_dir": blocker / "spool", **options}
    with pytest.raises(ConfigurationError, match=message):
        PixelMiddleware(host_app, storage, **kwargs)
