"""On PostgreSQL: a record the store cannot hold (a NUL, a lone surrogate) is never
spooled, and one already in a spool is quarantined while the replay goes on."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from pixel_wsgi import PostgresStorage
from pixel_wsgi.errors import RecordRefused
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool
from pixel_wsgi.outage.spooling import SpoolingLedger

from .spool_helpers import quarantine_reasons
from .wsgi_calls import Seeded, seed_campaign

# The cluster's fixtures, loaded as a plugin like the other PostgreSQL modules load them.
pytest_plugins = ["tests.postgres_server"]

AT = "2026-01-02T03:04:05Z"


@pytest.fixture
def store(postgres_url: str) -> Iterator[tuple[PostgresStorage, Seeded]]:
    storage = PostgresStorage(postgres_url)
    try:
        yield storage, seed_campaign(storage)
    finally:
        storage.close()


def spool_click(spool: Spool, seeded: Seeded, visit_id: int, user_agent: str) -> None:
    spool.append(
        "visit",
        at=AT,
        link_id=seeded.link.id,
        visit_id=visit_id,
        ip_prefix="203.0.113.0",
        user_agent=user_agent,
    )


def spool_report(spool: Spool, seeded: Seeded, reference_id: str) -> None:
    report = {
        "sale_amount": "20.00",
        "sale_currency": "USD",
        "reason_code": None,
        "sku_list": [],
        "quantity_list": [],
        "reference_id": reference_id,
        "parent_reference_id": None,
        "external_data": None,
        "custom_data": {},
        "personal_data": {},
        "given": ["reference_id", "sale_amount"],
    }
    spool.append(
        "report",
        at=AT,
        advertiser_id=seeded.advertiser_id,
        server_report={
            "report": report,
            "campaign_id": seeded.campaign_id,
            "publisher_id": seeded.publisher_id,
            "reversal_reason": None,
        },
        source="api",
        visit=None,
        params="",
    )


def test_a_record_postgresql_cannot_hold_is_quarantined_and_the_replay_goes_on(
    store: tuple[PostgresStorage, Seeded], tmp_path: Path
) -> None:
    storage, seeded = store
    spool = Spool(tmp_path / "spool")
    spool_click(spool, seeded, -1, "curl/8\x00evil")  # a NUL: PostgreSQL TEXT cannot
    spool_report(spool, seeded, "bad-\ud800")  # a lone surrogate: not Unicode
    spool_click(spool, seeded, -2, "Mozilla/5.0")
    spool_report(spool, seeded, "good-1")
    summary = replay(spool, storage)
    assert (summary.applied, summary.quarantined, summary.stopped) == (2, 2, None)
    [row] = storage.transactions()
    assert (row.reference_id, row.sale_amount) == ("good-1", Decimal("20.00"))
    reasons = quarantine_reasons(tmp_path / "spool")
    assert any("NUL" in reason for reason in reasons)
    # The surrogate is refused by the request's own parser (replay validates through it)
    # before PostgreSQL sees it.
    assert any("unpaired surrogate" in reason for reason in reasons)
    assert spool.files() == [] and spool.pending() == 0  # /pixels/health is 200 again
    assert replay(spool, storage).applied == 0


def test_a_record_the_store_refuses_is_not_spooled(
    store: tuple[PostgresStorage, Seeded], tmp_path: Path
) -> None:
    storage, seeded = store
    spool = Spool(tmp_path / "spool")
    ledger = SpoolingLedger(storage, spool)
    with pytest.raises(RecordRefused, match="NUL"):
        ledger.record_visit(seeded.link, ip_prefix=None, user_agent="a\x00b")
    assert spool.pending() == 0
