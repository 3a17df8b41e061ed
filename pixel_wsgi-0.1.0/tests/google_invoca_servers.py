"""Local stand-ins for Google's OAuth token endpoint, the Google Ads API and Invoca's
Signal API: real HTTP on 127.0.0.1, each validating requests as its platform documents
(``/work/shared/reference/forwarding.md`` §1 and §3) and answering as it does.

Every server records what it received (:attr:`RecordingServer.received`), keeps the
state the platform keeps (conversions by order id, restatements, signals by
name + ``partner_unique_id``), and can be told to answer the next requests otherwise
(:meth:`RecordingServer.answer_next`: a 429, a 500, an RPC error, a slow answer).
A request the platform would refuse is refused with the platform's error, so a test that
sends one fails on the outcome it gets.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "Answer",
    "GoogleAdsServer",
    "InvocaServer",
    "OAuthServer",
    "Received",
    "RecordingServer",
    "google_ads_server",
    "invoca_server",
    "oauth_server",
]


@dataclass(frozen=True)
class Received:
    """One request as the server read it. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, numbers with a fraction as :class:`Decimal` (as sent)."""
        return json.loads(self.body, parse_float=Decimal)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), strict_parsing=True)


@dataclass(frozen=True)
class Answer:
    """What to answer instead of the platform's own answer, after ``delay`` seconds."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class RecordingServer:
    """A threaded HTTP server on 127.0.0.1 (port 0) that records every request and
    answers with :meth:`handle`, or with the scripted answers queued first."""

    name = "server"

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripted: list[Answer] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._serve(self)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.http.server_address[1]
        self.thread = threading.Thread(
            target=self.http.serve_forever, args=(0.05,), name=self.name, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order (they are still recorded)."""
        with self._lock:
            self._scripted.extend(answers)

    def handle(self, request: Received) -> Answer:  # pragma: no cover - overridden
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = Received(
            handler.command,
            handler.path,
            {name.lower(): value for name, value in handler.headers.items()},
            handler.rfile.read(length),
        )
        with self._lock:
            self.received.append(request)
            scripted = self._scripted.pop(0) if self._scripted else None
            answer = scripted or self.handle(request)
        if answer.delay:
            time.sleep(answer.delay)
        body = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
        try:
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            handler.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:  # the client gave up (a timeout test): nothing to answer to
            pass


@contextmanager
def _running(server: RecordingServer) -> Iterator[None]:
    server.thread.start()
    try:
        yield
    finally:
        server.http.shutdown()
        server.http.server_close()
        server.thread.join(5)


# -- Google OAuth 2.0 token endpoint --------------------------------------------------


class OAuthServer(RecordingServer):
    """``POST /token`` with ``grant_type=refresh_token``: a new access token for the one
    client and refresh token it knows; ``invalid_client`` (401) for another client or
    secret, ``invalid_grant`` (400) for another refresh token, ``invalid_request`` or
    ``unsupported_grant_type`` (400) for a malformed form, as Google answers."""

    name = "oauth"

    def __init__(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        super().__init__()
        self.client = (client_id, client_secret)
        self.refresh_token = refresh_token
        self.expires_in = 3599
        #: every access token issued, in order: the Google Ads server accepts these
        self.issued: list[str] = []
        #: tokens revoked since (Google refuses them)
        self.revoked: set[str] = set()

    def valid(self, token: str) -> bool:
        return token in self.issued and token not in self.revoked

    def handle(self, request: Received) -> Answer:
        if request.path != "/token":
            return Answer(404, {"error": "not_found"})
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _oauth_error(400, "invalid_request", "Bad Request")
        try:
            form = {name: values for name, values in request.form().items()}
        except ValueError:
            return _oauth_error(400, "invalid_request", "Bad Request")
        if any(len(values) != 1 for values in form.values()):
            return _oauth_error(400, "invalid_request", "duplicate parameter")
        given = {name: values[0] for name, values in form.items()}
        if given.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
        if (given.get("client_id"), given.get("client_secret")) != self.client:
            return _oauth_error(401, "invalid_client", "Unauthorized")
        if given.get("refresh_token") != self.refresh_token:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        token = f"ya29.local-{len(self.issued) + 1}"
        self.issued.append(token)
        return Answer(
            200,
            {
                "access_token": token,
                "expires_in": self.expires_in,
                "scope": "https://www.googleapis.com/auth/adwords",
                "token_type": "Bearer",
            },
        )


def _oauth_error(status: int, error: str, description: str) -> Answer:
    return Answer(status, {"error": error, "error_description": description})


@contextmanager
def oauth_server(client_id: str, client_secret: str, refresh_token: str) -> Iterator[OAuthServer]:
    server = OAuthServer(client_id, client_secret, refresh_token)
    with _running(server):
        yield server


# -- Google Ads API, REST v26 ------------------------------------------------------------

_GOOGLE_PATH = re.compile(
    r"/v26/customers/(\d+):(uploadClickConversions|uploadConversionAdjustments)"
)
#: ``yyyy-mm-dd hh:mm:ss+|-hh:mm``: the time zone is required (forwarding.md §3).
_GOOGLE_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_ACTION = re.compile(r"customers/(\d+)/conversionActions/(\d+)")
_CLICK_FIELDS = {
    "gclid",
    "gbraid",
    "wbraid",
    "conversionAction",
    "conversionDateTime",
    "conversionValue",
    "currencyCode",
    "orderId",
}
_ADJUSTMENT_FIELDS = {
    "conversionAction",
    "adjustmentType",
    "adjustmentDateTime",
    "orderId",
    "restatementValue",
    "gclidDateTimePair",
}
_DENIED = {"authorizationError": "USER_PERMISSION_DENIED"}
_BAD_TOKEN = {"authenticationError": "OAUTH_TOKEN_INVALID"}
_FAILURE_TYPE = "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure"


class BadRequest(Exception):
    """A request Google refuses as a whole (400 ``INVALID_ARGUMENT``)."""


@dataclass
class StoredConversion:
    click: tuple[str, str]
    conversion_time: datetime
    value: Decimal | None
    currency: str | None
    #: adjustment times seen, and whether it is retracted
    adjustments: list[datetime] = field(default_factory=list)
    retracted: bool = False


class GoogleAdsServer(RecordingServer):
    """``:uploadClickConversions`` and ``:uploadConversionAdjustments`` of one customer.

    Checks, as Google documents: the path, the version and the customer; a bearer token
    the OAuth server issued (else 401 ``UNAUTHENTICATED``); ``login-customer-id`` equal
    to the expected manager account, or absent when none is expected (else 403
    ``PERMISSION_DENIED``); a JSON body with only the documented lowerCamelCase fields
    and their types, ``partialFailure: true``, 1 to 2,000 rows (else 400
    ``INVALID_ARGUMENT``). Per row: exactly one click id, the date times with their
    offset, an order id; duplicates by order id or by click and time, adjustments
    after their conversion, restatements newer than the last, no adjustment of a
    ``wbraid`` conversion. ``validateOnly`` checks everything and stores nothing.
    :attr:`row_errors` forces a per-row error for a click id or an order id.
    """

    name = "google-ads"

    def __init__(self, oauth: OAuthServer, customer_id: str, login_customer_id: str | None):
        super().__init__()
        self.oauth = oauth
        self.customer_id = customer_id
        self.login_customer_id = login_customer_id
        #: conversions Google holds, by order id
        self.conversions: dict[str, StoredConversion] = {}
        #: restatements applied, in order: (order id, value, adjustment time)
        self.restatements: list[tuple[str, Decimal, str]] = []
        #: a per-row error code to answer for a row with this click id or order id
        self.row_errors: dict[str, str] = {}

    def handle(self, request: Received) -> Answer:
        match = _GOOGLE_PATH.fullmatch(request.path)
        if request.method != "POST" or not match:
            return _rpc_error(404, "NOT_FOUND", {"requestError": "RESOURCE_NAME_MISSING"})
        if match.group(1) != self.customer_id:
            return _rpc_error(403, "PERMISSION_DENIED", _DENIED)
        authorization = request.headers.get("authorization", "")
        if not (
            authorization.startswith("Bearer ")
            and self.oauth.valid(authorization.removeprefix("Bearer "))
        ):
            return _rpc_error(401, "UNAUTHENTICATED", _BAD_TOKEN)
        if request.headers.get("login-customer-id") != self.login_customer_id:
            return _rpc_error(403, "PERMISSION_DENIED", _DENIED)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _rpc_error(400, "INVALID_ARGUMENT", {"requestError": "INVALID_INPUT"})
        try:
            body = request.json()
            clicks = match.group(2) == "uploadClickConversions"
            rows_field = "conversions" if clicks else "conversionAdjustments"
            validate_only = _check_envelope(body, rows_field)
            rows = body[rows_field]
            errors: list[tuple[int, str]] = []
            results: list[dict[str, Any]] = []
            for index, row in enumerate(rows):
                code = (
                    self._click(row, validate_only) if clicks else self._adjust(row, validate_only)
                )
                if code:
                    errors.append((index, code))
                    results.append({})
                else:
                    results.append(_result(row, clicks))
        except BadRequest as exc:
            return _rpc_error(400, "INVALID_ARGUMENT", {"requestError": "INVALID_INPUT"}, str(exc))
        answer: dict[str, Any] = {"results": results, "jobId": "42"}
        if errors:
            answer["partialFailureError"] = _partial_failure(errors, clicks)
        return Answer(200, answer)

    def _click(self, row: Any, validate_only: bool) -> str | None:
        _check_fields(row, _CLICK_FIELDS)
        ids = [name for name in ("gclid", "gbraid", "wbraid") if name in row]
        if len(ids) != 1:
            return "GBRAID_WBRAID_BOTH_SET" if len(ids) > 1 else "CLICK_NOT_FOUND"
        click = (ids[0], _string(row, ids[0]))
        self._check_action(row)
        when = _google_time(row, "conversionDateTime")
        if "conversionValue" in row or "currencyCode" in row:
            _number(row, "conversionValue")
            _currency(row, "currencyCode")
        order = _string(row, "orderId")
        forced = self.row_errors.get(click[1]) or self.row_errors.get(order)
        if forced:
            return forced
        if order in self.conversions:
            return "ORDER_ID_ALREADY_IN_USE"
        if any(c.click == click and c.conversion_time == when for c in self.conversions.values()):
            return "CLICK_CONVERSION_ALREADY_EXISTS"
        if not validate_only:
            self.conversions[order] = StoredConversion(
                click, when, row.get("conversionValue"), row.get("currencyCode")
            )
        return None

    def _adjust(self, row: Any, validate_only: bool) -> str | None:
        _check_fields(row, _ADJUSTMENT_FIELDS)
        self._check_action(row)
        order = _string(row, "orderId")
        when = _google_time(row, "adjustmentDateTime")
        kind = _string(row, "adjustmentType")
        if kind == "RESTATEMENT":
            value = row.get("restatementValue")
            if not isinstance(value, dict) or set(value) != {"adjustedValue", "currencyCode"}:
                raise BadRequest(
                    "a RESTATEMENT needs restatementValue{adjustedValue, currencyCode}"
                )
            _number(value, "adjustedValue")
            _currency(value, "currencyCode")
        elif kind == "RETRACTION":
            if "restatementValue" in row:
                return "RESTATEMENT_VALUE_SET_FOR_RETRACTION"
        else:
            raise BadRequest(f"adjustmentType {kind!r}")
        forced = self.row_errors.get(order)
        if forced:
            return forced
        stored = self.conversions.get(order)
        if stored is None:
            return "CONVERSION_NOT_FOUND"
        if stored.click[0] == "wbraid":
            return "INVALID_CONVERSION_ACTION_TYPE"
        if when <= stored.conversion_time:
            return "ADJUSTMENT_PRECEDES_CONVERSION"
        if stored.retracted:
            return "CONVERSION_ALREADY_RETRACTED"
        if when in stored.adjustments:
            return "RESTATEMENT_ALREADY_EXISTS"
        if stored.adjustments and when < max(stored.adjustments):
            return "MORE_RECENT_RESTATEMENT_FOUND"
        if not validate_only:
            stored.adjustments.append(when)
            if kind == "RETRACTION":
                stored.retracted = True
            else:
                stored.value = row["restatementValue"]["adjustedValue"]
                self.restatements.append((order, stored.value, row["adjustmentDateTime"]))
        return None

    def _check_action(self, row: Any) -> None:
        action = _ACTION.fullmatch(_string(row, "conversionAction"))
        if not action or action.group(1) != self.customer_id:
            raise BadRequest(f"conversionAction {row.get('conversionAction')!r}")


def _check_envelope(body: Any, rows_field: str) -> bool:
    if not isinstance(body, dict):
        raise BadRequest("the body is not a JSON object")
    unknown = set(body) - {rows_field, "partialFailure", "validateOnly", "jobId"}
    if unknown:
        raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(unknown)}")
    if body.get("partialFailure") is not True:
        raise BadRequest("partialFailure must be true")
    validate_only = body.get("validateOnly", False)
    if not isinstance(validate_only, bool):
        raise BadRequest("validateOnly is a boolean")
    rows = body.get(rows_field)
    if not isinstance(rows, list) or not rows:
        raise BadRequest(f"{rows_field} must be a non-empty list")
    if len(rows) > 2000:
        raise BadRequest("TOO_MANY_CONVERSIONS_IN_REQUEST")
    return validate_only


def _check_fields(row: Any, allowed: set[str]) -> None:
    if not isinstance(row, dict):
        raise BadRequest("a row is not an object")
    unknown = set(row) - allowed
    if unknown:
        raise BadRequest(f"Invalid JSON payload received. Unknown name {sorted(unknown)}")


def _string(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string")
    return value


def _number(row: dict[str, Any], name: str) -> Decimal:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BadRequest(f"{name} must be a JSON number, got {value!r}")
    return Decimal(value)


def _currency(row: dict[str, Any], name: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", _string(row, name)):
        raise BadRequest(f"{name} is an ISO 4217 code")


def _google_time(row: dict[str, Any], name: str) -> datetime:
    text = _string(row, name)
    if not _GOOGLE_TIME.fullmatch(text):
        raise BadRequest(f"{name} {text!r} is not 'yyyy-mm-dd hh:mm:ss+|-hh:mm'")
    return datetime.fromisoformat(text)


def _result(row: dict[str, Any], clicks: bool) -> dict[str, Any]:
    names = (
        ("gclid", "gbraid", "wbraid", "conversionAction", "conversionDateTime", "orderId")
        if clicks
        else ("conversionAction", "adjustmentType", "adjustmentDateTime", "orderId")
    )
    return {name: row[name] for name in names if name in row}


def _partial_failure(errors: list[tuple[int, str]], clicks: bool) -> dict[str, Any]:
    kind = "conversionUploadError" if clicks else "conversionAdjustmentUploadError"
    rows_field = "conversions" if clicks else "conversion_adjustments"
    return {
        "code": 3,
        "message": f"{len(errors)} row(s) failed",
        "details": [
            {
                "@type": _FAILURE_TYPE,
                "errors": [
                    {
                        "errorCode": {kind: code},
                        "message": f"{code} (local server)",
                        "location": {
                            "fieldPathElements": [{"fieldName": rows_field, "index": index}]
                        },
                    }
                    for index, code in errors
                ],
                "requestId": "local-request",
            }
        ],
    }


def _rpc_error(
    status: int, rpc_status: str, error_code: dict[str, str], message: str = ""
) -> Answer:
    """A request-level failure as the REST binding answers it."""
    return Answer(status, rpc_failure(status, rpc_status, error_code, message))


def rpc_failure(
    status: int, rpc_status: str, error_code: dict[str, str], message: str = ""
) -> dict[str, Any]:
    """The body of a request-level Google Ads failure (for :meth:`answer_next` too)."""
    return {
        "error": {
            "code": status,
            "message": message or rpc_status,
            "status": rpc_status,
            "details": [
                {
                    "@type": _FAILURE_TYPE,
                    "errors": [{"errorCode": error_code, "message": message or rpc_status}],
                    "requestId": "local-request",
                }
            ],
        }
    }


@contextmanager
def google_ads_server(
    oauth: OAuthServer, customer_id: str, login_customer_id: str | None = None
) -> Iterator[GoogleAdsServer]:
    server = GoogleAdsServer(oauth, customer_id, login_customer_id)
    with _running(server):
        yield server


# -- Invoca Signal API ---------------------------------------------------------------

_INVOCA_PATH = re.compile(r"/api/([^/]+)/transactions\.json")
_SEARCH_KEYS = {"transaction_id", "call_record_id", "external_call_unique_id", "call_start_time"}
_SIGNAL_FIELDS = {
    "name",
    "partner_unique_id",
    "occurred_at_time",
    "revenue",
    "value",
    "description",
}
#: ``revenue``: up to 2 decimals, no symbols or commas.
_REVENUE = re.compile(r"\d+(\.\d{1,2})?")
#: an ISO 8601 time with an offset (or Z), or a 10/13-digit epoch, or 17-digit compressed UTC
_INVOCA_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)|\d{10}|\d{13}|\d{17}"
)


@dataclass
class StoredSignal:
    transaction_id: str
    occurred_at_time: str | None
    revenue: str | None
    value: str
    corrects_transaction_id: str | None = None


class InvocaServer(RecordingServer):
    """``POST``/``PUT /api/2018-02-01/transactions.json`` of one Invoca network.

    Checks, as Invoca documents: the API version (else 400), the token in the
    ``Authorization`` header, bare (or ``oauth_token`` in the body; else 401), a
    ``search`` with one of the four documented keys (else 403 ``InvalidInput``), 1 to
    100 signals with a name, a revenue of up to 2 decimals without symbols, a value
    ``"true"``/``"false"`` and a documented time format (else 403 ``RecordInvalid``),
    and a call it knows (else 404 ``RecordNotFound``). A new signal answers 201; a
    changed one is updated (200, a new transaction correcting the last); an identical
    one changes nothing (200).
    """

    name = "invoca"

    def __init__(self, api_token: str, calls: set[str]) -> None:
        super().__init__()
        self.api_token = api_token
        #: the call transaction ids Invoca has recorded (a test adds one "later")
        self.calls = set(calls)
        #: signals by (call, lower-cased name, partner_unique_id)
        self.signals: dict[tuple[str, str, str], StoredSignal] = {}
        self._transactions = 0

    def handle(self, request: Received) -> Answer:
        path = _INVOCA_PATH.fullmatch(request.path)
        if not path:
            return _invoca_error(404, "RecordNotFound", "no such route")
        if path.group(1) != "2018-02-01":
            return _invoca_error(400, "InvalidApiVersion", path.group(1))
        try:
            body = request.json()
        except ValueError:
            return _invoca_error(403, "InvalidInput", "the body is not JSON")
        if not isinstance(body, dict):
            return _invoca_error(403, "InvalidInput", "the body is not a JSON object")
        token = request.headers.get("authorization") or body.get("oauth_token")
        if token != self.api_token:
            return _invoca_error(401, "Unauthorized", "bad oauth token")
        unknown = set(body) - {
            "search",
            "signals",
            "custom_data",
            "oauth_token",
            "call_in_progress",
        }
        if unknown:
            return _invoca_error(403, "InvalidInput", f"unknown parameters {sorted(unknown)}")
        search = body.get("search")
        if not isinstance(search, dict) or not _SEARCH_KEYS.intersection(search):
            return _invoca_error(403, "InvalidInput", f"search needs one of {sorted(_SEARCH_KEYS)}")
        signals = body.get("signals")
        if not isinstance(signals, list) or not signals:
            return _invoca_error(403, "InvalidInput", "signals must be a non-empty list")
        if len(signals) > 100:
            return _invoca_error(403, "RecordInvalid", "Signals are limited to 100")
        for signal in signals:
            problem = _signal_problem(signal)
            if problem:
                return _invoca_error(403, "RecordInvalid", problem)
        call = search.get("transaction_id")
        if call not in self.calls:
            return _invoca_error(404, "RecordNotFound", "No call found")
        created = False
        changed = []
        for signal in signals:
            created |= self._apply(call, signal, changed)
        return Answer(
            201 if created else 200, {"call": {"transaction_id": call}, "signals": changed}
        )

    def _apply(self, call: str, signal: dict[str, str], changed: list[dict[str, Any]]) -> bool:
        key = (call, signal["name"].lower(), signal.get("partner_unique_id", ""))
        old = self.signals.get(key)
        new = StoredSignal(
            "",
            signal.get("occurred_at_time"),
            signal.get("revenue"),
            signal.get("value", "true"),
        )
        if old and (old.occurred_at_time, old.revenue, old.value) == (
            new.occurred_at_time,
            new.revenue,
            new.value,
        ):
            return False  # identical: nothing changes
        self._transactions += 1
        new.transaction_id = f"00000000-{self._transactions:08X}"
        new.corrects_transaction_id = old.transaction_id if old else None
        self.signals[key] = new
        changed.append(
            {
                "transaction_id": new.transaction_id,
                "corrects_transaction_id": new.corrects_transaction_id,
                "name": signal["name"],
                "partner_unique_id": key[2],
                "revenue": new.revenue,
                "value": new.value,
            }
        )
        return old is None


def _signal_problem(signal: Any) -> str | None:
    if not isinstance(signal, dict):
        return "a signal is not an object"
    unknown = set(signal) - _SIGNAL_FIELDS
    if unknown:
        return f"unknown signal fields {sorted(unknown)}"
    if not all(isinstance(value, str) for value in signal.values()):
        return "signal fields are strings"
    if not signal.get("name"):
        return "a signal needs a name"
    if "revenue" in signal and not _REVENUE.fullmatch(signal["revenue"]):
        return f"revenue {signal['revenue']!r}: up to 2 decimals, no symbols"
    if signal.get("value", "true") not in ("true", "false"):
        return "value is 'true' or 'false'"
    when = signal.get("occurred_at_time")
    if when is not None and not _INVOCA_TIME.fullmatch(when):
        return f"occurred_at_time {when!r}"
    return None


def _invoca_error(status: int, klass: str, invalid_data: str) -> Answer:
    return Answer(status, {"errors": {"class": klass, "invalid_data": invalid_data}})


@contextmanager
def invoca_server(api_token: str, calls: set[str]) -> Iterator[InvocaServer]:
    server = InvocaServer(api_token, calls)
    with _running(server):
        yield server
