"""The delivery worker against real local servers: order, outages, leases, pauses.

Ledger rows are made through the real API and ledger; the worker queues, claims, sends
over loopback and settles in a real SQLite store. Simulated time comes from one clock
shared by the ledger and the worker, set near the real time so that the receivers'
own time checks (Standard Webhooks' 5 minutes) hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.delivery.outbox import add_target, remove_target
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.models import DeliveryStatus, StoredTarget, TargetKind, TargetStatus
from pixel_wsgi.storage import SQLiteStorage

from .conftest import SECRET, World, host_app, pixel_url
from .delivery_servers import Received, Reply, TunePostbackServer, WebhookReceiver
from .meta_ga4_servers import MetaServer

BOX = SecretBox([SECRET.encode()])
POSTBACK_QUERY = "transaction_id={transaction_id}&type={transaction_type}&amount={sale_amount}"


class Clock:
    """Simulated time, starting now: the ledger and the worker read the same one."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


def api_on(world: World, clock: Clock, auth: dict[str, str]) -> TestApp:
    """The world's middleware on ``clock``, with the API's credentials at hand."""
    app = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=clock))
    app.extra_environ = {}
    app.auth_headers = auth  # type: ignore[attr-defined]
    return app


@pytest.fixture
def api(world: World, clock: Clock, auth: dict[str, str]) -> TestApp:
    return api_on(world, clock, auth)


def report(api: TestApp, world: World, reference_id: str, **fields: str) -> None:
    """A conversion (or, with only ``sale_amount``/``reversal_reason``, its correction)."""
    body = {"reference_id": reference_id, **fields}
    if not fields:
        body.update(
            sale_amount="24.50",
            sale_currency="EUR",
            advertiser_campaign_id=str(world.percent_campaign_id),
            affiliate_id=str(world.publisher_id),
        )
    api.post("/pixels/api/conversions", body, headers=api.auth_headers)  # type: ignore[attr-defined]


def postback_target(world: World, server: TunePostbackServer) -> StoredTarget:
    return add_target(
        world.storage,
        BOX,
        world.advertiser_id,
        TargetKind.POSTBACK,
        publisher_id=world.publisher_id,
        settings={"url": f"{server.url}{server.PATH}?{POSTBACK_QUERY}"},
        secrets={},
    ).stored


def webhook_target(world: World, url: str) -> tuple[StoredTarget, str]:
    added = add_target(
        world.storage,
        BOX,
        world.advertiser_id,
        TargetKind.WEBHOOK,
        settings={"url": url},
        secrets={},
    )
    return added.stored, added.secrets["secret"]


def statuses(world: World, target: StoredTarget) -> dict[int, DeliveryStatus]:
    return {d.transaction_id: d.status for d in world.storage.deliveries(target.id)}


def ids_sent(server: TunePostbackServer) -> list[int]:
    return [int(request.params["transaction_id"]) for request in server.received]


class FlakyPostbackServer(TunePostbackServer):
    """TUNE's endpoint that answers 503 while :attr:`down`."""

    down = False

    def answer(self, received: Received) -> Reply:
        if self.down:
            return Reply(503, b"Service Unavailable")
        return super().answer(received)


def test_a_conversion_its_correction_and_reversal_arrive_once_in_order(
    world: World, api: TestApp, clock: Clock
) -> None:
    with WebhookReceiver([]) as receiver:
        target, secret = webhook_target(world, receiver.url)
        receiver.verifiers = [StandardWebhook(secret)]
        report(api, world, "order-1")
        report(api, world, "order-1", sale_amount="20.00")
        report(api, world, "order-1", reversal_reason="cancelled")
        worker = Worker(world.storage, BOX, clock=clock)
        first = worker.run_once()
        assert first.requests == 3
        assert worker.run_once().requests == 0
        types = [payload["type"] for payload in receiver.payloads()]
        assert types == ["conversion.created", "conversion.corrected", "conversion.reversed"]
        assert all(message.deliveries == 1 for message in receiver.messages.values())
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}
        assert world.storage.settled_through(target.id) == world.storage.last_transaction_id()


def test_a_target_starts_from_now_unless_told_to_replay(
    world: World, api: TestApp, clock: Clock
) -> None:
    report(api, world, "before")
    with TunePostbackServer() as server:
        postback_target(world, server)
        clock.advance(timedelta(minutes=1))
        report(api, world, "after")
        Worker(world.storage, BOX, clock=clock).run_once()
        assert [p["type"] for p in (r.params for r in server.received)] == ["conversion"]
        add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.POSTBACK,
            publisher_id=world.publisher_id,
            settings={"url": f"{server.url}{server.PATH}?{POSTBACK_QUERY}&replay=1"},
            secrets={},
            history_from=clock() - timedelta(days=1),
        )
        Worker(world.storage, BOX, clock=clock).run_once()
        replayed = [r.params["transaction_id"] for r in server.received if "replay" in r.params]
        assert len(replayed) == 2


def test_a_target_down_for_an_hour_gets_everything_once_in_order(
    world: World, api: TestApp, clock: Clock
) -> None:
    with FlakyPostbackServer() as server:
        target = postback_target(world, server)
        server.down = True
        for n in range(5):
            report(api, world, f"order-{n}")
        report(api, world, "order-0", sale_amount="1.00")
        worker = Worker(world.storage, BOX, clock=clock)
        back_at = clock() + timedelta(hours=1)
        while clock() < back_at + timedelta(hours=5):
            server.down = clock() < back_at
            worker.run_once()
            clock.advance(timedelta(minutes=1))
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}
        answered = [
            int(request.params["transaction_id"])
            for request in server.received
            if request.params["transaction_id"] in server.counted
        ]
        counted = [int(tid) for tid in server.counted]
        assert counted == sorted(counted) and len(counted) == 6  # once each, in order
        assert len(set(answered)) == 6
        # The breaker spaced the tries: one request per try, not one per row per minute.
        failed = len(server.received) - 6
        assert 3 <= failed <= 30, failed
        stored = world.storage.target(target.id)
        assert stored is not None and (stored.failures, stored.resume_at) == (0, None)


def test_a_correction_of_a_conversion_that_never_arrived_is_unsupported(
    world: World, api: TestApp, clock: Clock
) -> None:
    with TunePostbackServer() as server:
        target = postback_target(world, server)
        server.script(Reply(200, b"success=false; err_msg=Offer is paused;"))
        report(api, world, "order-1")
        report(api, world, "order-1", sale_amount="5.00")
        Worker(world.storage, BOX, clock=clock).run_once()
        first, fix = sorted(statuses(world, target))
        rows = {d.transaction_id: d for d in world.storage.deliveries(target.id)}
        assert rows[first].status is DeliveryStatus.DEAD
        assert "Offer is paused" in (rows[first].detail or "")
        assert rows[fix].status is DeliveryStatus.UNSUPPORTED
        assert "did not reach" in (rows[fix].detail or "")
        assert len(server.received) == 1


def test_refused_credentials_pause_the_target_until_resumed(
    world: World, api: TestApp, clock: Clock
) -> None:
    with WebhookReceiver([]) as receiver:
        target, secret = webhook_target(world, receiver.url)
        report(api, world, "order-1")
        report(api, world, "order-2")
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()  # the receiver knows no secret yet: 401
        paused = world.storage.target(target.id)
        assert paused is not None and paused.status is TargetStatus.AUTH_FAILED
        assert "401" in (paused.status_detail or "")
        assert len(receiver.received) == 1
        assert set(statuses(world, target).values()) == {DeliveryStatus.PENDING}
        worker.run_once()
        assert len(receiver.received) == 1  # paused: nothing sent
        receiver.verifiers = [StandardWebhook(secret)]
        world.storage.set_target_status(target.id, TargetStatus.ACTIVE, None)
        worker.run_once()
        assert len(receiver.messages) == 2
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}


def test_retry_after_is_honoured(world: World, api: TestApp, clock: Clock) -> None:
    with TunePostbackServer() as server:
        target = postback_target(world, server)
        server.script(Reply(429, b"slow down", (("Retry-After", "600"),)))
        report(api, world, "order-1")
        worker = Worker(world.storage, BOX, clock=clock)
        worker.run_once()
        stored = world.storage.target(target.id)
        assert stored is not None and stored.resume_at is not None
        waited = datetime.fromisoformat(stored.resume_at.replace("Z", "+00:00")) - clock()
        assert waited >= timedelta(seconds=600)
        clock.advance(timedelta(seconds=590))
        worker.run_once()
        assert len(server.received) == 1
        clock.advance(timedelta(hours=4))
        worker.run_once()
        assert ids_sent(server) == [ids_sent(server)[0]] * 2
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}


def test_rows_failing_for_three_days_are_dead_lettered_with_the_reason(
    world: World, api: TestApp, clock: Clock
) -> None:
    with FlakyPostbackServer() as server:
        server.down = True
        target = postback_target(world, server)
        report(api, world, "order-1")
        worker = Worker(world.storage, BOX, clock=clock)
        for _ in range(40):
            worker.run_once()
            clock.advance(timedelta(hours=2))
        [row] = world.storage.deliveries(target.id)
        assert row.status is DeliveryStatus.DEAD
        assert (row.detail or "").startswith("gave up after")
        assert "503" in (row.detail or "")
        assert 5 < row.attempts < 40


def test_dry_run_shows_the_requests_and_changes_nothing(
    world: World, api: TestApp, clock: Clock
) -> None:
    with TunePostbackServer() as server:
        target = postback_target(world, server)
        report(api, world, "order-1")
        worker = Worker(world.storage, BOX, clock=clock)
        [(stored, request, text)] = list(worker.plan())
        assert stored.id == target.id
        assert text.startswith(f"GET {server.url}{server.PATH}?transaction_id=")
        assert "type=conversion&amount=24.50" in text
        assert server.received == []
        assert list(world.storage.deliveries(target.id)) == []
        worker.run_once()
        assert [r.raw_query for r in server.received] == [request.url.split("?", 1)[1]]


def test_two_workers_at_once_send_nothing_twice(
    world: World, api: TestApp, clock: Clock, db_path: Path
) -> None:
    with TunePostbackServer() as server:
        target = postback_target(world, server)
        for n in range(60):
            report(api, world, f"order-{n}")
        stores = [SQLiteStorage(db_path) for _ in range(3)]
        start = threading.Barrier(3)

        def work(store: SQLiteStorage) -> None:
            start.wait()
            Worker(store, BOX, clock=clock).run_once()

        threads = [threading.Thread(target=work, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for store in stores:
            store.close()
        sent = ids_sent(server)
        assert len(sent) == len(set(sent)) == 60
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}


WORKER_CHILD = """
import sys
from datetime import timedelta
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.storage import SQLiteStorage
from standardwebhooks.webhooks import Webhook as StandardWebhook
store = SQLiteStorage(sys.argv[1])
print("ready", flush=True)
lease = timedelta(seconds=float(sys.argv[3]))
Worker(store, SecretBox([sys.argv[2].encode()]), lease=lease).run_once()
"""


def start_worker(db_path: Path, lease: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", WORKER_CHILD, str(db_path), SECRET, str(lease)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def finish(child: subprocess.Popen[str]) -> int:
    child.communicate(timeout=60)
    return child.returncode


def test_two_processes_send_nothing_twice(world: World, api: TestApp, db_path: Path) -> None:
    with TunePostbackServer() as server:
        postback_target(world, server)
        for n in range(40):
            report(api, world, f"order-{n}")
        children = [start_worker(db_path, 60) for _ in range(2)]
        for child in children:
            assert finish(child) == 0
        sent = ids_sent(server)
        assert len(sent) == len(set(sent)) == 40


def test_a_worker_killed_mid_send_is_resent_with_the_same_key(
    world: World, api: TestApp, db_path: Path
) -> None:
    with WebhookReceiver([]) as receiver:
        target, secret = webhook_target(world, receiver.url)
        receiver.verifiers = [StandardWebhook(secret)]
        report(api, world, "order-1")
        # The first request is answered only after 30 s: the worker dies waiting.
        receiver.script(Reply(None, delay=30))
        child = start_worker(db_path, lease=1.0)
        deadline = time.monotonic() + 20
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.received, "the worker never sent"
        os.kill(child.pid, signal.SIGKILL)
        assert finish(child) == -signal.SIGKILL
        time.sleep(1.1)  # the dead worker's lease runs out
        Worker(world.storage, BOX).run_once()
        first, again = receiver.received
        assert first.headers["webhook-id"] == again.headers["webhook-id"]
        assert len(receiver.messages) == 1  # the receiver counts one
        assert set(statuses(world, target).values()) == {DeliveryStatus.DELIVERED}


def test_credentials_survive_a_key_rotation_and_a_copy_does_not_open() -> None:
    old, new = b"o" * 32, b"n" * 32
    sealed_old = SecretBox([old]).seal({"secret": "s"}, advertiser_id=1, kind="webhook")
    rotating = SecretBox([old, new])  # the last key is the newest, as for cookies
    assert rotating.open(sealed_old, advertiser_id=1, kind="webhook") == {"secret": "s"}
    sealed_new = rotating.seal({"secret": "t"}, advertiser_id=1, kind="webhook")
    assert SecretBox([new]).open(sealed_new, advertiser_id=1, kind="webhook") == {"secret": "t"}
    with pytest.raises(ConfigurationError, match="secret_key"):
        SecretBox([old]).open(sealed_new, advertiser_id=1, kind="webhook")
    with pytest.raises(ConfigurationError):
        rotating.open(sealed_new, advertiser_id=2, kind="webhook")  # another advertiser's


def test_removing_the_last_context_taking_target_stops_keeping_contexts(world: World) -> None:
    meta = add_target(
        world.storage,
        BOX,
        world.advertiser_id,
        TargetKind.META_CAPI,
        settings={"pixel_id": "123"},
        secrets={"access_token": "EAAB-token"},
    ).stored
    ga4 = add_target(
        world.storage,
        BOX,
        world.advertiser_id,
        TargetKind.GA4,
        settings={"measurement_id": "G-TEST123"},
        secrets={"api_secret": "ga-secret"},
    ).stored
    assert keeps_context(world)
    remove_target(world.storage, meta)
    assert keeps_context(world)  # GA4 still needs them
    remove_target(world.storage, ga4)
    assert not keeps_context(world)


def keeps_context(world: World) -> bool:
    advertiser = world.storage.advertiser(world.advertiser_id)
    assert advertiser is not None
    return advertiser.keeps_conversion_context


def test_a_meta_event_past_seven_days_is_expired_and_its_batch_goes_through(
    world: World, clock: Clock
) -> None:
    meta = MetaServer("1234567890", "EAAB-token")
    with meta.running():
        target = add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.META_CAPI,
            settings={"pixel_id": "1234567890", "endpoint": meta.base_url},
            secrets={"access_token": "EAAB-token"},
        ).stored
        real_now = clock()
        shop = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=clock))
        clock.now = real_now - timedelta(days=8)
        shop.get(f"/pixels/click/{world.percent_link_id}?fbclid=IwAR-test")
        browser = {
            "User-Agent": "Mozilla/5.0 Firefox/133.0",
            "Referer": "https://shop.example/thanks",
        }
        shop.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=old"), headers=browser)
        clock.now = real_now - timedelta(hours=1)
        shop.get(pixel_url(world.advertiser_id, "sale_amount=20&reference_id=new"), headers=browser)
        clock.now = real_now
        Worker(world.storage, BOX, clock=clock).run_once()
        rows = {d.transaction_id: d for d in world.storage.deliveries(target.id)}
        old, new = sorted(rows)
        assert rows[old].status is DeliveryStatus.EXPIRED and rows[old].attempts == 0
        assert rows[new].status is DeliveryStatus.DELIVERED
        assert len(meta.received) == 1
        assert [event_id for _, event_id in meta.events] == ["new"]
        assert Worker(world.storage, BOX, clock=clock).run_once().requests == 0
