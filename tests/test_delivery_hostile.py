"""The delivery worker where it could send twice, hold rows up, undo a row or stop.

Each test is a case a review found against real servers on loopback: a request slower
than the lease, one row a platform keeps refusing among good ones, a correction retried
after a newer one arrived, a pasted credential with its newline, a fault of ours in one
target, a target paused while a pass is sending.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.clock import iso_utc
from pixel_wsgi.delivery import http
from pixel_wsgi.delivery.model import HttpRequest, HttpResponse
from pixel_wsgi.delivery.outbox import add_target
from pixel_wsgi.delivery.targets.postback import Postback
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.models import DeliveryStatus, TargetKind, TargetStatus
from pixel_wsgi.storage import SQLiteStorage

from .conftest import World, pixel_url
from .delivery_servers import Received, Reply, TunePostbackServer
from .test_delivery_worker import (
    BOX,
    Clock,
    api_on,
    ids_sent,
    postback_target,
    report,
    statuses,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(world: World, clock: Clock, auth: dict[str, str]) -> TestApp:
    return api_on(world, clock, auth)


class RefusingServer(TunePostbackServer):
    """TUNE's endpoint, failing the transaction ids in :attr:`failing` with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply
        self.failing: set[str] = set()

    def answer(self, received: Received) -> Reply:
        if received.params.get("transaction_id") in self.failing:
            return self.reply
        return super().answer(received)


def test_a_request_slower_than_the_lease_is_not_sent_again_by_another_worker(
    world: World, api: TestApp, db_path: Path
) -> None:
    """Each answer takes longer than half the lease: the worker renews its lease
    before each request, so a second worker never claims what the first still sends."""
    with TunePostbackServer() as server:
        target = postback_target(world, server)
        for n in range(4):
            report(api, world, f"order-{n}")
        server.script(*[Reply(status=None, delay=0.8)] * 4)
        lease = timedelta(seconds=1.2)
        first = Worker(SQLiteStorage(db_path), BOX, lease=lease, timeout=1.0)
        second = Worker(SQLiteStorage(db_path), BOX, lease=lease, timeout=1.0)
        sending = threading.Thread(target=first.run_once)
        sending.start()
        try:
            for _ in range(12):  # the second worker keeps looking while the first sends
                second.run_once()
                sending.join(timeout=0.25)
        finally:
            sending.join()
        sent = ids_sent(server)
        assert sorted(sent) == sorted(set(sent)) and len(sent) == 4
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}


def test_one_row_a_platform_keeps_refusing_does_not_hold_up_the_others(
    world: World, api: TestApp, clock: Clock
) -> None:
    with RefusingServer(Reply(503, b"Service Unavailable")) as server:
        target = postback_target(world, server)
        for n in range(6):
            report(api, world, f"order-{n}")
        bad = world.storage.last_transaction_id() - 5  # the oldest: claimed first
        server.failing = {str(bad)}
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()
        rows = statuses(world, target)
        assert rows.pop(bad) is DeliveryStatus.PENDING
        assert set(rows.values()) == {DeliveryStatus.DELIVERED}  # all five, in one pass
        stored = world.storage.target(target.id)
        assert stored is not None and (stored.failures, stored.resume_at) == (0, None)
        # New rows keep going while the bad one waits on its own backoff.
        for _ in range(20):
            report(api, world, f"later-{clock().timestamp()}")
            clock.advance(timedelta(minutes=3))
            worker.run_once()
        rows = statuses(world, target)
        assert rows.pop(bad) is DeliveryStatus.PENDING
        assert set(rows.values()) == {DeliveryStatus.DELIVERED} and len(rows) == 25
        tries = sum(1 for tid in ids_sent(server) if tid == bad)
        assert 2 <= tries < 21  # its own backoff (full jitter): not one try per pass


def test_a_target_failing_as_a_whole_opens_its_breaker_and_keeps_the_order(
    world: World, api: TestApp, clock: Clock
) -> None:
    with RefusingServer(Reply(503, b"Service Unavailable")) as server:
        target = postback_target(world, server)
        for n in range(5):
            report(api, world, f"order-{n}")
        server.failing = {str(tid) for tid in range(1, 100)}
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()
        assert len(server.received) == 2  # the second failure tells: the target is down
        stored = world.storage.target(target.id)
        assert stored is not None and stored.resume_at is not None and stored.failures == 1
        server.failing = set()
        for _ in range(30):
            clock.advance(timedelta(minutes=1))
            worker.run_once()
        counted = [int(tid) for tid in server.counted]
        assert counted == sorted(counted) and len(counted) == 5


def test_a_correction_retried_after_a_newer_one_arrived_is_not_sent(
    world: World, api: TestApp, clock: Clock
) -> None:
    with RefusingServer(Reply(200, b"success=false; err_msg=Offer is paused;")) as server:
        target = postback_target(world, server)
        report(api, world, "order-1")
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()
        report(api, world, "order-1", sale_amount="20.00")
        first_fix = world.storage.last_transaction_id()
        server.failing = {str(first_fix)}
        worker.run_once()
        report(api, world, "order-1", sale_amount="18.00")
        worker.run_once()
        rows = statuses(world, target)
        assert rows[first_fix] is DeliveryStatus.DEAD
        assert list(rows.values()).count(DeliveryStatus.DELIVERED) == 2
        server.failing = set()
        moved = world.storage.move_deliveries(
            target.id,
            from_statuses=[DeliveryStatus.DEAD],
            to_status=DeliveryStatus.PENDING,
            now=iso_utc(clock()),
            detail="retried",
        )
        assert moved == 1
        sent_before = len(server.received)
        worker.run_once()
        assert len(server.received) == sent_before  # sending it would undo 18.00
        [row] = [d for d in world.storage.deliveries(target.id) if d.transaction_id == first_fix]
        assert row.status is DeliveryStatus.UNSUPPORTED
        assert "superseded" in (row.detail or "")


def test_a_credential_with_a_pasted_newline_is_refused_when_added(world: World) -> None:
    with pytest.raises(ConfigurationError, match="control characters"):
        add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.INVOCA_SIGNAL,
            settings={"signal_name": "Sale", "call_id_field": "call_id"},
            secrets={"api_token": "token-123\n"},
        )


def test_a_fault_with_one_target_leaves_the_others_going(
    world: World, api: TestApp, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target that cannot make one row's request: that row is dead with the reason,
    the rest of its rows and the other targets' go."""
    with TunePostbackServer() as first, TunePostbackServer() as second:
        broken = postback_target(world, first)
        working = postback_target(world, second)
        for n in range(3):
            report(api, world, f"order-{n}")
        poisoned = world.storage.last_transaction_id() - 1
        made = Postback.requests

        def requests(self: Postback, items: list, now: object) -> list[HttpRequest]:  # type: ignore[type-arg]
            if self.target.id == broken.id and items[0].row.transaction_id == poisoned:
                raise ValueError("a fault of ours")
            return made(self, items, now)  # type: ignore[arg-type]

        monkeypatch.setattr(Postback, "requests", requests)
        Worker(world.storage, BOX, clock=clock).run_once()
        rows = {d.transaction_id: d for d in world.storage.deliveries(broken.id)}
        assert rows[poisoned].status is DeliveryStatus.DEAD
        assert "ValueError: a fault of ours" in (rows[poisoned].detail or "")
        assert len(first.counted) == 2 and len(second.counted) == 3
        assert set(statuses(world, working).values()) == {DeliveryStatus.DELIVERED}


def test_a_sender_that_raises_is_no_answer_and_the_pass_goes_on(
    world: World, api: TestApp, clock: Clock
) -> None:
    with TunePostbackServer() as first, TunePostbackServer() as second:
        broken = postback_target(world, first)
        postback_target(world, second)
        report(api, world, "order-1")

        def send(request: HttpRequest) -> HttpResponse:
            if request.url.startswith(first.url):
                raise RuntimeError("a bug in a custom sender")
            return http.send(request)

        report_ = Worker(world.storage, BOX, clock=clock, send=send).run_once()
        assert report_.waiting_targets == 1
        assert len(second.counted) == 1
        [row] = world.storage.deliveries(broken.id)
        assert row.status is DeliveryStatus.PENDING and row.attempts == 1
        assert "RuntimeError: a bug in a custom sender" in (row.detail or "")


def test_pausing_a_target_stops_a_pass_that_is_sending_to_it(
    world: World, api: TestApp, clock: Clock
) -> None:
    class PausingServer(TunePostbackServer):
        def answer(self, received: Received) -> Reply:
            world.storage.set_target_status(target.id, TargetStatus.PAUSED, None)
            return super().answer(received)

    with PausingServer() as server:
        target = postback_target(world, server)
        for n in range(30):  # more than one claim's worth
            report(api, world, f"order-{n}")
        Worker(world.storage, BOX, clock=clock).run_once()
        # The claim under way finishes; no new claim is made for a paused target.
        assert len(server.received) == 20
        assert list(statuses(world, target).values()).count(DeliveryStatus.PENDING) == 10


def test_an_answer_dripped_past_the_deadline_is_no_answer() -> None:
    """A byte every 0.2 s never trips a 0.3 s timeout; the whole request still ends
    at its deadline (three timeouts), as no answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nsuccess=true;":
                if stop.wait(0.2):
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(bytes([byte]))

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    port = listener.getsockname()[1]
    request = HttpRequest("GET", f"http://127.0.0.1:{port}/aff_lsr", (), b"", (1,))
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"no full answer within 0\.9 s"):
            http.send(request, timeout=0.3)
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        dripping.join(timeout=5)
        listener.close()


def test_a_contest_the_server_decides_reaches_both_publishers(
    world: World, middleware: PixelMiddleware, auth: dict[str, str], clock: Clock
) -> None:
    """A coupon site's visitor claims the order number first; the buyer's browser
    claims it too; the advertiser's server confirms the buyer. The coupon site gets its
    conversion, then its reversal; the buyer's publisher gets the conversion, with its
    own click's sub ids, once the server has spoken."""
    rival = world.storage.add_publisher("Coupon Site")
    rival_link = world.storage.add_link(world.percent_campaign_id, rival.id, "/landing").id
    query = (
        "transaction_id={transaction_id}&tid={transaction_id}&type={transaction_type}"
        "&payout={payout}&s={sub1}&c={campaign_id}&amount={sale_amount}"
    )
    with TunePostbackServer() as buyers, TunePostbackServer() as coupons:
        for publisher_id, server in ((world.publisher_id, buyers), (rival.id, coupons)):
            add_target(
                world.storage,
                BOX,
                world.advertiser_id,
                TargetKind.POSTBACK,
                publisher_id=publisher_id,
                settings={
                    "url": f"{server.url}{server.PATH}?transaction_id={{transaction_id}}&{query}"
                },
                secrets={},
            )
        squatter, buyer = TestApp(middleware), TestApp(middleware)
        squatter.get(f"/pixels/click/{rival_link}?sub1=coupon-7", status=302)
        buyer.get(f"/pixels/click/{world.percent_link_id}?sub1=buyer-3", status=302)
        squatter.get(pixel_url(world.advertiser_id, "reference_id=order-1&sale_amount=0.01"))
        buyer.get(pixel_url(world.advertiser_id, "reference_id=order-1&sale_amount=200.00"))
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()
        assert buyers.received == []
        [first] = [r.params for r in coupons.received]
        assert (first["type"], first["s"]) == ("conversion", "coupon-7")
        buyer.post(
            "/pixels/api/conversions",
            {"reference_id": "order-1", "sale_amount": "200.00"},
            headers=auth,
        )
        worker.run_once()
        [won] = [r.params for r in buyers.received]
        assert (won["type"], won["s"], won["payout"]) == ("conversion", "buyer-3", "20.00")
        [_, lost] = [r.params for r in coupons.received]
        assert (lost["type"], lost["s"], lost["payout"]) == ("reversal", "coupon-7", "0.00")
        assert (lost["amount"], won["amount"]) == ("0.00", "200.00")
        assert lost["tid"] == won["tid"]  # the ledger row that moved the credit
        assert lost["c"] == first["c"]
