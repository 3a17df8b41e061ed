"""Table definitions shared by the HTML and the CSV of every view.

A :class:`Table` names its columns once; each column knows its display text
(which the ``q`` filter also searches), its sort key, its CSV fields and,
optionally, a link. Sorting and filtering happen here, on the server, so the
pages need no JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

from .reports import format_money

__all__ = ["Column", "Table", "TableQuery", "money_csv", "money_sort", "optional_sort"]

R = TypeVar("R")

#: The sort direction given by ``dir=``.
ASC = "asc"
DESC = "desc"


def optional_sort(value: Any) -> tuple[Any, ...]:
    """A sort key that puts "nothing" before every value instead of failing to compare."""
    return (0,) if value is None or value == "" else (1, value)


def money_sort(amount: Decimal | None, currency: str) -> tuple[Any, ...]:
    """Amounts compare by value, then by currency; no amount sorts first."""
    return (0,) if amount is None else (1, amount, currency)


def money_text(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else f"{format_money(amount)} {currency}"


def money_csv(amount: Decimal | None) -> str:
    return "" if amount is None else format_money(amount)


@dataclass(frozen=True)
class Column(Generic[R]):
    """One column of a table.

    :param key: the name used in ``sort=`` and, by default, the CSV header.
    :param label: the HTML header.
    :param text: the cell's text in HTML (searched by ``q=``).
    :param sort: the sort key of a row (default: ``text``).
    :param numeric: right-aligned, and sorted descending on the first click.
    :param csv: the CSV fields it becomes, ``(header, value)`` (default: ``key``
        with ``text``); money splits into an exact amount and its currency.
    :param link: a path, below the dashboard's root, that the cell links to.
    :param wide: long free text, wrapped instead of kept on one line.
    """

    key: str
    label: str
    text: Callable[[R], str]
    sort: Callable[[R], Any] | None = None
    numeric: bool = False
    csv: Sequence[tuple[str, Callable[[R], str]]] | None = None
    link: Callable[[R], str | None] | None = None
    wide: bool = False

    def sort_key(self, row: R) -> Any:
        return (self.sort or self.text)(row)

    def csv_fields(self) -> Sequence[tuple[str, Callable[[R], str]]]:
        if self.csv is not None:
            return self.csv
        # "-" is how a page shows "nothing"; a CSV leaves the field empty.
        return ((self.key, lambda row: "" if (text := self.text(row)) == "-" else text),)


@dataclass(frozen=True)
class TableQuery:
    """The ``sort``, ``dir`` and ``q`` a table is shown with (already validated)."""

    sort: str
    descending: bool = False
    q: str = ""


@dataclass(frozen=True)
class Table(Generic[R]):
    """A table's columns, its default order and a name for its CSV file."""

    name: str
    columns: Sequence[Column[R]]
    default_sort: str
    default_descending: bool = False
    caption: str = ""
    #: Extra CSV fields that the HTML does not show (ids, raw timestamps).
    extra_csv: Sequence[tuple[str, Callable[[R], str]]] = field(default_factory=tuple)

    def column(self, key: str) -> Column[R] | None:
        return next((column for column in self.columns if column.key == key), None)

    @property
    def keys(self) -> list[str]:
        return [column.key for column in self.columns]

    def default_query(self) -> TableQuery:
        return TableQuery(self.default_sort, self.default_descending)

    def apply(self, rows: Sequence[R], query: TableQuery) -> list[R]:
        """The rows that match ``query.q``, in ``query``'s order.

        The filter is a case-insensitive substring match on any cell's text.
        The sort is stable, so rows that tie keep their natural order.
        """
        kept = list(rows)
        needle = query.q.casefold()
        if needle:
            kept = [
                row
                for row in kept
                if any(needle in column.text(row).casefold() for column in self.columns)
            ]
        column = self.column(query.sort)
        if column is not None:
            kept.sort(key=column.sort_key, reverse=query.descending)
        return kept

    def csv_header(self) -> list[str]:
        return [name for column in self.columns for name, _ in column.csv_fields()] + [
            name for name, _ in self.extra_csv
        ]

    def csv_row(self, row: R) -> list[str]:
        return [value(row) for column in self.columns for _, value in column.csv_fields()] + [
            value(row) for _, value in self.extra_csv
        ]
