"""The contract every storage backend passes: subclass :class:`StorageContract`.

A backend's test module subclasses it and provides a ``make_storage`` fixture
returning a factory of fresh, migrated stores (keyword options are passed on).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi import NotFoundError, PayoutKind, PayoutRule, Reason, Storage
from pixel_wsgi.models import RejectionDraft, TransactionDraft

MakeStorage = Callable[..., Storage]


def draft(
    advertiser_id: int,
    campaign_id: int,
    publisher_id: int,
    visit_id: int | None,
    *,
    reference_id: str | None = None,
    sale_amount: str | None = "10.00",
    corrects: int | None = None,
    original: int | None = None,
    fingerprint: str = "",
    created_at: str = "2026-11-25T12:00:00.000000Z",
    personal_data: dict[str, str] | None = None,
) -> TransactionDraft:
    return TransactionDraft(
        advertiser_id=advertiser_id,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        visit_id=visit_id,
        source="pixel",
        reference_id=reference_id,
        corrects_transaction_id=corrects,
        original_transaction_id=original,
        sale_amount=None if sale_amount is None else Decimal(sale_amount),
        sale_currency="USD",
        reason_code="sale",
        sku_list=("a", "b"),
        quantity_list=(1, 2),
        external_data=None,
        custom_data={"coupon": "X"},
        payout=Decimal("1.00"),
        payout_currency="USD",
        fingerprint=fingerprint,
        created_at=created_at,
        personal_data=personal_data or {},
    )


def rejection(advertiser_id: int | None, reason: Reason = Reason.NO_ATTRIBUTION) -> RejectionDraft:
    return RejectionDraft(
        advertiser_id=advertiser_id,
        source="pixel",
        reason=reason,
        detail="why",
        visit_id=None,
        reference_id=None,
        params="sale_amount=1",
        created_at="2026-11-25T12:00:00.000000Z",
    )


class StorageContract:
    """Behaviour the ledger relies on, whatever the backend."""

    @pytest.fixture
    def store(self, make_storage: MakeStorage) -> Storage:
        return make_storage()

    @pytest.fixture
    def setup(self, store: Storage) -> dict[str, int]:
        advertiser = store.add_advertiser("Acme")
        publisher = store.add_publisher("Pub")
        campaign = store.add_campaign(
            advertiser.id,
            "Camp",
            PayoutRule(PayoutKind.PERCENT, Decimal("12.5"), "EUR", ("sale", "renewal")),
        )
        link = store.add_link(campaign.id, publisher.id, "/landing")
        visit = store.record_visit(
            link, ip_prefix="203.0.113.0", user_agent="UA", created_at="2026-11-25T11:00:00Z"
        )
        return {
            "advertiser": advertiser.id,
            "publisher": publisher.id,
            "campaign": campaign.id,
            "link": link.id,
            "visit": visit,
        }

    def ids(self, setup: dict[str, int]) -> tuple[int, int, int, int]:
        return setup["advertiser"], setup["campaign"], setup["publisher"], setup["visit"]

    # -- entities ----------------------------------------------------------------

    def test_migrate_is_idempotent(self, store: Storage) -> None:
        store.migrate()
        store.migrate()
        store.check()

    def test_entities_round_trip(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser = store.advertiser(setup["advertiser"])
        assert advertiser is not None and advertiser.name == "Acme"
        assert [a.name for a in store.advertisers()] == ["Acme"]
        publisher = store.publisher(setup["publisher"])
        assert publisher is not None and publisher.name == "Pub"
        campaign = store.campaign(setup["campaign"])
        assert campaign is not None
        assert campaign.payout == PayoutRule(
            PayoutKind.PERCENT, Decimal("12.5"), "EUR", ("sale", "renewal")
        )
        link = store.link(setup["link"])
        assert link is not None
        assert (link.advertiser_id, link.destination) == (setup["advertiser"], "/landing")
        assert store.advertiser(999) is None
        assert store.campaign(999) is None
        assert store.link(999) is None

    def test_references_must_exist(self, store: Storage, setup: dict[str, int]) -> None:
        rule = PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        with pytest.raises(NotFoundError):
            store.add_campaign(999, "x", rule)
        with pytest.raises(NotFoundError):
            store.add_link(999, setup["publisher"], "/x")
        with pytest.raises(NotFoundError):
            store.add_link(setup["campaign"], 999, "/x")

    def test_attribution_joins_visit_link_and_campaign(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            attribution = writer.attribution(setup["visit"])
            assert writer.attribution(999) is None
            assert writer.advertiser_exists(setup["advertiser"])
            assert not writer.advertiser_exists(999)
        assert attribution is not None
        assert (attribution.advertiser_id, attribution.campaign_id, attribution.publisher_id) == (
            setup["advertiser"],
            setup["campaign"],
            setup["publisher"],
        )
        assert attribution.payout.value == Decimal("12.5")

    # -- ledger rows -------------------------------------------------------------

    def test_rows_round_trip_exactly(self, store: Storage, setup: dict[str, int]) -> None:
        with store.writer() as writer:
            new_id = writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
        assert new_id is not None
        [row] = store.transactions()
        assert row.transaction_id == new_id
        assert row.original_transaction_id == new_id
        assert row.sale_amount == Decimal("10.00")
        assert str(row.sale_amount) == "10.00"
        assert (row.sku_list, row.quantity_list) == (("a", "b"), (1, 2))
        assert row.custom_data == {"coupon": "X"}
        assert row.created_at == "2026-11-25T12:00:00.000000Z"

    def test_reference_id_is_unique_per_advertiser(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        other = store.add_advertiser("Other")
        other_campaign = store.add_campaign(
            other.id, "c", PayoutRule(PayoutKind.FIXED, Decimal("1"))
        )
        with store.writer() as writer:
            assert writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
            assert writer.insert_transaction(draft(*self.ids(setup), reference_id="r1")) is None
            assert writer.insert_transaction(
                draft(other.id, other_campaign.id, setup["publisher"], None, reference_id="r1")
            )
        assert len(list(store.transactions())) == 2

    def test_a_failed_write_leaves_nothing(self, store: Storage, setup: dict[str, int]) -> None:
        with pytest.raises(RuntimeError), store.writer() as writer:
            writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
            writer.insert_rejection(rejection(setup["advertiser"]))
            raise RuntimeError("second statement failed")
        assert list(store.transactions()) == []
        assert list(store.rejections()) == []

    def test_corrections_form_a_chain(self, store: Storage, setup: dict[str, int]) -> None:
        with store.writer() as writer:
            first = writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
            assert first is not None
            second = writer.insert_transaction(
                draft(
                    *self.ids(setup),
                    reference_id="r1",
                    sale_amount="20.00",
                    corrects=first,
                    original=first,
                )
            )
            assert second is not None
            found = writer.find_original(setup["advertiser"], "r1")
            assert found is not None and found.transaction_id == first
            assert writer.chain_end(first).transaction_id == second
            assert writer.find_original(setup["advertiser"], "nope") is None
        [current] = store.conversions()
        assert (current.transaction_id, current.sale_amount) == (second, Decimal("20.00"))
        assert current.corrects_transaction_id == first

    def test_a_row_is_corrected_at_most_once(self, store: Storage, setup: dict[str, int]) -> None:
        with store.writer() as writer:
            first = writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
            writer.insert_transaction(
                draft(*self.ids(setup), reference_id="r1", corrects=first, original=first)
            )
        with pytest.raises(Exception), store.writer() as writer:  # noqa: B017
            writer.insert_transaction(
                draft(*self.ids(setup), reference_id="r1", corrects=first, original=first)
            )
        assert len(list(store.transactions())) == 2

    def test_recent_duplicates_by_fingerprint(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser, _, _, visit = self.ids(setup)
        with store.writer() as writer:
            writer.insert_transaction(
                draft(*self.ids(setup), fingerprint="f1", created_at="2026-11-25T12:00:00.000000Z")
            )
            assert writer.has_recent_duplicate(
                advertiser, visit, "f1", "2026-11-25T11:00:00.000000Z"
            )
            assert not writer.has_recent_duplicate(
                advertiser, visit, "f1", "2026-11-25T12:00:00.000001Z"
            )
            assert not writer.has_recent_duplicate(advertiser, visit, "f2", "2026-11-25T00:00Z")

    def test_transactions_page_by_keyset(self, store: Storage, setup: dict[str, int]) -> None:
        with store.writer() as writer:
            ids = [
                writer.insert_transaction(draft(*self.ids(setup), reference_id=f"r{i}"))
                for i in range(5)
            ]
        page = [t.transaction_id for t in store.transactions(limit=2)]
        assert page == ids[:2]
        page = [t.transaction_id for t in store.transactions(after_transaction_id=ids[1], limit=2)]
        assert page == ids[2:4]
        assert [t.transaction_id for t in store.transactions(after_transaction_id=ids[4])] == []
        assert list(store.transactions(advertiser_id=999)) == []

    def test_rejections_are_newest_first_and_filtered(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            writer.insert_rejection(rejection(setup["advertiser"], Reason.NO_ATTRIBUTION))
            writer.insert_rejection(rejection(None, Reason.UNKNOWN_LINK))
        assert [r.reason for r in store.rejections()] == ["unknown_link", "no_attribution"]
        assert [r.reason for r in store.rejections(advertiser_id=setup["advertiser"])] == [
            "no_attribution"
        ]
        assert [r.reason for r in store.rejections(limit=1)] == ["unknown_link"]

    def test_rejection_log_is_bounded(self, make_storage: MakeStorage) -> None:
        store = make_storage(max_rejections=100)
        for _ in range(600):
            with store.writer() as writer:
                writer.insert_rejection(rejection(None))
        kept = list(store.rejections())
        assert 100 <= len(kept) < 100 + 256
        assert kept[0].id == 600

    def test_personal_data_is_apart_and_erasable(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with store.writer() as writer:
            first = writer.insert_transaction(
                draft(*self.ids(setup), reference_id="r1", personal_data={"name": "Jo"})
            )
            assert first is not None
            second = writer.insert_transaction(
                draft(
                    *self.ids(setup),
                    reference_id="r1",
                    corrects=first,
                    original=first,
                    personal_data={"name": "Joanna"},
                )
            )
            assert second is not None
        assert store.personal_data(first) == {"name": "Jo"}
        assert store.erase_personal_data(setup["advertiser"], "r1") == 2
        assert store.personal_data(first) == {}
        assert store.personal_data(second) == {}
        assert len(list(store.transactions())) == 2

    def test_racing_writers_keep_one_row_per_reference(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        results: list[Any] = []

        def write() -> None:
            with store.writer() as writer:
                results.append(
                    writer.insert_transaction(draft(*self.ids(setup), reference_id="race"))
                )

        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results, key=lambda r: r is None)[1:] == [None] * 7
        assert len(list(store.transactions())) == 1

    def test_lists_of_entities(self, store: Storage, setup: dict[str, int]) -> None:
        other = store.add_advertiser("Other")
        other_campaign = store.add_campaign(
            other.id, "Theirs", PayoutRule(PayoutKind.FIXED, Decimal("2.00"))
        )
        other_link = store.add_link(other_campaign.id, setup["publisher"], "/theirs")
        assert [p.name for p in store.publishers()] == ["Pub"]
        assert [c.name for c in store.campaigns()] == ["Camp", "Theirs"]
        assert [c.id for c in store.campaigns(advertiser_id=other.id)] == [other_campaign.id]
        assert [link.id for link in store.links()] == [setup["link"], other_link.id]
        assert [link.destination for link in store.links(advertiser_id=other.id)] == ["/theirs"]
        assert store.links(advertiser_id=999) == []
