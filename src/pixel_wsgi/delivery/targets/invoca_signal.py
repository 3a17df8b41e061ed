"""Invoca's Signal API: a conversion becomes a signal on the Invoca call it names.

Invoca attaches signals to calls, and every request must find its call
(forwarding.md §0.1): only conversions that carry the call's Invoca transaction id in a
custom field can go. The deprecated web pixel that this project replaces matched no
calls at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from ...models import TransactionType
from ..model import DeliveryItem, HttpRequest, HttpResponse, Outcome, OutcomeKind, TargetKind
from .answers import no_answer
from .base import TargetType, with_endpoint
from .payloads import conversion_key

if TYPE_CHECKING:
    from ..model import Target

__all__ = ["SIGNAL_API_URL", "InvocaSignal"]

#: The Signal API's documented URL (version 2018-02-01); ``--endpoint`` replaces its host.
SIGNAL_API_URL = "https://invoca.net/api/2018-02-01/transactions.json"
_CENT = Decimal("0.01")
#: What Invoca's ``errors.class`` values of a 403 mean for the row.
_FORBIDDEN = {
    "InvalidInput": OutcomeKind.PERMANENT,
    "RecordInvalid": OutcomeKind.PERMANENT,
    "UnauthorizedOperation": OutcomeKind.AUTH,
    "UnauthorizedAdvertiser": OutcomeKind.AUTH,
}
#: The most of an error body an outcome quotes (the 500's error handle fits in it).
_QUOTE = 300


def _revenue(amount: Decimal) -> str:
    """``amount`` with at least two decimals and never rounded (10.005 stays 10.005)."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        return format(amount, "f")
    return format(amount.quantize(_CENT), "f")


class InvocaSignal(TargetType):
    """Signals posted to Invoca's Signal API, one call per request.

    Settings: ``signal_name`` (the signal as configured in Invoca), ``call_id_field``
    (the conversion's custom field that holds the Invoca call's ``transaction_id``: a
    key of the conversion's ``custom_data``), and optionally ``endpoint``. Secret:
    ``api_token``, sent as ``Authorization: <token>`` (no ``Bearer``, as Invoca
    documents).

    What each ledger row becomes, all on the call named by the *conversion's* custom
    field (``search.transaction_id``):

    - a conversion: the signal ``signal_name`` with ``partner_unique_id`` = its
      ``reference_id`` (``pixel-wsgi-<transaction id>`` without one),
      ``occurred_at_time`` = its ``created_at`` (ISO 8601 with its offset),
      ``revenue`` = its sale amount as ``"24.50"``, ``value`` ``"true"``;
    - a correction: the same signal (same name and ``partner_unique_id``, the same
      ``occurred_at_time``) with the new revenue: Invoca updates a signal re-posted with
      changed values, and ignores an identical repost (forwarding.md §1), so a retry
      cannot count twice;
    - a reversal: the same signal with ``value`` ``"false"`` ("not met") and revenue
      ``"0.00"``. Invoca documents ``value: false`` as a signal not met, not as a
      reversal: using it so is an inference (forwarding.md §1, marked U there).

    Revenue is read by Invoca in the organisation's currency: the API has no currency
    field. The amount is sent as it is, whatever the row's ``sale_currency``, and the
    row's outcome says which currency it was in, so that an operator can see rows in
    another currency than the Invoca account's (converting needs rates we do not have).

    Rows whose conversion lacks the call id field are ``unsupported``. Outcomes:
    200/201 delivered; 401 and a 403 ``UnauthorizedOperation`` or
    ``UnauthorizedAdvertiser`` pause the target; other 403 classes (``InvalidInput``,
    ``RecordInvalid``) are permanent; a 404 ``RecordNotFound`` is retried, because the
    call may not be recorded yet when the conversion is (the worker's retry cap makes
    it dead if the call never appears); 500 (its error handle kept in the detail, to
    quote to Invoca), 504 (Invoca's own 120 s timeout) and no answer are retried.
    """

    kind: ClassVar[TargetKind] = TargetKind.INVOCA_SIGNAL
    #: one call per request: the search finds a single call
    batch_limit: ClassVar[int] = 1
    required_settings: ClassVar[frozenset[str]] = frozenset({"signal_name", "call_id_field"})
    optional_settings: ClassVar[frozenset[str]] = frozenset({"endpoint"})
    required_secrets: ClassVar[frozenset[str]] = frozenset({"api_token"})

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.url = with_endpoint(SIGNAL_API_URL, self.settings.get("endpoint"))
        #: the currency of each row sent, for its outcome's note (see the class doc)
        self._currencies: dict[int, str] = {}

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        if "endpoint" in settings:
            with_endpoint(SIGNAL_API_URL, settings["endpoint"])  # raises for a bad URL

    def call_id(self, item: DeliveryItem) -> str | None:
        """The Invoca call's ``transaction_id`` from the conversion's custom field."""
        field = self.settings["call_id_field"]
        found = item.original.custom_data.get(field) or item.row.custom_data.get(field)
        return found.strip() or None if found else None

    def unsupported(self, item: DeliveryItem) -> str | None:
        if self.call_id(item) is None:
            return f"no Invoca call id in custom field {self.settings['call_id_field']}"
        return None

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        return [self._request(item) for item in items]

    def _request(self, item: DeliveryItem) -> HttpRequest:
        call = self.call_id(item)
        if call is None:
            raise ValueError(f"row {item.row.transaction_id} names no Invoca call")
        row = item.row
        signal: dict[str, str] = {
            "name": self.settings["signal_name"],
            "partner_unique_id": conversion_key(item.original),
            "occurred_at_time": _iso_with_offset(item.original.created_at),
        }
        if row.transaction_type is TransactionType.REVERSAL:
            signal["revenue"] = "0.00"
            signal["value"] = "false"
        else:
            if row.sale_amount is not None:
                signal["revenue"] = _revenue(row.sale_amount)
            signal["value"] = "true"
        self._currencies[row.transaction_id] = row.sale_currency
        body = {"search": {"transaction_id": call}, "signals": [signal]}
        return HttpRequest(
            "POST",
            self.url,
            (
                ("Authorization", self.secrets["api_token"]),
                ("Content-Type", "application/json"),
            ),
            json.dumps(body, separators=(",", ":")).encode("utf-8"),
            (row.transaction_id,),
        )

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        outcome = self._outcome(request, response, error)
        return dict.fromkeys(request.transaction_ids, outcome)

    def _outcome(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> Outcome:
        if response is None:
            return no_answer(error)
        status = response.status
        if status in (200, 201):
            currencies = {self._currencies.pop(i, "") for i in request.transaction_ids}
            note = "".join(
                f"; revenue sent in {c} as it is (Invoca reads the organisation's currency)"
                for c in sorted(currencies)
                if c
            )
            return Outcome(OutcomeKind.DELIVERED, f"{status} signal recorded{note}")
        errors = _errors(response.body)
        klass = errors.get("class")
        klass = klass if isinstance(klass, str) else ""
        quoted = json.dumps(errors, separators=(",", ":"))[:_QUOTE] if errors else ""
        detail = f"Invoca {status} {klass} {quoted}".strip()
        if status == 401:
            return Outcome(OutcomeKind.AUTH, f"{detail}: the API token was refused")
        if status == 403:
            return Outcome(_FORBIDDEN.get(klass, OutcomeKind.PERMANENT), detail)
        if status == 404:
            return Outcome(
                OutcomeKind.RETRY, f"{detail}: the call may not be recorded yet, trying again"
            )
        if status == 429 or status >= 500:
            retry_after = response.header("retry-after")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            return Outcome(OutcomeKind.RETRY, detail, wait)
        return Outcome(OutcomeKind.PERMANENT, detail)


def _iso_with_offset(created_at: str) -> str:
    """``2026-12-05T08:00:00+00:00`` from a ledger time, whole seconds with the offset
    (ledger times have one fixed width, :func:`pixel_wsgi.clock.iso_utc`)."""
    return f"{created_at[:19]}+00:00"


def _errors(body: bytes) -> dict[str, Any]:
    """The ``errors`` object of an Invoca error body, or an empty one."""
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    errors = value.get("errors") if isinstance(value, dict) else None
    return errors if isinstance(errors, dict) else {}
