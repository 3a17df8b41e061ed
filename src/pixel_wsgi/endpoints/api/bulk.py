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

import codecs
import csv
import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...columns import GUARDED_COLUMNS, STATE_COLUMNS, csv_cells, formula_unsafe
from ...errors import ParamError, ReportRefused
from ...ledger.ledger import Ledger
from ...ledger.server_reports import ReportStatus
from ...models import Reason, ServerReport, Source, Transaction
from ...params.sale import (
    DEFAULT_LIMITS,
    MAX_JSON_DEPTH,
    Limits,
    claimed_reference,
    is_personal_key,
    json_nesting_ok,
    parse_sale_params,
    shown_name,
)
from ...params.server_report import FieldError, ReportInvalid, parse_server_report
from ...params.values import Query, parse_positive_id

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
#: Characters of a cell echoed back (longer ones are cut and end in "...").
MAX_SHOWN_CELL_LENGTH = 100
#: Characters of a failure's message (a row breaking many rules names them all).
MAX_MESSAGE_LENGTH = 500
#: The longest line of a file (a quoted cell may hold line breaks: each line counts alone).
MAX_LINE_BYTES = 1024 * 1024
_READ_SIZE = 64 * 1024
_LIST_COLUMNS = ("sku_list", "quantity_list", "sku_list[]", "quantity_list[]")
# Export columns that describe the stored row, not the report: read, never applied.
_LEDGER_COLUMNS = frozenset(
    {
        "transaction_type",
        "advertiser_id",
        "visit_id",
        "source",
        "corrects_transaction_id",
        "original_transaction_id",
        "payout",
        "payout_currency",
        "created_at",
        *STATE_COLUMNS,
    }
)
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
        return cls(row, _redacted(shown), code, message, unmatched, len(cells) - len(shown))

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


def decoded_lines(
    read: Callable[[int], bytes], *, on_read: Callable[[int], None] | None = None
) -> Iterator[str]:
    """A byte stream's lines as text, decoded incrementally (UTF-8, an optional BOM).

    :param read: ``read(size)`` of the stream; an empty result ends it.
    :param on_read: told the size of every chunk read (a progress bar).
    :raises ReportInvalid: for a line longer than :data:`MAX_LINE_BYTES`, before it is
        held whole in memory.
    :raises UnicodeDecodeError: for bytes that are not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    pending: list[str] = []
    pending_size = 0
    while True:
        chunk = read(_READ_SIZE)
        if on_read is not None and chunk:
            on_read(len(chunk))
        text = decoder.decode(chunk, final=not chunk)
        start = 0
        while (end := text.find("\n", start)) >= 0:
            pending.append(text[start : end + 1])
            yield "".join(pending)
            pending, pending_size, start = [], 0, end + 1
        if start < len(text):
            pending.append(text[start:])
            pending_size += len(text) - start
            if pending_size > MAX_LINE_BYTES:
                raise ReportInvalid(
                    [
                        FieldError(
                            None,
                            Reason.VALUE_TOO_LONG,
                            f"a line is longer than {MAX_LINE_BYTES} characters",
                        )
                    ]
                )
        if not chunk:
            break
    if pending:
        yield "".join(pending)


def _redacted(cells: dict[str, str]) -> dict[str, str]:
    return {
        shown_name(key): "[redacted]" if value and _personal_cell(key, value) else _cut(value)
        for key, value in cells.items()
    }


def _cut(text: str) -> str:
    if len(text) <= MAX_SHOWN_CELL_LENGTH:
        return text
    return text[: MAX_SHOWN_CELL_LENGTH - 3] + "..."


def _loads(text: str) -> Any:
    """A cell's JSON; ValueError for nesting that would make ``json`` recurse too deep."""
    if not json_nesting_ok(text):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text)


def _personal_cell(column: str, text: str) -> bool:
    if is_personal_key(column):
        return True
    if column != "custom_data":
        return False
    # A custom_data cell that (wrongly) holds a personal field is redacted whole.
    try:
        custom = _loads(text)
    except ValueError:
        return False
    return isinstance(custom, dict) and any(is_personal_key(str(key)) for key in custom)


def _list_cell(column: str, text: str) -> list[str]:
    if text.startswith("["):
        try:
            items = _loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
            raise ReportInvalid(
                [FieldError(column, Reason.INVALID_FIELD, f"{column} is not a JSON array")]
            )
        return [str(item) for item in items]
    return [item.strip() for item in text.split(",")]


def _report_args(
    cells: dict[str, str],
) -> tuple[Query, int | None, dict[str, str]]:
    """The row as report fields, the ``transaction_id`` it names (export files) and its
    ``custom_data`` cell, kept apart (see :func:`_with_custom_data`)."""
    args: Query = {}
    transaction_id: int | None = None
    custom_data: dict[str, str] = {}
    for column, text in cells.items():
        if not text or column in _LEDGER_COLUMNS:
            continue
        if column in GUARDED_COLUMNS:
            text = formula_unsafe(text)  # an exported "'=x" is the value "=x"
        if column == "transaction_id":
            transaction_id = parse_positive_id(text)
            if transaction_id is None:
                raise ReportInvalid(
                    [
                        FieldError(
                            column,
                            Reason.INVALID_FIELD,
                            "transaction_id must be a positive integer",
                        )
                    ]
                )
        elif column in _LIST_COLUMNS:
            args[column.removesuffix("[]") + "[]"] = _list_cell(column, text)
        elif column == "custom_data":
            try:
                custom = _loads(text)
            except ValueError:
                custom = None
            if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
                raise ReportInvalid(
                    [FieldError(column, Reason.INVALID_FIELD, "custom_data is not a JSON object")]
                )
            custom_data = custom
        else:
            args.setdefault(column, []).append(text)
    return args, transaction_id, custom_data


def _with_custom_data(
    server_report: ServerReport, custom_data: dict[str, str], limits: Limits
) -> ServerReport:
    """The report with the ``custom_data`` cell's entries as its custom data.

    They are checked apart from the report's fields, not mixed into them: the pixel
    keeps any parameter it does not know as custom data, ``affiliate_id=7`` or
    ``reversal_reason=x`` included, and an exported row must restore that as custom
    data, not credit publisher 7 or void the conversion.
    """
    try:
        parsed = parse_sale_params(
            {key: [value] for key, value in custom_data.items()}, limits=limits
        )
    except ParamError as exc:
        raise ReportInvalid([FieldError("custom_data", exc.reason, exc.detail)]) from exc
    for key in custom_data:
        if key not in parsed.custom_data:
            # A sale or personal field (sale_amount, email_address): never custom data.
            raise ReportInvalid(
                [FieldError("custom_data", Reason.INVALID_FIELD, f"custom_data may not hold {key}")]
            )
    report = server_report.report
    for key in report.custom_data:
        if key in parsed.custom_data:
            raise ReportInvalid(
                [
                    FieldError(
                        "custom_data",
                        Reason.DUPLICATE_PARAMETER,
                        f"{key} is both a column and a key of custom_data",
                    )
                ]
            )
    merged = {**parsed.custom_data, **report.custom_data}
    if len(merged) > limits.max_custom_fields:
        raise ReportInvalid(
            [
                FieldError(
                    "custom_data",
                    Reason.TOO_MANY_CUSTOM_FIELDS,
                    f"more than {limits.max_custom_fields} custom fields",
                )
            ]
        )
    with_custom = dataclasses.replace(report, custom_data=merged)
    return dataclasses.replace(server_report, report=with_custom)


def _claimed_reference(cells: dict[str, str], limits: Limits) -> str | None:
    """The conversion a refused row names, for the rejection log, when that name is valid."""
    named = {
        column: [formula_unsafe(cells[column])]
        for column in ("parent_reference_id", "reference_id")
        if cells.get(column)
    }
    return claimed_reference(named, limits)


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
        args, transaction_id, custom_data = _report_args(cells)
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
            server_report = _with_custom_data(server_report, custom_data, limits)
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
            reference_id=_claimed_reference(cells, limits),
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
