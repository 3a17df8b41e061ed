"""The columns of a ledger row: the Transactions API, ``export`` and ``transactions --json``.

One definition for all three, so a file written by ``pixel-wsgi export`` has exactly the
columns the Transactions API serves and the bulk upload reads back.

Every CSV cell of text that came from outside (a visitor's ``reference_id``, a
``reason_code``, SKUs) is guarded against formula injection with :func:`formula_safe`,
the one guard the dashboard's CSVs use too; the bulk upload undoes it with
:func:`formula_unsafe`, so that export then import changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .models import Transaction

__all__ = [
    "COLUMNS",
    "GUARDED_COLUMNS",
    "STATE_COLUMNS",
    "csv_cells",
    "formula_safe",
    "formula_unsafe",
    "select_columns",
]

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


#: The columns whose CSV cells :func:`csv_cells` guards: all but the numbers, whose
#: leading "-" is a sign (a refund's ``-25.00``), not a formula.
GUARDED_COLUMNS: frozenset[str] = frozenset(COLUMNS) - {
    "transaction_id",
    "advertiser_id",
    "campaign_id",
    "publisher_id",
    "visit_id",
    "corrects_transaction_id",
    "original_transaction_id",
    "sale_amount",
    "quantity_list",
    "payout",
}

# A spreadsheet runs a cell that starts with one of these as a formula (CSV
# injection, OWASP): a reference_id "=HYPERLINK(...)" must stay text. Guarded text
# gets a leading "'", which spreadsheets show as "this is text". Text that already
# starts with quotes before such a character gets one more, so the guard can be undone
# exactly: "'=x" is written "''=x" and read back as "'=x".
_FORMULA_RE = re.compile("'*[=+\\-@\t\r]")


def formula_safe(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet will not run: ``'=SUM(A1)`` for ``=SUM(A1)``."""
    return f"'{text}" if _FORMULA_RE.match(text) else text


def formula_unsafe(cell: str) -> str:
    """The text :func:`formula_safe` guarded: ``formula_unsafe(formula_safe(t)) == t``."""
    return cell[1:] if cell.startswith("'") and _FORMULA_RE.match(cell, 1) else cell


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
    """One CSV line's cells: lists comma-joined, custom data as JSON, None as empty, and
    text guarded with :func:`formula_safe`."""
    values = row.as_dict()
    return [
        formula_safe(_cell(values[name])) if name in GUARDED_COLUMNS else _cell(values[name])
        for name in columns
    ]
