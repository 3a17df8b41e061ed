"""The rejection log's bound: junk never evicts the evidence of a fraud (issue 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.storage.base import rejection_quotas

from .conftest import SECRET, host_app, make_world, reasons
from .wsgi_calls import call


def test_junk_pixels_do_not_flush_a_cookie_stuffing_click(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "pixel.db", max_rejections=500)
    storage.migrate()
    world = make_world(storage)
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    try:
        status, headers, _ = call(
            middleware,
            f"/pixels/click/{world.percent_link_id}",
            headers={"Sec-Fetch-Dest": "iframe"},
        )
        assert status == "302 FOUND" and "Set-Cookie" not in headers
        for _ in range(2000):  # the 100,300, against a log of 500
            assert call(middleware, "/pixels/conversion/x.gif")[0] == "200 OK"
        logged = reasons(storage)
        assert logged[0] == "cookie_stuffing"
        assert logged.count("unknown_advertiser") == len(logged) - 1
        assert 500 <= len(logged) < 500 + 256
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("counts", "quotas"),
    [
        pytest.param({"a": 10, "b": 20}, {}, id="under-the-bound"),
        pytest.param({"cookie_stuffing": 1, "junk": 500}, {"junk": 99}, id="one-flood"),
        pytest.param({"rare": 10, "x": 200, "y": 300}, {"x": 45, "y": 45}, id="two-floods"),
        pytest.param({"x": 60, "y": 70}, {"x": 50, "y": 50}, id="even-split"),
        pytest.param({str(n): 2 for n in range(150)}, {str(n): 1 for n in range(150)}, id="floor"),
    ],
)
def test_the_most_frequent_reasons_give_way_first(
    counts: dict[str, int], quotas: dict[str, int]
) -> None:
    assert rejection_quotas(counts, 100) == quotas
