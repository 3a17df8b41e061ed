"""SQLite's write-ahead log is checkpointed by a thread of each process, not inside the
requests' commits; the thread ends when the process is idle, starts again with the
next request, and never hands a forked child a lock it held."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.storage import sqlite as sqlite_backend

from .conftest import SECRET, World, host_app, pixel_url


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_INTERVAL", 0.05)
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_IDLE_EXIT", 0.3)


def shop(world: World) -> tuple[PixelMiddleware, TestApp]:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    browser = TestApp(middleware)
    browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
    return middleware, browser


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_requests_leave_checkpoints_to_the_thread(world: World, fast: None) -> None:
    middleware, browser = shop(world)
    try:
        checkpointer = middleware.housekeeping
        assert isinstance(checkpointer, sqlite_backend.WalCheckpointer)
        assert checkpointer.running
        # The request's connection checkpoints only if the thread falls far behind.
        conn = world.storage._connection()
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 20_000
        for n in range(50):
            browser.get(pixel_url(world.advertiser_id, f"sale_amount=1&reference_id=r{n}"))
        wait_for(lambda: checkpointer.checkpoints > 0)
        assert len(list(world.storage.transactions())) == 50
    finally:
        middleware.close()
    assert not middleware.housekeeping.running


def test_an_idle_process_runs_no_thread_until_its_next_request(world: World, fast: None) -> None:
    middleware, browser = shop(world)
    try:
        checkpointer = middleware.housekeeping
        assert checkpointer is not None
        wait_for(lambda: not checkpointer.running)  # idle: it ended by itself
        browser.get(pixel_url(world.advertiser_id, "sale_amount=1&reference_id=again"))
        assert checkpointer.running  # the next request started it again
    finally:
        middleware.close()


def test_a_fork_while_the_thread_checkpoints_gives_the_child_a_usable_sqlite(
    world: World, fast: None
) -> None:
    middleware, browser = shop(world)
    try:
        for round_ in range(20):
            for n in range(5):
                query = f"sale_amount=1&reference_id=p{round_}-{n}"
                browser.get(pixel_url(world.advertiser_id, query))
            pid = os.fork()
            if pid == 0:  # the child writes through SQLite at once: no mutex left held
                code = 1
                try:
                    conn = sqlite3.connect(world.storage.path, timeout=5)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    conn.execute("SELECT COUNT(*) FROM transactions").fetchone()
                    conn.close()
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        middleware.close()
