"""The per-process cache of links and payout rules."""

from __future__ import annotations

from decimal import Decimal

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.ledger.catalog import Catalog

from .conftest import World


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attribution_comes_from_the_link_and_campaign(world: World) -> None:
    catalog = Catalog(world.storage)
    attribution = catalog.attribution(world.fixed_link_id)
    assert attribution is not None
    assert (attribution.campaign_id, attribution.advertiser_id) == (
        world.fixed_campaign_id,
        world.advertiser_id,
    )
    assert attribution.payout.value == Decimal("4.50")
    assert catalog.attribution(999) is None


def test_entries_are_reread_after_the_ttl(world: World, monkeypatch: object) -> None:
    ticker = Ticker()
    catalog = Catalog(world.storage, ttl=60, monotonic=ticker)
    reads: list[int] = []
    storage = world.storage
    original = SQLiteStorage.link

    def counting_link(self: SQLiteStorage, link_id: int) -> object:
        reads.append(link_id)
        return original(self, link_id)

    storage.link = counting_link.__get__(storage)  # type: ignore[method-assign]
    catalog.link(world.percent_link_id)
    catalog.link(world.percent_link_id)
    assert reads == [world.percent_link_id]
    ticker.now += 61
    catalog.link(world.percent_link_id)
    assert reads == [world.percent_link_id] * 2


def test_unknown_links_are_not_cached(world: World) -> None:
    catalog = Catalog(world.storage)
    assert catalog.link(100) is None
    campaign = world.storage.add_campaign(
        world.advertiser_id, "late", PayoutRule(PayoutKind.FIXED, Decimal("2"))
    )
    world.storage.add_link(campaign.id, world.publisher_id, "/late")
    assert catalog.link(4) is not None


def test_the_cache_is_bounded(world: World) -> None:
    catalog = Catalog(world.storage, max_entries=2)
    for link_id in (world.percent_link_id, world.fixed_link_id, world.other_link_id):
        catalog.link(link_id)
    assert len(catalog._links) <= 2


def test_attribution_terms_are_reread_after_the_ttl(world: World) -> None:
    ticker = Ticker()
    catalog = Catalog(world.storage, ttl=60, monotonic=ticker)
    reads: list[int] = []
    original = world.storage.campaign

    def counting_campaign(campaign_id: int) -> object:
        reads.append(campaign_id)
        return original(campaign_id)

    world.storage.campaign = counting_campaign  # type: ignore[method-assign,assignment]
    for _ in range(3):
        catalog.attribution(world.fixed_link_id)
    assert reads == [world.fixed_campaign_id]
    ticker.now += 61
    catalog.attribution(world.fixed_link_id)
    assert reads == [world.fixed_campaign_id] * 2
