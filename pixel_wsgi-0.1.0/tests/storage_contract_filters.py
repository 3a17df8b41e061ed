"""The storage contract of signed pixels and daily caps: subclass :class:`FiltersContract`.

Like :class:`tests.storage_contract.StorageContract`, a backend's test module
subclasses it and provides a ``make_storage`` fixture returning a factory of
fresh, migrated stores.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from operator import itemgetter

import pytest

from pixel_wsgi import NotFoundError, PayoutKind, PayoutRule, Storage

from .storage_contract import MakeStorage, draft

# What a conversion of the capped campaign refers to, from the ``setup`` fixture.
_CONVERSION_IDS = itemgetter("advertiser", "campaign", "publisher", "visit")


class FiltersContract:
    """``require_signed_pixels``, ``daily_cap`` and the count a cap is checked with."""

    @pytest.fixture
    def store(self, make_storage: MakeStorage) -> Storage:
        return make_storage()

    @pytest.fixture
    def setup(self, store: Storage) -> dict[str, int]:
        advertiser = store.add_advertiser("Acme")
        other_advertiser = store.add_advertiser("Other")
        publisher = store.add_publisher("Pub")
        rule = PayoutRule(PayoutKind.FIXED, Decimal("2.00"))
        campaign = store.add_campaign(advertiser.id, "Capped", rule)
        sibling = store.add_campaign(advertiser.id, "Sibling", rule)
        foreign = store.add_campaign(other_advertiser.id, "Foreign", rule)
        link = store.add_link(campaign.id, publisher.id, "/landing")
        visit = store.record_visit(
            link, ip_prefix=None, user_agent=None, created_at="2026-11-25T11:00:00.000000Z"
        )
        return {
            "advertiser": advertiser.id,
            "other_advertiser": other_advertiser.id,
            "publisher": publisher.id,
            "campaign": campaign.id,
            "sibling": sibling.id,
            "foreign": foreign.id,
            "visit": visit,
        }

    # -- advertisers: require_signed_pixels ----------------------------------------------

    def test_advertisers_accept_unsigned_pixels_by_default(self, store: Storage) -> None:
        created = store.add_advertiser("Acme")
        assert created.require_signed_pixels is False
        found = store.advertiser(created.id)
        assert found is not None and found.require_signed_pixels is False

    def test_require_signed_pixels_round_trips(self, store: Storage, setup: dict[str, int]) -> None:
        acme = setup["advertiser"]
        changed = store.set_advertiser_options(acme, require_signed_pixels=True)
        assert (changed.id, changed.name, changed.require_signed_pixels) == (acme, "Acme", True)
        found = store.advertiser(acme)
        assert found == changed
        assert [a.require_signed_pixels for a in store.advertisers()] == [True, False]
        again = store.set_advertiser_options(acme, require_signed_pixels=False)
        assert again.require_signed_pixels is False
        assert store.advertiser(acme) == again

    def test_options_of_an_unknown_advertiser(self, store: Storage) -> None:
        with pytest.raises(NotFoundError):
            store.set_advertiser_options(999, require_signed_pixels=True)

    # -- campaigns: daily_cap ---------------------------------------------------------

    def test_campaigns_have_no_cap_by_default(self, store: Storage, setup: dict[str, int]) -> None:
        campaign = store.campaign(setup["campaign"])
        assert campaign is not None and campaign.daily_cap is None

    @pytest.mark.parametrize(
        "cap",
        [pytest.param(5, id="five"), pytest.param(0, id="zero"), pytest.param(None, id="none")],
    )
    def test_daily_cap_round_trips(
        self, store: Storage, setup: dict[str, int], cap: int | None
    ) -> None:
        store.set_campaign_daily_cap(setup["campaign"], 7)
        changed = store.set_campaign_daily_cap(setup["campaign"], cap)
        assert (changed.id, changed.name, changed.daily_cap) == (setup["campaign"], "Capped", cap)
        assert changed.payout == PayoutRule(PayoutKind.FIXED, Decimal("2.00"))
        assert store.campaign(setup["campaign"]) == changed
        listed = {c.id: c.daily_cap for c in store.campaigns()}
        assert listed == {setup["campaign"]: cap, setup["sibling"]: None, setup["foreign"]: None}

    def test_a_negative_cap_is_refused(self, store: Storage, setup: dict[str, int]) -> None:
        with pytest.raises(ValueError):
            store.set_campaign_daily_cap(setup["campaign"], -1)
        campaign = store.campaign(setup["campaign"])
        assert campaign is not None and campaign.daily_cap is None

    def test_cap_of_an_unknown_campaign(self, store: Storage) -> None:
        with pytest.raises(NotFoundError):
            store.set_campaign_daily_cap(999, 5)

    def test_the_writers_attribution_carries_the_current_cap(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            attribution = writer.attribution(setup["visit"])
        assert attribution is not None and attribution.daily_cap is None
        store.set_campaign_daily_cap(setup["campaign"], 3)
        with store.writer() as writer:
            attribution = writer.attribution(setup["visit"])
        assert attribution is not None and attribution.daily_cap == 3

    # -- the count a cap is checked with -------------------------------------------------

    def test_conversions_since_counts_the_campaigns_first_rows(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        acme, campaign, publisher, visit = _CONVERSION_IDS(setup)
        yesterday = "2026-11-24T23:59:59.999999Z"
        midnight = "2026-11-25T00:00:00.000000Z"
        today = "2026-11-25T09:30:00.000000Z"
        with store.writer() as writer:
            writer.insert_transaction(
                draft(acme, campaign, publisher, visit, reference_id="old", created_at=yesterday)
            )
            first = writer.insert_transaction(
                draft(acme, campaign, publisher, visit, reference_id="a", created_at=midnight)
            )
            writer.insert_transaction(
                draft(acme, campaign, publisher, None, reference_id="b", created_at=today)
            )
            # A correction is not another conversion.
            writer.insert_transaction(
                draft(
                    acme,
                    campaign,
                    publisher,
                    visit,
                    reference_id="a",
                    corrects=first,
                    original=first,
                    created_at=today,
                )
            )
            # Nor are other campaigns' rows, of this advertiser or another.
            writer.insert_transaction(
                draft(acme, setup["sibling"], publisher, None, reference_id="c", created_at=today)
            )
            writer.insert_transaction(
                draft(
                    setup["other_advertiser"],
                    setup["foreign"],
                    publisher,
                    None,
                    reference_id="d",
                    created_at=today,
                )
            )
            assert writer.conversions_since(campaign, midnight) == 2
            assert writer.conversions_since(campaign, yesterday) == 3
            assert writer.conversions_since(campaign, "2026-11-26T00:00:00.000000Z") == 0
            assert writer.conversions_since(setup["sibling"], midnight) == 1
            assert writer.conversions_since(999, midnight) == 0
        assert store.append_transaction(
            draft(acme, campaign, publisher, visit, reference_id="e", created_at=today)
        )
        with store.writer() as writer:
            assert writer.conversions_since(campaign, midnight) == 3

    def test_count_then_insert_is_exact_under_racing_writers(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        acme, campaign, publisher, visit = _CONVERSION_IDS(setup)
        midnight = "2026-11-25T00:00:00.000000Z"
        cap = 5
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def convert(n: int) -> None:
            try:
                barrier.wait()
                for i in range(3):
                    with store.writer() as writer:
                        if writer.conversions_since(campaign, midnight) < cap:
                            writer.insert_transaction(
                                draft(acme, campaign, publisher, visit, reference_id=f"{n}-{i}")
                            )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                store.close()

        threads = [threading.Thread(target=convert, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(list(store.transactions(advertiser_id=acme))) == cap
