"""Listings in keyset pages, date-bounded reads and entity rules: one contract for every
backend. A backend's test module subclasses :class:`ReadsContract` and provides
``make_storage`` (as for :class:`~tests.storage_contract.StorageContract`)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, Reason, Storage
from pixel_wsgi.errors import ConfigurationError, EntityInvalid
from pixel_wsgi.models import RejectionDraft

from .storage_contract import MakeStorage, draft

DAY1 = "2026-11-24T12:00:00.000000Z"
DAY2 = "2026-11-25T12:00:00.000000Z"
DAY3 = "2026-11-26T12:00:00.000000Z"


def dated_rejection(advertiser_id: int | None, created_at: str) -> RejectionDraft:
    return RejectionDraft(
        advertiser_id=advertiser_id,
        source="pixel",
        reason=Reason.NO_ATTRIBUTION,
        detail="why",
        visit_id=None,
        reference_id=None,
        params="",
        created_at=created_at,
    )


class ReadsContract:
    """Behaviour the dashboard, the exports and the API's pages rely on."""

    @pytest.fixture
    def store(self, make_storage: MakeStorage) -> Storage:
        return make_storage(page_size=3)

    @pytest.fixture
    def world(self, store: Storage) -> dict[str, int]:
        acme = store.add_advertiser("Acme")
        other = store.add_advertiser("Other")
        publisher = store.add_publisher("Pub")
        rule = PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        campaign = store.add_campaign(acme.id, "A", rule)
        other_campaign = store.add_campaign(other.id, "O", rule)
        link = store.add_link(campaign.id, publisher.id, "/a")
        other_link = store.add_link(other_campaign.id, publisher.id, "/o")
        at = "2026-11-24T00:00:00Z"
        return {
            "acme": acme.id,
            "other": other.id,
            "publisher": publisher.id,
            "campaign": campaign.id,
            "other_campaign": other_campaign.id,
            "visit": store.record_visit(link, ip_prefix=None, user_agent=None, created_at=at),
            "other_visit": store.record_visit(
                other_link, ip_prefix=None, user_agent=None, created_at=at
            ),
        }

    @pytest.fixture(params=[False, True], ids=["scanned", "indexed"])
    def date_indexes(self, request: pytest.FixtureRequest, store: Storage) -> bool:
        """Date-bounded reads give the same rows with and without the date indexes."""
        if request.param:
            assert store.index_dates() is True
            assert store.index_dates() is True  # idempotent
        return bool(request.param)

    def acme(self, world: dict[str, int], **kwargs: Any) -> Any:
        return draft(world["acme"], world["campaign"], world["publisher"], world["visit"], **kwargs)

    # -- keyset pages --------------------------------------------------------------

    def test_every_listing_is_whole_across_many_pages(
        self, store: Storage, world: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            ids = [
                writer.insert_transaction(self.acme(world, reference_id=f"r{i}")) for i in range(10)
            ]
            for _ in range(8):
                writer.insert_rejection(dated_rejection(world["acme"], DAY2))
        assert [t.transaction_id for t in store.transactions()] == ids
        assert [t.transaction_id for t in store.conversions()] == ids
        rejections = [r.id for r in store.rejections()]
        assert rejections == sorted(rejections, reverse=True) and len(set(rejections)) == 8
        assert [t.transaction_id for t in store.transactions(limit=7)] == ids[:7]
        assert [r.id for r in store.rejections(limit=4)] == rejections[:4]
        assert list(store.transactions(limit=0)) == []

    def test_a_listing_read_lazily_sees_rows_written_past_its_page(
        self, store: Storage, world: dict[str, int]
    ) -> None:
        """A next page is read when the iterator gets there: rows committed meanwhile
        after the last row read appear, once; none is skipped nor repeated."""
        with store.writer() as writer:
            ids = [
                writer.insert_transaction(self.acme(world, reference_id=f"r{i}")) for i in range(4)
            ]
        rows = store.transactions()
        conversions = store.conversions()
        first = [next(rows).transaction_id for _ in range(3)]  # the first page (3 rows)
        first_conversions = [next(conversions).transaction_id for _ in range(3)]
        with store.writer() as writer:
            ids += [
                writer.insert_transaction(self.acme(world, reference_id=f"late{i}"))
                for i in range(4)
            ]
        assert first + [t.transaction_id for t in rows] == ids
        assert first_conversions + [t.transaction_id for t in conversions] == ids

    def test_a_correction_made_while_reading_shows_the_new_chain_end(
        self, store: Storage, world: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            ids = [
                writer.insert_transaction(self.acme(world, reference_id=f"r{i}")) for i in range(6)
            ]
        conversions = store.conversions()
        assert [next(conversions).transaction_id for _ in range(3)] == ids[:3]
        with store.writer() as writer:
            fix = writer.insert_transaction(
                self.acme(world, reference_id="r4", corrects=ids[4], original=ids[4])
            )
        rest = list(conversions)
        assert [(t.transaction_id, t.original_transaction_id) for t in rest] == [
            (ids[3], ids[3]),
            (fix, ids[4]),
            (ids[5], ids[5]),
        ]

    # -- date-bounded reads ------------------------------------------------------------

    def test_conversions_are_bounded_by_the_date_of_their_sale(
        self, store: Storage, world: dict[str, int], date_indexes: bool
    ) -> None:
        with store.writer() as writer:
            sold_day1 = writer.insert_transaction(
                self.acme(world, reference_id="a", created_at=DAY1)
            )
            sold_day2 = writer.insert_transaction(
                self.acme(world, reference_id="b", created_at=DAY2)
            )
            # Corrected on day 3: still a day-1 sale, shown in its corrected state.
            fixed = writer.insert_transaction(
                self.acme(
                    world, reference_id="a", corrects=sold_day1, original=sold_day1, created_at=DAY3
                )
            )
            writer.insert_transaction(
                draft(
                    world["other"],
                    world["other_campaign"],
                    world["publisher"],
                    world["other_visit"],
                    reference_id="c",
                    created_at=DAY1,
                )
            )

        def ends(**kwargs: Any) -> list[int]:
            return [t.transaction_id for t in store.conversions(**kwargs)]

        day2 = "2026-11-25T00:00:00Z"
        assert ends(advertiser_id=world["acme"], created_before=day2) == [fixed]
        assert ends(advertiser_id=world["acme"], created_from=day2) == [sold_day2]
        assert ends(advertiser_id=world["acme"], created_from=DAY3) == []
        assert ends(advertiser_id=world["acme"]) == [fixed, sold_day2]
        assert len(ends(created_before=day2)) == 2  # both advertisers' day-1 sales
        assert ends(created_from=DAY1, created_before=DAY2) == ends(created_before=day2)

    @pytest.mark.parametrize(
        ("bounds", "expected"),
        [
            pytest.param({}, [DAY3, DAY2, DAY1], id="all"),
            pytest.param({"created_from": DAY2}, [DAY3, DAY2], id="from-inclusive"),
            pytest.param({"created_before": DAY2}, [DAY1], id="before-exclusive"),
            pytest.param({"created_from": DAY2, "created_before": DAY3}, [DAY2], id="range"),
            pytest.param({"created_from": DAY3, "limit": 5}, [DAY3], id="with-limit"),
        ],
    )
    def test_rejections_are_bounded_by_date(
        self,
        store: Storage,
        world: dict[str, int],
        bounds: dict[str, Any],
        expected: list[str],
        date_indexes: bool,
    ) -> None:
        with store.writer() as writer:
            for at in (DAY1, DAY2, DAY3):
                writer.insert_rejection(dated_rejection(world["acme"], at))
                writer.insert_rejection(dated_rejection(world["other"], at))
        found = store.rejections(advertiser_id=world["acme"], **bounds)
        assert [r.created_at for r in found] == expected
        assert {r.advertiser_id for r in store.rejections(advertiser_id=world["acme"])} == {
            world["acme"]
        }

    # -- entity rules every writer goes through ---------------------------------------------

    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            pytest.param(
                PayoutRule(PayoutKind.PERCENT, Decimal("100.01")),
                "0% to 100%",
                id="percent-over-100",
            ),
            pytest.param(PayoutRule(PayoutKind.FIXED, Decimal("-1")), "negative", id="negative"),
            pytest.param(PayoutRule(PayoutKind.FIXED, Decimal("NaN")), "finite", id="nan"),
            pytest.param(
                PayoutRule(PayoutKind.FIXED, 1.5),  # type: ignore[arg-type]
                "Decimal",
                id="float",
            ),
            pytest.param(
                PayoutRule(PayoutKind.FIXED, Decimal(1), "usd"), "ISO 4217", id="currency"
            ),
            pytest.param(
                PayoutRule(PayoutKind.FIXED, Decimal(1), "USD", (" ",)),
                "reason code",
                id="blank-reason-code",
            ),
            pytest.param(
                PayoutRule("fixed", Decimal(1)),  # type: ignore[arg-type]
                "kind",
                id="kind-not-an-enum",
            ),
        ],
    )
    def test_a_broken_payout_rule_is_refused_before_anything_is_stored(
        self, store: Storage, world: dict[str, int], rule: PayoutRule, message: str
    ) -> None:
        with pytest.raises(EntityInvalid, match=message) as caught:
            store.add_campaign(world["acme"], "bad", rule)
        assert caught.value.field == "payout"
        assert isinstance(caught.value, ConfigurationError)
        assert [c.name for c in store.campaigns(advertiser_id=world["acme"])] == ["A"]

    @pytest.mark.parametrize(
        "rule",
        [
            pytest.param(PayoutRule(PayoutKind.PERCENT, Decimal(0)), id="zero-percent"),
            pytest.param(PayoutRule(PayoutKind.PERCENT, Decimal(100)), id="hundred-percent"),
            pytest.param(PayoutRule(PayoutKind.FIXED, Decimal("0.00"), "EUR"), id="free"),
        ],
    )
    def test_payout_rules_at_the_bounds_are_stored(
        self, store: Storage, world: dict[str, int], rule: PayoutRule
    ) -> None:
        created = store.add_campaign(world["acme"], "edge", rule)
        found = store.campaign(created.id)
        assert found is not None and found.payout == rule

    @pytest.mark.parametrize(
        "destination",
        [
            pytest.param("javascript:alert(1)", id="script"),
            pytest.param("//evil.example/", id="scheme-relative"),
            pytest.param("https://user:pw@shop.example/", id="credentials"),
            pytest.param("https://shop.example:99999/", id="port"),
            pytest.param("/a\ud800", id="surrogate"),
        ],
    )
    def test_a_link_destination_is_checked_before_storing(
        self, store: Storage, world: dict[str, int], destination: str
    ) -> None:
        with pytest.raises(EntityInvalid, match=re.escape(repr(destination))) as caught:
            store.add_link(world["campaign"], world["publisher"], destination)
        assert caught.value.field == "destination"
        assert len(store.links(advertiser_id=world["acme"])) == 1

    @pytest.mark.parametrize(
        ("call", "field"),
        [
            pytest.param(lambda s, w: s.add_advertiser(None), "name", id="advertiser-name"),
            pytest.param(lambda s, w: s.add_publisher(7), "name", id="publisher-name"),
            pytest.param(
                lambda s, w: s.set_campaign_daily_cap(w["campaign"], -1), "daily_cap", id="cap"
            ),
            pytest.param(
                lambda s, w: s.set_campaign_daily_cap(w["campaign"], True), "daily_cap", id="bool"
            ),
            pytest.param(
                lambda s, w: s.set_advertiser_options(w["acme"], require_signed_pixels="yes"),
                "require_signed_pixels",
                id="signed-pixels",
            ),
        ],
    )
    def test_other_entity_writers_check_their_values(
        self, store: Storage, world: dict[str, int], call: Any, field: str
    ) -> None:
        with pytest.raises(EntityInvalid) as caught:
            call(store, world)
        assert caught.value.field == field
        assert isinstance(caught.value, ValueError)
