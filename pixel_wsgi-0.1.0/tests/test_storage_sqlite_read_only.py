"""SQLite opened read-only: by request (the CLI's reads) or as a fallback (the application
cannot write the file or its directory; tests/test_faults_permissions.py runs that as
another user)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pixel_wsgi import SQLiteStorage, StorageError
from pixel_wsgi.storage import sqlite as sqlite_module

from .wsgi_calls import seed_campaign


def beside(db: Path) -> list[str]:
    return sorted(path.name for path in db.parent.iterdir())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "pixel.db"
    storage = SQLiteStorage(path)
    seed_campaign(storage)
    storage.close()
    assert beside(path) == ["pixel.db"]
    return path


@pytest.fixture
def reader(db: Path) -> Iterator[SQLiteStorage]:
    storage = SQLiteStorage(db, read_only=True)
    yield storage
    storage.close()


def test_reads_create_nothing_beside_the_file(db: Path, reader: SQLiteStorage) -> None:
    assert [a.name for a in reader.advertisers()] == ["Acme"]
    assert reader.pending_migrations() == []
    assert beside(db) == ["pixel.db"]


def test_writes_fail_as_on_a_read_only_store(db: Path, reader: SQLiteStorage) -> None:
    before = db.read_bytes()
    with pytest.raises(StorageError):
        reader.add_advertiser("Other")
    with pytest.raises(StorageError):
        reader.check(writable=True)
    reader.migrate()  # nothing pending: nothing to write
    assert db.read_bytes() == before


def test_a_missing_file_is_never_created(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "missing.db", read_only=True)
    with pytest.raises(StorageError, match=f"no SQLite database at {tmp_path / 'missing.db'}"):
        storage.advertisers()
    assert list(tmp_path.iterdir()) == []


def test_a_writer_that_opens_the_file_later_is_seen(db: Path, reader: SQLiteStorage) -> None:
    """``immutable`` is right only while no -wal file exists: once a writer has one, the
    reader moves to ``mode=ro`` on the writer's index and sees its commits."""
    assert [a.name for a in reader.advertisers()] == ["Acme"]
    writer = SQLiteStorage(db)
    try:
        writer.add_advertiser("Beta")
        assert "pixel.db-wal" in beside(db)
        assert [a.name for a in reader.advertisers()] == ["Acme", "Beta"]
        writer.add_advertiser("Gamma")
        assert [a.name for a in reader.advertisers()] == ["Acme", "Beta", "Gamma"]
    finally:
        writer.close()


def test_a_schema_behind_the_code_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    storage = SQLiteStorage(empty, read_only=True)
    try:
        assert storage.pending_migrations()[0].startswith("0001_")
    finally:
        storage.close()


class Unwritable:
    """Makes the writable open of one file fail, as for a user who may not create its
    -shm index (root cannot be refused by permissions)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
        self.refusing = True
        real_connect = sqlite3.connect

        def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if self.refusing and not kwargs.get("uri") and Path(database) == db:
                raise sqlite3.OperationalError("attempt to write a readonly database")
            return real_connect(database, *args, **kwargs)

        monkeypatch.setattr(sqlite_module.sqlite3, "connect", connect)
        monkeypatch.setattr(SQLiteStorage, "_readable_not_writable", lambda storage: self.refusing)


def test_an_unwritable_file_is_read_and_written_again_once_fixed(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unwritable = Unwritable(monkeypatch, db)
    storage = SQLiteStorage(db)
    try:
        [link] = storage.links()  # read through the read-only fallback
        with pytest.raises(StorageError):
            storage.add_publisher("Blog 2")
        assert beside(db) == ["pixel.db"]
        unwritable.refusing = False  # the operator fixes the permissions
        with pytest.raises(StorageError):
            storage.add_publisher("Blog 2")  # not before READ_ONLY_RETRY seconds
        later = time.monotonic() + sqlite_module.READ_ONLY_RETRY
        monkeypatch.setattr(sqlite_module, "time", SimpleNamespace(monotonic=lambda: later))
        # The same storage, without a restart, writes again.
        assert storage.add_publisher("Blog 2").name == "Blog 2"
    finally:
        storage.close()
    assert link.destination == "/landing"


def test_a_file_that_can_be_neither_written_nor_read_is_a_storage_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Unwritable(monkeypatch, db)
    monkeypatch.setattr(SQLiteStorage, "_readable_not_writable", lambda storage: False)
    storage = SQLiteStorage(db)
    with pytest.raises(StorageError, match="cannot open SQLite database"):
        storage.links()
