"""The signed-pixel and daily-cap storage contract, against SQLite."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.storage.sql import CONVERSIONS_SINCE

from .sqlite_binding import strict_binding as strict_binding  # for usefixtures
from .storage_contract_filters import FiltersContract


@pytest.mark.usefixtures("strict_binding")
class TestSQLiteFiltersContract(FiltersContract):
    pass


def transaction_indexes(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions'"
                " ORDER BY name"
            )
        ]
    finally:
        conn.close()


def test_the_cap_index_exists_only_while_a_campaign_has_a_cap(tmp_path: Path) -> None:
    """Every index slows each pixel's INSERT: sites without caps do not pay for one."""
    path = tmp_path / "plan.db"
    store = SQLiteStorage(path)
    store.migrate()
    advertiser = store.add_advertiser("A")
    first = store.add_campaign(advertiser.id, "one", PayoutRule(PayoutKind.FIXED, Decimal(1)))
    second = store.add_campaign(advertiser.id, "two", PayoutRule(PayoutKind.FIXED, Decimal(1)))
    assert "transactions_campaign_created" not in transaction_indexes(path)
    store.set_campaign_daily_cap(first.id, 5)
    store.set_campaign_daily_cap(second.id, 0)
    assert "transactions_campaign_created" in transaction_indexes(path)
    conn = sqlite3.connect(path)
    plan = " ".join(
        row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {CONVERSIONS_SINCE}", (1, "x"))
    )
    conn.close()
    assert "USING INDEX transactions_campaign_created" in plan
    store.set_campaign_daily_cap(first.id, None)
    assert "transactions_campaign_created" in transaction_indexes(path)  # two still has one
    store.set_campaign_daily_cap(second.id, None)
    assert "transactions_campaign_created" not in transaction_indexes(path)
    store.close()
