"""The PostgreSQL backend: the shared contract plus what is PostgreSQL's own.

Runs against a real server: a throwaway cluster started once per session
(``tests/postgres_server.py``), with a fresh database per test.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from pixel_wsgi import (
    ConfigurationError,
    MissingDependencyError,
    PayoutKind,
    PayoutRule,
    PostgresStorage,
    SQLiteStorage,
    Storage,
    StorageError,
    storage_from_url,
)
from pixel_wsgi.storage import postgres as postgres_module
from pixel_wsgi.storage.migrations.postgres import migrations
from pixel_wsgi.storage.postgres import redact

from .servers import free_port
from .storage_contract import MakeStorage, StorageContract, draft, migrated_stores, rejection
from .storage_contract_capture import CaptureContract
from .storage_contract_delivery import DeliveryContract
from .storage_contract_delivery_health import DeliveryHealthContract
from .storage_contract_filters import FiltersContract
from .storage_contract_reads import ReadsContract

if TYPE_CHECKING:
    from .postgres_server import Cluster

# The session's cluster and its fixtures (not imported: pytest loads the plugin).
pytest_plugins = ["tests.postgres_server"]


@pytest.fixture(scope="session")
def migrated_template(postgres_cluster: Cluster) -> str:
    """A database with the schema, copied for each store: faster than migrating each."""
    url = postgres_cluster.new_database()
    store = PostgresStorage(url)
    try:
        store.migrate()
    finally:
        store.close()
    return url.rsplit("/", 1)[1]


@pytest.fixture
def make_storage(postgres_cluster: Cluster, migrated_template: str) -> Iterator[MakeStorage]:
    yield from migrated_stores(
        lambda _number, **options: PostgresStorage(
            postgres_cluster.new_database(migrated_template), **options
        )
    )


class TestPostgresContract(StorageContract):
    pass


class TestPostgresDeliveryContract(DeliveryContract):
    pass


class TestPostgresFiltersContract(FiltersContract):
    pass


class TestPostgresCaptureContract(CaptureContract):
    pass


class TestPostgresDeliveryHealthContract(DeliveryHealthContract):
    pass


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "where"),
    [
        pytest.param(
            "postgresql://u:pw@db.example:5433/pixel", "u@db.example:5433/pixel", id="full"
        ),
        pytest.param("postgres://db.example/pixel", "db.example/pixel", id="short-scheme"),
        pytest.param("postgresql+psycopg://u@h/d", "u@h/d", id="driver-suffix"),
        pytest.param("postgresql:///pixel?host=/run/pg", "/run/pg/pixel", id="socket"),
    ],
)
def test_urls(url: str, where: str) -> None:
    store = storage_from_url(url)
    assert isinstance(store, PostgresStorage)
    assert repr(store) == f"PostgresStorage('postgresql://{where}')"
    assert "pw" not in repr(store)


def test_options_in_the_url() -> None:
    store = storage_from_url(
        "postgresql://u@h/d?sslmode=disable&pool_max=3&statement_timeout=2.5&connect_timeout=2"
        "&options=-csearch_path%3Dpixel",
        pool_min=0,
    )
    assert isinstance(store, PostgresStorage)
    assert (store.pool_min, store.pool_max, store.statement_timeout) == (0, 3, 2.5)
    assert store.connect_timeout == 2
    conninfo = psycopg.conninfo.conninfo_to_dict(store._conninfo)
    assert conninfo["sslmode"] == "disable"
    assert conninfo["connect_timeout"] == "2"
    assert str(conninfo["options"]).startswith("-csearch_path=pixel -c statement_timeout=2500")
    assert "pool_max" not in conninfo
    # Keyword options win over the URL's.
    keyword = PostgresStorage.from_url("postgresql://h/d?pool_max=3", pool_max=4)
    assert keyword.pool_max == 4


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://u:hunter2@h/d?pool_max=lots", id="bad-option"),
        pytest.param("postgresql://u:hunter2@h/d?statement_timeout=60", id="option-out-of-range"),
        pytest.param("postgresql://u:hunter2@h/d?bogus=1", id="unknown-parameter"),
        pytest.param("mysql://u:hunter2@h/d", id="other-scheme"),
    ],
)
def test_bad_urls_fail_loudly_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresStorage.from_url(url)
    assert "hunter2" not in str(caught.value)


def test_a_bad_conninfo_fails_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresStorage("host=h password=hunter2 junk")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("postgresql://u:s3cret@h/d", "postgresql://u:***@h/d", id="url"),
        pytest.param("host=h password=s3cret", "host=h password=***", id="conninfo"),
        pytest.param("password='s 3'", "password=***", id="quoted"),
        pytest.param("postgresql://u@h/d", "postgresql://u@h/d", id="none"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"pool_min": 5, "pool_max": 2}, id="pool-min-over-max"),
        pytest.param({"pool_max": 0}, id="no-pool"),
        pytest.param({"connect_timeout": 0}, id="no-connect-timeout"),
        pytest.param({"connect_timeout": 2.5}, id="fractional-connect-timeout"),
        pytest.param({"statement_timeout": 60}, id="statement-timeout-over-worker-timeout"),
        pytest.param({"pool_timeout": 0}, id="no-pool-timeout"),
        pytest.param({"max_rejections": 0}, id="max-rejections"),
    ],
)
def test_bad_options_fail_loudly(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStorage("postgresql://h/d", **options)


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pixel-wsgi\[postgres\]'"):
        storage_from_url("postgresql://h/d")


def test_importing_pixel_wsgi_does_not_import_psycopg() -> None:
    code = "import sys, pixel_wsgi; sys.exit('psycopg' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- against the server -------------------------------------------------------------


@pytest.fixture
def store(make_storage: MakeStorage) -> PostgresStorage:
    made = make_storage()
    assert isinstance(made, PostgresStorage)
    return made


def _world(store: Storage) -> tuple[int, int, int, int]:
    advertiser = store.add_advertiser("A")
    publisher = store.add_publisher("P")
    campaign = store.add_campaign(advertiser.id, "C", PayoutRule(PayoutKind.FIXED, Decimal("1")))
    link = store.add_link(campaign.id, publisher.id, "/x")
    visit = store.record_visit(link, ip_prefix=None, user_agent=None, created_at="t")
    return advertiser.id, campaign.id, publisher.id, visit


def _connect(store: PostgresStorage) -> psycopg.Connection[Any]:
    """A connection of our own to the store's database, without its timeouts."""
    return psycopg.connect(store._conninfo, autocommit=True, options="")


def test_connection_settings(postgres_cluster: Cluster) -> None:
    store = PostgresStorage(postgres_cluster.new_database(), statement_timeout=2.5)
    try:
        with store._connection("test") as conn:
            settings = conn.execute(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
                " current_setting('idle_in_transaction_session_timeout'),"
                " current_setting('application_name')"
            ).fetchone()
            assert settings == ("2500ms", "2500ms", "5s", "pixel-wsgi")
            assert conn.autocommit
    finally:
        store.close()


def test_writes_are_read_committed_whatever_the_servers_default(
    postgres_cluster: Cluster,
) -> None:
    url = postgres_cluster.new_database()
    name = url.rsplit("/", 1)[1]
    postgres_cluster.execute(
        f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
    )
    store = PostgresStorage(url)
    try:
        store.migrate()
        with store.writer() as writer:
            cursor = writer._cur  # type: ignore[attr-defined]
            assert cursor.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
    finally:
        store.close()


def test_the_urls_own_options_are_kept(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pixel")
    store = PostgresStorage(f"{url}?options=-csearch_path%3Dpixel&application_name=shop")
    try:
        store.migrate()
        store.add_advertiser("in the schema")
        with psycopg.connect(url) as conn:
            names = conn.execute("SELECT name FROM pixel.advertisers").fetchall()
        assert names == [("in the schema",)]
        with store._connection("test") as conn:
            assert conn.execute("SHOW application_name").fetchone() == ("shop",)
    finally:
        store.close()


def test_schema_matches_the_migrations(store: PostgresStorage) -> None:
    with _connect(store) as conn:
        applied = conn.execute("SELECT name FROM pixel_wsgi_migrations ORDER BY name").fetchall()
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'transactions'"
            )
        }
        constraints = {
            row[0] for row in conn.execute("SELECT conname FROM pg_constraint WHERE contype = 'p'")
        }
    assert [name for (name,) in applied] == migrations.names
    assert {"transactions_reference_key", "transactions_corrects_key"} <= indexes
    assert {"idempotency_keys_pkey", "applied_events_pkey"} <= constraints


def test_a_refused_duplicate_uses_up_no_id(store: PostgresStorage) -> None:
    """As in SQLite: a sequence would hand an id to every row an INSERT tries."""
    advertiser, campaign, publisher, visit = _world(store)
    first = store.append_transaction(
        draft(advertiser, campaign, publisher, visit, reference_id="r")
    )
    assert first is not None
    with store.writer() as writer:
        assert (
            writer.insert_transaction(
                draft(advertiser, campaign, publisher, visit, reference_id="r")
            )
            is None
        )
    assert (
        store.append_transaction(draft(advertiser, campaign, publisher, visit, reference_id="r"))
        is None
    )
    assert (
        store.append_transaction(draft(advertiser, campaign, publisher, visit, reference_id="s"))
        == first + 1
    )


def test_ledger_rows_are_append_only(store: PostgresStorage) -> None:
    advertiser, campaign, publisher, visit = _world(store)
    with store.writer() as writer:
        writer.insert_transaction(draft(advertiser, campaign, publisher, visit))
    with _connect(store) as conn:
        for statement in (
            "UPDATE transactions SET sale_amount = '999.00'",
            "DELETE FROM transactions",
            "TRUNCATE transactions CASCADE",
        ):
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                conn.execute(statement)
    assert len(list(store.transactions())) == 1


def test_concurrent_migrations_from_processes(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.new_database()
    code = (
        "import sys; from pixel_wsgi import PostgresStorage; PostgresStorage(sys.argv[1]).migrate()"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, url]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with psycopg.connect(url) as conn:
        applied = conn.execute("SELECT name FROM pixel_wsgi_migrations ORDER BY name").fetchall()
    assert [name for (name,) in applied] == migrations.names


def test_a_database_not_in_utf8_is_refused(postgres_cluster: Cluster) -> None:
    url = postgres_cluster.new_database()
    latin = url.rsplit("/", 1)[0] + "/latin_" + url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {latin.rsplit('/', 1)[1]} ENCODING 'LATIN1' TEMPLATE template0"
        )
    store = PostgresStorage(latin)
    try:
        with pytest.raises(StorageError, match="UTF8"):
            store.migrate()
    finally:
        store.close()


def test_a_held_write_lock_is_a_storage_error(make_storage: MakeStorage) -> None:
    store = make_storage(statement_timeout=0.2)
    assert isinstance(store, PostgresStorage)
    advertiser, campaign, publisher, visit = _world(store)
    with _connect(store) as holder, holder.transaction():
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (0x7069_786C_7772_6974,))
        with pytest.raises(StorageError, match="timed out"):
            store.append_transaction(draft(advertiser, campaign, publisher, visit))
        with pytest.raises(StorageError, match="timed out"), store.writer():
            pass
        # Clicks take no lock.
        link = store.links()[0]
        assert store.record_visit(link, ip_prefix=None, user_agent=None, created_at="t")
    assert store.append_transaction(draft(advertiser, campaign, publisher, visit))


def test_a_client_stuck_in_a_write_loses_the_lock(make_storage: MakeStorage) -> None:
    store = make_storage(statement_timeout=0.2)
    advertiser, campaign, publisher, visit = _world(store)
    with pytest.raises(StorageError), store.writer() as writer:
        time.sleep(0.6)  # over idle_in_transaction_session_timeout: the server ends it
        writer.advertiser_exists(advertiser)
    assert store.append_transaction(draft(advertiser, campaign, publisher, visit))


def test_a_slow_statement_is_a_storage_error(make_storage: MakeStorage) -> None:
    store = make_storage(statement_timeout=0.2)
    assert isinstance(store, PostgresStorage)
    with pytest.raises(StorageError, match="timed out"):
        store._read("sleep", "SELECT pg_sleep(1)")
    assert store.advertisers() == []


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\ud800b", id="lone-surrogate"),
    ],
)
def test_text_postgresql_cannot_hold_is_a_clear_storage_error(
    store: PostgresStorage, text: str
) -> None:
    advertiser, campaign, publisher, visit = _world(store)
    with pytest.raises(StorageError, match=r"NUL|Unicode") as caught:
        store.add_publisher(text)
    assert "cannot add a publisher" in str(caught.value)
    with pytest.raises(StorageError, match=r"NUL|Unicode"):
        store.append_transaction(draft(advertiser, campaign, publisher, visit, reference_id=text))
    assert [p.name for p in store.publishers()] == ["P"]
    assert list(store.transactions()) == []


def test_an_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = f"postgresql://pixel:hunter2@127.0.0.1:{free_port()}/nowhere?pool_timeout=0.5"
    store = storage_from_url(url)
    try:
        with pytest.raises(StorageError) as caught:
            store.check()
        assert "hunter2" not in str(caught.value)
        assert "127.0.0.1" in str(caught.value)
    finally:
        store.close()


def test_reads_stream_in_pages(store: PostgresStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "page_size", 3)
    advertiser, campaign, publisher, visit = _world(store)
    with store.writer() as writer:
        ids = [
            writer.insert_transaction(
                draft(advertiser, campaign, publisher, visit, reference_id=f"r{i}")
            )
            for i in range(10)
        ]
        for _ in range(7):
            writer.insert_rejection(rejection(None))
    queries: list[str] = []
    read = store._read

    def counting_read(operation: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        queries.append(sql)
        return read(operation, sql, params)

    monkeypatch.setattr(store, "_read", counting_read)
    assert [t.transaction_id for t in store.transactions()] == ids
    assert len(queries) == 4
    assert [t.transaction_id for t in store.transactions(limit=7)] == ids[:7]
    assert [t.transaction_id for t in store.transactions(limit=3)] == ids[:3]
    assert [
        t.transaction_id for t in store.transactions(after_transaction_id=ids[2], limit=5)
    ] == ids[3:8]
    assert list(store.transactions(limit=0)) == []
    assert [t.transaction_id for t in store.conversions()] == ids
    assert [r.id for r in store.rejections()] == list(range(7, 0, -1))
    assert [r.id for r in store.rejections(limit=4)] == [7, 6, 5, 4]
    # The first page is read by the call itself.
    queries.clear()
    rows = store.transactions()
    assert len(queries) == 1
    assert next(rows).transaction_id == ids[0]


def test_a_half_read_iterator_holds_no_connection(make_storage: MakeStorage) -> None:
    store = make_storage(pool_min=0, pool_max=1, pool_timeout=1)
    advertiser, campaign, publisher, visit = _world(store)
    with store.writer() as writer:
        for i in range(3):
            writer.insert_transaction(
                draft(advertiser, campaign, publisher, visit, reference_id=f"r{i}")
            )
    pages = [store.transactions(), store.conversions(), store.rejections()]
    for rows in pages:
        next(rows, None)
    # The pool's one connection is free: this would wait, then fail, otherwise.
    assert [a.id for a in store.advertisers()] == [advertiser]
    assert len(list(pages[0])) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_pool(store: PostgresStorage) -> None:
    store.add_advertiser("parent")
    assert store._slot is not None
    parent_pool = store._slot.pool
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            store.add_advertiser("child")
            ok = store._slot is not None and store._slot.pool is not parent_pool
            store.close()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pool still works: the child never touched its connections.
    assert [a.name for a in store.advertisers()] == ["parent", "child"]
    assert store._slot is not None and store._slot.pool is parent_pool


def test_close_then_use_again(store: PostgresStorage) -> None:
    store.add_advertiser("before")
    store.close()
    store.close()
    assert [a.name for a in store.advertisers()] == ["before"]


def test_close_waits_for_the_operations_under_way(store: PostgresStorage) -> None:
    """Any thread may close, as with SQLite's per-thread connections: nobody's work breaks."""
    with store.writer() as writer:
        old = store._slot
        assert old is not None
        store.close()
        assert not old.pool.closed
        writer.insert_rejection(rejection(None))
    assert old.pool.closed
    assert [r.reason for r in store.rejections()] == ["no_attribution"]
    assert store._slot is not None and store._slot is not old


class TestPostgresReadsContract(ReadsContract):
    pass


def test_both_backends_have_the_same_indexes(store: PostgresStorage, tmp_path: Path) -> None:
    sqlite_store = SQLiteStorage(tmp_path / "same.db")
    sqlite_store.migrate()
    sqlite_store.close()
    conn = sqlite3.connect(tmp_path / "same.db")
    sqlite_indexes = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
        )
    }
    conn.close()
    with _connect(store) as pg:
        postgres_indexes = {
            name
            for (name,) in pg.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        }
    assert sqlite_indexes == postgres_indexes


def test_a_connection_back_from_a_request_is_not_tested_again_at_once(
    store: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from psycopg_pool import ConnectionPool

    checks: list[object] = []
    real_check = ConnectionPool.check_connection
    monkeypatch.setattr(
        ConnectionPool,
        "check_connection",
        staticmethod(lambda conn: (checks.append(conn), real_check(conn))),
    )
    store.add_advertiser("First")  # a new connection: tested
    for n in range(5):  # back from a request a moment ago: handed out untested
        store.add_advertiser(f"Next {n}")
    assert len(checks) == 1
    monkeypatch.setattr(postgres_module, "CHECK_AFTER_IDLE", 0.05)
    time.sleep(0.1)  # idle past the limit: tested again before use
    store.add_advertiser("After a rest")
    assert len(checks) == 2
    assert len(store.advertisers()) == 7
