"""The Conversion Reporting API under a real gunicorn with two worker processes.

Two processes share one SQLite file, as a small deployment does: identical reports
racing through both must leave exactly one conversion, and identical requests with one
``Idempotency-Key`` must all get the same answer.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.endpoints.api.auth import issue_credential

from .servers import free_port

pytest.importorskip("gunicorn", reason="gunicorn is a test dependency (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0
RACERS = 20
#: Where ``tests/gunicorn_app.py`` finds the store (not imported here: it builds the
#: middleware at import time, as a deployment's WSGI module does).
STORAGE_ENV = "PIXEL_WSGI_TEST_STORAGE"


@dataclass(frozen=True)
class Server:
    port: int
    storage: Path
    log: Path
    advertiser_id: int
    campaign_id: int
    publisher_id: int
    authorization: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    pid: str
    replayed: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def booted_workers(log: Path) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count("Booting worker with pid")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """gunicorn with two sync workers on a free port, over a store set up beforehand."""
    path = tmp_path / "pixel.db"
    storage = SQLiteStorage(path)
    storage.migrate()
    advertiser = storage.add_advertiser("Acme")
    publisher = storage.add_publisher("Deals Blog")
    campaign = storage.add_campaign(
        advertiser.id, "Ten percent", PayoutRule(PayoutKind.PERCENT, Decimal("10"))
    )
    storage.add_link(campaign.id, publisher.id, "/landing")
    secret = issue_credential(storage, advertiser.id).secret
    storage.close()
    basic = base64.b64encode(f"{advertiser.id}:{secret}".encode()).decode()

    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
        "--log-level",
        "info",
        "tests.gunicorn_app:application",
    ]
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, STORAGE_ENV: f"sqlite:///{path}"},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if booted_workers(log) == 2:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield Server(port, path, log, advertiser.id, campaign.id, publisher.id, f"Basic {basic}")
    finally:
        process.terminate()  # SIGTERM: gunicorn's graceful shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def race(
    server: Server, method: str, path: str, body: bytes, headers: dict[str, str]
) -> list[Answer]:
    """Send the same request ``RACERS`` times at once, each on its own connection."""
    barrier = threading.Barrier(RACERS)
    answers: list[Answer | BaseException] = [RuntimeError("no answer")] * RACERS

    def send(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.connect()
            barrier.wait(timeout=30)
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answers[index] = Answer(
                response.status,
                response.read(),
                response.getheader("X-Test-Worker-Pid", ""),
                response.getheader("Idempotent-Replayed") == "true",
            )
        except BaseException as exc:  # reported below, not lost in the thread
            answers[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    failed = [answer for answer in answers if not isinstance(answer, Answer)]
    assert failed == [], failed
    return [answer for answer in answers if isinstance(answer, Answer)]


def both_workers_serve(server: Server) -> set[str]:
    """Race harmless GETs until both workers have answered (or time runs out)."""
    pids: set[str] = set()
    deadline = time.monotonic() + 10
    while len(pids) < 2 and time.monotonic() < deadline:
        answers = race(server, "GET", "/pixels/health", b"", {})
        assert {answer.status for answer in answers} == {200}
        pids |= {answer.pid for answer in answers}
    return pids


def form_report(server: Server, reference_id: str) -> bytes:
    return urlencode(
        {
            "reference_id": reference_id,
            "sale_amount": "49.90",
            "sku_list[]": "TEA-100",
            "advertiser_campaign_id": str(server.campaign_id),
            "affiliate_id": str(server.publisher_id),
        }
    ).encode()


def headers(server: Server, **extra: str) -> dict[str, str]:
    return {
        "Authorization": server.authorization,
        "Content-Type": "application/x-www-form-urlencoded",
        **extra,
    }


def stored_rows(server: Server) -> list[Any]:
    storage = SQLiteStorage(server.storage)
    try:
        return list(storage.transactions())
    finally:
        storage.close()


def test_gunicorn_runs_two_workers_that_both_serve(server: Server) -> None:
    assert booted_workers(server.log) == 2
    pids = both_workers_serve(server)
    assert len(pids) == 2, f"only worker(s) {pids} answered"


def test_identical_reports_racing_through_two_workers_leave_one_conversion(
    server: Server,
) -> None:
    both_workers_serve(server)
    answers = race(
        server,
        "POST",
        "/pixels/api/conversions",
        form_report(server, "order-1"),
        headers(server),
    )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200] * (RACERS - 1) + [201]
    assert len({answer.pid for answer in answers}) == 2, "the race crossed both processes"
    results = sorted(answer.json["result"] for answer in answers)
    assert results == ["created"] + ["unchanged"] * (RACERS - 1)
    assert {answer.json["transaction"]["transaction_id"] for answer in answers} == {1}
    [row] = stored_rows(server)
    assert (row.reference_id, str(row.sale_amount), str(row.payout)) == ("order-1", "49.90", "4.99")


def test_identical_requests_with_one_idempotency_key_all_get_the_same_answer(
    server: Server,
) -> None:
    both_workers_serve(server)
    answers = race(
        server,
        "POST",
        "/pixels/api/conversions",
        form_report(server, "order-2"),
        headers(server, **{"Idempotency-Key": "checkout-2-attempt"}),
    )
    assert len({(answer.status, answer.body) for answer in answers}) == 1
    # One request's answer was stored; every other one repeats it.
    assert sorted(answer.replayed for answer in answers) == [False] + [True] * (RACERS - 1)
    assert answers[0].json["transaction"]["reference_id"] == "order-2"
    [row] = stored_rows(server)
    assert row.reference_id == "order-2"
