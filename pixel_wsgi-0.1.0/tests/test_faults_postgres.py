"""PostgreSQL stopped mid-run and restarted, or not answering: visitors get normal
answers, events wait in the spool, ``pixel-wsgi replay`` applies them once.

These tests stop and start the server, so they run on a cluster of their own
(``start_cluster()`` from ``tests/postgres_server.py``), not the session's shared one.
Timeouts are 1 s, so that each failed operation costs about a second.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from click.testing import CliRunner
from webtest import TestApp, TestResponse

from pixel_wsgi import PixelMiddleware, PostgresStorage
from pixel_wsgi.attribution.cookie import AttributionCookies
from pixel_wsgi.cli import cli
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.outage.spool import Spool

from .conftest import SECRET, host_app
from .wsgi_calls import seed_campaign

if TYPE_CHECKING:
    from .postgres_server import Cluster

# The cluster helpers, loaded as a plugin like the other PostgreSQL modules load them:
# a plain import first would keep pytest from rewriting that module (a warning: an error).
pytest_plugins = ["tests.postgres_server"]

#: Short waits, so that a failure costs about a second each.
TIMEOUTS = {"pool_timeout": 1, "connect_timeout": 1, "statement_timeout": 1}
#: How long a request may take while the server does not answer (timeouts plus slack).
NOT_ANSWERING_BOUND = 4.0
#: How long the pool may take to reconnect after the server is back.
RECONNECT_BOUND = 15.0
API = "/pixels/api/conversions"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A cluster for this module alone: its tests stop and start it."""
    from .postgres_server import running_cluster  # the plugin, imported by now

    with running_cluster() as own:
        yield own


def pg_ctl(cluster: Cluster, *args: str) -> None:
    result = cluster.run("pg_ctl", *args, "-D", str(cluster.data), "-w", "-t", "60")
    assert result.returncode == 0, f"pg_ctl {args[0]} failed:\n{result.stdout}{result.stderr}"


def start(cluster: Cluster) -> None:
    """Start the stopped server again, on the same data directory and port."""
    pg_ctl(cluster, "start", "-l", str(cluster.root / "server.log"))


def running(cluster: Cluster) -> bool:
    return cluster.run("pg_ctl", "status", "-D", str(cluster.data)).returncode == 0


@contextmanager
def server_stopped(cluster: Cluster) -> Iterator[None]:
    """``pg_ctl stop -m fast`` (clients disconnected, a clean shutdown); started again after."""
    pg_ctl(cluster, "stop", "-m", "fast")
    try:
        yield
    finally:
        if not running(cluster):
            start(cluster)


def server_processes(cluster: Cluster) -> list[int]:
    """The postmaster and its children (the backends and background workers)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces, so split after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            children.append(int(entry))
    return [postmaster, *children]


@contextmanager
def server_not_answering(cluster: Cluster) -> Iterator[None]:
    """Every server process stopped (``SIGSTOP``): sockets stay open, nothing answers."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("finding the server's processes needs /proc")
    stopped: list[int] = []
    try:
        for pid in server_processes(cluster):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class Shop:
    """The middleware on a fresh database of the module's cluster."""

    cluster: Cluster
    url: str
    storage: PostgresStorage
    app: TestApp
    spool_dir: Path
    advertiser_id: int
    campaign_id: int
    publisher_id: int
    link_id: int
    auth: dict[str, str]

    def middleware(self) -> PixelMiddleware:
        """Another worker's middleware: its own pool, and nothing cached yet."""
        return PixelMiddleware(
            host_app,
            PostgresStorage(self.url, **TIMEOUTS),
            secret_key=SECRET,
            spool_dir=self.spool_dir,
        )

    def click(self, app: TestApp | None = None) -> tuple[TestResponse, int]:
        app = app or self.app
        app.cookiejar.clear()
        response = app.get(f"/pixels/click/{self.link_id}")
        return response, cookie_visit(app)

    def pixel(self, reference_id: str, app: TestApp | None = None) -> TestResponse:
        return (app or self.app).get(
            f"/pixels/conversion/{self.advertiser_id}.gif"
            f"?sale_amount=50.00&reference_id={reference_id}"
        )

    def report(self, reference_id: str) -> TestResponse:
        fields = {
            "reference_id": reference_id,
            "sale_amount": "80.00",
            "advertiser_campaign_id": str(self.campaign_id),
            "affiliate_id": str(self.publisher_id),
        }
        return self.app.post(API, fields, headers=self.auth, status="*")

    def replay(self) -> dict[str, object]:
        url = self.url + "?" + "&".join(f"{key}={value}" for key, value in TIMEOUTS.items())
        result = CliRunner().invoke(
            cli, ["--storage", url, "replay", "--spool-dir", str(self.spool_dir), "--json"]
        )
        assert result.exit_code == 0, result.output
        summary: dict[str, object] = json.loads(result.stdout)
        return summary

    def visits(self) -> list[tuple[int, int]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute("SELECT id, link_id FROM visits ORDER BY id").fetchall()
        return [(int(row[0]), int(row[1])) for row in rows]


def cookie_visit(app: TestApp) -> int:
    """The visit id the attribution cookie carries (negative: a spooled click)."""
    [value] = [cookie.value for cookie in app.cookiejar]
    assert value is not None
    return AttributionCookies(SECRET).verify(value.strip('"')).visit_id


@pytest.fixture
def shop(cluster: Cluster, tmp_path: Path) -> Iterator[Shop]:
    url = cluster.new_database()
    storage = PostgresStorage(url, **TIMEOUTS)
    seeded = seed_campaign(storage)
    secret = issue_credential(storage, seeded.advertiser_id).secret
    spool_dir = tmp_path / "spool"
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=spool_dir)
    try:
        yield Shop(
            cluster=cluster,
            url=url,
            storage=storage,
            app=TestApp(middleware),
            spool_dir=spool_dir,
            advertiser_id=seeded.advertiser_id,
            campaign_id=seeded.campaign_id,
            publisher_id=seeded.publisher_id,
            link_id=seeded.link.id,
            auth={"Authorization": f"Bearer {secret}"},
        )
    finally:
        storage.close()


def store_answers_again(app: TestApp) -> dict[str, Any]:
    """The health document once the pool has reconnected (its retries back off: ~3 s)."""
    deadline = time.monotonic() + RECONNECT_BOUND
    while True:
        health: dict[str, Any] = app.get("/pixels/health", status="*").json
        if health.get("store", "ok") == "ok" or time.monotonic() > deadline:
            assert health.get("store", "ok") == "ok", health
            return health
        time.sleep(0.2)


def test_postgres_stopped_mid_run_and_restarted(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    click, before_visit = shop.click()
    assert click.status_int == 302 and before_visit > 0
    assert shop.pixel("before-1").content_type == "image/gif"
    assert shop.report("api-before").status_int == 201
    assert shop.app.get("/pixels/health").json == {"status": "ok"}

    with server_stopped(shop.cluster):
        click, visit_id = shop.click()
        assert (click.status_int, click.headers["Location"]) == (302, "/landing")
        assert visit_id < 0  # spooled: the cookie carries the visit
        gif = shop.pixel("during-1")
        assert gif.content_type == "image/gif" and gif.body.startswith(b"GIF89a")
        # The credential was read before the outage: the report is spooled.
        spooled = shop.report("api-during")
        assert (spooled.status_int, spooled.json["result"]) == (202, "spooled")
        health = shop.app.get("/pixels/health", status=503).json
        assert (health["status"], health["store"]) == ("degraded", "unavailable")
        assert health["spooled_bytes"] > 0
        # A worker that starts now says loudly that its store is not writable.
        with caplog.at_level(logging.CRITICAL, logger="pixel_wsgi"):
            shop.middleware().storage.close()
        assert any("cannot write to its store" in r.getMessage() for r in caplog.records)

    # The store is back, the spool still holds events: degraded until the replay.
    health = store_answers_again(shop.app)
    assert (health["status"], health["spooled_bytes"] > 0) == ("degraded", True)
    summary = shop.replay()
    assert (summary["applied"], summary["already_applied"], summary["stopped"]) == (3, 0, None)
    assert summary["kinds"] == {"visit": 1, "web_conversion": 1, "report": 1}
    assert shop.report("api-during").status_int == 200  # a retry now: unchanged

    def ledger() -> list[tuple[str | None, int | None, int, int, Decimal | None]]:
        rows = sorted(shop.storage.transactions(), key=lambda row: row.reference_id or "")
        return [
            (row.reference_id, row.visit_id, row.campaign_id, row.publisher_id, row.sale_amount)
            for row in rows
        ]

    campaign, publisher = shop.campaign_id, shop.publisher_id
    expected = [
        ("api-before", None, campaign, publisher, Decimal("80.00")),
        ("api-during", None, campaign, publisher, Decimal("80.00")),
        ("before-1", before_visit, campaign, publisher, Decimal("50.00")),
        ("during-1", visit_id, campaign, publisher, Decimal("50.00")),
    ]
    assert ledger() == expected
    assert shop.visits() == [(visit_id, shop.link_id), (before_visit, shop.link_id)]
    assert list(shop.storage.rejections()) == []

    again = shop.replay()
    assert (again["applied"], again["files_done"]) == (0, 0)
    assert ledger() == expected
    assert Spool(shop.spool_dir).pending() == 0
    assert shop.app.get("/pixels/health").json == {"status": "ok"}


def test_an_api_report_while_postgres_is_down_is_spooled(shop: Shop) -> None:
    assert shop.report("api-warm").status_int == 201  # the credential was just good
    with server_stopped(shop.cluster):
        response = shop.report("api-during")
    assert response.status_int == 202
    assert response.json["result"] == "spooled"


def test_a_worker_started_during_the_outage_keeps_the_pixel_hit(shop: Shop) -> None:
    _, visit_id = shop.click()  # before the outage, in another worker
    with server_stopped(shop.cluster):
        worker = shop.middleware()
        app = TestApp(worker)
        app.set_cookie(
            worker.cookies.cookie_name(shop.advertiser_id),
            worker.cookies.sign(visit_id, shop.link_id),
        )
        try:
            assert shop.pixel("cold-1", app).content_type == "image/gif"
        finally:
            worker.storage.close()
    assert Spool(shop.spool_dir).pending() > 0
    store_answers_again(shop.app)
    assert shop.replay()["kinds"] == {"web_conversion": 1}
    assert [c.reference_id for c in shop.storage.conversions()] == ["cold-1"]


def test_a_server_that_does_not_answer_costs_a_timeout_then_spools(shop: Shop) -> None:
    shop.click()  # a pooled connection, and the link cached
    answered: list[tuple[TestResponse, int]] = []
    failed: list[BaseException] = []

    def click_in_a_thread() -> None:
        try:
            answered.append(shop.click())
        except BaseException as exc:
            failed.append(exc)

    waiter = threading.Thread(target=click_in_a_thread)
    with server_not_answering(shop.cluster):
        started = time.monotonic()
        waiter.start()
        waiter.join(NOT_ANSWERING_BOUND)
        elapsed = time.monotonic() - started
    waiter.join(30)  # the server answers again: the request ends either way
    assert not waiter.is_alive() and failed == []
    assert elapsed < NOT_ANSWERING_BOUND, "the click waited for as long as the server was stopped"
    [(click, visit_id)] = answered
    assert click.status_int == 302 and visit_id < 0
