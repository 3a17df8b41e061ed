"""Racing pixel hits never count one conversion twice: threads and processes."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pixel_wsgi import PixelMiddleware, SQLiteStorage

from .conftest import SECRET, clicked_store, host_app, pixel_status, race_in_processes


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("sale_amount=10&reference_id=order-1", id="reference-id"),
        pytest.param("sale_amount=10&reason_code=x", id="reload-without-reference"),
    ],
)
def test_threads_racing_one_conversion_count_it_once(tmp_path: Path, query: str) -> None:
    advertiser_id, cookie = clicked_store(tmp_path / "race.db")
    storage = SQLiteStorage(tmp_path / "race.db")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    barrier = threading.Barrier(8)
    statuses: list[str] = []

    def hit() -> None:
        barrier.wait()
        statuses.append(pixel_status(middleware, advertiser_id, query, cookie))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 8
    assert len(list(storage.transactions())) == 1
    assert len(list(storage.rejections())) == 7


def _process_hits(start: Any, path: str, advertiser_id: int, cookie: str, hits: int) -> None:
    middleware = PixelMiddleware(host_app, SQLiteStorage(path), secret_key=SECRET)
    start.wait()
    for _ in range(hits):
        pixel_status(middleware, advertiser_id, "sale_amount=10&reference_id=order-1", cookie)


def test_processes_racing_one_reference_id_count_it_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    advertiser_id, cookie = clicked_store(path)
    calls = [(str(path), advertiser_id, cookie, 20)] * 4
    assert race_in_processes(_process_hits, calls) == [0, 0, 0, 0]
    storage = SQLiteStorage(path)
    [conversion] = storage.transactions()
    assert conversion.payout == Decimal("3.00")
    assert len(list(storage.rejections())) == 79
