"""``deliver_in_background=True``: the application's own processes deliver, no CLI involved.

Real servers on loopback: the application under wsgiref (one process) and gunicorn (two
forked workers), a Standard Webhooks receiver (``tests/delivery_servers.py``), real
SQLite files.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.clock import utc_now
from pixel_wsgi.delivery.background import BackgroundDelivery
from pixel_wsgi.delivery.outbox import NewTarget, add_target, new_webhook_secret
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.integrations.paste import filter_app_factory
from pixel_wsgi.models import DeliveryStatus, TargetKind
from pixel_wsgi.settings import Settings, secret_keys

from .conftest import SECRET, World, host_app
from .delivery_servers import Reply, WebhookReceiver
from .servers import free_port
from .wsgi_calls import call

ROOT = Path(__file__).resolve().parent.parent
BOX = SecretBox(secret_keys(SECRET))
#: The key of ``tests/gunicorn_delivery_app.py`` (given in its environment; that module is
#: not imported here: it builds its middleware at import time, as a deployment's does).
GUNICORN_SECRET_KEY = "gunicorn-delivery-secret-0123456789"
#: How long a conversion may take to reach the receiver: "within a few seconds".
ARRIVAL = 10.0


def delivery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pixel-wsgi-delivery"]


def wait_for(condition: Callable[[], bool], timeout: float = ARRIVAL) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} seconds")
        time.sleep(0.02)


def webhook_target(
    world: World, url: str, secret: str | None = None, box: SecretBox = BOX
) -> NewTarget:
    """A webhook target added as ``pixel-wsgi target add`` adds it."""
    return add_target(
        world.storage,
        box,
        world.advertiser_id,
        TargetKind.WEBHOOK,
        settings={"url": url},
        secrets={"secret": secret or new_webhook_secret()},
    )


@contextmanager
def receiving(world: World, box: SecretBox = BOX) -> Iterator[tuple[WebhookReceiver, NewTarget]]:
    """A Standard Webhooks receiver, and the world advertiser's target that posts to it."""
    secret = new_webhook_secret()
    with WebhookReceiver([secret]) as receiver:
        yield receiver, webhook_target(world, receiver.url + "/hooks", secret, box)


def report_fields(world: World, reference_id: str) -> dict[str, str]:
    return {
        "reference_id": reference_id,
        "sale_amount": "24.50",
        "sale_currency": "EUR",
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
    }


def basic(advertiser_id: int, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{advertiser_id}:{secret}".encode()).decode()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgiref_server(application: Any) -> Iterator[str]:
    """``application`` served by wsgiref on a free loopback port: its base URL."""
    server: WSGIServer = make_server("127.0.0.1", 0, application, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def post_report(base: str, authorization: str, fields: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"{base}/pixels/api/conversions",
        data=urlencode(fields).encode(),
        headers={"Authorization": authorization},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# -- one process: wsgiref ------------------------------------------------------------


def test_a_conversion_reaches_the_webhook_with_no_cli(world: World, db_path: Path) -> None:
    secret = issue_credential(world.storage, world.advertiser_id).secret
    with receiving(world) as (receiver, target):
        middleware = PixelMiddleware(
            host_app, f"sqlite:///{db_path}", secret_key=SECRET, deliver_in_background=True
        )
        try:
            with wsgiref_server(middleware) as base:
                started = time.monotonic()
                status = post_report(
                    base, basic(world.advertiser_id, secret), report_fields(world, "order-1")
                )
                assert status in (200, 201)
                wait_for(lambda: len(receiver.messages) == 1)
                elapsed = time.monotonic() - started
                wait_for(
                    lambda: (
                        world.storage.delivery_counts(target.stored.id)
                        == {DeliveryStatus.DELIVERED: 1}
                    )
                )
                health = get_json(f"{base}/pixels/health")
        finally:
            middleware.close()
    assert elapsed < 5, elapsed
    assert receiver.refusals == []
    [payload] = receiver.payloads()
    assert payload["type"] == "conversion.created"
    assert payload["data"]["reference_id"] == "order-1"
    assert payload["data"]["sale_amount"] == "24.50"
    assert [m.deliveries for m in receiver.messages.values()] == [1]
    assert health == {
        "status": "ok",
        "delivery": {
            str(target.stored.id): {
                "kind": "webhook",
                "status": "active",
                "backlog": 0,
                "oldest_undelivered_seconds": None,
            }
        },
    }
    assert delivery_threads() == []


def test_the_thread_starts_with_the_first_request_and_stops_on_close(world: World) -> None:
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, deliver_in_background=True
    )
    background = middleware.background
    assert background is not None
    assert not background.running
    assert delivery_threads() == []
    browser = TestApp(middleware)
    assert browser.get("/shop").text == "host page /shop"
    assert background.running
    [thread] = delivery_threads()
    assert thread.daemon
    browser.get("/shop")
    assert delivery_threads() == [thread]  # one thread per process, however many requests
    middleware.close()
    assert not thread.is_alive()
    assert browser.get("/shop").text == "host page /shop"
    assert delivery_threads() == []
    middleware.close()  # twice is fine


def test_off_by_default(world: World) -> None:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    assert middleware.background is None
    assert middleware.settings.deliver_in_background is False
    TestApp(middleware).get("/shop")
    assert delivery_threads() == []
    middleware.close()


@pytest.mark.parametrize(
    "value",
    [pytest.param("yes", id="text"), pytest.param(1, id="number"), pytest.param(None, id="none")],
)
def test_the_option_is_a_boolean(world: World, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="deliver_in_background must be True or False"):
        PixelMiddleware(host_app, world.storage, secret_key=SECRET, deliver_in_background=value)
    with pytest.raises(ConfigurationError, match="deliver_in_background"):
        Settings(secret_keys=(SECRET.encode(),), deliver_in_background=value)


@pytest.mark.parametrize(
    ("text", "on"),
    [
        pytest.param("true", True, id="true"),
        pytest.param("on", True, id="on"),
        pytest.param("false", False, id="false"),
    ],
)
def test_the_paste_filter_takes_the_option(world: World, text: str, on: bool) -> None:
    middleware = filter_app_factory(
        host_app,
        {},
        storage=f"sqlite:///{world.storage.path}",
        secret_key=SECRET,
        deliver_in_background=text,
    )
    assert middleware.settings.deliver_in_background is on
    assert (middleware.background is not None) is on
    middleware.close()


def test_the_paste_filter_refuses_a_bad_value(world: World) -> None:
    with pytest.raises(ConfigurationError, match="deliver_in_background must be true or false"):
        filter_app_factory(
            host_app,
            {},
            storage=f"sqlite:///{world.storage.path}",
            secret_key=SECRET,
            deliver_in_background="sometimes",
        )


def test_the_host_is_served_while_a_target_is_down(
    world: World, app: TestApp, auth: dict[str, str]
) -> None:
    """Nothing listens at the target: every attempt fails, and the host never knows."""
    target = webhook_target(world, f"http://127.0.0.1:{free_port()}")
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, deliver_in_background=True
    )
    browser = TestApp(middleware)
    try:
        browser.post("/pixels/api/conversions", report_fields(world, "order-1"), headers=auth)
        wait_for(lambda: world.storage.delivery_attempts(target.stored.id) != [])
        assert browser.get("/shop").text == "host page /shop"
        health = browser.get("/pixels/health").json
    finally:
        middleware.close()
    [attempt] = world.storage.delivery_attempts(target.stored.id)
    assert attempt.outcome == "retry"
    assert attempt.detail.startswith("no answer: ")
    report = health["delivery"][str(target.stored.id)]
    assert health["status"] == "ok"
    assert (report["status"], report["backlog"]) == ("active", 1)
    assert report["retry_at"] > attempt.attempted_at  # the circuit breaker is open
    assert isinstance(report["oldest_undelivered_seconds"], int)


# -- the thread itself ---------------------------------------------------------------------


class BrokenOnce:
    """A clock whose first reading fails, as a bug in the worker would."""

    def __init__(self) -> None:
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        if self.readings == 1:
            raise RuntimeError("a bug in the worker")
        return utc_now()


def test_a_failure_is_logged_and_the_thread_goes_on(
    world: World, app: TestApp, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with receiving(world) as (receiver, target):
        app.post("/pixels/api/conversions", report_fields(world, "order-1"), headers=auth)
        clock = BrokenOnce()
        background = BackgroundDelivery(
            world.storage, BOX, clock=clock, idle=0.05, failure_pause=0.2
        )
        with caplog.at_level(logging.ERROR, logger="pixel_wsgi.delivery"):
            background.start()
            try:
                wait_for(lambda: len(receiver.messages) == 1)
                assert background.running
            finally:
                background.close()
    assert not background.running
    # The worker logs it with the target it was at, and goes on with the others.
    [failure] = [r for r in caplog.records if r.name == "pixel_wsgi.delivery"]
    assert failure.getMessage() == f"delivery to target {target.stored.id} failed"
    assert failure.exc_info is not None and "a bug in the worker" in str(failure.exc_info[1])
    background.start()  # closed for good
    assert not background.running


def test_close_lets_the_request_in_flight_finish(
    world: World, app: TestApp, auth: dict[str, str]
) -> None:
    with receiving(world) as (receiver, target):
        receiver.script(Reply(status=None, delay=1.0))  # the receiver's own answer, slowly
        app.post("/pixels/api/conversions", report_fields(world, "order-1"), headers=auth)
        background = BackgroundDelivery(world.storage, BOX, idle=0.05)
        background.start()
        wait_for(lambda: len(receiver.received) == 1)
        background.close()
    assert world.storage.delivery_counts(target.stored.id) == {DeliveryStatus.DELIVERED: 1}


def _in_the_child(middleware: PixelMiddleware, results: Any) -> None:
    """Run in a forked child: no thread until the first request, then its own."""
    background = middleware.background
    assert background is not None
    before = (background.running, middleware._start_threads, len(delivery_threads()))
    call(middleware, "/shop")
    after = (background.running, len(delivery_threads()))
    middleware.close()
    results.put((before, after))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_its_own_thread(world: World) -> None:
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, deliver_in_background=True
    )
    background = middleware.background
    assert background is not None
    call(middleware, "/shop")
    [parent_thread] = delivery_threads()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_in_the_child, args=(middleware, results))
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns of forking with threads running: the very case here.
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        before, after = results.get(timeout=30)
        child.join(timeout=30)
    finally:
        middleware.close()
    assert child.exitcode == 0
    assert before == (False, True, 0)  # the parent's thread did not come along
    assert after == (True, 1)
    assert not parent_thread.is_alive()


def test_the_thread_finishes_its_request_at_interpreter_exit(
    world: World, app: TestApp, auth: dict[str, str], db_path: Path
) -> None:
    with receiving(world) as (receiver, target):
        receiver.script(Reply(status=None, delay=1.5))
        app.post("/pixels/api/conversions", report_fields(world, "order-1"), headers=auth)
        child = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("background_exit_child.py")),
                f"sqlite:///{db_path}",
                SECRET,
                str(target.stored.id),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
    assert (child.returncode, child.stdout) == (0, "in flight\n"), child.stderr
    assert "Traceback" not in child.stderr
    assert len(receiver.received) == 1
    assert world.storage.delivery_counts(target.stored.id) == {DeliveryStatus.DELIVERED: 1}


# -- gunicorn: workers forked from a master that built the middleware ----------------------


def backlog(base: str, target: NewTarget) -> int:
    """The target's backlog as ``/pixels/health`` reports it."""
    count: int = get_json(f"{base}/pixels/health")["delivery"][str(target.stored.id)]["backlog"]
    return count


def _booted_workers(log: Path) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count("Booting worker with pid")


@contextmanager
def gunicorn(storage_path: Path, log: Path) -> Iterator[str]:
    """``tests/gunicorn_delivery_app.py`` under gunicorn, two workers forked from a master
    that loaded it (``--preload``), on a free port: its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--preload",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "--graceful-timeout",
        "10",
        "--log-level",
        "info",
        "tests.gunicorn_delivery_app:application",
    ]
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PIXEL_WSGI_TEST_STORAGE": f"sqlite:///{storage_path}",
                "PIXEL_WSGI_SECRET_KEY": GUNICORN_SECRET_KEY,
            },
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if _booted_workers(log) == 2:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # SIGTERM: gunicorn's graceful shutdown
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_gunicorn_workers_deliver_each_conversion_once(world: World, db_path: Path) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn is a test dependency")
    box = SecretBox(secret_keys(GUNICORN_SECRET_KEY))
    secret = issue_credential(world.storage, world.advertiser_id).secret
    log = db_path.with_name("gunicorn.log")
    with receiving(world, box) as (receiver, target), gunicorn(db_path, log) as base:
        authorization = basic(world.advertiser_id, secret)
        references = [f"order-{n}" for n in range(12)]
        for reference in references:
            assert post_report(base, authorization, report_fields(world, reference)) in (
                200,
                201,
            )
        wait_for(lambda: len(receiver.messages) == len(references))
        wait_for(lambda: backlog(base, target) == 0)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert receiver.refusals == []
    assert sorted(p["data"]["reference_id"] for p in receiver.payloads()) == sorted(references)
    # Two processes, two threads, and each row sent once.
    assert [m.deliveries for m in receiver.messages.values()] == [1] * len(references)
    assert len(receiver.received) == len(references)
    assert world.storage.delivery_counts(target.stored.id) == {
        DeliveryStatus.DELIVERED: len(references)
    }


def test_an_idle_pass_takes_no_write_lock(world: World) -> None:
    """Each process's thread looks for work every second: with nothing due, it must not
    queue behind (or hold up) the pixel's writes to SQLite."""
    target = webhook_target(world, "https://hooks.example/idle")
    worker = Worker(world.storage, BOX)
    assert not worker.run_once().busy
    writer = sqlite3.connect(world.storage.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a pixel's write, in progress
        started = time.monotonic()
        report = worker.run_once()
        elapsed = time.monotonic() - started
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert (report.busy, report.waiting_targets) == (False, 0)
    assert elapsed < 0.5, elapsed
    assert world.storage.delivery_counts(target.stored.id) == {}
