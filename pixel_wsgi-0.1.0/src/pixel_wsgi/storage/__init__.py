"""Pluggable storage: pick a backend by URL with :func:`storage_from_url`.

Backends subclass :class:`Storage` and declare the URL schemes they serve;
importing this package registers the built-in ones.
"""

from __future__ import annotations

from .base import LedgerWriter, Storage, storage_from_url
from .postgres import PostgresStorage  # psycopg itself is imported on first use
from .sqlite import SQLiteStorage

__all__ = ["LedgerWriter", "PostgresStorage", "SQLiteStorage", "Storage", "storage_from_url"]
