"""Local stand-ins for Meta's Conversions API and GA4's Measurement Protocol.

Each is a threaded ``http.server`` on 127.0.0.1 that records every request, checks it as
the platform documents (fields, types, hashes, limits, credentials) and answers as the
platform does:

- :class:`MetaServer`: ``POST /v26.0/<pixel_id>/events?access_token=...``; a bad token is
  Graph error 190; more than 1,000 events, a malformed field or one ``event_time`` older
  than 7 days fails the whole request with Graph error 100; otherwise
  ``{"events_received", "messages", "fbtrace_id"}``. It counts the distinct
  ``event_name`` + ``event_id`` pairs it accepted, as Meta deduplicates.
- :class:`Ga4Server`: ``/mp/collect`` answers 204 to anything (its findings are only
  recorded, for the tests to read); ``/debug/mp/collect`` answers its findings as
  ``validationMessages`` and does not check the ``api_secret``, as documented.

A test may queue :class:`Answer` objects: the next request still is checked and
recorded, and gets the queued answer (a 429, a 5xx, a delay past the client's timeout).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pixel_wsgi.clock import iso_utc
from pixel_wsgi.models import Transaction

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
FBC = re.compile(r"fb\.1\.[0-9]{13}\.\S+")
GA_CLIENT_ID = re.compile(r"[0-9]+\.[0-9]+")
GA4_EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
GA4_RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
META_ACTION_SOURCES = frozenset(
    {
        "website",
        "email",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
SEVEN_DAYS = 7 * 86400
SEVENTY_TWO_HOURS_US = 72 * 3600 * 1_000_000


@dataclass(frozen=True)
class Answer:
    """A queued answer: sent after ``delay`` seconds instead of the checked one."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass
class Received:
    """One request as the server got it, and what the server found wrong with it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    problems: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)


Reply = tuple[int, tuple[tuple[str, str], ...], bytes]


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers through
    ``self.handle`` (subclasses) or the queued :attr:`script`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                )
                with owner._lock:
                    owner.received.append(request)
                    queued = owner.script.pop(0) if owner.script else None
                status, headers, body = owner.handle(request)
                if queued is not None:
                    time.sleep(queued.delay)
                    status, headers, body = queued.status, queued.headers, queued.body
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def handle(self, request: Received) -> Reply:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[RecordingServer]:
        # a short poll interval: shutdown() waits for one
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _number(value: Any) -> bool:
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


def _hashes(value: Any) -> bool:
    """A SHA-256 in hex, or a list of them (Meta and Google take either)."""
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(isinstance(v, str) and SHA256_HEX.fullmatch(v) for v in values)


class MetaServer(RecordingServer):
    """Meta's ``/v26.0/<pixel_id>/events``, checking what the docs require."""

    def __init__(self, pixel_id: str, access_token: str, *, now: Callable[[], float] = time.time):
        super().__init__()
        self.pixel_id = pixel_id
        self.access_token = access_token
        self.now = now
        #: (event_name, event_id) pairs accepted: Meta keeps one event per pair
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.traces = 0

    def _error(self, status: int, code: int, message: str, subcode: int | None = None) -> Reply:
        self.traces += 1
        error: dict[str, Any] = {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": f"trace{self.traces}",
        }
        if subcode is not None:
            error["error_subcode"] = subcode
            error["is_transient"] = False
            error["error_user_msg"] = message
        return status, (("Content-Type", "application/json"),), _json({"error": error})

    def handle(self, request: Received) -> Reply:
        if request.method != "POST" or request.path != f"/v26.0/{self.pixel_id}/events":
            request.problems.append(f"{request.method} {request.path}")
            return self._error(400, 100, "Unsupported post request")
        if request.query.get("access_token") != [self.access_token]:
            request.problems.append("access token")
            return self._error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.headers.get("content-type") != "application/json":
            request.problems.append("content type")
        try:
            body = request.json()
        except ValueError:
            request.problems.append("body is not JSON")
            return self._error(400, 100, "Invalid parameter")
        request.problems.extend(self.check_body(body))
        if request.problems:
            stale = any("7 days" in problem for problem in request.problems)
            return self._error(
                400,
                100,
                "Invalid parameter: " + "; ".join(request.problems),
                2804003 if stale else 2804001,
            )
        for event in body["data"]:
            self.events.setdefault((event["event_name"], event["event_id"]), event)
        self.traces += 1
        answer = {
            "events_received": len(body["data"]),
            "messages": [],
            "fbtrace_id": f"trace{self.traces}",
        }
        return 200, (("Content-Type", "application/json"),), _json(answer)

    def check_body(self, body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) - {"data", "test_event_code"}:
            return ["the body has data and test_event_code only"]
        problems: list[str] = []
        if "test_event_code" in body and not isinstance(body["test_event_code"], str):
            problems.append("test_event_code is a string")
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            return [*problems, "data holds 1 to 1000 events"]
        for index, event in enumerate(data):
            problems.extend(f"data[{index}]: {p}" for p in self.check_event(event))
        return problems

    def check_event(self, event: Any) -> list[str]:
        if not isinstance(event, dict):
            return ["an event is an object"]
        problems = []
        for name in ("event_name", "event_id", "action_source"):
            if not isinstance(event.get(name), str) or not event[name]:
                problems.append(f"{name} is a string")
        event_time = event.get("event_time")
        if not isinstance(event_time, int) or isinstance(event_time, bool):
            problems.append("event_time is Unix seconds")
        elif event_time < self.now() - SEVEN_DAYS:
            problems.append("event_time was more than 7 days ago")
        elif event_time > self.now() + 60:
            problems.append("event_time is in the future")
        if event.get("action_source") not in META_ACTION_SOURCES:
            problems.append("action_source")
        user = event.get("user_data")
        if not isinstance(user, dict):
            return [*problems, "user_data is an object"]
        if event.get("action_source") == "website":
            if not isinstance(event.get("event_source_url"), str):
                problems.append("a website event needs event_source_url")
            if not isinstance(user.get("client_user_agent"), str):
                problems.append("a website event needs client_user_agent")
        for key in ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id"):
            if key in user and not _hashes(user[key]):
                problems.append(f"user_data.{key} is SHA-256 hex")
        if "fbc" in user and not FBC.fullmatch(str(user["fbc"])):
            problems.append("user_data.fbc is fb.1.<ms>.<fbclid>")
        if "client_ip_address" in user:
            problems.append("client_ip_address: this test expects none")
        custom = event.get("custom_data", {})
        if event.get("event_name") == "Purchase":
            if not _number(custom.get("value")):
                problems.append("a Purchase needs custom_data.value, a number")
            if not re.fullmatch(r"[A-Za-z]{3}", str(custom.get("currency"))):
                problems.append("a Purchase needs custom_data.currency")
        for content in custom.get("contents", []):
            if not isinstance(content.get("id"), str) or not isinstance(
                content.get("quantity"), int
            ):
                problems.append("contents are {id: string, quantity: integer}")
        return problems


class Ga4Server(RecordingServer):
    """GA4's ``/mp/collect`` (204 for anything) and ``/debug/mp/collect``."""

    def __init__(
        self, measurement_id: str, api_secret: str, *, now: Callable[[], float] = time.time
    ):
        super().__init__()
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.now = now

    def handle(self, request: Received) -> Reply:
        debug = request.path == "/debug/mp/collect"
        if request.method != "POST" or request.path not in ("/mp/collect", "/debug/mp/collect"):
            request.problems.append(f"{request.method} {request.path}")
            return 404, (), b""
        if request.query.get("measurement_id") != [self.measurement_id]:
            request.problems.append("measurement_id")
        # The validation server does not check the api_secret (as documented).
        if not debug and request.query.get("api_secret") != [self.api_secret]:
            request.problems.append("api_secret")
        try:
            body = request.json()
        except ValueError:
            body = None
        request.problems.extend(self.check_body(body))
        if not debug:
            return 204, (), b""
        messages = [
            {"fieldPath": "", "description": problem, "validationCode": "VALUE_INVALID"}
            for problem in request.problems
        ]
        return 200, (("Content-Type", "application/json"),), _json({"validationMessages": messages})

    def check_body(self, body: Any) -> list[str]:
        if not isinstance(body, dict):
            return ["the body is a JSON object"]
        problems = []
        if not GA_CLIENT_ID.fullmatch(str(body.get("client_id"))):
            problems.append("client_id is two numbers joined by a period")
        micros = body.get("timestamp_micros")
        if micros is not None:
            now_us = self.now() * 1_000_000
            if not isinstance(micros, int) or not now_us - SEVENTY_TWO_HOURS_US <= micros <= now_us:
                problems.append("timestamp_micros is within the last 72 hours")
        events = body.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= 25:
            return [*problems, "events holds 1 to 25 events"]
        for event in events:
            name = str(event.get("name"))
            if not GA4_EVENT_NAME.fullmatch(name) or name.startswith(GA4_RESERVED_PREFIXES):
                problems.append(f"event name {name!r}")
            params = event.get("params", {})
            if "value" in params and not _number(params["value"]):
                problems.append("params.value is a number")
            if "value" in params and not re.fullmatch(r"[A-Z]{3}", str(params.get("currency"))):
                problems.append("params.currency goes with value")
            if name in ("purchase", "refund") and not isinstance(params.get("transaction_id"), str):
                problems.append(f"a {name} needs transaction_id")
            for item in params.get("items", []):
                if not isinstance(item.get("item_id"), str) or not isinstance(
                    item.get("quantity"), int
                ):
                    problems.append("items are {item_id: string, quantity: integer}")
        for key, value in body.get("user_data", {}).items():
            if key not in ("sha256_email_address", "sha256_phone_number") or not _hashes(value):
                problems.append(f"user_data.{key}")
        return problems


def transaction(
    transaction_id: int,
    *,
    created_at: datetime,
    reference_id: str | None = "ORDER-1",
    sale_amount: Decimal | None = Decimal("24.50"),
    sale_currency: str = "USD",
    sku_list: tuple[str, ...] = (),
    quantity_list: tuple[int, ...] = (),
    corrects: int | None = None,
    original: int | None = None,
    reversal_reason: str | None = None,
) -> Transaction:
    """A ledger row as the ledger would hand it to delivery."""
    return Transaction(
        transaction_id=transaction_id,
        advertiser_id=1,
        campaign_id=1,
        publisher_id=1,
        visit_id=1,
        source="pixel",
        reference_id=reference_id,
        corrects_transaction_id=corrects,
        original_transaction_id=original or transaction_id,
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        reason_code=None,
        sku_list=sku_list,
        quantity_list=quantity_list,
        external_data=None,
        custom_data={},
        payout=Decimal("2.45"),
        payout_currency=sale_currency,
        created_at=iso_utc(created_at),
        reversal_reason=reversal_reason,
    )


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)
