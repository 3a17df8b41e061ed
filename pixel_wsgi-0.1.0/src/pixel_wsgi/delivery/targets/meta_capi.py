"""Meta's Conversions API: a ``Purchase`` event per conversion, deduplicated with the
browser's Meta pixel by ``event_id``.

``POST https://graph.facebook.com/v26.0/<pixel_id>/events?access_token=<token>`` with
``{"data": [event, ...], "test_event_code"?}``, up to 1,000 events, answered with
``{"events_received", "messages", "fbtrace_id"}`` or a Graph error body.

What each event carries, and why:

- ``event_name`` ``Purchase``; ``event_id`` the conversion's ``reference_id``, the order id
  the browser's pixel passes as ``eventID`` (Meta keeps the first of the two within 48
  hours); a conversion without one gets ``pixel-wsgi-<transaction id>``, stable across
  retries.
- ``event_time``: the ledger row's ``created_at`` in Unix seconds (never the browser's
  clock), clamped to now.
- ``action_source`` ``website`` with ``event_source_url`` (the page that fired the pixel)
  and ``user_data.client_user_agent``: Meta requires both for website events. A
  conversion whose request left neither (a server-side report, history replayed from
  before the target existed) is ``unsupported`` rather than sent under another action
  source that would misdescribe it.
- ``user_data``: ``fbc`` built from the click's ``fbclid`` as ``fb.1.<click ms>.<fbclid>``,
  ``fbp`` from the ``_fbp`` cookie, and the hashed ``em``/``ph``/``fn``/``ln`` of the
  conversion's personal fields (:func:`~pixel_wsgi.delivery.hashing.meta_user_data`).
  The IP address is never sent: only a truncated network is kept.
- ``custom_data``: ``value`` (the exact decimal as a JSON number), ``currency``,
  ``order_id`` and ``contents`` from ``sku_list``/``quantity_list``.

Meta has no way to correct or retract an event, so corrections and reversals are
``unsupported``. One event older than 7 days fails the whole request, so
:meth:`MetaConversionsApi.requests` leaves any row that old out of every request (the
worker expires it: it is past :attr:`~MetaConversionsApi.max_event_age`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from ...errors import ConfigurationError
from ...models import TransactionType
from ..hashing import meta_user_data
from ..model import (
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
    OutcomeKind,
    TargetKind,
)
from .answers import json_object, no_answer, retry_after
from .base import TargetType, with_endpoint
from .payloads import conversion_key, json_body, line_items, masked, row_time

__all__ = ["GRAPH_VERSION", "MetaConversionsApi"]

#: The Graph API version the ``facebook-business`` 26 SDK pins.
GRAPH_VERSION = "v26.0"

#: Graph error codes: wait and retry (unknown, service, throttling, rate limits).
_RETRY_CODES = frozenset({1, 2, 4, 17, 341})
#: Graph error codes: the token or its permissions were refused.
_AUTH_CODES = frozenset({10, 102, 190, *range(200, 300)})
#: ``user_data`` keys that carry hashes, and those that carry browser ids.
_HASHED_KEYS = ("em", "ph", "fn", "ln")
_ID_KEYS = ("fbc", "fbp")


class MetaConversionsApi(TargetType):
    """``pixel-wsgi target add --kind meta_capi --pixel-id ID --access-token TOKEN
    [--test-event-code CODE] [--endpoint URL]``.

    Settings ``pixel_id`` (the dataset id, digits), optional ``test_event_code`` (events
    go to Events Manager's Test Events) and ``endpoint``; secret ``access_token``.
    """

    kind: ClassVar[TargetKind] = TargetKind.META_CAPI
    batch_limit: ClassVar[int] = 1000
    max_event_age: ClassVar[timedelta | None] = timedelta(days=7)
    required_settings: ClassVar[frozenset[str]] = frozenset({"pixel_id"})
    optional_settings: ClassVar[frozenset[str]] = frozenset({"test_event_code", "endpoint"})
    required_secrets: ClassVar[frozenset[str]] = frozenset({"access_token"})
    needs_conversion_context: ClassVar[bool] = True

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        if not settings["pixel_id"].isascii() or not settings["pixel_id"].isdigit():
            raise ConfigurationError(
                f"a Meta pixel id is its digits (Events Manager), got {settings['pixel_id']!r}"
            )
        with_endpoint("https://graph.facebook.com/", settings.get("endpoint"))

    @property
    def url(self) -> str:
        """Where the events go, the access token as the ``access_token`` query field."""
        documented = (
            f"https://graph.facebook.com/{GRAPH_VERSION}/{self.settings['pixel_id']}/events"
            f"?access_token={quote(self.secrets['access_token'], safe='')}"
        )
        return with_endpoint(documented, self.settings.get("endpoint"))

    def unsupported(self, item: DeliveryItem) -> str | None:
        row_type = item.row.transaction_type
        if row_type is not TransactionType.CONVERSION:
            return (
                "Meta's Conversions API has no way to correct or retract an event"
                f" (this row is a {row_type.value})"
            )
        if item.row.sale_amount is None:
            return "Meta's Purchase event needs a value: this conversion has no sale_amount"
        context = item.conversion
        missing = [
            name
            for name, given in (
                ("client_user_agent", context and context.user_agent),
                ("event_source_url", context and context.page_url),
            )
            if not given
        ]
        if missing:
            return (
                f"Meta requires {' and '.join(missing)} for a website event: the conversion's"
                " request left none (a server-side report, or a row from before the target)"
            )
        return None

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        """Batches of up to 1,000 events.

        A row older than 7 days (less :data:`~.base.SEND_MARGIN`) at ``now``, or one
        :meth:`unsupported` refuses, is in no request: Meta would fail the whole batch
        for it. The worker keeps such rows out of batches already; one that slips in is
        left to the worker's expiry, and :meth:`classify` never sees it.
        """
        sendable = self.sendable(items, now)
        built: list[HttpRequest] = []
        for start in range(0, len(sendable), self.batch_limit):
            chunk = sendable[start : start + self.batch_limit]
            body: dict[str, Any] = {"data": [self._event(item, now) for item in chunk]}
            if self.settings.get("test_event_code"):
                body["test_event_code"] = self.settings["test_event_code"]
            built.append(
                HttpRequest(
                    "POST",
                    self.url,
                    (("Content-Type", "application/json"),),
                    json_body(body),
                    tuple(item.row.transaction_id for item in chunk),
                )
            )
        return built

    def _event(self, item: DeliveryItem, now: datetime) -> dict[str, Any]:
        row = item.row
        context = item.conversion
        assert context is not None and row.sale_amount is not None  # unsupported() said so
        user: dict[str, Any] = {"client_user_agent": context.user_agent}
        fbc = self._fbc(item)
        if fbc:
            user["fbc"] = fbc
        if context.fbp:
            user["fbp"] = context.fbp
        user.update(meta_user_data(item.personal))
        custom: dict[str, Any] = {
            "value": row.sale_amount,
            "currency": row.sale_currency,
            "order_id": conversion_key(item.original),
        }
        if row.sku_list:
            custom["contents"] = [
                {"id": sku, "quantity": quantity} for sku, quantity in line_items(row)
            ]
        return {
            "event_name": "Purchase",
            "event_time": int(min(row_time(row), now).timestamp()),
            "event_id": conversion_key(item.original),
            "action_source": "website",
            "event_source_url": context.page_url,
            "user_data": user,
            "custom_data": custom,
        }

    @staticmethod
    def _fbc(item: DeliveryItem) -> str | None:
        """``fb.1.<ms>.<fbclid>``: the fbclid as captured, with when it was first seen
        (the click's time; else the conversion's, the first time this server saw it)."""
        click = item.click
        if click is None or not click.click_ids.get("fbclid"):
            return None
        seen_ms = click.clicked_at_ms
        if seen_ms is None:
            seen_ms = int(row_time(item.original).timestamp() * 1000)
        return f"fb.1.{seen_ms}.{click.click_ids['fbclid']}"

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        """Meta accepts or rejects a request whole, so every row gets the same outcome.

        2xx with ``events_received`` equal to the events sent: delivered (fewer: retried,
        which is safe, Meta deduplicating on ``event_id``). No answer, 5xx, 429, Graph
        codes 1, 2, 4, 17, 341 or ``is_transient``: retry. Codes 10, 102, 190, 200-299:
        the token was refused. Any other 4xx: permanent (a bad parameter, a stale event).
        """
        outcome = self._outcome(request, response, error)
        return dict.fromkeys(request.transaction_ids, outcome)

    def _outcome(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> Outcome:
        if response is None:
            return no_answer(error, "Meta")
        answer = json_object(response.body)
        if 200 <= response.status < 300:
            sent = len(request.transaction_ids)
            received = answer.get("events_received")
            detail = f"Meta received {received} of {sent} events"
            detail += f" (fbtrace_id {answer.get('fbtrace_id')})"
            if answer.get("messages"):
                detail += f": {self._masked(json.dumps(answer['messages']))}"
            kind = OutcomeKind.DELIVERED if received == sent else OutcomeKind.RETRY
            return Outcome(kind, detail)
        graph = answer.get("error")
        graph = graph if isinstance(graph, dict) else {}
        code = graph.get("code")
        detail = f"HTTP {response.status}"
        if graph:
            detail += (
                f" Graph error {code}/{graph.get('error_subcode')} {graph.get('type')}:"
                f" {graph.get('error_user_msg') or graph.get('message')}"
                f" (fbtrace_id {graph.get('fbtrace_id')})"
            )
        detail = self._masked(detail)
        wait = retry_after(response)
        if code in _AUTH_CODES:
            return Outcome(OutcomeKind.AUTH, detail)
        if (
            response.status >= 500
            or response.status == 429
            or code in _RETRY_CODES
            or graph.get("is_transient") is True
        ):
            return Outcome(OutcomeKind.RETRY, detail, wait)
        return Outcome(OutcomeKind.PERMANENT, detail)

    def _masked(self, text: str) -> str:
        return masked(text, self.secrets.values())

    def redacted(self, request: HttpRequest) -> str:
        """The request without its token, hashes as ``[hashed]``, browser ids as ``[id]``."""
        body = json_object(request.body)
        for event in body.get("data", ()):
            user = event.get("user_data") if isinstance(event, dict) else None
            if isinstance(user, dict):
                for key in _HASHED_KEYS:
                    if key in user:
                        user[key] = "[hashed]"
                for key in _ID_KEYS:
                    if key in user:
                        user[key] = "[id]"
        if body:
            request = replace(request, body=json_body(body))
        return super().redacted(request)
