"""Python 3.14's rule for sqlite3 parameters, enforced on every Python the suite runs on.

A sequence of parameters binds only plain ``?`` placeholders: with ``?1`` or ``:name``
Python 3.12.0-3.12.3 warn (an error under the suite's warnings-as-errors, which made a
pixel correction vanish) and 3.14 raises. The SQLite contract tests run with
:func:`strict_binding` so a numbered placeholder fails on 3.10, 3.11 and 3.13 too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

# SQL string literals ('it''s') are skipped: a ':' or '?' inside them is text.
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_NAMED = re.compile(r"\?\d|[:@$][A-Za-z_]")


def check_binding(sql: str, parameters: object) -> None:
    if isinstance(parameters, Mapping):
        return
    named = _NAMED.search(_LITERAL.sub("''", sql))
    if named is not None:
        raise sqlite3.ProgrammingError(
            f"{named.group()!r} is a named placeholder, but a sequence was supplied: {sql}"
        )


class StrictBindingConnection(sqlite3.Connection):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        check_binding(sql, parameters)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        rows = list(parameters)
        for row in rows:
            check_binding(sql, row)
        return super().executemany(sql, rows)

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:
        return super().cursor(factory or StrictBindingCursor)


class StrictBindingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        check_binding(sql, parameters)
        return super().execute(sql, parameters)


@pytest.fixture
def strict_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sqlite3 connection the test opens checks how it binds parameters."""
    connect = sqlite3.connect

    def strict_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", StrictBindingConnection)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", strict_connect)
