"""Shared fixtures: a throwaway SQLite store, a small world in it, the wrapped host app."""

from __future__ import annotations

import base64
import html
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp, TestResponse

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage
from pixel_wsgi.demo import DASHBOARD_PASSWORD_ENV, SECRET_KEY_ENV
from pixel_wsgi.endpoints.api.auth import issue_credential

from .cli_helpers import Run, cli_runner
from .storage_contract import MakeStorage, migrated_stores
from .wsgi_calls import call, seed_campaign
from .wsgi_calls import host_app as host_app  # the tests import it from here

SECRET = "test-secret-key-0123456789abcdef"

# In CI every real part (PostgreSQL, Chromium, gunicorn) is installed by .ci/run,
# so a test that skips for want of one means the suite did not test it: fail.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"


class FakeClock:
    """A controllable UTC clock for the ledger's time windows."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    """An advertiser with a percent and a fixed campaign, a publisher, and links."""

    storage: SQLiteStorage
    advertiser_id: int
    other_advertiser_id: int
    publisher_id: int
    percent_campaign_id: int
    fixed_campaign_id: int
    percent_link_id: int
    fixed_link_id: int
    other_link_id: int


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pixel.db"


@pytest.fixture
def storage(db_path: Path) -> Iterator[SQLiteStorage]:
    """A migrated throwaway store in ``db_path``."""
    store = SQLiteStorage(db_path)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def world(storage: SQLiteStorage) -> World:
    return make_world(storage)


def make_world(storage: SQLiteStorage) -> World:
    """The catalog of :class:`World` in ``storage``: in an empty store, always the same ids."""
    acme = storage.add_advertiser("Acme")
    other = storage.add_advertiser("Other Corp")
    publisher = storage.add_publisher("Deals Blog")
    percent = storage.add_campaign(
        acme.id, "Ten percent", PayoutRule(PayoutKind.PERCENT, Decimal("10"))
    )
    fixed = storage.add_campaign(
        acme.id,
        "Renewals",
        PayoutRule(PayoutKind.FIXED, Decimal("4.50"), "USD", ("renewal", "confirmed_order")),
    )
    other_campaign = storage.add_campaign(
        other.id, "Other", PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
    )
    return World(
        storage=storage,
        advertiser_id=acme.id,
        other_advertiser_id=other.id,
        publisher_id=publisher.id,
        percent_campaign_id=percent.id,
        fixed_campaign_id=fixed.id,
        percent_link_id=storage.add_link(percent.id, publisher.id, "/landing?from=blog").id,
        fixed_link_id=storage.add_link(fixed.id, publisher.id, "/renew").id,
        other_link_id=storage.add_link(other_campaign.id, publisher.id, "/other").id,
    )


@pytest.fixture
def make_storage(tmp_path: Path) -> Iterator[MakeStorage]:
    """Fresh SQLite stores for the storage contracts (the PostgreSQL tests override it)."""
    yield from migrated_stores(
        lambda number, **options: SQLiteStorage(tmp_path / f"store-{number}.db", **options)
    )


@pytest.fixture
def run(db_path: Path) -> Run:
    """The command line on the store in ``db_path``."""
    return cli_runner(f"sqlite:///{db_path}")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What Werkzeug's ``run_simple`` was called with: ``(host, port, app, options)``.

    Nothing is served. The demo's key and the dashboard's password are taken out
    of the environment, so a test sees only what it sets itself.
    """
    calls: list[tuple[Any, ...]] = []

    def fake_run_simple(host: str, port: int, app: Any, **options: Any) -> None:
        calls.append((host, port, app, options))

    monkeypatch.setattr("werkzeug.serving.run_simple", fake_run_simple)
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    monkeypatch.delenv(DASHBOARD_PASSWORD_ENV, raising=False)
    return calls


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def middleware(world: World, clock: FakeClock) -> PixelMiddleware:
    return PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=clock)


@pytest.fixture
def app(middleware: PixelMiddleware) -> TestApp:
    return TestApp(middleware)


def basic_authorization(user: object, password: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP Basic."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def auth(world: World) -> dict[str, str]:
    """HTTP Basic for the world's advertiser, with a new secret, as Invoca's clients send it."""
    secret = issue_credential(world.storage, world.advertiser_id).secret
    return basic_authorization(world.advertiser_id, secret)


def pixel_url(advertiser_id: int, query: str = "") -> str:
    return f"/pixels/conversion/{advertiser_id}.gif" + (f"?{query}" if query else "")


PIXEL_IMG = re.compile(r'<img src="([^"]+)" width="1" height="1" alt="">')


def pixel_src(page: TestResponse) -> str:
    """The URL of the conversion pixel a page carries, as the browser will fetch it."""
    match = PIXEL_IMG.search(page.text)
    assert match is not None, page.text
    return html.unescape(match.group(1))


def pixel_status(middleware: PixelMiddleware, advertiser_id: int, query: str, cookie: str) -> str:
    """The status of one pixel hit, called as a WSGI server would.

    Not through WebTest, so threads and forked processes may race it.
    """
    status, _, _ = call(middleware, pixel_url(advertiser_id, query), headers={"Cookie": cookie})
    return status


def race_in_processes(
    target: Callable[..., object], calls: Iterable[tuple[Any, ...]]
) -> list[int | None]:
    """Fork a process per entry of ``calls`` to run ``target(start, *args)``; each waits
    on the event ``start``, set once all have started, so that they race.

    :returns: their exit codes.
    """
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [context.Process(target=target, args=(start, *args)) for args in calls]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    return [worker.exitcode for worker in workers]


def clicked_store(path: Path, *, daily_cap: int | None = None) -> tuple[int, str]:
    """A store with one campaign (capped at ``daily_cap``) at ``path``, closed again.

    :returns: the advertiser's id, and the ``Cookie`` header that one click on the
        campaign's link sets.
    """
    storage = SQLiteStorage(path)
    seeded = seed_campaign(
        storage, publisher="Pub", campaign="c", rule=PayoutRule(PayoutKind.FIXED, Decimal("3.00"))
    )
    if daily_cap is not None:
        storage.set_campaign_daily_cap(seeded.campaign_id, daily_cap)
    link = seeded.link
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    visit_id = storage.record_visit(link, ip_prefix=None, user_agent=None, created_at="x")
    cookie = f"pixel_wsgi_a{seeded.advertiser_id}={middleware.cookies.sign(visit_id, link.id)}"
    storage.close()
    return seeded.advertiser_id, cookie


def reasons(storage: SQLiteStorage, **filters: Any) -> list[str]:
    """Rejection reasons, oldest first."""
    return [r.reason for r in reversed(list(storage.rejections(**filters)))]
