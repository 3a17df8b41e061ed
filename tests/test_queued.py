"""The queued mode (``ingest="queued"``): the pixel and the click append to the local log;
the applier applies it in batches, exactly once, through the ledger's rules.

Hostile cases first: an applier killed with ``kill -9`` in the middle of a batch, an
applier that stops while events keep arriving, two processes' appliers at once, a store
that fails while the log grows, a log that cannot take an event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.errors import RecordRefused
from pixel_wsgi.models import Link, Reason
from pixel_wsgi.outage.applier import apply_until_stopped
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool
from pixel_wsgi.storage import SQLiteStorage

from .conftest import SECRET, World, host_app, pixel_url
from .spool_helpers import write_locked


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


def queued_shop(world: World, log_dir: Path, **options: object) -> PixelMiddleware:
    options.setdefault("ingest", "queued")
    return PixelMiddleware(
        host_app,
        world.storage,
        secret_key=SECRET,
        spool_dir=log_dir,
        **options,  # type: ignore[arg-type]
    )


def clicked_without_applier(
    world: World, log_dir: Path, **options: object
) -> tuple[PixelMiddleware, TestApp]:
    """A queued shop whose applier thread is stopped (the test applies the log), and a
    visitor who followed the tracking link."""
    middleware = queued_shop(world, log_dir, **options)
    middleware.close()
    browser = TestApp(middleware)
    browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
    return middleware, browser


def buy(browser: TestApp, world: World, reference_id: str, amount: str = "10.00") -> None:
    browser.get(pixel_url(world.advertiser_id, f"sale_amount={amount}&reference_id={reference_id}"))


def references(world: World) -> list[str]:
    return [t.reference_id or "" for t in world.storage.transactions()]


def test_a_click_and_a_conversion_wait_in_the_log_then_count_as_they_would(
    world: World, log_dir: Path
) -> None:
    # No applier thread: this test applies the log itself.
    middleware, browser = clicked_without_applier(world, log_dir)
    buy(browser, world, "order-1", "80.00")
    buy(browser, world, "order-1", "80.00")  # a reload
    TestApp(middleware).get(pixel_url(world.advertiser_id, "sale_amount=5&reference_id=x"))
    assert list(world.storage.transactions()) == []  # answered, not yet applied
    assert list(world.storage.rejections()) == []
    summary = replay(Spool(log_dir), world.storage)
    assert (summary.applied, summary.stopped) == (4, None)
    [conversion] = world.storage.conversions()
    assert (conversion.reference_id, conversion.payout) == ("order-1", Decimal("8.00"))
    assert conversion.visit_id is not None and conversion.visit_id < 0  # the cookie's id
    reasons = sorted(r.reason for r in world.storage.rejections())
    assert reasons == sorted([Reason.DUPLICATE_REFERENCE_ID, Reason.NO_ATTRIBUTION])


def test_the_applier_thread_applies_within_a_fraction_of_a_second(
    world: World, log_dir: Path
) -> None:
    middleware = queued_shop(world, log_dir)
    try:
        browser = TestApp(middleware)
        browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
        buy(browser, world, "order-1")
        sent = time.monotonic()
        while references(world) != ["order-1"]:
            assert time.monotonic() - sent < 5, "the applier did not apply the event"
            time.sleep(0.01)
        assert time.monotonic() - sent < 1.0
    finally:
        middleware.close()
    assert middleware.applier is not None and not middleware.applier.running


class RefusesOne(SQLiteStorage):
    """A store that cannot hold one click (as PostgreSQL refuses a NUL)."""

    def record_visit(self, link: Link, **fields: Any) -> int:
        if fields["user_agent"] == "Refused/1.0":
            raise RecordRefused("the record cannot be stored (a test's refusal)")
        return super().record_visit(link, **fields)


def test_a_record_the_store_refuses_mid_batch_is_undone_alone(
    world: World, log_dir: Path, db_path: Path
) -> None:
    # The batch is applied without savepoints first; the refusal undoes it, and it is
    # applied again one savepoint per event: the refused one is quarantined, the
    # others count once.
    middleware, browser = clicked_without_applier(world, log_dir)
    buy(browser, world, "order-1")
    refused = TestApp(middleware)
    refused.get(
        f"/pixels/click/{world.percent_link_id}", headers={"User-Agent": "Refused/1.0"}, status=302
    )
    buy(browser, world, "order-2")
    summary = replay(Spool(log_dir), RefusesOne(db_path))
    assert (summary.applied, summary.quarantined, summary.stopped) == (3, 1, None)
    assert sorted(references(world)) == ["order-1", "order-2"]
    assert len(list(world.storage.transactions())) == 2
    again = replay(Spool(log_dir), world.storage)
    assert (again.applied, again.already_applied) == (0, 0)  # the log is empty


KILLED_MID_BATCH = """
import os, signal, sys
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool
from pixel_wsgi.storage import SQLiteStorage

class DiesMidBatch(SQLiteStorage):
    writes = 0

    def _count(self):
        DiesMidBatch.writes += 1
        if DiesMidBatch.writes == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, the batch's transaction open

    def writer(self):
        self._count()
        return super().writer()

    def append_transaction(self, draft):
        self._count()
        return super().append_transaction(draft)

replay(Spool(sys.argv[2]), DiesMidBatch(sys.argv[1]), batch_size=int(sys.argv[4]))
"""


def test_an_applier_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    world: World, log_dir: Path, db_path: Path
) -> None:
    _, browser = clicked_without_applier(world, log_dir)
    for n in range(30):
        buy(browser, world, f"order-{n}")
    # Batches of 10: the first commits, the second dies at its fifth conversion.
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_BATCH, str(db_path), str(log_dir), "15", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(references(world)) == 9  # the visit and 9 conversions: the first batch
    summary = replay(Spool(log_dir), world.storage)
    # The first batch's click and nine conversions were claimed with it.
    assert summary.stopped is None and summary.already_applied == 10
    assert sorted(references(world)) == sorted(f"order-{n}" for n in range(30))


def test_events_arriving_while_no_applier_runs_wait_in_order(world: World, log_dir: Path) -> None:
    middleware = queued_shop(world, log_dir)
    browser = TestApp(middleware)
    browser.get(f"/pixels/click/{world.percent_link_id}", status=302)  # starts the applier
    middleware.close()  # stopped: a last pass, then no more
    for n in range(20):
        buy(browser, world, f"order-{n:02d}")
    time.sleep(0.3)  # more than a pass would take
    assert references(world) == []
    assert Spool(log_dir).pending() > 0
    replay(Spool(log_dir), world.storage)
    assert references(world) == [f"order-{n:02d}" for n in range(20)]  # in ledger order


APPLIER_PROCESS = """
import sys, threading, time
from pixel_wsgi.outage.applier import apply_until_stopped
from pixel_wsgi.outage.spool import Spool
from pixel_wsgi.storage import SQLiteStorage

stop = threading.Event()
threading.Timer(float(sys.argv[3]), stop.set).start()
apply_until_stopped(Spool(sys.argv[2]), SQLiteStorage(sys.argv[1]), stop, interval=0.01,
                    batch_size=7)
"""


def test_two_processes_appliers_at_once_apply_each_event_once(
    world: World, log_dir: Path, db_path: Path
) -> None:
    _, browser = clicked_without_applier(world, log_dir)
    appliers = [
        subprocess.Popen(
            [sys.executable, "-c", APPLIER_PROCESS, str(db_path), str(log_dir), "3"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for n in range(200):
        buy(browser, world, f"order-{n}")
    for applier in appliers:
        _, errors = applier.communicate(timeout=60)
        assert applier.returncode == 0, errors
    assert sorted(references(world)) == sorted(f"order-{n}" for n in range(200))
    assert Spool(log_dir).pending() == 0


def test_a_store_that_fails_leaves_the_events_in_the_log_until_it_is_back(
    world: World, log_dir: Path
) -> None:
    world.storage.close()
    world.storage.busy_timeout = 0.05
    _, browser = clicked_without_applier(world, log_dir)
    stop = threading.Event()
    passes: list[str | None] = []
    applier = threading.Thread(
        target=apply_until_stopped,
        args=(Spool(log_dir), world.storage, stop),
        kwargs={"interval": 0.01, "applied": lambda summary: passes.append(summary.stopped)},
    )
    with write_locked(world.storage.path):
        applier.start()
        for n in range(10):
            buy(browser, world, f"order-{n}")
        time.sleep(1.5)
        assert Spool(log_dir).pending() > 0
        assert any(stopped for stopped in passes)  # tried, and the store said no
    deadline = time.monotonic() + 10
    while len(references(world)) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    applier.join()
    assert sorted(references(world)) == sorted(f"order-{n}" for n in range(10))
    world.storage.close()  # its connection in the applier's thread is that thread's


def test_a_log_that_cannot_take_an_event_writes_it_at_once(world: World, log_dir: Path) -> None:
    _, browser = clicked_without_applier(world, log_dir, spool_max_bytes=1)
    buy(browser, world, "order-1")
    assert references(world) == ["order-1"]  # nothing waits: the log took nothing
    assert Spool(log_dir).pending() == 0


def test_queued_needs_a_spool() -> None:
    with pytest.raises(ConfigurationError, match="ingest='queued'"):
        PixelMiddleware(
            host_app,
            "sqlite:///unused.db",
            secret_key=SECRET,
            spool_dir=None,
            ingest="queued",
            migrate=False,
        )
    with pytest.raises(ConfigurationError, match="ingest must be one of sync, queued"):
        PixelMiddleware(
            host_app, "sqlite:///unused.db", secret_key=SECRET, ingest="later", migrate=False
        )


def test_a_forked_worker_starts_its_own_applier(world: World, log_dir: Path) -> None:
    """As under gunicorn: the application is built, then the server forks its workers
    (no thread runs in the parent); each worker's first request starts its applier."""
    middleware = queued_shop(world, log_dir)
    world.storage.close()  # no connection crosses the fork
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            browser = TestApp(middleware)
            browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
            buy(browser, world, "from-the-child")
            assert middleware.applier is not None and middleware.applier.running
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "from-the-child" not in references(world):
                time.sleep(0.02)
            code = 0 if "from-the-child" in references(world) else 2
            middleware.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "from-the-child" in references(world)
    assert middleware.applier is not None and not middleware.applier.running  # the parent's


def test_a_database_the_applier_cannot_open_leaves_the_log_alone(
    world: World, log_dir: Path, tmp_path: Path
) -> None:
    _, browser = clicked_without_applier(world, log_dir)
    buy(browser, world, "order-1")
    missing = SQLiteStorage(tmp_path / "nowhere" / "pixel.db")
    summary = replay(Spool(log_dir), missing)
    assert summary.stopped is not None and summary.applied == 0
    assert Spool(log_dir).pending() > 0
    replay(Spool(log_dir), world.storage)
    assert references(world) == ["order-1"]


def test_the_plugins_assertions_wait_for_the_applier(world: World, log_dir: Path) -> None:
    from pixel_wsgi.testing import ConversionRecorder, assert_conversion, assert_rejected

    middleware = queued_shop(world, log_dir)
    try:
        browser = TestApp(middleware)
        browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
        with ConversionRecorder(world.storage) as fired:
            buy(browser, world, "order-1", "80.00")
            TestApp(middleware).get(pixel_url(world.advertiser_id, "sale_amount=1"))
        # Read at once: no sleep, no polling in the test.
        fired.assert_conversion(reference_id="order-1", payout="8.00")
        fired.assert_rejected(Reason.NO_ATTRIBUTION)
        buy(browser, world, "order-2", "20.00")
        assert_conversion(world.storage, reference_id="order-2", payout="2.00")
        buy(browser, world, "order-2", "20.00")
        assert_rejected(world.storage, Reason.DUPLICATE_REFERENCE_ID)
    finally:
        middleware.close()


def test_replay_loop_applies_as_a_service_until_sigterm(
    world: World, log_dir: Path, db_path: Path
) -> None:
    # The service applies, not the application's threads.
    _, browser = clicked_without_applier(world, log_dir)
    command = [sys.executable, "-m", "pixel_wsgi", "--storage", f"sqlite:///{db_path}"]
    service = subprocess.Popen(
        [*command, "replay", "--spool-dir", str(log_dir), "--loop", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for n in range(5):
            buy(browser, world, f"order-{n}")
        deadline = time.monotonic() + 30
        while len(references(world)) < 5:
            assert time.monotonic() < deadline, "the service did not apply the log"
            time.sleep(0.02)
        service.send_signal(signal.SIGTERM)
        stdout, stderr = service.communicate(timeout=30)
        assert stdout == ""
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith(f"applying {log_dir} every 0.05 s until stopped\n")
    assert "applied " in stderr
    assert sorted(references(world)) == [f"order-{n}" for n in range(5)]


def test_health_is_ok_while_the_log_is_recent_and_degraded_once_it_is_stale(
    world: World, log_dir: Path
) -> None:
    from datetime import timedelta

    from .conftest import FakeClock

    clock = FakeClock()
    # Nobody applies: the log only grows.
    _, browser = clicked_without_applier(world, log_dir, clock=clock)
    buy(browser, world, "order-1")
    assert Spool(log_dir).pending() > 0
    assert browser.get("/pixels/health").json == {"status": "ok"}
    clock.advance(timedelta(seconds=11))  # the appliers are not keeping up
    stale = browser.get("/pixels/health", status=503).json
    assert stale["status"] == "degraded" and stale["spooled_bytes"] > 0
    replay(Spool(log_dir), world.storage)
    assert browser.get("/pixels/health").json == {"status": "ok"}


# -- ingest="queued-durable": the log synced before the answer, by group commit -------


def test_queued_durable_syncs_each_event_before_its_answer(
    world: World, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, browser = clicked_without_applier(world, log_dir, ingest="queued-durable")
    synced: list[bytes] = []  # what the log held when each sync ran

    def fdatasync(fd: int) -> None:
        synced.append(b"".join(path.read_bytes() for path in Spool(log_dir).files()))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    buy(browser, world, "order-1")
    assert len(synced) == 1 and b"order-1" in synced[0]
    assert replay(Spool(log_dir), world.storage).applied == 2  # the click, the sale
    assert references(world) == ["order-1"]


def test_queued_durable_shares_one_sync_among_the_requests_that_arrive_together(
    world: World, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    middleware = queued_shop(world, log_dir, ingest="queued-durable")
    middleware.close()
    clicked = TestApp(middleware)
    clicked.get(f"/pixels/click/{world.percent_link_id}", status=302)
    syncs: list[int] = []
    real = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        syncs.append(fd)
        time.sleep(0.05)  # a disk: the next requests gather meanwhile
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    threads = [threading.Thread(target=buy, args=(clicked, world, f"order-{n}")) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(syncs) < 8
    replay(Spool(log_dir), world.storage)
    assert sorted(references(world)) == sorted(f"order-{n}" for n in range(8))


def test_queued_durable_answers_and_keeps_the_event_once_when_the_sync_fails(
    world: World, log_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, browser = clicked_without_applier(world, log_dir, ingest="queued-durable")

    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    buy(browser, world, "order-1")  # answered: the event is in the log all the same
    assert "could not sync its log" in caplog.text
    assert list(world.storage.transactions()) == []  # not written twice
    monkeypatch.undo()
    replay(Spool(log_dir), world.storage)
    assert references(world) == ["order-1"]


def test_queued_durable_needs_a_spool(world: World) -> None:
    with pytest.raises(ConfigurationError, match="spool_dir"):
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, spool_dir=None, ingest="queued-durable"
        )
