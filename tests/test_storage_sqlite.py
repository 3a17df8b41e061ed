"""The SQLite backend: the shared contract plus what is SQLite's own."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from pixel_wsgi import ConfigurationError, SQLiteStorage, StorageError, storage_from_url
from pixel_wsgi.storage.migrations.sqlite import pending

from .sqlite_binding import check_binding
from .sqlite_binding import strict_binding as strict_binding  # for usefixtures
from .storage_contract import MakeStorage, StorageContract, draft
from .storage_contract_capture import CaptureContract
from .storage_contract_delivery import DeliveryContract
from .storage_contract_delivery_health import DeliveryHealthContract


@pytest.mark.usefixtures("strict_binding")
class TestSQLiteContract(StorageContract):
    pass


@pytest.mark.usefixtures("strict_binding")
class TestSQLiteDeliveryContract(DeliveryContract):
    pass


@pytest.mark.usefixtures("strict_binding")
class TestSQLiteDeliveryHealthContract(DeliveryHealthContract):
    pass


@pytest.mark.parametrize(
    ("sql", "parameters", "refused"),
    [
        pytest.param("SELECT ? + ?", (1, 2), False, id="qmark"),
        pytest.param("SELECT ?1 + ?1", (1,), True, id="numbered"),
        pytest.param("SELECT :a + :a", (1,), True, id="named-with-a-sequence"),
        pytest.param("SELECT :a + :a", {"a": 1}, False, id="named-with-a-mapping"),
        pytest.param("SELECT 'a:b?1', ?", (1,), False, id="inside-a-literal"),
    ],
)
def test_strict_binding_refuses_named_placeholders_with_a_sequence(
    sql: str, parameters: object, refused: bool
) -> None:
    if refused:
        with pytest.raises(sqlite3.ProgrammingError, match="named placeholder"):
            check_binding(sql, parameters)
    else:
        check_binding(sql, parameters)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        pytest.param("sqlite:///pixel.db", "pixel.db", id="relative"),
        pytest.param("sqlite:////var/data/pixel.db", "/var/data/pixel.db", id="absolute"),
        pytest.param("sqlite:///dir/my%20file.db", "dir/my file.db", id="escaped"),
    ],
)
def test_urls(url: str, path: str) -> None:
    store = storage_from_url(url)
    assert isinstance(store, SQLiteStorage)
    assert str(store.path) == path


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite://", id="no-path"),
        pytest.param("sqlite:///:memory:", id="memory"),
        pytest.param("sqlite://host/x.db", id="host"),
        pytest.param("sqlite:///x.db?mode=ro", id="query"),
        pytest.param("mysql://x/y", id="unknown-scheme"),
        pytest.param("pixel.db", id="no-scheme"),
    ],
)
def test_bad_urls_fail_loudly(url: str) -> None:
    with pytest.raises(ConfigurationError):
        storage_from_url(url)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"busy_timeout": 0}, id="no-busy-timeout"),
        pytest.param({"busy_timeout": 60}, id="busy-timeout-over-worker-timeout"),
        pytest.param({"synchronous": "SOMETIMES"}, id="synchronous"),
        pytest.param({"max_rejections": 0}, id="max-rejections"),
    ],
)
def test_bad_options_fail_loudly(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteStorage(tmp_path / "x.db", **options)


def test_connection_settings(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "x.db", busy_timeout=2.5)
    store.migrate()
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_ledger_rows_are_append_only(make_storage: MakeStorage) -> None:
    store = make_storage()
    advertiser = store.add_advertiser("A")
    from decimal import Decimal

    from pixel_wsgi import PayoutKind, PayoutRule

    campaign = store.add_campaign(advertiser.id, "c", PayoutRule(PayoutKind.FIXED, Decimal("1")))
    publisher = store.add_publisher("p")
    with store.writer() as writer:
        writer.insert_transaction(draft(advertiser.id, campaign.id, publisher.id, None))
    conn = store._connection()  # type: ignore[attr-defined]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE transactions SET sale_amount = '999.00'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM transactions")


def test_threads_get_their_own_connections(make_storage: MakeStorage) -> None:
    import threading

    store = make_storage()
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(id(store._connection())))  # type: ignore[attr-defined]
    thread.start()
    thread.join()
    assert seen and seen[0] != id(store._connection())  # type: ignore[attr-defined]


def test_connections_are_closed_not_left_to_the_garbage_collector(tmp_path: Path) -> None:
    """Python 3.13 warns (``ResourceWarning``) about a connection collected unclosed: a
    thread's connection when the thread ends (a threaded server's worker), and a store
    nobody closed (a middleware built from a URL). Both are closed by the store."""
    path = tmp_path / "pixel.db"
    store = SQLiteStorage(path)
    store.migrate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread = threading.Thread(target=store.advertisers)
        thread.start()
        thread.join()
        forgotten = SQLiteStorage(path)
        forgotten.advertisers()
        del forgotten
        gc.collect()
    store.close()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_connection(make_storage: MakeStorage) -> None:
    store = make_storage()
    parent_conn = store._connection()  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            ok = store._connection() is not parent_conn  # type: ignore[attr-defined]
            store.add_advertiser("from the child")
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [a.name for a in store.advertisers()] == ["from the child"]


def test_concurrent_migrations_from_processes(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    code = "import sys; from pixel_wsgi import SQLiteStorage; SQLiteStorage(sys.argv[1]).migrate()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    conn = sqlite3.connect(db)
    applied = [name for (name,) in conn.execute("SELECT name FROM pixel_wsgi_migrations")]
    assert not pending(conn)
    conn.close()
    # Each migration applied once, in order, whatever the race.
    assert applied == sorted(applied) and len(set(applied)) == len(applied)
    assert applied[:2] == ["0001_initial", "0002_server_side_reporting"]


def _new_database_with_a_writer(path: Path) -> sqlite3.Connection:
    """A new database, still in rollback-journal mode, whose writer holds its lock:
    what a worker meets when another one, started at the same moment, writes first."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_app (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other_app VALUES (1)")
    return holder


def test_the_switch_to_wal_waits_for_a_writer_of_a_new_database(tmp_path: Path) -> None:
    # SQLite answers "locked" at once there, without its busy handler (a deadlock it
    # avoids): the store must wait as it does for any other lock.
    db = tmp_path / "fresh.db"
    holder = _new_database_with_a_writer(db)
    commit = threading.Timer(0.3, holder.execute, ("COMMIT",))
    commit.start()
    try:
        store = SQLiteStorage(db, busy_timeout=10)
        store.migrate()
        assert store.add_advertiser("after the wait").name == "after the wait"
    finally:
        commit.join()
        holder.close()
    store.close()
    conn = sqlite3.connect(db)  # not "with": that would commit, not close
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_the_switch_to_wal_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    holder = _new_database_with_a_writer(db)
    try:
        with pytest.raises(StorageError, match="locked"):
            SQLiteStorage(db, busy_timeout=0.2).migrate()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_locked_database_is_a_storage_error(make_storage: MakeStorage) -> None:
    store = make_storage(busy_timeout=0.1)
    holder = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="locked"):
            store.add_advertiser("blocked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.add_advertiser("after").name == "after"


@pytest.mark.parametrize(
    "skus",
    [
        pytest.param((), id="none"),
        pytest.param(("34657",), id="one"),
        pytest.param(("dog", "cat"), id="two"),
        pytest.param(('q"uote', "back\\slash", "ünïcödé", "tab\tx", "\u2028"), id="escapes"),
    ],
)
def test_sku_lists_are_stored_as_standard_json(
    make_storage: MakeStorage, skus: tuple[str, ...]
) -> None:
    import json

    from pixel_wsgi.storage.rows import json_strings

    assert json.loads(json_strings(skus)) == list(skus)
    if skus:
        assert json_strings(skus) == json.dumps(
            list(skus), ensure_ascii=False, separators=(",", ":")
        )


def test_a_subclass_that_declares_no_schemes_does_not_take_over_urls(tmp_path: Path) -> None:
    class Tweaked(SQLiteStorage):
        pass

    store = storage_from_url(f"sqlite:///{tmp_path / 'x.db'}")
    assert type(store) is SQLiteStorage


class TestSQLiteCaptureContract(CaptureContract):
    pass
