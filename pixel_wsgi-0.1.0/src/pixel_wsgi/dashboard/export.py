"""CSV exports: the rows of a page's table, with money as exact decimal strings.

Every table's CSV has the rows the page shows (the same filters and order, but
never cut short). A money column becomes two fields, the amount and its
currency, or one field per currency named like ``sales_USD``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from ..columns import formula_safe
from .reports import Tally, format_money
from .tables import Column
from .views import TableView

__all__ = ["csv_bytes", "table_csv", "totals_csv"]


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends), UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _csv_row(view: TableView[Any], row: Any) -> list[str]:
    cells: list[str] = []
    column: Column[Any]
    for column in view.table.columns:
        for _name, value in column.csv_fields():
            text = value(row)
            # Numbers and amounts are written by the dashboard itself; only text
            # from the ledger is guarded.
            cells.append(text if column.numeric else formula_safe(text))
    cells.extend(value(row) for _name, value in view.table.extra_csv)
    return cells


def table_csv(view: TableView[Any]) -> bytes:
    return csv_bytes(view.table.csv_header(), (_csv_row(view, row) for row in view.rows))


def totals_csv(tally: Tally) -> bytes:
    """The overview's totals: ``metric,currency,value`` rows.

    ``conversions`` counts those that stand, ``reversed`` those voided since; the
    sums are per currency, over the conversions that stand.
    """
    rows = [["conversions", "", str(tally.conversions)], ["reversed", "", str(tally.reversed)]]
    rows += [["sales", code, format_money(tally.sales[code])] for code in sorted(tally.sales)]
    rows += [["payouts", code, format_money(tally.payouts[code])] for code in sorted(tally.payouts)]
    return csv_bytes(["metric", "currency", "value"], rows)
