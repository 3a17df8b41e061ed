"""How ledger rows map to and from SQL column values, shared by the SQL backends.

SQLite and PostgreSQL store the same text in the same columns, so that both
backends pass one contract test-suite and read back byte-identical rows: amounts
as decimal strings, lists and mappings as compact JSON, timestamps as ISO UTC
text. What is here is the part of that mapping that does not depend on the
dialect: the column lists, the values a row is written with, and the model built
from a row read back.

The ``SELECT_*`` statements here stop before any parameter: the SQL core
(:mod:`pixel_wsgi.storage.sql`) appends its ``WHERE`` clauses, with ``?``
placeholders that the PostgreSQL dialect translates.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from ..models import (
    Advertiser,
    Attribution,
    Campaign,
    ClickContext,
    ConversionContext,
    IdempotencyRecord,
    PayoutKind,
    PayoutRule,
    RejectionDraft,
    Transaction,
    TransactionDraft,
    TransactionType,
    click_context_from_json,
    click_context_json,
    conversion_context_json,
)

__all__ = [
    "CREDENTIAL_COLUMNS",
    "IDEMPOTENCY_COLUMNS",
    "INSERTED_REJECTION_COLUMNS",
    "INSERTED_TRANSACTION_COLUMNS",
    "INSERTED_WITH_CONTEXT_COLUMNS",
    "REJECTION_COLUMNS",
    "SELECT_ADVERTISERS",
    "SELECT_ATTRIBUTION",
    "SELECT_CAMPAIGNS",
    "SELECT_LINKS",
    "TRANSACTION_COLUMNS",
    "advertiser_from_row",
    "attribution_from_row",
    "campaign_from_row",
    "click_data",
    "click_from_data",
    "conversion_data",
    "conversion_from_data",
    "filters",
    "idempotency_values",
    "json_ints",
    "json_object",
    "json_strings",
    "payout_rule",
    "payout_values",
    "rejection_values",
    "transaction_from_row",
    "transaction_type_condition",
    "transaction_values",
    "transaction_values_with_context",
]

_EMPTY_LIST = "[]"
_EMPTY_OBJECT = "{}"


# -- JSON columns ----------------------------------------------------------------


def json_object(value: dict[str, str]) -> str:
    """A mapping as compact JSON text (``custom_data``, personal data)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else _EMPTY_OBJECT


def json_strings(items: tuple[str, ...]) -> str:
    """A list of strings as compact JSON text: the same text as ``json.dumps``."""
    # The SKU list of every conversion: json.dumps() costs ~5 µs a call here,
    # joining C-escaped strings a tenth of that, for the same text.
    return "[" + ",".join(map(encode_basestring, items)) + "]" if items else _EMPTY_LIST


def json_ints(items: tuple[int, ...]) -> str:
    """A list of whole numbers as compact JSON text."""
    return "[" + ",".join(map(str, items)) + "]" if items else _EMPTY_LIST


# -- what delivery needs of a click and of a conversion's request ---------------------


def click_data(click: ClickContext | None) -> str | None:
    """A visit's ``click_data``: the click's context as compact JSON (its empty members
    left out), or NULL for a link that carried nothing."""
    if click is None or not (click.sub_ids or click.click_ids):
        return None
    return json.dumps(click_context_json(click), ensure_ascii=False, separators=(",", ":"))


def click_from_data(text: str | None) -> ClickContext | None:
    """The inverse of :func:`click_data` (what the store holds is trusted)."""
    return None if text is None else click_context_from_json(json.loads(text))


def conversion_data(context: ConversionContext | None) -> str | None:
    """A ledger row's ``delivery_context``: the conversion's request context as compact
    JSON (its empty members left out), or NULL."""
    if context is None:
        return None
    data = conversion_context_json(context)
    if not data:
        return None
    # Text members only: json.dumps()'s text for a fifth of its cost (a pixel hit's).
    return (
        "{"
        + ",".join([f'"{name}":{encode_basestring(value)}' for name, value in data.items()])
        + "}"
    )


def conversion_from_data(text: str | None) -> ConversionContext | None:
    """The inverse of :func:`conversion_data`."""
    return None if text is None else ConversionContext(**json.loads(text))


# -- transactions ----------------------------------------------------------------

#: What :func:`transaction_from_row` reads, in its order. A conversion's first row has no
#: ``original_transaction_id`` stored: it is its own original.
# Whether another browser claims the row's reference_id and no server report has
# decided yet (read from the unaliased ``transactions`` of the enclosing SELECT).
_CONTESTED = (
    "EXISTS (SELECT 1 FROM reference_claims k WHERE k.advertiser_id ="
    " transactions.advertiser_id AND k.reference_id = transactions.reference_id"
    " AND k.resolution IS NULL)"
)

TRANSACTION_COLUMNS = (
    "id, advertiser_id, campaign_id, publisher_id, visit_id, source, reference_id, "
    "corrects_transaction_id, COALESCE(original_transaction_id, id), sale_amount, "
    "sale_currency, reason_code, sku_list, quantity_list, external_data, custom_data, "
    f"payout, payout_currency, created_at, reversal_reason, {_CONTESTED}"
)

#: The columns :func:`transaction_values` gives values for, in its order.
INSERTED_TRANSACTION_COLUMNS = (
    "advertiser_id, campaign_id, publisher_id, visit_id, source, reference_id,"
    " corrects_transaction_id, original_transaction_id, sale_amount, sale_currency,"
    " reason_code, sku_list, quantity_list, external_data, custom_data, payout,"
    " payout_currency, fingerprint, created_at, reversal_reason"
)
#: The same and ``delivery_context``: :func:`transaction_values_with_context`'s. Only a
#: conversion whose advertiser keeps request contexts has one; SQLite leaves the column
#: out of the others' INSERT (see :mod:`pixel_wsgi.storage.sqlite`).
INSERTED_WITH_CONTEXT_COLUMNS = f"{INSERTED_TRANSACTION_COLUMNS}, delivery_context"


def transaction_values(draft: TransactionDraft) -> tuple[Any, ...]:
    """The values of :data:`INSERTED_TRANSACTION_COLUMNS` for a new row."""
    return (
        draft.advertiser_id,
        draft.campaign_id,
        draft.publisher_id,
        draft.visit_id,
        draft.source,
        draft.reference_id,
        draft.corrects_transaction_id,
        draft.original_transaction_id,
        None if draft.sale_amount is None else str(draft.sale_amount),
        draft.sale_currency,
        draft.reason_code,
        json_strings(draft.sku_list),
        json_ints(draft.quantity_list),
        draft.external_data,
        json_object(draft.custom_data),
        str(draft.payout),
        draft.payout_currency,
        draft.fingerprint,
        draft.created_at,
        draft.reversal_reason,
    )


def transaction_values_with_context(draft: TransactionDraft) -> tuple[Any, ...]:
    """The values of :data:`INSERTED_WITH_CONTEXT_COLUMNS` for a new row."""
    return (*transaction_values(draft), conversion_data(draft.conversion))


def transaction_from_row(row: tuple[Any, ...]) -> Transaction:
    """A row of :data:`TRANSACTION_COLUMNS` as a :class:`~pixel_wsgi.models.Transaction`."""
    return Transaction(
        transaction_id=row[0],
        advertiser_id=row[1],
        campaign_id=row[2],
        publisher_id=row[3],
        visit_id=row[4],
        source=row[5],
        reference_id=row[6],
        corrects_transaction_id=row[7],
        original_transaction_id=row[8],
        sale_amount=None if row[9] is None else Decimal(row[9]),
        sale_currency=row[10],
        reason_code=row[11],
        sku_list=tuple(json.loads(row[12])),
        quantity_list=tuple(json.loads(row[13])),
        external_data=row[14],
        custom_data=json.loads(row[15]),
        payout=Decimal(row[16]),
        payout_currency=row[17],
        created_at=row[18],
        reversal_reason=row[19],
        contested=bool(row[20]),
    )


# Which rows a TransactionType names, as a condition on the transactions table.
_TYPE_CONDITIONS = {
    TransactionType.CONVERSION: "corrects_transaction_id IS NULL",
    TransactionType.CORRECTION: "corrects_transaction_id IS NOT NULL AND reversal_reason IS NULL",
    TransactionType.REVERSAL: "reversal_reason IS NOT NULL",
}


def transaction_type_condition(transaction_type: TransactionType | None) -> str:
    """``" AND ..."`` selecting the rows of a :class:`~pixel_wsgi.models.TransactionType`
    (empty for None)."""
    return "" if transaction_type is None else f" AND {_TYPE_CONDITIONS[transaction_type]}"


def filters(*conditions: tuple[str, Any], prefix: str = " AND ") -> tuple[str, tuple[Any, ...]]:
    """The optional filters of a read as SQL: each ``(condition, value)`` whose value is
    not None, the condition holding one ``?``.

    :param prefix: what precedes the first condition (``" WHERE "`` when it starts the
        clause); the others are joined with ``AND``.
    :returns: the conditions (empty when none) and their parameters in their order.
    """
    used = [(sql, value) for sql, value in conditions if value is not None]
    if not used:
        return "", ()
    return prefix + " AND ".join(sql for sql, _ in used), tuple(value for _, value in used)


# -- campaigns, advertisers, links -------------------------------------------------

SELECT_CAMPAIGNS = (
    "SELECT id, advertiser_id, name, payout_kind, payout_value, payout_currency,"
    " reason_codes, created_at, daily_cap FROM campaigns"
)
SELECT_ADVERTISERS = (
    "SELECT id, name, created_at, require_signed_pixels, keeps_conversion_context FROM advertisers"
)
#: A row of it is a :class:`~pixel_wsgi.models.Link` as it is: ``Link(*row)``.
SELECT_LINKS = (
    "SELECT l.id, l.campaign_id, l.publisher_id, c.advertiser_id, l.destination,"
    " l.created_at FROM links l JOIN campaigns c ON c.id = l.campaign_id"
)
#: What :func:`attribution_from_row` reads: a visit's link and campaign (``WHERE v.id = ...``).
SELECT_ATTRIBUTION = """
SELECT c.advertiser_id, l.campaign_id, l.publisher_id,
       c.payout_kind, c.payout_value, c.payout_currency, c.reason_codes, c.daily_cap,
       a.keeps_conversion_context
FROM visits v
JOIN links l ON l.id = v.link_id
JOIN campaigns c ON c.id = l.campaign_id
JOIN advertisers a ON a.id = c.advertiser_id
"""


# Campaigns are few and their rules small: parse each stored rule once.
@functools.lru_cache(maxsize=1024)
def payout_rule(kind: str, value: str, currency: str, reason_codes: str) -> PayoutRule:
    """A campaign's stored payout columns as a rule: the inverse of :func:`payout_values`."""
    return PayoutRule(
        kind=PayoutKind(kind),
        value=Decimal(value),
        currency=currency,
        reason_codes=tuple(json.loads(reason_codes)),
    )


def payout_values(rule: PayoutRule) -> tuple[str, str, str, str]:
    """``payout_kind``, ``payout_value``, ``payout_currency`` and ``reason_codes``."""
    return (rule.kind.value, str(rule.value), rule.currency, json.dumps(list(rule.reason_codes)))


def campaign_from_row(row: tuple[Any, ...]) -> Campaign:
    """A row of :data:`SELECT_CAMPAIGNS` as a campaign."""
    return Campaign(row[0], row[1], row[2], payout_rule(*row[3:7]), row[7], row[8])


def advertiser_from_row(row: tuple[Any, ...]) -> Advertiser:
    """A row of :data:`SELECT_ADVERTISERS` as an advertiser."""
    return Advertiser(row[0], row[1], row[2], bool(row[3]), bool(row[4]))


def attribution_from_row(row: tuple[Any, ...]) -> Attribution:
    """A row of :data:`SELECT_ATTRIBUTION` as an attribution."""
    return Attribution(
        advertiser_id=row[0],
        campaign_id=row[1],
        publisher_id=row[2],
        payout=payout_rule(row[3], row[4], row[5], row[6]),
        daily_cap=row[7],
        keeps_conversion_context=bool(row[8]),
    )


# -- rejections, credentials, idempotency keys ---------------------------------------

#: A row of these is a :class:`~pixel_wsgi.models.Rejection` as it is.
REJECTION_COLUMNS = (
    "id, advertiser_id, source, reason, detail, visit_id, reference_id, params, created_at"
)
#: The columns :func:`rejection_values` gives values for, in its order.
INSERTED_REJECTION_COLUMNS = (
    "advertiser_id, source, reason, detail, visit_id, reference_id, params, created_at"
)


def rejection_values(draft: RejectionDraft) -> tuple[Any, ...]:
    """The values of :data:`INSERTED_REJECTION_COLUMNS` for a new entry."""
    return (
        draft.advertiser_id,
        draft.source,
        draft.reason.value,
        draft.detail,
        draft.visit_id,
        draft.reference_id,
        draft.params,
        draft.created_at,
    )


#: A row of these is an :class:`~pixel_wsgi.models.ApiCredential` as it is.
CREDENTIAL_COLUMNS = "id, advertiser_id, label, secret_hash, created_at, revoked_at"
#: A row of these is an :class:`~pixel_wsgi.models.IdempotencyRecord` as it is;
#: :func:`idempotency_values` gives them for a new one.
IDEMPOTENCY_COLUMNS = "advertiser_id, key, request_hash, status, body, created_at"


def idempotency_values(record: IdempotencyRecord) -> tuple[Any, ...]:
    """The values of :data:`IDEMPOTENCY_COLUMNS` for a new record."""
    return (
        record.advertiser_id,
        record.key,
        record.request_hash,
        record.status,
        record.body,
        record.created_at,
    )


#: The index that counts a campaign's conversions of the day exactly. It exists only
#: while some campaign has a daily cap: every index costs each pixel's INSERT some
#: microseconds, which sites without caps should not pay.
CAP_INDEX_DDL = (
    "CREATE INDEX IF NOT EXISTS transactions_campaign_created"
    " ON transactions (campaign_id, created_at) WHERE corrects_transaction_id IS NULL"
)
DROP_CAP_INDEX_DDL = "DROP INDEX IF EXISTS transactions_campaign_created"
#: The indexes that bound an advertiser's reads by date (the dashboard's pages, the
#: Transactions API's created_from/created_before). Not in the migrations: each costs
#: every pixel's INSERT (+13% of a pixel hit's time, measured), which a site without
#: a dashboard should not pay. :meth:`Storage.index_dates` adds them.
DATE_INDEXES_DDL = (
    "CREATE INDEX IF NOT EXISTS transactions_advertiser_created"
    " ON transactions (advertiser_id, created_at)",
    "CREATE INDEX IF NOT EXISTS rejections_advertiser_created"
    " ON rejections (advertiser_id, created_at)",
)
ANY_CAPPED_CAMPAIGN = "SELECT 1 FROM campaigns WHERE daily_cap IS NOT NULL LIMIT 1"
