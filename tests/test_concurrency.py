"""Racing pixel hits never count one conversion twice: threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage

from .conftest import SECRET, host_app


def _environ(advertiser_id: int, query: str, cookie: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/pixels/conversion/{advertiser_id}.gif",
        "QUERY_STRING": query,
        "HTTP_COOKIE": cookie,
        "wsgi.url_scheme": "http",
    }


def _fire(middleware: PixelMiddleware, environ: dict[str, Any]) -> str:
    statuses: list[str] = []

    def start_response(status: str, headers: Iterable[tuple[str, str]], exc: Any = None) -> Any:
        statuses.append(status)

    b"".join(middleware(environ, start_response))  # type: ignore[arg-type]
    return statuses[0]


def _setup(path: Path) -> tuple[int, str]:
    """A store with one campaign, and the cookie one click on its link sets."""
    storage = SQLiteStorage(path)
    storage.migrate()
    advertiser = storage.add_advertiser("Acme")
    publisher = storage.add_publisher("Pub")
    campaign = storage.add_campaign(
        advertiser.id, "c", PayoutRule(PayoutKind.FIXED, Decimal("3.00"))
    )
    link = storage.add_link(campaign.id, publisher.id, "/landing")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    visit_id = storage.record_visit(link, ip_prefix=None, user_agent=None, created_at="x")
    cookie = f"pixel_wsgi_a{advertiser.id}={middleware.cookies.sign(visit_id, link.id)}"
    storage.close()
    return advertiser.id, cookie


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("sale_amount=10&reference_id=order-1", id="reference-id"),
        pytest.param("sale_amount=10&reason_code=x", id="reload-without-reference"),
    ],
)
def test_threads_racing_one_conversion_count_it_once(tmp_path: Path, query: str) -> None:
    advertiser_id, cookie = _setup(tmp_path / "race.db")
    storage = SQLiteStorage(tmp_path / "race.db")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    barrier = threading.Barrier(8)
    statuses: list[str] = []

    def hit() -> None:
        barrier.wait()
        statuses.append(_fire(middleware, _environ(advertiser_id, query, cookie)))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 8
    assert len(list(storage.transactions())) == 1
    assert len(list(storage.rejections())) == 7


def _process_hits(path: str, advertiser_id: int, cookie: str, start: Any, hits: int) -> None:
    middleware = PixelMiddleware(host_app, SQLiteStorage(path), secret_key=SECRET)
    start.wait()
    for _ in range(hits):
        _fire(middleware, _environ(advertiser_id, "sale_amount=10&reference_id=order-1", cookie))


def test_processes_racing_one_reference_id_count_it_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    advertiser_id, cookie = _setup(path)
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(target=_process_hits, args=(str(path), advertiser_id, cookie, start, 20))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    storage = SQLiteStorage(path)
    [conversion] = storage.transactions()
    assert conversion.payout == Decimal("3.00")
    assert len(list(storage.rejections())) == 79
