"""Bad configuration fails loudly at construction, naming the bad value."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pixel_wsgi import ConfigurationError, PixelMiddleware, SQLiteStorage
from pixel_wsgi.entities import validate_destination

from .conftest import SECRET, host_app


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"secret_key": "short"}, "at least 16", id="short-key"),
        pytest.param({"secret_key": []}, "at least 16", id="no-keys"),
        pytest.param(
            {"attribution_window": timedelta(days=401)}, "400 days", id="window-over-400-days"
        ),
        pytest.param({"attribution_window": timedelta(0)}, "more than 0", id="zero-window"),
        pytest.param({"prefix": "pixels"}, "prefix", id="relative-prefix"),
        pytest.param({"prefix": "/pixels/"}, "prefix", id="trailing-slash"),
        pytest.param({"default_currency": "DOLLARS"}, "ISO 4217", id="currency"),
        pytest.param({"storage": "redis://x"}, "no storage backend", id="storage-scheme"),
        pytest.param({"storage": 42}, "storage must be", id="storage-type"),
    ],
)
def test_bad_configuration(tmp_path: Any, options: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "storage": SQLiteStorage(tmp_path / "x.db"),
        "secret_key": SECRET,
        **options,
    }
    storage = kwargs.pop("storage")
    with pytest.raises(ConfigurationError, match=message):
        PixelMiddleware(host_app, storage, **kwargs)


@pytest.mark.parametrize(
    "destination",
    [
        pytest.param("/landing", id="path"),
        pytest.param("/landing?x=1#top", id="path-with-query"),
        pytest.param("https://shop.example/landing", id="absolute"),
        pytest.param("http://localhost:8000/x", id="port"),
    ],
)
def test_good_destinations(destination: str) -> None:
    assert validate_destination(destination) == destination


@pytest.mark.parametrize(
    "destination",
    [
        pytest.param("", id="empty"),
        pytest.param("//evil.example", id="scheme-relative"),
        pytest.param("/\\evil.example", id="backslash"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("data:text/html,hi", id="data"),
        pytest.param("ftp://x.example/", id="ftp"),
        pytest.param("https://user:pw@x.example/", id="credentials"),
        pytest.param("landing", id="relative"),
        pytest.param("/land ing", id="space"),
        pytest.param("/landing\r\nSet-Cookie: x=1", id="header-injection"),
        pytest.param("https:///nohost", id="no-host"),
    ],
)
def test_bad_destinations(destination: str) -> None:
    with pytest.raises(ConfigurationError):
        validate_destination(destination)
