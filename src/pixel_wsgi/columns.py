"""The columns of a ledger row: the Transactions API, ``export`` and ``transactions --json``.

One definition for all three, so a file written by ``pixel-wsgi export`` has exactly the
columns the Transactions API serves and the bulk upload reads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .models import Transaction

__all__ = ["COLUMNS", "STATE_COLUMNS", "csv_cells", "select_columns"]

#: Every column, in order (the keys of :meth:`Transaction.as_dict`).
COLUMNS: tuple[str, ...] = (
    "transaction_id",
    "transaction_type",
    "advertiser_id",
    "campaign_id",
    "publisher_id",
    "visit_id",
    "source",
    "reference_id",
    "corrects_transaction_id",
    "original_transaction_id",
    "sale_amount",
    "sale_currency",
    "reason_code",
    "sku_list",
    "quantity_list",
    "external_data",
    "custom_data",
    "payout",
    "payout_currency",
    "reversal_reason",
    "created_at",
    "contested",
)

#: Columns that describe the conversion's state when it was read, not the row's own
#: values (a contest is settled later): never compared or applied on import.
STATE_COLUMNS: frozenset[str] = frozenset({"contested"})


def select_columns(include: Iterable[str] = (), exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The columns to show: ``include`` (in :data:`COLUMNS` order) or all, less ``exclude``.

    :raises ValueError: naming an unknown column.
    """
    include, exclude = list(include), list(exclude)
    unknown = [name for name in (*include, *exclude) if name not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}")
    chosen = [name for name in COLUMNS if not include or name in include]
    return tuple(name for name in chosen if name not in exclude)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        # As Invoca's CSVs: one comma-separated cell for sku_list and quantity_list;
        # a JSON array when splitting (and stripping) the joined text would not give
        # the items back exactly: an item with a comma, a leading "[" or surrounding
        # whitespace.
        items = [str(item) for item in value]
        if any("," in item or item.startswith("[") or item != item.strip() for item in items):
            return json.dumps(items, ensure_ascii=False)
        return ",".join(items)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return str(value)


def csv_cells(row: Transaction, columns: Sequence[str]) -> list[str]:
    """One CSV line's cells: lists comma-joined, custom data as JSON, None as empty."""
    values = row.as_dict()
    return [_cell(values[name]) for name in columns]
