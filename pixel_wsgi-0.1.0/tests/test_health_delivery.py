"""``/pixels/health`` with delivery targets: each target's status, backlog and oldest
undelivered age; refused credentials said, never a secret, and the check stays 200."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.delivery.outbox import add_target, new_webhook_secret
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.models import TargetKind, TargetStatus
from pixel_wsgi.settings import secret_keys

from .conftest import SECRET, FakeClock, World, host_app
from .delivery_servers import RecordingServer, Reply
from .servers import free_port

BOX = SecretBox(secret_keys(SECRET))


def report(app: TestApp, auth: dict[str, str], world: World, reference_id: str) -> None:
    app.post(
        "/pixels/api/conversions",
        {
            "reference_id": reference_id,
            "sale_amount": "24.50",
            "advertiser_campaign_id": str(world.percent_campaign_id),
            "affiliate_id": str(world.publisher_id),
        },
        headers=auth,
    )


def webhook(world: World, url: str, secret: str | None = None) -> int:
    return add_target(
        world.storage,
        BOX,
        world.advertiser_id,
        TargetKind.WEBHOOK,
        settings={"url": url},
        secrets={"secret": secret or new_webhook_secret()},
    ).stored.id


def worker(world: World, clock: FakeClock) -> Worker:
    """A worker on the world's store, on the test's clock (no CLI, no thread)."""
    return Worker(world.storage, BOX, clock=clock, timeout=5)


def test_without_targets_the_answer_is_unchanged(app: TestApp) -> None:
    assert app.get("/pixels/health").json == {"status": "ok"}


def test_each_target_with_its_backlog_and_oldest_undelivered_age(
    app: TestApp, auth: dict[str, str], world: World, clock: FakeClock
) -> None:
    down = webhook(world, f"http://127.0.0.1:{free_port()}/hook")  # nothing listens
    report(app, auth, world, "order-1")
    clock.advance(timedelta(minutes=10))
    # No worker has run: the row is not queued yet, and its age shows it.
    assert app.get("/pixels/health").json == {
        "status": "ok",
        "delivery": {
            str(down): {
                "kind": "webhook",
                "status": "active",
                "backlog": 0,
                "oldest_undelivered_seconds": 600,
            }
        },
    }
    worker(world, clock).run_once()
    clock.advance(timedelta(minutes=5))
    health = app.get("/pixels/health").json
    [attempt] = world.storage.delivery_attempts(down)
    [target] = world.storage.targets()
    assert health["delivery"] == {
        str(down): {
            "kind": "webhook",
            "status": "active",
            "backlog": 1,
            "oldest_undelivered_seconds": 900,
            "retry_at": target.resume_at,
        }
    }
    assert attempt.outcome == "retry"


def test_refused_credentials_are_reported_without_the_secret(
    app: TestApp, auth: dict[str, str], world: World, clock: FakeClock
) -> None:
    secret = new_webhook_secret()
    with RecordingServer() as platform:
        # A receiver that refuses, and echoes what it refused: the secret must not leak.
        platform.script(Reply(401, f"unknown signing secret {secret}".encode()))
        refused = webhook(world, platform.url + "/hook", secret)
        fine = webhook(world, platform.url + "/other")
        report(app, auth, world, "order-1")
        worker(world, clock).run_once()
    response = app.get("/pixels/health")
    assert response.status_int == 200
    assert secret not in response.text
    assert secret.removeprefix("whsec_") not in response.text
    delivery = response.json["delivery"]
    assert delivery[str(refused)] == {
        "kind": "webhook",
        "status": "auth_failed",
        "backlog": 1,
        "oldest_undelivered_seconds": 0,
        "detail": "HTTP 401: unknown signing secret [secret]",
    }
    assert delivery[str(fine)]["status"] == "active"
    assert delivery[str(fine)]["backlog"] == 0
    [stored] = [t for t in world.storage.targets() if t.id == refused]
    assert stored.status is TargetStatus.AUTH_FAILED
    assert secret not in (stored.status_detail or "")


def test_paused_and_removed_targets(app: TestApp, world: World) -> None:
    paused = webhook(world, "https://hooks.example/a")
    removed = webhook(world, "https://hooks.example/b")
    world.storage.set_target_status(paused, TargetStatus.PAUSED, "by the operator")
    world.storage.set_target_status(removed, TargetStatus.REMOVED, None)
    assert app.get("/pixels/health").json["delivery"] == {
        str(paused): {
            "kind": "webhook",
            "status": "paused",
            "backlog": 0,
            "oldest_undelivered_seconds": None,
            "detail": "by the operator",
        }
    }


def test_a_long_detail_is_cut(app: TestApp, world: World) -> None:
    target = webhook(world, "https://hooks.example/a")
    world.storage.set_target_status(target, TargetStatus.AUTH_FAILED, "x" * 5000)
    detail = app.get("/pixels/health").json["delivery"][str(target)]["detail"]
    assert detail == "x" * 300


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the connections opened from now on run."""
    seen: list[str] = []
    connect = sqlite3.connect

    def tracing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracing)
    yield seen


def test_the_check_is_two_reads_however_many_targets(
    world: World, clock: FakeClock, statements: list[str]
) -> None:
    for number in range(5):
        webhook(world, f"https://hooks.example/{number}")
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=clock)
    browser = TestApp(middleware)
    browser.get("/pixels/health")  # opens this thread's connection (its PRAGMAs)
    statements.clear()
    health = browser.get("/pixels/health").json
    assert len(health["delivery"]) == 5
    assert [s.split()[0] for s in statements] == ["SELECT", "SELECT"], statements


def test_a_store_without_the_delivery_tables_still_answers(
    world: World, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Tables the migrations made, dropped behind the store's back: the delivery read
    # fails, the check does not.
    conn = sqlite3.connect(world.storage.path)
    conn.execute("DROP TABLE delivery_targets")
    conn.commit()
    conn.close()
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, clock=clock, migrate=False
    )
    assert TestApp(middleware).get("/pixels/health").json == {"status": "ok"}
    assert "cannot read the delivery targets' health" in caplog.text
