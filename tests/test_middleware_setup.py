"""Setting the middleware up: a missing key fails clearly; the host starts whatever the disk does."""

from __future__ import annotations

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware, SQLiteStorage
from pixel_wsgi.middleware import SECRET_KEY_ENV

from .conftest import SECRET, World, host_app

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
