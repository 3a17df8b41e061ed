"""Publisher postbacks: a server-to-server request per ledger row, as TUNE and Everflow fire.

The publisher gives a URL template with macros; each of the publisher's ledger rows
expands it once (its sub ids come from the click that led to the conversion) and one
request carries it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from ...errors import ConfigurationError
from ...models import Transaction, TransactionType
from ..model import (
    SUB_ID_PARAMS,
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
    OutcomeKind,
    TargetKind,
)
from .answers import described, no_answer, retrying
from .base import TargetType, original_id
from .payloads import check_http_url

__all__ = ["MACROS", "METHODS", "Postback", "macro_values"]

#: The macros a template may use, in the order the documentation lists them.
MACROS = (
    "transaction_id",
    "reference_id",
    "sale_amount",
    "sale_currency",
    "payout",
    "campaign_id",
    "publisher_id",
    *SUB_ID_PARAMS,
    "transaction_type",
)
#: How a postback may be sent (``--method``); GET unless told.
METHODS = ("GET", "POST")
_MACRO = re.compile(r"\{([^{}]*)\}")
#: A template's literal text: printable ASCII without spaces (anything else must be
#: percent-encoded already, or the request line could not carry it).
_URL_TEXT = re.compile(r"[!-~]*")
#: TUNE's failure body: ``success=false; err_msg=Invalid Trans. ID #...;``
_SAYS_FAILURE = re.compile(r"(?:^|[\s;&])success\s*=\s*false\b", re.IGNORECASE)
_TUNE_MESSAGE = re.compile(r"err_msg\s*=\s*([^;&]*)", re.IGNORECASE)
#: The JSON fields a failure body explains itself in, first found wins.
_JSON_MESSAGES = ("err_msg", "error", "message")


def _decimal_text(value: Decimal | None) -> str:
    # format(..., "f") never writes an exponent: 1E+2 would reach the publisher as "1E%2B2".
    return "" if value is None else format(value, "f")


def macro_values(item: DeliveryItem, publisher_id: int | None = None) -> dict[str, str]:
    """What each macro stands for in ``item``'s row, not yet encoded ("" when unknown),
    as publisher ``publisher_id`` is told it.

    A row whose credit a contest moved away from the publisher reaches it as the
    reversal of its conversion (its campaign, its click's sub ids, sale and payout 0);
    one whose credit moved to the publisher is its conversion.
    """
    row: Transaction = item.row
    click, campaign_id, payout = item.click, row.campaign_id, row.payout
    kind = row.transaction_type.value
    if item.row.transaction_id == item.original.transaction_id:
        kind = TransactionType.CONVERSION.value
    elif publisher_id is not None and row.publisher_id != publisher_id:
        click, campaign_id = item.original_click, item.original.campaign_id
        payout = Decimal(0) if payout is None else Decimal(0).quantize(payout)
        kind = TransactionType.REVERSAL.value
        sale = row.sale_amount
        row = dataclasses.replace(
            row,
            publisher_id=publisher_id,
            sale_amount=None if sale is None else Decimal(0).quantize(sale),
        )
    sub_ids = click.sub_ids if click is not None else {}
    return {
        "transaction_id": str(row.transaction_id),
        "reference_id": row.reference_id or "",
        "sale_amount": _decimal_text(row.sale_amount),
        "sale_currency": row.sale_currency,
        "payout": _decimal_text(payout),
        "campaign_id": str(campaign_id),
        "publisher_id": str(row.publisher_id),
        **{name: sub_ids.get(name, "") for name in SUB_ID_PARAMS},
        "transaction_type": kind,
    }


def _failure_message(body: bytes) -> str | None:
    """Why a 2xx body says the postback failed (TUNE's ``success=false``, or JSON
    ``{"success": false}``), or None when it does not say so."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict):
            success = document.get("success")
            if success is False or (isinstance(success, str) and success.lower() == "false"):
                found = (str(document[key]) for key in _JSON_MESSAGES if document.get(key))
                return next(found, "success is false")
            return None
    if _SAYS_FAILURE.search(text):
        message = _TUNE_MESSAGE.search(text)
        return message.group(1).strip() if message else "success=false"
    return None


class Postback(TargetType):
    """A request to the publisher's postback URL for each of the publisher's ledger rows.

    Settings: ``url``, a template; ``method``, ``GET`` (the default) or ``POST``. The
    target's own ``publisher_id`` says whose rows it gets (:meth:`concerns`).

    Macros (each value percent-encoded, every reserved character included, UTF-8 for
    the rest; a macro with no value is empty): ``{transaction_id}`` (the ledger row's
    id), ``{reference_id}``, ``{sale_amount}`` (exact decimal text), ``{sale_currency}``,
    ``{payout}``, ``{campaign_id}``, ``{publisher_id}``, ``{sub1}``..``{sub5}`` (from the
    tracking link's query), ``{transaction_type}`` (``conversion``, ``correction`` or
    ``reversal``)::

        https://publisher.example/postback?click={sub1}&amount={sale_amount}&type={transaction_type}

    GET sends the expanded URL as it is. POST sends the expanded query string, byte for
    byte, as an ``application/x-www-form-urlencoded`` body to the expanded URL without
    its query (scheme, host, path): the publisher's form parser reads the same fields a
    GET would carry. A template without a query posts an empty body.

    One request per row (``batch_limit`` 1), the TUNE/Everflow convention; the row's
    ``{transaction_id}`` is the publisher's key to count it once.

    Answers: a 2xx whose body says failure (TUNE's ``success=false; err_msg=...``, in any
    case, or JSON ``{"success": false}``) is permanent, unless it says "duplicate" (TUNE's
    "Duplicate conversion"), which counts as delivered; any other 2xx is delivered.
    408, 429 and 5xx are tried again (``Retry-After`` honoured), as is no answer at all;
    401 and 403 pause the target (auth); 410 and every other 4xx are permanent. A 3xx is
    permanent and not followed: the publisher's URL moved, and an operator should set
    the new one (its ``Location`` is in the detail).

    The attempt log keeps the whole URL, sub ids included: they are the publisher's own
    tracking data, not personal data, and a postback has no secret.
    """

    kind: ClassVar[TargetKind] = TargetKind.POSTBACK
    batch_limit: ClassVar[int] = 1
    required_settings: ClassVar[frozenset[str]] = frozenset({"url"})
    optional_settings: ClassVar[frozenset[str]] = frozenset({"method"})

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        template = settings["url"]
        unknown = [name for name in _MACRO.findall(template) if name not in MACROS]
        if unknown:
            raise ConfigurationError(
                f"the url of a postback target has an unknown macro {{{unknown[0]}}}; "
                f"known: {', '.join(f'{{{name}}}' for name in MACROS)}"
            )
        literal = _MACRO.sub("", template)
        if "{" in literal or "}" in literal:
            raise ConfigurationError(
                f"the url of a postback target has an unmatched brace: {template!r}"
            )
        if not _URL_TEXT.fullmatch(literal):
            raise ConfigurationError(
                "the url of a postback target may hold only printable ASCII without spaces "
                f"(percent-encode the rest): {template!r}"
            )
        check_http_url(cls.kind, "url", template)
        if "{" in urlsplit(template).netloc:
            raise ConfigurationError(
                f"the url of a postback target takes macros in its path and query only, "
                f"not in its host: {template!r}"
            )
        method = settings.get("method", "GET")
        if method.upper() not in METHODS:
            raise ConfigurationError(
                f"the method of a postback target is GET or POST, got {method!r}"
            )

    follows_credit: ClassVar[bool] = True

    def concerns(self, row: Transaction) -> bool:
        """Only the rows of the target's publisher."""
        return row.publisher_id == self.target.publisher_id

    def placements(
        self,
        rows: Sequence[Transaction],
        corrected: Mapping[int, Transaction],
        origins: Mapping[int, int],
    ) -> list[tuple[int, int]]:
        """The publisher's rows, following the credit: a row a contest credited to the
        publisher, correcting another publisher's, starts a chain of its own (its
        conversion); a row that moved the credit away from it is queued in its chain
        (sent as a reversal, see :func:`macro_values`)."""
        mine = self.target.publisher_id
        known = dict(origins)
        placed = []
        for row in rows:
            before = corrected.get(row.corrects_transaction_id or 0)
            origin: int | None = None
            if before is None:
                origin = original_id(row) if row.publisher_id == mine else None
            elif row.publisher_id == mine:
                if before.publisher_id == mine:
                    origin = known.get(before.transaction_id, original_id(row))
                else:  # the credit came to this publisher: its conversion
                    origin = row.transaction_id
            elif before.publisher_id == mine:  # the credit went away: its reversal
                origin = known.get(before.transaction_id, original_id(row))
            if origin is not None:
                placed.append((row.transaction_id, origin))
                known[row.transaction_id] = origin
        return placed

    def expand(self, item: DeliveryItem) -> str:
        """The template with every macro replaced by its percent-encoded value."""
        values = macro_values(item, self.target.publisher_id)
        return _MACRO.sub(lambda m: quote(values[m.group(1)], safe=""), self.settings["url"])

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        post = self.settings.get("method", "GET").upper() == "POST"
        made = []
        for item in items:
            url = self.expand(item)
            ids = (item.row.transaction_id,)
            if post:
                parts = urlsplit(url)
                bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
                form = (("content-type", "application/x-www-form-urlencoded"),)
                made.append(HttpRequest("POST", bare, form, parts.query.encode("ascii"), ids))
            else:
                made.append(HttpRequest("GET", url, (), b"", ids))
        return made

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        return dict.fromkeys(request.transaction_ids, self._outcome(response, error))

    @staticmethod
    def _outcome(response: HttpResponse | None, error: str | None) -> Outcome:
        if response is None:
            return no_answer(error)
        status = response.status
        if 200 <= status < 300:
            failure = _failure_message(response.body)
            if failure is None:
                return Outcome(OutcomeKind.DELIVERED, f"HTTP {status}")
            detail = f"HTTP {status} saying failure: {failure}"[:300]
            if "duplicate" in failure.lower() or b"duplicate" in response.body.lower():
                return Outcome(OutcomeKind.DUPLICATE, detail)
            return Outcome(OutcomeKind.PERMANENT, detail)
        if status in (408, 429) or status >= 500:
            return retrying(response)
        if status in (401, 403):
            return Outcome(OutcomeKind.AUTH, described(response))
        if 300 <= status < 400:
            moved = response.header("location") or "nowhere"
            return Outcome(
                OutcomeKind.PERMANENT, f"HTTP {status}: the postback URL moved to {moved}"[:300]
            )
        if status >= 400:
            return Outcome(OutcomeKind.PERMANENT, described(response))
        return retrying(response)
