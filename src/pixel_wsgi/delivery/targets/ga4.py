"""The GA4 Measurement Protocol: a ``purchase`` per conversion, a ``refund`` per reversal.

``POST https://www.google-analytics.com/mp/collect?measurement_id=G-...&api_secret=...``
with ``{"client_id", "timestamp_micros", "events": [{"name", "params"}], "user_data"?}``.

- One request per ledger row: a request carries one ``client_id``, one
  ``timestamp_micros`` and one ``user_data``, and each row has its own.
- ``client_id`` comes from the visitor's ``_ga`` cookie, kept with the conversion; a row
  without one is ``unsupported`` (GA4 cannot attach it to a visitor).
- ``transaction_id`` is the conversion's ``reference_id`` (else
  ``pixel-wsgi-<transaction id>``): GA4 deduplicates purchases on it, so sending a row
  again never counts it twice, and a refund names the purchase it refunds.
- A **reversal** is a ``refund`` of the whole purchase: its ``value`` is the first row's
  amount, which is what GA4 holds (see corrections).
- A **correction** is ``unsupported``: GA4 keeps the first ``purchase`` of a
  ``transaction_id`` and drops later ones, so no event can restate its value. (A partial
  ``refund`` of the difference could lower it but never raise it, and would need each
  earlier correction's amount to stay right over a chain of them.)
- ``user_data`` carries the hashed e-mail and phones
  (:func:`~pixel_wsgi.delivery.hashing.google_user_data`); ``user_agent`` the browser's.

The live endpoint answers 2xx to anything, malformed or not, and with a wrong
``api_secret``: a 2xx says only that the request arrived. ``--validate`` (setting
``validate`` ``1``) sends to ``/debug/mp/collect`` instead, which answers
``validationMessages`` and records nothing in reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlencode

from ...errors import ConfigurationError
from ...models import TransactionType
from ..hashing import google_user_data
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

__all__ = ["GoogleAnalytics4"]

_MEASUREMENT_ID_RE = re.compile(r"G-[A-Z0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class GoogleAnalytics4(TargetType):
    """``pixel-wsgi target add --kind ga4 --measurement-id G-XXXX --api-secret SECRET
    [--validate] [--endpoint URL]``.

    Settings ``measurement_id`` (``G-`` and capitals or digits), optional ``validate``
    (``1``: the validation server) and ``endpoint``; secret ``api_secret``.
    """

    kind: ClassVar[TargetKind] = TargetKind.GA4
    batch_limit: ClassVar[int] = 1
    max_event_age: ClassVar[timedelta | None] = timedelta(hours=72)
    required_settings: ClassVar[frozenset[str]] = frozenset({"measurement_id"})
    optional_settings: ClassVar[frozenset[str]] = frozenset({"validate", "endpoint"})
    required_secrets: ClassVar[frozenset[str]] = frozenset({"api_secret"})
    needs_conversion_context: ClassVar[bool] = True
    #: a refund needs the purchase's client id: kept 30 days, a usual refund window
    context_kept_for: ClassVar[timedelta | None] = timedelta(days=30)

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        if _MEASUREMENT_ID_RE.fullmatch(settings["measurement_id"]) is None:
            raise ConfigurationError(
                "a GA4 measurement id is G- and capitals or digits (G-XXXXXXXXXX),"
                f" got {settings['measurement_id']!r}"
            )
        if settings.get("validate", "0") not in ("0", "1"):
            raise ConfigurationError(f"validate is 1 or 0, got {settings['validate']!r}")
        with_endpoint("https://www.google-analytics.com/", settings.get("endpoint"))

    @property
    def validating(self) -> bool:
        """Whether requests go to the validation server (``--validate``)."""
        return self.settings.get("validate") == "1"

    @property
    def url(self) -> str:
        path = "/debug/mp/collect" if self.validating else "/mp/collect"
        query = urlencode(
            {
                "measurement_id": self.settings["measurement_id"],
                "api_secret": self.secrets["api_secret"],
            }
        )
        documented = f"https://www.google-analytics.com{path}?{query}"
        return with_endpoint(documented, self.settings.get("endpoint"))

    def unsupported(self, item: DeliveryItem) -> str | None:
        if item.row.transaction_type is TransactionType.CORRECTION:
            return (
                "GA4 keeps the first purchase of a transaction_id: a correction cannot"
                " restate its value (a reversal is sent as a refund)"
            )
        if item.conversion is None or not item.conversion.ga_client_id:
            return "no GA4 client id: the visitor had no _ga cookie"
        return None

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        """One request per row. A row older than 72 hours (less
        :data:`~pixel_wsgi.delivery.targets.base.SEND_MARGIN`) or one
        :meth:`unsupported` refuses is in no request (GA4 would drop it silently); the
        worker expires it."""
        return [
            HttpRequest(
                "POST",
                self.url,
                (("Content-Type", "application/json"),),
                json_body(self._body(item, now)),
                (item.row.transaction_id,),
            )
            for item in self.sendable(items, now)
        ]

    @staticmethod
    def _body(item: DeliveryItem, now: datetime) -> dict[str, Any]:
        context = item.conversion
        assert context is not None  # unsupported() said so
        row = item.row
        params: dict[str, Any] = {"transaction_id": conversion_key(item.original)}
        if row.transaction_type is TransactionType.REVERSAL:
            name, sold = "refund", item.original
        else:
            name, sold = "purchase", row
        if sold.sale_amount is not None:
            params["value"] = sold.sale_amount
            params["currency"] = sold.sale_currency
        if name == "purchase" and row.sku_list:
            params["items"] = [
                {"item_id": sku, "quantity": quantity} for sku, quantity in line_items(row)
            ]
        at = min(row_time(row), now)
        body: dict[str, Any] = {
            "client_id": context.ga_client_id,
            "timestamp_micros": (at - _EPOCH) // _MICROSECOND,
            "events": [{"name": name, "params": params}],
        }
        user_data = google_user_data(item.personal)
        if user_data:
            body["user_data"] = user_data
        if context.user_agent:
            body["user_agent"] = context.user_agent
        return body

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        """Live: any 2xx is delivered (it is all GA4 says); no answer, 429 and 5xx retry;
        any other status is permanent ("don't retry the same request"). Validation: a
        2xx with ``validationMessages`` is permanent, with the messages."""
        return dict.fromkeys(request.transaction_ids, self._outcome(response, error))

    def _outcome(self, response: HttpResponse | None, error: str | None) -> Outcome:
        if response is None:
            return no_answer(error, "GA4")
        status = response.status
        if 200 <= status < 300:
            if not self.validating:
                return Outcome(
                    OutcomeKind.DELIVERED,
                    f"GA4 answered {status} (it does for any payload: --validate checks one)",
                )
            messages = json_object(response.body).get("validationMessages")
            if messages:
                found = "; ".join(
                    f"{message.get('fieldPath')}: {message.get('description')}"
                    f" ({message.get('validationCode')})"
                    if isinstance(message, dict)
                    else str(message)
                    for message in messages
                )
                return Outcome(
                    OutcomeKind.PERMANENT,
                    masked(f"GA4 validation: {found}", self.secrets.values()),
                )
            return Outcome(
                OutcomeKind.DELIVERED,
                "valid for GA4's validation server (which records nothing in reports)",
            )
        detail = f"GA4 answered HTTP {status}"
        if status == 429 or status >= 500:
            return Outcome(OutcomeKind.RETRY, detail, retry_after(response))
        return Outcome(OutcomeKind.PERMANENT, detail)

    def redacted(self, request: HttpRequest) -> str:
        """The request with its ``api_secret`` masked and its hashes as ``[hashed]``."""
        body = json_object(request.body)
        user_data = body.get("user_data")
        if isinstance(user_data, dict):
            body["user_data"] = dict.fromkeys(user_data, "[hashed]")
        return super().redacted(
            HttpRequest(
                request.method,
                request.url,
                request.headers,
                json_body(body) if body else request.body,
                request.transaction_ids,
            )
        )
