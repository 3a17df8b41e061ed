"""Bulk CSV upload: many server-side reports in one file, each applied on its own.

The columns are the API's fields (``reference_id``, ``sale_amount``, ``sku_list`` and
``quantity_list`` comma-separated within a cell, ``advertiser_campaign_id``,
``affiliate_id``, ...). A file written by ``pixel-wsgi export`` (the Transactions API's
columns) reads back too: ``campaign_id``/``publisher_id`` credit a new conversion,
``custom_data`` is a JSON object, and a row that names an existing ``transaction_id`` of
the advertiser must match it (it is unchanged) because ledger rows never change. A text
cell that the export guarded against formula injection (``'=x``) is read as the value it
guards (``=x``).

Rows are read one at a time from any iterable of lines, so a file of any size is
processed in flat memory; each row is its own atomic, idempotent report, so a file can
be uploaded again after a failure and only the missing rows take effect.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...columns import STATE_COLUMNS, csv_cells
from ...errors import ReportRefused
from ...ledger.ledger import Ledger
from ...ledger.server_reports import ReportStatus
from ...models import Reason, Source, Transaction
from ...params.csv_rows import (
    MAX_LINE_BYTES,
    MAX_SHOWN_CELL_LENGTH,
    claimed_row_reference,
    decoded_lines,
    redacted_cells,
    row_fields,
    with_custom_data,
)
from ...params.sale import DEFAULT_LIMITS, Limits
from ...params.server_report import FieldError, ReportInvalid, parse_server_report

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_LISTED_FAILURES",
    "MAX_MESSAGE_LENGTH",
    "MAX_SHOWN_CELLS",
    "MAX_SHOWN_CELL_LENGTH",
    "ImportSummary",
    "RowFailure",
    "decoded_lines",
    "import_csv",
]

#: Failures listed in a summary; the rest are only counted.
MAX_LISTED_FAILURES = 100
#: Cells of a failed row echoed back in its ``content``; the rest are only counted.
MAX_SHOWN_CELLS = 20
#: Characters of a failure's message (a row breaking many rules names them all).
MAX_MESSAGE_LENGTH = 500
# Reasons that mean "nothing to tie this report to", counted apart from failures.
_UNMATCHED = frozenset(
    {Reason.UNKNOWN_PARENT_REFERENCE, Reason.NO_ATTRIBUTION, Reason.UNKNOWN_CAMPAIGN}
)


@dataclass(frozen=True, slots=True)
class RowFailure:
    """A row that did not take effect: its row number in the file (the header is
    row 1), its cells (personal data redacted) and why.

    What a failure echoes back is bounded, so that a file of wide, failing rows cannot
    make the summary many times larger than itself: at most :data:`MAX_SHOWN_CELLS`
    cells in ``content`` (``cells_not_shown`` counts the rest), each cut to
    :data:`MAX_SHOWN_CELL_LENGTH` characters, and a message cut to
    :data:`MAX_MESSAGE_LENGTH`.
    """

    row: int
    content: dict[str, str]
    code: str
    message: str
    unmatched: bool = False
    cells_not_shown: int = 0

    @classmethod
    def of(
        cls, row: int, cells: dict[str, str], code: str, message: str, unmatched: bool = False
    ) -> RowFailure:
        """The failure of a row with these cells, bounded and redacted."""
        shown = dict(itertools.islice(cells.items(), MAX_SHOWN_CELLS))
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
        return cls(row, redacted_cells(shown), code, message, unmatched, len(cells) - len(shown))

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "content": self.content,
            "cells_not_shown": self.cells_not_shown,
            "code": self.code,
            "message": self.message,
            "unmatched": self.unmatched,
        }


@dataclass(slots=True)
class ImportSummary:
    """What a bulk upload did, row by row, counted."""

    rows: int = 0
    created: int = 0
    corrected: int = 0
    unchanged: int = 0
    unmatched: int = 0
    failed: int = 0
    failures: list[RowFailure] = field(default_factory=list)
    failures_not_listed: int = 0

    @property
    def processed(self) -> int:
        """Rows that took effect or already had: created, corrected or unchanged."""
        return self.created + self.corrected + self.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "processed": self.processed,
            "created": self.created,
            "corrected": self.corrected,
            "unchanged": self.unchanged,
            "unmatched": self.unmatched,
            "failed": self.failed,
            "failures": [failure.as_dict() for failure in self.failures],
            "failures_not_listed": self.failures_not_listed,
        }

    def _fail(self, failure: RowFailure) -> None:
        if failure.unmatched:
            self.unmatched += 1
        else:
            self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append(failure)
        else:
            self.failures_not_listed += 1


def _same_values(stored: Transaction, cells: dict[str, str]) -> bool:
    """Whether an exported row's cells are exactly the stored row's."""
    stored_columns = stored.as_dict()
    columns = [c for c in cells if c in stored_columns and c not in STATE_COLUMNS]
    return csv_cells(stored, columns) == [cells[column] for column in columns]


def import_csv(
    ledger: Ledger,
    advertiser_id: int,
    lines: Iterable[str],
    *,
    source: Source = Source.CSV_UPLOAD,
    default_currency: str = "USD",
    limits: Limits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Apply every row of a CSV file as a server-side report of ``advertiser_id``.

    :param lines: the file's text lines (an open text file, or lines decoded on the fly).
    :param progress: called after each row with the row number.
    :raises ReportInvalid: when the header row is missing or repeats a column.
    :raises ~pixel_wsgi.errors.StorageError: when the store fails; the rows before it
        are applied, so the same file can simply be uploaded again.
    """
    reader = csv.reader(lines, strict=True)
    summary = ImportSummary()
    try:
        header = next(reader)
    except StopIteration:
        raise ReportInvalid(
            [FieldError(None, Reason.MISSING_FIELD, "the file has no header row")]
        ) from None
    except csv.Error as exc:
        raise ReportInvalid(
            [FieldError(None, Reason.INVALID_FIELD, f"bad CSV header: {exc}")]
        ) from exc
    header = [name.strip().lstrip("\ufeff") for name in header]
    if len(set(header)) != len(header):
        raise ReportInvalid(
            [FieldError(None, Reason.DUPLICATE_PARAMETER, "the header repeats a column")]
        )
    for row_number, cells in _numbered(reader, header, summary):
        summary.rows += 1
        _import_row(
            ledger, advertiser_id, row_number, cells, summary, source, default_currency, limits
        )
        if progress is not None:
            progress(row_number)
    return summary


def _numbered(
    reader: Iterator[list[str]], header: list[str], summary: ImportSummary
) -> Iterator[tuple[int, dict[str, str]]]:
    row_number = 1
    while True:
        row_number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            summary.rows += 1
            summary._fail(
                RowFailure.of(row_number, {}, Reason.INVALID_FIELD.value, f"bad CSV: {exc}")
            )
            continue
        if not any(row):
            continue  # a blank line is no report (but still a row of the file)
        if len(row) != len(header):
            summary.rows += 1
            summary._fail(
                RowFailure.of(
                    row_number,
                    dict(zip(header, row, strict=False)),
                    Reason.INVALID_FIELD.value,
                    f"the row has {len(row)} cells, the header {len(header)}",
                )
            )
            continue
        yield row_number, dict(zip(header, row, strict=True))


def _import_row(
    ledger: Ledger,
    advertiser_id: int,
    row_number: int,
    cells: dict[str, str],
    summary: ImportSummary,
    source: Source,
    default_currency: str,
    limits: Limits,
) -> None:
    try:
        args, transaction_id, custom_data = row_fields(cells)
        if transaction_id is not None:
            stored = next(
                ledger.storage.transactions(
                    advertiser_id=advertiser_id, transaction_id=transaction_id
                ),
                None,
            )
            if stored is not None:
                if _same_values(stored, cells):
                    summary.unchanged += 1
                    return
                refused = ReportRefused(
                    Reason.IMMUTABLE_TRANSACTION,
                    f"transaction {transaction_id} exists with other values; ledger rows"
                    " never change (leave transaction_id out to report a correction)",
                    field="transaction_id",
                )
                ledger.reject(
                    advertiser_id=advertiser_id,
                    source=source,
                    reason=refused.reason,
                    detail=f"row {row_number}: {refused.detail}",
                    reference_id=stored.reference_id,
                )
                raise refused
        server_report = parse_server_report(args, default_currency=default_currency, limits=limits)
        if custom_data:
            server_report = with_custom_data(server_report, custom_data, limits)
        # A failing store stops the upload (the client sends the file again)
        # rather than spooling a file's worth of rows: a CSV upload is never spooled.
        result = ledger.report(advertiser_id, server_report, source=source)
    except ReportInvalid as exc:
        first = exc.errors[0]
        ledger.reject(
            advertiser_id=advertiser_id,
            source=source,
            reason=first.reason,
            detail=f"row {row_number}: {exc}"[:500],
            reference_id=claimed_row_reference(cells, limits),
        )
        summary._fail(RowFailure.of(row_number, cells, first.reason.value, str(exc)))
        return
    except ReportRefused as exc:
        summary._fail(
            RowFailure.of(
                row_number,
                cells,
                exc.reason.value,
                exc.detail,
                unmatched=exc.reason in _UNMATCHED,
            )
        )
        return
    if result.status is ReportStatus.CREATED:
        summary.created += 1
    elif result.status is ReportStatus.CORRECTED:
        summary.corrected += 1
    else:
        summary.unchanged += 1
