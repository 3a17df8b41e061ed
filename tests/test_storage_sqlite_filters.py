"""The signed-pixel and daily-cap storage contract, against SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pixel_wsgi import SQLiteStorage

from .storage_contract_filters import FiltersContract


class TestSQLiteFiltersContract(FiltersContract):
    pass


def test_the_cap_count_uses_an_existing_index(tmp_path: Path) -> None:
    """No index of its own: one would slow every uncapped insert."""
    from pixel_wsgi.storage.sqlite import _CONVERSIONS_SINCE

    store = SQLiteStorage(tmp_path / "plan.db")
    store.migrate()
    store.close()
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        plan = " ".join(
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_CONVERSIONS_SINCE}", (1, "x"))
        )
        indexes = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions'"
            )
        ]
    finally:
        conn.close()
    assert "USING INDEX transactions_created" in plan
    assert not any("campaign" in name for name in indexes)


def test_a_store_of_version_0002_keeps_its_rows(tmp_path: Path) -> None:
    """0003 adds columns with defaults: earlier advertisers and campaigns read as before."""
    from sqlite_utils import Database

    from pixel_wsgi.storage.sqlite_migrations import migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn)
    migrations.apply(db, stop_before="0003_signing_and_filters")
    conn.execute("INSERT INTO advertisers (name, created_at) VALUES ('Old', 'then')")
    conn.execute(
        "INSERT INTO campaigns (advertiser_id, name, payout_kind, payout_value, payout_currency,"
        " created_at) VALUES (1, 'Old', 'fixed', '1.00', 'USD', 'then')"
    )
    conn.close()
    store = SQLiteStorage(path)
    store.migrate()
    try:
        advertiser = store.advertiser(1)
        campaign = store.campaign(1)
        assert advertiser is not None and advertiser.require_signed_pixels is False
        assert campaign is not None and campaign.daily_cap is None
    finally:
        store.close()
