"""The contract every storage backend passes: subclass :class:`StorageContract`.

A backend's test module subclasses it and provides a ``make_storage`` fixture
returning a factory of fresh, migrated stores (keyword options are passed on),
most simply with :func:`migrated_stores`; SQLite's is in ``conftest.py``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi import NotFoundError, PayoutKind, PayoutRule, Reason, Storage, StorageError
from pixel_wsgi.models import (
    IdempotencyRecord,
    ReferenceClaim,
    RejectionDraft,
    TransactionDraft,
    TransactionType,
)

MakeStorage = Callable[..., Storage]


def migrated_stores(open_store: Callable[..., Storage]) -> Iterator[MakeStorage]:
    """For a ``make_storage`` fixture: yield the factory, then close what it made.

    :param open_store: ``open_store(number, **options)`` opens the ``number``-th
        store (0, 1, ...) with the test's options; the factory migrates it.
    """
    made: list[Storage] = []

    def make(**options: Any) -> Storage:
        store = open_store(len(made), **options)
        store.migrate()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


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
    reversal_reason: str | None = None,
    sku_list: tuple[str, ...] = ("a", "b"),
    custom_data: dict[str, str] | None = None,
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
        sku_list=sku_list,
        quantity_list=tuple(range(1, len(sku_list) + 1)),
        external_data=None,
        custom_data={"coupon": "X"} if custom_data is None else custom_data,
        payout=Decimal("0.00") if reversal_reason else Decimal("1.00"),
        payout_currency="USD",
        fingerprint=fingerprint,
        created_at=created_at,
        personal_data=personal_data or {},
        reversal_reason=reversal_reason,
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
        assert (row.corrects_transaction_id, row.reversal_reason) == (None, None)
        assert row.transaction_type is TransactionType.CONVERSION

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

    def test_a_flood_of_one_reason_never_evicts_the_others(self, make_storage: MakeStorage) -> None:
        # Issue 9: one cookie_stuffing click, then junk pixels flushed the evidence.
        store = make_storage(max_rejections=300)
        with store.writer() as writer:
            writer.insert_rejection(rejection(None, Reason.COOKIE_STUFFING))
            writer.insert_rejection(rejection(None, Reason.TOO_FAST))
            for _ in range(2000):
                writer.insert_rejection(rejection(None, Reason.UNKNOWN_ADVERTISER))
            writer.insert_rejection(rejection(None, Reason.BOT))
        kept = [r.reason for r in store.rejections()]
        assert kept.count("cookie_stuffing") == kept.count("too_fast") == kept.count("bot") == 1
        assert 300 <= len(kept) < 300 + 256
        assert kept[1] == "unknown_advertiser"  # the newest junk stays, the oldest went

    def test_reasons_over_their_share_are_trimmed_to_the_same_size(
        self, make_storage: MakeStorage
    ) -> None:
        store = make_storage(max_rejections=300)
        with store.writer() as writer:
            for _ in range(50):
                writer.insert_rejection(rejection(None, Reason.INVALID_COOKIE))
            for _ in range(460):
                writer.insert_rejection(rejection(None, Reason.NO_ATTRIBUTION))
                writer.insert_rejection(rejection(None, Reason.UNKNOWN_ADVERTISER))
        # Trimmed at ids 512 and 768 to 50 + 2 x 125 = 300; then 2 x 101 newer entries.
        counts = Counter(r.reason for r in store.rejections())
        assert counts == {"invalid_cookie": 50, "no_attribution": 226, "unknown_advertiser": 226}

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

    # -- the pixel's fast path -----------------------------------------------------

    def test_append_transaction_is_idempotent_by_reference(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        first = store.append_transaction(
            draft(*self.ids(setup), reference_id="r1", personal_data={"name": "Jo"})
        )
        assert first is not None
        repeat = draft(*self.ids(setup), reference_id="r1", sale_amount="99.00")
        assert store.append_transaction(repeat) is None
        [row] = store.transactions()
        assert (row.transaction_id, row.sale_amount) == (first, Decimal("10.00"))
        assert store.personal_data(first) == {"name": "Jo"}

    # -- batches -------------------------------------------------------------------

    def test_a_batch_commits_its_writes_together(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        advertiser, _, publisher, _ = self.ids(setup)

        def committed() -> list[int]:
            """What another thread (another connection) reads: only what is committed."""
            seen: list[int] = []
            reader = threading.Thread(
                target=lambda: seen.extend(t.transaction_id for t in store.transactions())
            )
            reader.start()
            reader.join()
            return seen

        with store.batch():
            first = store.append_transaction(draft(*self.ids(setup), reference_id="b1"))
            with store.writer() as writer:
                second = writer.insert_transaction(draft(*self.ids(setup), reference_id="b2"))
            # A write that fails is undone alone: the batch goes on.
            with pytest.raises(NotFoundError):
                store.append_transaction(draft(advertiser, 999, publisher, None, reference_id="x"))
            with pytest.raises(RuntimeError), store.writer() as writer:
                writer.insert_transaction(draft(*self.ids(setup), reference_id="gone"))
                raise RuntimeError("this event failed")
            with store.batch():  # nested: part of the outer one
                third = store.append_transaction(draft(*self.ids(setup), reference_id="b3"))
            # Reads inside see the batch's writes; other connections do not yet.
            assert [t.reference_id for t in store.transactions()] == ["b1", "b2", "b3"]
            assert committed() == []
        assert committed() == [first, second, third]

    def test_a_batch_that_raises_leaves_nothing(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with pytest.raises(RuntimeError), store.batch():
            store.append_transaction(draft(*self.ids(setup), reference_id="b1"))
            with store.writer() as writer:
                writer.insert_rejection(rejection(setup["advertiser"]))
            raise RuntimeError("the applier stopped")
        assert list(store.transactions()) == []
        assert list(store.rejections()) == []
        # The store is usable afterwards, in and out of batches.
        with store.batch():
            store.append_transaction(draft(*self.ids(setup), reference_id="b1"))
        assert store.append_transaction(draft(*self.ids(setup), reference_id="b2")) is not None
        assert len(list(store.transactions())) == 2

    def test_a_batch_without_savepoints_is_undone_whole_by_a_failed_write(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        advertiser, _, publisher, _ = self.ids(setup)
        with pytest.raises(NotFoundError), store.batch(savepoints=False):
            store.append_transaction(draft(*self.ids(setup), reference_id="b1"))
            with store.writer() as writer:
                assert writer.claim_events(["e1"], "2026-11-25T12:00:00.000000Z") == {"e1"}
            store.append_transaction(draft(advertiser, 999, publisher, None, reference_id="x"))
        assert list(store.transactions()) == []
        with store.batch(savepoints=False):
            with store.writer() as writer:  # the claim went with the batch
                assert writer.claim_events(["e1"], "2026-11-25T12:00:01.000000Z") == {"e1"}
            store.append_transaction(draft(*self.ids(setup), reference_id="b1"))
            with store.batch():  # nested: part of the outer one, without savepoints too
                store.append_transaction(draft(*self.ids(setup), reference_id="b2"))
        assert [t.reference_id for t in store.transactions()] == ["b1", "b2"]

    def test_append_transaction_for_a_gone_visit_is_not_found(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        advertiser, campaign, publisher, _ = self.ids(setup)
        with pytest.raises(NotFoundError):
            store.append_transaction(draft(advertiser, campaign, publisher, 999, reference_id="r"))
        with pytest.raises(NotFoundError):
            store.append_transaction(draft(advertiser, 999, publisher, None, reference_id="r"))
        assert list(store.transactions()) == []
        assert store.append_transaction(draft(*self.ids(setup), reference_id="r")) is not None

    def test_keyset_paging_never_skips_a_row_while_threads_append(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        """Ids are handed out in commit order, so a reader paging by keyset sees every row once."""
        per_thread = 40
        failures: list[BaseException] = []

        def append(thread: int) -> None:
            try:
                for i in range(per_thread):
                    row = draft(*self.ids(setup), reference_id=f"t{thread}-{i}")
                    if i % 2:
                        assert store.append_transaction(row) is not None
                    else:
                        with store.writer() as writer:
                            assert writer.insert_transaction(row) is not None
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        seen: list[int] = []
        cursor = 0
        while True:
            # Decided before the read: an empty page after the writers ended is the end.
            writers_done = not any(thread.is_alive() for thread in threads)
            page = [
                t.transaction_id for t in store.transactions(after_transaction_id=cursor, limit=7)
            ]
            seen += page
            if page:
                cursor = page[-1]
            elif writers_done:
                break
        for thread in threads:
            thread.join()
        assert failures == []
        every = [t.transaction_id for t in store.transactions()]
        assert len(every) == 4 * per_thread
        assert seen == every

    # -- the writer's reads and spooled events ---------------------------------------

    def test_writer_reads_campaigns_and_approvals(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        other_publisher = store.add_publisher("Not promoting")
        with store.writer() as writer:
            campaign = writer.campaign(setup["campaign"])
            assert writer.campaign(999) is None
            assert writer.publisher_approved(setup["campaign"], setup["publisher"])
            assert not writer.publisher_approved(setup["campaign"], other_publisher.id)
            assert not writer.publisher_approved(999, setup["publisher"])
            payout = writer.campaign_payout(setup["campaign"])
        assert campaign is not None
        assert campaign == store.campaign(setup["campaign"])
        assert payout == campaign.payout
        with pytest.raises(NotFoundError), store.writer() as writer:
            writer.campaign_payout(999)

    def test_an_event_is_claimed_once(self, store: Storage) -> None:
        with store.writer() as writer:
            assert writer.claim_event("event-1", "2026-11-25T12:00:00.000000Z")
            assert not writer.claim_event("event-1", "2026-11-25T12:00:01.000000Z")
        with store.writer() as writer:
            assert not writer.claim_event("event-1", "2026-11-25T12:00:02.000000Z")
            assert writer.claim_event("event-2", "2026-11-25T12:00:02.000000Z")

    def test_many_events_are_claimed_at_once_each_once(self, store: Storage) -> None:
        at = "2026-11-25T12:00:00.000000Z"
        with store.writer() as writer:
            assert writer.claim_event("event-0", at)
            many = [f"event-{n}" for n in range(600)]  # past one statement's chunk
            assert writer.claim_events([*many, "event-7"], at) == set(many) - {"event-0"}
            assert writer.claim_events([], at) == set()
        with store.writer() as writer:
            assert writer.claim_events(["event-599", "event-600"], at) == {"event-600"}
            assert not writer.claim_event("event-600", at)

    def test_a_claim_rolled_back_with_its_write_can_be_claimed_again(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        with pytest.raises(RuntimeError), store.writer() as writer:
            assert writer.claim_event("event-1", "2026-11-25T12:00:00.000000Z")
            writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))
            raise RuntimeError("the event's write failed")
        assert list(store.transactions()) == []
        with store.writer() as writer:
            assert writer.claim_event("event-1", "2026-11-25T12:00:01.000000Z")
            assert writer.insert_transaction(draft(*self.ids(setup), reference_id="r1"))

    # -- filters of the Transactions API -----------------------------------------------

    def test_transactions_filters(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser, campaign, publisher, visit = self.ids(setup)
        other = store.add_advertiser("Other")
        other_campaign = store.add_campaign(
            other.id, "Theirs", PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        )
        with store.writer() as writer:
            first = writer.insert_transaction(
                draft(*self.ids(setup), reference_id="r1", created_at="2026-11-25T12:00:00.000000Z")
            )
            correction = writer.insert_transaction(
                draft(
                    *self.ids(setup),
                    reference_id="r1",
                    sale_amount="20.00",
                    corrects=first,
                    original=first,
                    created_at="2026-11-25T13:00:00.000000Z",
                )
            )
            reversal = writer.insert_transaction(
                draft(
                    *self.ids(setup),
                    reference_id="r1",
                    sale_amount="20.00",
                    corrects=correction,
                    original=first,
                    created_at="2026-11-25T14:00:00.000000Z",
                    reversal_reason="refunded",
                )
            )
            second = writer.insert_transaction(
                draft(*self.ids(setup), reference_id="r2", created_at="2026-11-26T00:00:00.000000Z")
            )
            theirs = writer.insert_transaction(
                draft(
                    other.id,
                    other_campaign.id,
                    publisher,
                    None,
                    reference_id="r1",
                    created_at="2026-11-25T13:00:00.000000Z",
                )
            )

        def ids(**filters: Any) -> list[int]:
            return [t.transaction_id for t in store.transactions(**filters)]

        assert ids() == [first, correction, reversal, second, theirs]
        assert ids(advertiser_id=advertiser) == [first, correction, reversal, second]
        assert ids(advertiser_id=other.id) == [theirs]
        assert ids(transaction_id=correction) == [correction]
        assert ids(transaction_id=999) == []
        assert ids(reference_id="r1") == [first, correction, reversal, theirs]
        assert ids(reference_id="r1", advertiser_id=advertiser) == [first, correction, reversal]
        assert ids(reference_id="nope") == []
        assert ids(transaction_type=TransactionType.CONVERSION) == [first, second, theirs]
        assert ids(transaction_type=TransactionType.CORRECTION) == [correction]
        assert ids(transaction_type=TransactionType.REVERSAL) == [reversal]
        assert ids(created_from="2026-11-25T13:00:00.000000Z") == [
            correction,
            reversal,
            second,
            theirs,
        ]
        assert ids(created_before="2026-11-25T13:00:00.000000Z") == [first]
        assert ids(
            created_from="2026-11-25T13:00:00.000000Z", created_before="2026-11-25T14:00:00.000000Z"
        ) == [correction, theirs]
        assert ids(advertiser_id=advertiser, after_transaction_id=first, limit=2) == [
            correction,
            reversal,
        ]
        assert ids(
            advertiser_id=advertiser, transaction_type=TransactionType.CONVERSION, limit=1
        ) == [first]

        [row] = store.transactions(transaction_id=reversal)
        assert row.transaction_type is TransactionType.REVERSAL
        assert row.reversal_reason == "refunded"
        assert (row.corrects_transaction_id, row.original_transaction_id) == (correction, first)
        assert (row.sale_amount, row.payout) == (Decimal("20.00"), Decimal("0.00"))
        assert str(row.payout) == "0.00"

        # Each conversion once, at the end of its chain, in the order of its first row.
        assert [t.transaction_id for t in store.conversions()] == [reversal, second, theirs]
        assert [t.transaction_id for t in store.conversions(advertiser_id=advertiser)] == [
            reversal,
            second,
        ]
        assert list(store.conversions(advertiser_id=999)) == []
        assert (campaign, visit) == (row.campaign_id, row.visit_id)

    # -- API credentials and idempotency keys --------------------------------------------

    def test_credentials(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser = setup["advertiser"]
        other = store.add_advertiser("Other").id
        first = store.add_credential(advertiser, "checkout server", "digest-1")
        second = store.add_credential(other, "theirs", "digest-2")
        assert (first.advertiser_id, first.label, first.secret_hash) == (
            advertiser,
            "checkout server",
            "digest-1",
        )
        assert first.active and first.revoked_at is None
        assert store.credential(first.id) == first
        assert store.credential(999) is None
        assert store.credentials() == [first, second]
        assert store.credentials(advertiser_id=other) == [second]
        assert store.credentials(advertiser_id=999) == []

        assert store.revoke_credential(first.id)
        assert not store.revoke_credential(first.id)
        assert not store.revoke_credential(999)
        revoked = store.credential(first.id)
        assert revoked is not None and not revoked.active
        assert revoked.revoked_at is not None and revoked.revoked_at >= first.created_at
        # Revoked credentials are still listed.
        assert store.credentials(advertiser_id=advertiser) == [revoked]
        assert store.credential(second.id) == second

    def test_a_credential_needs_its_advertiser(self, store: Storage) -> None:
        with pytest.raises(NotFoundError):
            store.add_credential(999, "nobody's", "digest")
        assert store.credentials() == []

    def test_idempotency_records(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser = setup["advertiser"]
        other = store.add_advertiser("Other").id
        day_before = "2026-11-24T12:00:00.000000Z"
        record = IdempotencyRecord(
            advertiser, "key-1", "request-digest", 201, '{"ok":true}', "2026-11-25T12:00:00.000000Z"
        )
        assert store.idempotency_record(advertiser, "key-1", since=day_before) is None
        assert store.save_idempotency_record(record, expired_before=day_before) == record
        assert store.idempotency_record(advertiser, "key-1", since=day_before) == record
        assert store.idempotency_record(advertiser, "key-1", since=record.created_at) == record
        # Older than ``since``: expired, as good as gone.
        assert (
            store.idempotency_record(advertiser, "key-1", since="2026-11-25T12:00:00.000001Z")
            is None
        )
        assert store.idempotency_record(advertiser, "key-2", since=day_before) is None
        assert store.idempotency_record(other, "key-1", since=day_before) is None

        # The key is taken (a racing request saved first): the stored answer wins.
        rival = dataclasses.replace(
            record, request_hash="other", status=400, body="{}", created_at="2026-11-25T12:00:01Z"
        )
        assert store.save_idempotency_record(rival, expired_before=day_before) == record
        # Keys are per advertiser.
        theirs = dataclasses.replace(record, advertiser_id=other, body='{"theirs":1}')
        assert store.save_idempotency_record(theirs, expired_before=day_before) == theirs
        assert store.idempotency_record(other, "key-1", since=day_before) == theirs

        # Records created before ``expired_before`` are deleted first: the key is free again.
        later = dataclasses.replace(record, body='{"again":1}', created_at="2026-11-26T13:00:00Z")
        saved = store.save_idempotency_record(later, expired_before="2026-11-25T13:00:00.000000Z")
        assert saved == later
        assert store.idempotency_record(advertiser, "key-1", since=day_before) == later

    def test_racing_idempotency_records_agree(self, store: Storage, setup: dict[str, int]) -> None:
        results: list[IdempotencyRecord] = []

        def save(n: int) -> None:
            record = IdempotencyRecord(
                setup["advertiser"], "race", f"digest-{n}", 201, f'{{"n":{n}}}', "2026-11-25T12:00Z"
            )
            results.append(store.save_idempotency_record(record, expired_before="2026-11-24"))

        threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 6
        assert len(set(results)) == 1
        assert store.idempotency_record(setup["advertiser"], "race", since="2026") == results[0]

    def test_a_pending_idempotency_claim_is_settled_or_released(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        advertiser = setup["advertiser"]
        day_before = "2026-11-24T12:00:00.000000Z"
        claim = IdempotencyRecord(advertiser, "k", "digest", 0, "pending:1", "2026-11-25T12:00Z")
        assert store.save_idempotency_record(claim, expired_before=day_before) == claim
        # Another request's digest settles nothing.
        store.settle_idempotency_record(advertiser, "k", "other", status=201, body="{}")
        assert store.idempotency_record(advertiser, "k", since=day_before) == claim
        store.settle_idempotency_record(advertiser, "k", "digest", status=201, body='{"a":1}')
        settled = dataclasses.replace(claim, status=201, body='{"a":1}')
        assert store.idempotency_record(advertiser, "k", since=day_before) == settled
        # A settled answer is final: neither settled again nor released.
        store.settle_idempotency_record(advertiser, "k", "digest", status=None)
        store.settle_idempotency_record(advertiser, "k", "digest", status=400, body="{}")
        assert store.idempotency_record(advertiser, "k", since=day_before) == settled
        second = dataclasses.replace(claim, key="k2")
        store.save_idempotency_record(second, expired_before=day_before)
        store.settle_idempotency_record(advertiser, "k2", "digest", status=None)
        assert store.idempotency_record(advertiser, "k2", since=day_before) is None

    # -- server precedence and contested claims ---------------------------------------

    def test_server_reports_are_remembered_by_source_and_digest(
        self, store: Storage, setup: dict[str, int]
    ) -> None:
        advertiser = setup["advertiser"]
        with store.writer() as writer:
            assert not writer.server_reported(advertiser, "r-1")
            writer.note_server_report(advertiser, "r-1", "api", "h1", "2026-11-25T12:00Z")
            writer.note_server_report(advertiser, "r-1", "api", "h1", "2026-11-25T12:01Z")
        with store.writer() as writer:
            assert writer.server_reported(advertiser, "r-1")
            assert not writer.server_reported(advertiser, "r-2")
            assert writer.server_report_seen(advertiser, "r-1", "api", "h1")
            assert not writer.server_report_seen(advertiser, "r-1", "csv_upload", "h1")
            assert not writer.server_report_seen(advertiser, "r-1", "api", "h2")

    def test_claims_are_kept_until_decided(self, store: Storage, setup: dict[str, int]) -> None:
        advertiser, campaign, publisher, visit = self.ids(setup)
        [original] = [store.append_transaction(draft(*self.ids(setup), reference_id="c-1"))]
        assert original is not None
        claim = ReferenceClaim(
            0, advertiser, "c-1", visit, campaign, publisher, "pixel", '{"x":1}', "2026-11-25T12Z"
        )
        with store.writer() as writer:
            writer.add_claim(claim)
            writer.add_claim(dataclasses.replace(claim, report='{"x":2}'))
        assert store.contested_references(advertiser) == {"c-1"}
        assert store.contested_references(advertiser + 1) == set()
        [row] = store.conversions()
        assert row.contested
        with store.writer() as writer:
            first, second = writer.open_claims(advertiser, "c-1")
            assert (first.report, second.report) == ('{"x":1}', '{"x":2}')
            assert first.claim_id < second.claim_id
            assert dataclasses.replace(first, claim_id=0) == claim
            writer.resolve_claims([first.claim_id, second.claim_id], second.claim_id, "2026Z")
        with store.writer() as writer:
            assert writer.open_claims(advertiser, "c-1") == []
        assert store.contested_references(advertiser) == set()
        [row] = store.conversions()
        assert not row.contested

    # -- text ------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "text",
        [
            pytest.param("Ünïcødé ☕ \U0001d518 🎉", id="unicode"),
            pytest.param("q\"uote \\ back'slash", id="quotes"),
            pytest.param("tab\tnew\nline\r", id="whitespace-controls"),
            pytest.param("\u2028\u2029\u200b\ufeff", id="separators"),
            pytest.param("x" * 10_000, id="long"),
            pytest.param("", id="empty"),
        ],
    )
    def test_text_round_trips_exactly(
        self, store: Storage, setup: dict[str, int], text: str
    ) -> None:
        created = store.add_advertiser(text)
        found = store.advertiser(created.id)
        assert found is not None and found.name == text
        with store.writer() as writer:
            new_id = writer.insert_transaction(
                draft(
                    *self.ids(setup),
                    reference_id=text or None,
                    sku_list=(text, "b"),
                    custom_data={text: text},
                )
            )
        [row] = store.transactions(transaction_id=new_id)
        assert (row.reference_id, row.sku_list, row.custom_data) == (
            text or None,
            (text, "b"),
            {text: text},
        )

    def test_a_nul_is_stored_whole_or_refused(self, store: Storage, setup: dict[str, int]) -> None:
        """The edge refuses NUL; should one reach a store, it is never cut short.

        Inside the JSON of lists and dicts a NUL is an escape (``\\u0000``) and
        round-trips on every backend; a plain text column either keeps it (SQLite)
        or refuses it with a StorageError (PostgreSQL's text cannot hold one).
        """
        with store.writer() as writer:
            new_id = writer.insert_transaction(
                draft(*self.ids(setup), sku_list=("a\x00b",), custom_data={"k\x00": "v\x00"})
            )
        [row] = store.transactions(transaction_id=new_id)
        assert (row.sku_list, row.custom_data) == (("a\x00b",), {"k\x00": "v\x00"})
        try:
            created = store.add_publisher("a\x00b")
        except StorageError:
            assert [p.name for p in store.publishers()] == ["Pub"]
        else:
            found = store.publisher(created.id)
            assert found is not None and found.name == "a\x00b"
