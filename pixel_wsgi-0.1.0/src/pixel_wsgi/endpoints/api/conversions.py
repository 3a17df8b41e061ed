"""``POST /pixels/api/conversions``: the Conversion Reporting API.

One report per request, form-encoded (as Invoca's clients send) or a JSON object, or a
batch as a JSON array of objects answered item by item. Every report is idempotent by
``reference_id``: new → ``201``; the same values again → ``200`` ``unchanged``; other
values → ``200`` ``corrected`` (a correction row is appended). An ``Idempotency-Key``
header makes a retried request answer exactly what the first one did.

``POST /pixels/api/conversions.csv`` takes a CSV body (see :mod:`pixel_wsgi.endpoints.api.bulk`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream

from ...clock import iso_utc
from ...errors import ParamError, ReportRefused, StorageError
from ...ledger.ledger import Ledger
from ...ledger.server_reports import ReportStatus
from ...models import IdempotencyRecord, Reason, Source
from ...params.sale import (
    MAX_JSON_DEPTH,
    Limits,
    claimed_reference,
    json_nesting_ok,
    parse_query,
    redacted_query,
    shown_name,
)
from ...params.server_report import (
    FieldError,
    ReportInvalid,
    args_from_json,
    loads_exact,
    parse_server_report,
)
from ...params.values import Query
from ..responses import json_response
from .bulk import decoded_lines, import_csv
from .refusals import refusal_status

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

logger = logging.getLogger("pixel_wsgi")

#: The largest form or JSON body accepted (a batch included).
MAX_BODY_BYTES = 1024 * 1024
#: The most reports in one JSON batch.
MAX_BATCH = 100
#: How long an ``Idempotency-Key`` is remembered.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
_MAX_KEY_LENGTH = 255
_RETRY_AFTER = "5"
# The status of an Idempotency-Key claimed by a request still running.
_PENDING = 0
# A claim this old was left by a request that died: another request may take it over.
_ABANDONED_AFTER = timedelta(minutes=1)
#: How long (seconds) a request waits for an identical one holding its Idempotency-Key
#: before answering 409; well under a WSGI worker's timeout.
CLAIM_WAIT = 5.0
_CLAIM_POLL = 0.02

_STATUS_LINES = {
    200: "200 OK",
    201: "201 Created",
    202: "202 Accepted",
    400: "400 Bad Request",
    404: "404 Not Found",
    409: "409 Conflict",
    411: "411 Length Required",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    422: "422 Unprocessable Content",
    503: "503 Service Unavailable",
}
_RESULT_STATUS = {
    ReportStatus.CREATED: 201,
    ReportStatus.CORRECTED: 200,
    ReportStatus.UNCHANGED: 200,
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every API error: a stable ``code`` and a human ``message``."""
    return {"error": {"code": code, "message": message, **extra}}


def status_line(status: int) -> str:
    return _STATUS_LINES[status]


_INCOMPLETE = ("incomplete_body", "the body ended before its Content-Length")


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message, **extra)


def _content_type(environ: WSGIEnvironment) -> str:
    """The media type of the body, lower case, without its parameters."""
    return parse_options_header(environ.get("CONTENT_TYPE"))[0].lower()


def _input(environ: WSGIEnvironment, max_length: int | None = None) -> IO[bytes]:
    """The body as a stream that ends at its ``Content-Length``.

    :raises _BadRequest: ``411`` without a ``Content-Length``, ``400`` when it is not
        a number, ``413`` over ``max_length`` bytes.
    """
    if not environ.get("CONTENT_LENGTH"):
        raise _BadRequest(411, "length_required", "send the body with a Content-Length")
    if get_content_length(environ) is None:
        raise _BadRequest(400, "invalid_request", "Content-Length is not a number")
    try:
        return get_input_stream(environ, max_content_length=max_length)
    except RequestEntityTooLarge:
        raise _BadRequest(
            413,
            "body_too_large",
            f"the body may be at most {MAX_BODY_BYTES} bytes; send large files as CSV"
            " to conversions.csv",
        ) from None


def _read_body(environ: WSGIEnvironment) -> bytes:
    try:
        return _input(environ, MAX_BODY_BYTES).read()
    except ClientDisconnected:
        raise _BadRequest(400, *_INCOMPLETE) from None


# What no store can hold: a NUL (PostgreSQL refuses it in text) and a surrogate, which
# JSON's "\ud800" escape makes and which has no UTF-8. Control characters in general
# are the parser's business (invalid_text); these must not reach even an error message.
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")


def _holds_unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE_RE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_unstorable(k) or _holds_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_unstorable(item) for item in value)
    return False  # numbers, booleans, null


def _refuse_unstorable(document: dict[str, Any]) -> None:
    """Refuse a JSON report holding text that cannot be stored, naming the field.

    Checked before anything else reads the report, so that no error message, log entry
    or spooled event ever carries such text. The depth is bounded by
    :func:`~pixel_wsgi.params.sale.json_nesting_ok`.
    """
    for key, value in document.items():
        if _holds_unstorable(key) or _holds_unstorable(value):
            field = shown_name(key)
            raise ReportInvalid(
                [
                    FieldError(
                        field,
                        Reason.INVALID_TEXT,
                        f"{field} holds a NUL character or an unpaired surrogate"
                        " (not Unicode text), which cannot be stored",
                    )
                ]
            )


class ConversionsEndpoint:
    """The Conversion Reporting API's ``POST`` handlers (authenticated by the caller).

    :param ledger: applies the reports.
    :param default_currency: the currency of a report that names none.
    :param limits: the size caps of the shared parameters.
    """

    def __init__(self, ledger: Ledger, *, default_currency: str, limits: Limits) -> None:
        self.ledger = ledger
        self.default_currency = default_currency
        self.limits = limits

    # -- one report or a batch -------------------------------------------------------

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, advertiser_id: int
    ) -> Iterable[bytes]:
        key = environ.get("HTTP_IDEMPOTENCY_KEY")
        try:
            body = _read_body(environ)
            if key is not None:
                return self._idempotent(environ, start_response, advertiser_id, key, body)
            status, payload = self._answer(environ, advertiser_id, body)
        except _BadRequest as exc:
            return json_response(start_response, status_line(exc.status), exc.body)
        return self._respond(start_response, status, payload)

    def _respond(
        self,
        start_response: StartResponse,
        status: int,
        payload: Any,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Iterable[bytes]:
        headers = list(extra_headers)
        if status == 503:
            headers.append(("Retry-After", _RETRY_AFTER))
        return json_response(start_response, status_line(status), payload, extra_headers=headers)

    def _idempotent(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        advertiser_id: int,
        key: str,
        body: bytes,
    ) -> Iterable[bytes]:
        if not key or len(key) > _MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise _BadRequest(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be 1 to {_MAX_KEY_LENGTH} printable ASCII characters",
            )
        # The same key must come with the same request: path, media type and body.
        digest = hashlib.sha256(
            b"\0".join(
                [
                    environ.get("PATH_INFO", "").encode("latin-1"),
                    _content_type(environ).encode("latin-1"),
                    body,
                ]
            )
        ).hexdigest()
        now = self.ledger.clock()
        expired_before = iso_utc(now - IDEMPOTENCY_WINDOW)
        # Claim the key before applying (a pending record, status 0, with a token of
        # this request's own), so that of requests racing with one key exactly one
        # runs; an identical request waits for its answer, another one is refused.
        claim = IdempotencyRecord(
            advertiser_id, key, digest, _PENDING, f"pending:{uuid.uuid4()}", iso_utc(now)
        )
        try:
            stored = self._claim_or_wait(claim, expired_before)
        except StorageError:
            # The store is down: the report itself may still be spooled (202), and
            # a spooled report is idempotent by its reference_id when replayed.
            status, payload = self._answer(environ, advertiser_id, body)
            return self._respond(start_response, status, payload)
        if stored == claim:
            return self._run_claimed(environ, start_response, claim, body)
        if stored.request_hash != digest:
            return self._respond(
                start_response,
                422,
                error_body(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ),
            )
        if stored.status == _PENDING:
            return self._respond(
                start_response,
                409,
                error_body(
                    "idempotency_key_in_progress",
                    "a request with this Idempotency-Key is being processed; retry later",
                ),
                [("Retry-After", "1")],
            )
        return self._respond(
            start_response,
            stored.status,
            json.loads(stored.body),
            [("Idempotent-Replayed", "true")],
        )

    def _claim_or_wait(self, claim: IdempotencyRecord, expired_before: str) -> IdempotencyRecord:
        """``claim`` once this request holds the key, or the record of the request that does.

        The same request running elsewhere is waited for (up to :data:`CLAIM_WAIT`), so
        that identical retries racing each other all get its answer; a claim left
        pending for :data:`_ABANDONED_AFTER` by a request that died is taken over.
        """
        storage = self.ledger.storage
        abandoned_before = iso_utc(self.ledger.clock() - _ABANDONED_AFTER)
        deadline = time.monotonic() + CLAIM_WAIT
        stored = storage.save_idempotency_record(claim, expired_before=expired_before)
        while stored != claim and stored.status == _PENDING:
            if stored.created_at < abandoned_before:
                storage.settle_idempotency_record(
                    claim.advertiser_id, claim.key, stored.request_hash, status=None
                )
            elif stored.request_hash != claim.request_hash or time.monotonic() >= deadline:
                break
            else:
                time.sleep(_CLAIM_POLL)
                pending = storage.idempotency_record(
                    claim.advertiser_id, claim.key, since=expired_before
                )
                if pending is not None:
                    stored = pending
                    continue
            # Released (its request was not applied), or taken over: claim it again.
            stored = storage.save_idempotency_record(claim, expired_before=expired_before)
        return stored

    def _run_claimed(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        claim: IdempotencyRecord,
        body: bytes,
    ) -> Iterable[bytes]:
        """Apply the request whose key this request claimed, then settle the claim."""
        storage = self.ledger.storage
        settle = functools.partial(
            storage.settle_idempotency_record, claim.advertiser_id, claim.key, claim.request_hash
        )
        try:
            status, payload = self._answer(environ, claim.advertiser_id, body)
        except BaseException:
            with contextlib.suppress(StorageError):
                settle(status=None)
            raise
        try:
            if status >= 500 or status == 202:
                # Not applied yet (the store failed, or the report waits in the
                # spool): a retry must be tried again, not answered from a record.
                settle(status=None)
            else:
                settle(status=status, body=json.dumps(payload))
        except StorageError as exc:
            # The report itself is applied (or spooled) and idempotent by its
            # reference_id: a retry then answers unchanged instead of from the record.
            logger.error("pixel-wsgi could not record the answer to Idempotency-Key: %s", exc)
        return self._respond(start_response, status, payload)

    def _answer(self, environ: WSGIEnvironment, advertiser_id: int, body: bytes) -> tuple[int, Any]:
        content_type = _content_type(environ)
        if content_type == "application/x-www-form-urlencoded":
            try:
                args = parse_query(body.decode("latin-1"), self.limits)
            except ParamError as exc:
                self._log_invalid(advertiser_id, exc.reason, exc.detail, "")
                return 400, error_body(exc.reason.value, exc.detail)
            return self._one(advertiser_id, args)
        if content_type == "application/json":
            try:
                if not json_nesting_ok(body):
                    # json.loads would recurse once per level, into a RecursionError.
                    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
                document = loads_exact(body)
            except (ValueError, UnicodeDecodeError):
                self._log_invalid(advertiser_id, Reason.INVALID_QUERY, "the body is not JSON", "")
                return 400, error_body(Reason.INVALID_QUERY.value, "the body is not valid JSON")
            if isinstance(document, list):
                return self._batch(advertiser_id, document)
            if not isinstance(document, dict):
                return 400, error_body("invalid_request", "send a JSON object or an array of them")
            return self._one_json(advertiser_id, document)
        raise _BadRequest(
            415,
            "unsupported_media_type",
            "send application/x-www-form-urlencoded or application/json"
            " (text/csv to conversions.csv)",
        )

    def _batch(self, advertiser_id: int, documents: list[Any]) -> tuple[int, Any]:
        if not documents or len(documents) > MAX_BATCH:
            return 400, error_body(
                "invalid_batch", f"a batch holds 1 to {MAX_BATCH} reports, got {len(documents)}"
            )
        results = []
        for index, document in enumerate(documents):
            if isinstance(document, dict):
                status, payload = self._one_json(advertiser_id, document)
            else:
                status, payload = 400, error_body("invalid_request", "each item must be an object")
            results.append({"index": index, "status": status, **payload})
        return 200, {"results": results}

    def _one_json(self, advertiser_id: int, document: dict[str, Any]) -> tuple[int, Any]:
        try:
            _refuse_unstorable(document)
            args = args_from_json(document)
        except ReportInvalid as exc:
            return self._invalid(advertiser_id, exc, {})
        return self._one(advertiser_id, args)

    def _one(self, advertiser_id: int, args: Query) -> tuple[int, Any]:
        try:
            server_report = parse_server_report(
                args, default_currency=self.default_currency, limits=self.limits
            )
        except ReportInvalid as exc:
            return self._invalid(advertiser_id, exc, args)
        try:
            result = self.ledger.report(
                advertiser_id,
                server_report,
                source=Source.API,
                params=lambda: redacted_query(args),
            )
        except ReportRefused as exc:
            return refusal_status(exc.reason), error_body(
                exc.reason.value, exc.detail, field=exc.field
            )
        except StorageError as exc:
            logger.error("conversion report not stored: %s", exc)
            return 503, error_body("storage_unavailable", "the store is unavailable; retry later")
        if result.transaction is None:
            # The store failed; the report is durable in the spool, applied on replay.
            return 202, {"result": result.status.value, "event_id": result.event_id}
        return _RESULT_STATUS[result.status], {
            "result": result.status.value,
            "transaction": result.transaction.as_dict(),
        }

    def _invalid(self, advertiser_id: int, exc: ReportInvalid, args: Query) -> tuple[int, Any]:
        self._log_invalid(
            advertiser_id,
            exc.reason,
            str(exc),
            redacted_query(args),
            claimed_reference(args, self.limits),
        )
        return 400, error_body(
            "invalid_report",
            "the report has invalid fields",
            fields=[error.as_dict() for error in exc.errors],
        )

    def _log_invalid(
        self,
        advertiser_id: int,
        reason: Reason,
        detail: str,
        params: str,
        reference_id: str | None = None,
    ) -> None:
        try:
            self.ledger.reject(
                advertiser_id=advertiser_id,
                source=Source.API,
                reason=reason,
                detail=detail[:500],
                params=params,
                reference_id=reference_id,
            )
        except StorageError as exc:
            logger.error("rejection not logged: %s", exc)

    # -- bulk CSV upload -------------------------------------------------------------

    def upload_csv(
        self, environ: WSGIEnvironment, start_response: StartResponse, advertiser_id: int
    ) -> Iterable[bytes]:
        try:
            if _content_type(environ) not in ("text/csv", "application/csv"):
                raise _BadRequest(415, "unsupported_media_type", "send the file as text/csv")
            stream = _input(environ)
        except _BadRequest as exc:
            return json_response(start_response, status_line(exc.status), exc.body)
        try:
            summary = import_csv(
                self.ledger,
                advertiser_id,
                decoded_lines(stream.read),
                default_currency=self.default_currency,
                limits=self.limits,
            )
        except ReportInvalid as exc:
            return json_response(
                start_response,
                status_line(400),
                error_body(
                    "invalid_file", str(exc), fields=[error.as_dict() for error in exc.errors]
                ),
            )
        except ClientDisconnected:
            return json_response(
                start_response,
                status_line(400),
                error_body(
                    _INCOMPLETE[0],
                    f"{_INCOMPLETE[1]}; rows before the end were applied: upload the file again",
                ),
            )
        except UnicodeDecodeError:
            return json_response(
                start_response,
                status_line(400),
                error_body("invalid_file", "the file is not UTF-8; rows before it were applied"),
            )
        except StorageError as exc:
            logger.error("CSV upload stopped: %s", exc)
            return self._respond(
                start_response,
                503,
                error_body(
                    "storage_unavailable",
                    "the store failed part way; upload the same file again (rows are idempotent)",
                ),
            )
        return json_response(start_response, status_line(200), summary.as_dict())


__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "ConversionsEndpoint", "error_body", "status_line"]
