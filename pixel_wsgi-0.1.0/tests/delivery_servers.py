"""Local servers that delivery targets send to: loopback only, every request recorded.

:class:`RecordingServer` answers from a script (status, headers, body, delay), and past
the script as its platform does: :class:`TunePostbackServer` as TUNE's postback endpoint
(``success=true;``, or HTTP 200 with ``success=false; err_msg=...;``),
:class:`WebhookReceiver` as a Standard Webhooks receiver that verifies every signature
with the ``standardwebhooks`` library and deduplicates on ``webhook-id``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from pixel_wsgi import Storage, Transaction
from pixel_wsgi.delivery.http import send
from pixel_wsgi.delivery.model import (
    ClickContext,
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
)
from pixel_wsgi.delivery.targets.base import TargetType

__all__ = [
    "Received",
    "RecordingServer",
    "Reply",
    "TunePostbackServer",
    "WebhookReceiver",
    "deliver",
    "ledger_items",
    "transaction",
]


@dataclass(frozen=True)
class Received:
    """One request as the server read it."""

    method: str
    #: the path, without the query
    path: str
    #: the query string as it came, still percent-encoded
    raw_query: str
    #: header names lower-cased
    headers: dict[str, str]
    body: bytes

    @property
    def query(self) -> dict[str, str]:
        """The query decoded (UTF-8, strictly: a malformed escape fails the test)."""
        return dict(parse_qsl(self.raw_query, keep_blank_values=True, strict_parsing=True))

    @property
    def form(self) -> dict[str, str]:
        """The body decoded as ``application/x-www-form-urlencoded``."""
        text = self.body.decode("ascii")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))

    @property
    def params(self) -> dict[str, str]:
        """What a platform reads: the form of a POST, else the query."""
        return self.form if self.method == "POST" else self.query


@dataclass(frozen=True)
class Reply:
    """One scripted answer; ``delay`` seconds pass before it is sent."""

    #: None: answer as the platform does (:meth:`RecordingServer.answer`), after ``delay``
    status: int | None = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(
            method=self.command,
            path=parts.path,
            raw_query=parts.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length),
        )
        reply = self.server.owner._record(received)
        if reply.delay and self.server.owner._closing.wait(reply.delay):
            return  # closed while waiting: the client has long given up
        assert reply.status is not None
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test asserts
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RecordingServer


class RecordingServer:
    """A threaded HTTP server on a free port of 127.0.0.1 that records every request.

    Each request takes the next :class:`Reply` of :meth:`script`; once the script runs
    out, :meth:`answer` decides (``200`` with an empty body unless a subclass knows its
    platform). Use it as a context manager.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def answer(self, received: Received) -> Reply:
        """The platform's own answer to ``received`` (called under the server's lock)."""
        return Reply()

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            if not self._script:
                return self.answer(received)
            reply = self._script.popleft()
            if reply.status is None:
                return replace(self.answer(received), delay=reply.delay)
            return reply

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RecordingServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class TunePostbackServer(RecordingServer):
    """TUNE's postback endpoint (``/aff_lsr``), as its documentation and users report it.

    Reads ``transaction_id`` (from the query of a GET, the form of a POST): missing or
    not a ledger id, ``200 success=false; err_msg=Invalid Trans. ID #...;``; already
    counted, ``200 success=false; err_msg=Duplicate conversion;``; else
    ``200 success=true;``. A request to another path is a 404.
    """

    PATH = "/aff_lsr"

    def __init__(self) -> None:
        super().__init__()
        #: transaction id -> the parameters it was counted with, once each
        self.counted: dict[str, dict[str, str]] = {}

    def answer(self, received: Received) -> Reply:
        if received.path != self.PATH:
            return Reply(404, b"Not Found")
        params = received.params
        transaction_id = params.get("transaction_id", "")
        if not transaction_id.isdigit():
            return Reply(
                200, f"success=false; err_msg=Invalid Trans. ID #{transaction_id};".encode()
            )
        if transaction_id in self.counted:
            return Reply(200, b"success=false; err_msg=Duplicate conversion;")
        self.counted[transaction_id] = params
        return Reply(200, b"success=true;")


@dataclass
class _Message:
    payload: Any
    deliveries: int = 1


class WebhookReceiver(RecordingServer):
    """A Standard Webhooks receiver: what an integrator writes with ``standardwebhooks``.

    A POST with ``content-type: application/json`` whose signature verifies with one of
    ``secrets`` (timestamp within 5 minutes of now) gets ``204``; the first with a
    ``webhook-id`` is kept in :attr:`messages`, a repeat only counted. A signature that
    does not verify gets ``401``, anything else ``400``.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.verifiers = [StandardWebhook(secret) for secret in secrets]
        self.messages: dict[str, _Message] = {}
        #: why requests were refused, in order
        self.refusals: list[str] = []

    def answer(self, received: Received) -> Reply:
        if received.method != "POST" or received.headers.get("content-type") != "application/json":
            self.refusals.append("not a JSON POST")
            return Reply(400, b'{"error":"expected a JSON POST"}')
        payload, reason = None, "no secret to verify with"
        for verifier in self.verifiers:
            try:
                payload = verifier.verify(received.body, received.headers)
                break
            except WebhookVerificationError as exc:
                reason = str(exc)
        if payload is None:
            self.refusals.append(reason)
            return Reply(401, json.dumps({"error": reason}).encode())
        message_id = received.headers["webhook-id"]
        if message_id in self.messages:
            self.messages[message_id].deliveries += 1
        else:
            self.messages[message_id] = _Message(payload)
        return Reply(204)

    def payloads(self) -> Iterator[Any]:
        """The messages kept, in the order they first arrived."""
        return (message.payload for message in self.messages.values())


# -- what the delivery tests share: real ledger rows in, outcomes out -------------------


def ledger_items(storage: Storage, *, click: ClickContext | None = None) -> list[DeliveryItem]:
    """Every row of ``storage``'s ledger as a worker hands it to a target: with the
    first row of its chain, and ``click``."""
    rows = list(storage.transactions())
    by_id = {row.transaction_id: row for row in rows}
    return [DeliveryItem(row, by_id[row.original_transaction_id], click=click) for row in rows]


def deliver(
    target: TargetType, item: DeliveryItem, now: datetime, *, timeout: float = 5.0
) -> tuple[HttpRequest, Outcome]:
    """Build ``item``'s request, send it as the worker does, and classify the answer."""
    [request] = target.requests([item], now)
    assert request.transaction_ids == (item.row.transaction_id,)
    response: HttpResponse | None
    try:
        response, error = send(request, timeout=timeout), None
    except OSError as exc:
        response, error = None, f"{type(exc).__name__}: {exc}"
    outcomes = target.classify(request, response, error)
    assert list(outcomes) == [item.row.transaction_id]
    return request, outcomes[item.row.transaction_id]


def transaction(**fields: Any) -> Transaction:
    """A ledger row made directly, for what needs no store (encoding, empty values)."""
    row = Transaction(
        transaction_id=7,
        advertiser_id=1,
        campaign_id=2,
        publisher_id=3,
        visit_id=None,
        source="api",
        reference_id="order-7",
        corrects_transaction_id=None,
        original_transaction_id=7,
        sale_amount=Decimal("24.50"),
        sale_currency="EUR",
        reason_code=None,
        sku_list=(),
        quantity_list=(),
        external_data=None,
        custom_data={},
        payout=Decimal("2.45"),
        payout_currency="EUR",
        created_at="2026-11-25T12:00:00.000000Z",
    )
    return replace(row, **fields)
