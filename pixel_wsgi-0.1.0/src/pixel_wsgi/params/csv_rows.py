"""A bulk upload's CSV rows as report fields: pure parsing, no ledger, no WSGI.

A row's cells are the API's fields, or the Transactions API's columns when the file
came from ``pixel-wsgi export`` (see :mod:`pixel_wsgi.endpoints.api.bulk`, which
applies them). Files are read line by line, so any size is parsed in flat memory.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

from ..columns import GUARDED_COLUMNS, STATE_COLUMNS, formula_unsafe
from ..errors import ParamError
from ..models import Reason, ServerReport
from .sale import (
    MAX_JSON_DEPTH,
    Limits,
    claimed_reference,
    is_personal_key,
    json_nesting_ok,
    parse_sale_params,
    shown_name,
)
from .server_report import FieldError, ReportInvalid
from .values import Query, parse_positive_id

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_SHOWN_CELL_LENGTH",
    "claimed_row_reference",
    "decoded_lines",
    "redacted_cells",
    "row_fields",
    "with_custom_data",
]

#: Characters of a cell echoed back (longer ones are cut and end in "...").
MAX_SHOWN_CELL_LENGTH = 100

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


def redacted_cells(cells: dict[str, str]) -> dict[str, str]:
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


def row_fields(
    cells: dict[str, str],
) -> tuple[Query, int | None, dict[str, str]]:
    """The row as report fields, the ``transaction_id`` it names (export files) and its
    ``custom_data`` cell, kept apart (see :func:`with_custom_data`)."""
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


def with_custom_data(
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


def claimed_row_reference(cells: dict[str, str], limits: Limits) -> str | None:
    """The conversion a refused row names, for the rejection log, when that name is valid."""
    named = {
        column: [formula_unsafe(cells[column])]
        for column in ("parent_reference_id", "reference_id")
        if cells.get(column)
    }
    return claimed_reference(named, limits)
