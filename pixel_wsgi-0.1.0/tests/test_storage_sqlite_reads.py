"""Keyset pages, date-bounded reads, the migration record and lazy imports, on SQLite."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations as SqliteUtilsMigrations
from webtest import TestApp

from pixel_wsgi import SQLiteStorage
from pixel_wsgi.dashboard import Dashboard
from pixel_wsgi.storage.migrations.sqlite import migrations, script_runner

from .sqlite_binding import strict_binding as strict_binding  # for usefixtures
from .storage_contract import draft
from .storage_contract_reads import DAY2, ReadsContract, dated_rejection


@pytest.mark.usefixtures("strict_binding")
class TestSQLiteReadsContract(ReadsContract):
    pass


@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(lambda store: store.transactions(), id="transactions"),
        pytest.param(lambda store: store.conversions(), id="conversions"),
        pytest.param(lambda store: store.rejections(), id="rejections"),
        pytest.param(
            lambda store: store.conversions(advertiser_id=1, created_from=DAY2),
            id="conversions-dated",
        ),
        pytest.param(
            lambda store: store.rejections(advertiser_id=1, created_before="9999"),
            id="rejections-dated",
        ),
    ],
)
def test_every_listing_reads_bounded_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: Any
) -> None:
    """No listing holds more than a page in memory: 10 rows in pages of 3 are 4 reads,
    each of at most 3 rows, the first one made by the call itself."""
    store = SQLiteStorage(tmp_path / "pages.db", page_size=3)
    store.migrate()
    advertiser = store.add_advertiser("A")
    publisher = store.add_publisher("P")
    from decimal import Decimal

    from pixel_wsgi import PayoutKind, PayoutRule

    campaign = store.add_campaign(advertiser.id, "C", PayoutRule(PayoutKind.FIXED, Decimal(1)))
    link = store.add_link(campaign.id, publisher.id, "/")
    visit = store.record_visit(link, ip_prefix=None, user_agent=None, created_at=DAY2)
    with store.writer() as writer:
        for i in range(10):
            writer.insert_transaction(
                draft(advertiser.id, campaign.id, publisher.id, visit, reference_id=f"r{i}")
            )
            writer.insert_rejection(dated_rejection(advertiser.id, DAY2))
    pages: list[int] = []
    read = store._read

    def counting_read(operation: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        rows = read(operation, sql, params)
        pages.append(len(rows))
        return rows

    monkeypatch.setattr(store, "_read", counting_read)
    rows = listing(store)
    assert pages == [3]  # the first page, read by the call
    seen = [getattr(row, "transaction_id", None) or row.id for row in rows]
    assert pages == [3, 3, 3, 1]
    assert len(seen) == len(set(seen)) == 10
    store.close()


def _old_style_database(path: Path) -> None:
    """A file made the way pixel-wsgi 0004 and earlier made it: sqlite-utils' registry."""
    db = Database(sqlite3.connect(path))
    old = SqliteUtilsMigrations("pixel_wsgi")
    for name, function in migrations.registry[:4]:
        old(name=name)(lambda db, function=function: function(script_runner(db.conn)))
    old.apply(db)
    db.execute("INSERT INTO advertisers (name, created_at) VALUES ('Old', '2025-01-01T00:00:00Z')")
    db.conn.commit()
    db.conn.close()


def test_a_database_made_by_the_old_registry_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_style_database(path)
    store = SQLiteStorage(path)
    assert store.pending_migrations() == [
        "0005_same_indexes_as_postgres",
        "0006_delivery_capture",
        "0007_delivery_outbox",
    ]
    store.migrate()
    assert store.pending_migrations() == []
    store.migrate()  # idempotent
    assert [a.name for a in store.advertisers()] == ["Old"]
    store.close()
    conn = sqlite3.connect(path)
    recorded = [name for (name,) in conn.execute("SELECT name FROM pixel_wsgi_migrations")]
    legacy = [name for (name,) in conn.execute("SELECT name FROM _sqlite_migrations")]
    indexes = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    conn.close()
    assert recorded == migrations.names
    assert legacy == migrations.names[:4]  # kept, for a version that still reads it
    assert "campaigns_advertiser" in indexes


def test_a_fresh_database_records_its_migrations_in_one_table(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "new.db")
    store.migrate()
    store.close()
    conn = sqlite3.connect(tmp_path / "new.db")
    tables = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    conn.close()
    assert "pixel_wsgi_migrations" in tables and "_sqlite_migrations" not in tables


def _date_indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    names = {
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        if name.endswith("_advertiser_created")
    }
    conn.close()
    return names


def test_the_date_indexes_wait_for_a_dashboard(tmp_path: Path) -> None:
    """Every index slows each pixel's INSERT: a site without a dashboard pays for none."""
    path = tmp_path / "plan.db"
    store = SQLiteStorage(path)
    store.migrate()
    assert _date_indexes(path) == set()
    dashboard = Dashboard(store, authenticate=lambda environ: False)
    assert _date_indexes(path) == set()  # not at construction: the store may be unmigrated
    assert TestApp(dashboard).get("/", expect_errors=True).status_int == 401
    assert _date_indexes(path) == {
        "transactions_advertiser_created",
        "rejections_advertiser_created",
    }
    assert store.index_dates() is True  # idempotent
    store.close()


def test_a_read_only_store_keeps_its_dashboard_working_without_date_indexes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pixel_wsgi.dashboard")
    path = tmp_path / "ro.db"
    writable = SQLiteStorage(path)
    writable.migrate()
    writable.close()
    store = SQLiteStorage(path, read_only=True)
    dashboard = Dashboard(store, authenticate=lambda environ: True)
    assert TestApp(dashboard).get("/").status_int == 200
    assert _date_indexes(path) == set()
    assert "could not add its date indexes" in caplog.text
    store.close()


def test_dated_reads_use_the_advertiser_date_indexes(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "plan.db")
    store.migrate()
    assert store.index_dates() is True
    store.close()
    conn = sqlite3.connect(tmp_path / "plan.db")
    plans = {
        table: " ".join(
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM {table} WHERE advertiser_id = ?"
                " AND created_at >= ? AND created_at < ?",
                (1, "a", "b"),
            )
        )
        for table in ("transactions", "rejections")
    }
    conn.close()
    assert "transactions_advertiser_created" in plans["transactions"]
    assert "rejections_advertiser_created" in plans["rejections"]


def test_the_storage_package_imports_no_driver(tmp_path: Path) -> None:
    """Neither sqlite-utils nor psycopg is imported by the package, nor by a SQLite store
    that migrates and serves."""
    code = (
        "import sys; import pixel_wsgi.storage as s;"
        "assert not {'sqlite_utils', 'psycopg', 'psycopg_pool'} & set(sys.modules), 'import';"
        "store = s.SQLiteStorage(sys.argv[1]); store.migrate(); store.add_advertiser('A');"
        "assert not {'sqlite_utils', 'psycopg'} & set(sys.modules), 'use'"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "lazy.db")], check=True)
