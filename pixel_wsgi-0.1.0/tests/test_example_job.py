"""``examples/report_from_job.py`` against a real HTTP server: reports, retries, reversals."""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.endpoints.api.auth import issue_credential

from .conftest import SECRET, World, host_app
from .test_examples import EXAMPLES


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """The middleware on 127.0.0.1 in a thread; a short busy timeout and no outage
    spool, to provoke 503s."""
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.2)
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=None)
    httpd = make_server("127.0.0.1", 0, middleware)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def test_the_job_reports_confirmations_and_cancellations(
    server: str,
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    job = importlib.import_module("report_from_job")
    monkeypatch.setenv(
        "PIXEL_WSGI_SECRET", issue_credential(world.storage, world.advertiser_id).secret
    )
    for reference_id in ("order-1", "order-2"):  # reported when the orders were placed
        job.post(
            server,
            world.advertiser_id,
            issue_credential(world.storage, world.advertiser_id).secret,
            {
                "reference_id": reference_id,
                "sale_amount": "100.00",
                "advertiser_campaign_id": str(world.percent_campaign_id),
                "affiliate_id": str(world.publisher_id),
            },
        )
    orders = tmp_path / "changed.csv"
    orders.write_text("order_id,status,amount\n1,confirmed,80.00\n2,cancelled,\n3,confirmed,5\n")
    argv = [str(orders), "--url", server, "--advertiser", str(world.advertiser_id)]

    assert job.main(argv) == 1  # order 3 was never seen: reported as a failure
    out = capsys.readouterr().out
    assert "order 1: corrected (payout 8.00)" in out
    assert "order 2: corrected (payout 0.00)" in out
    assert "order 3: 422 no_attribution" in out
    # Run again: nothing changes (idempotent by reference_id and Idempotency-Key).
    before = list(world.storage.transactions())
    assert job.main(argv) == 1
    assert list(world.storage.transactions()) == before
    current = {c.reference_id: c for c in world.storage.conversions()}
    assert current["order-1"].payout == Decimal("8.00")
    assert current["order-2"].reversal_reason == "order cancelled"


def test_the_job_retries_while_the_store_is_locked(
    server: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    job = importlib.import_module("report_from_job")
    secret = issue_credential(world.storage, world.advertiser_id).secret
    holder = sqlite3.connect(world.storage.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
    timer.start()
    try:
        status, answer = job.post(
            server,
            world.advertiser_id,
            secret,
            {
                "reference_id": "locked-1",
                "sale_amount": "10",
                "advertiser_campaign_id": str(world.percent_campaign_id),
                "affiliate_id": str(world.publisher_id),
            },
            delay=0.1,
        )
    finally:
        timer.join()
        holder.close()
    assert (status, answer["result"]) == (201, "created")
    assert [c.reference_id for c in world.storage.conversions()] == ["locked-1"]
