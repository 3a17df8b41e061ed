"""The delivery outbox's storage contract: targets, queueing, claims, settlement.

Subclassed by each backend's test module, like :class:`.storage_contract.StorageContract`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

import pytest

from pixel_wsgi import NotFoundError, PayoutKind, PayoutRule, Storage
from pixel_wsgi.models import (
    DeliveryAttempt,
    DeliveryStatus,
    Settlement,
    StoredTarget,
    TargetKind,
    TargetStatus,
)

from .storage_contract import MakeStorage, draft

T0 = "2026-12-01T10:00:00.000000Z"
T1 = "2026-12-01T10:01:00.000000Z"
LATER = "2026-12-01T11:00:00.000000Z"
EVEN_LATER = "2026-12-01T12:00:00.000000Z"


@dataclass
class Outbox:
    store: Storage
    target: StoredTarget
    advertiser_id: int
    campaign_id: int
    publisher_id: int

    def conversion(self, reference_id: str) -> int:
        made = self.store.append_transaction(
            draft(
                self.advertiser_id,
                self.campaign_id,
                self.publisher_id,
                None,
                reference_id=reference_id,
            )
        )
        assert made is not None
        return made

    def correction(self, original: int, corrects: int) -> int:
        made = self.store.append_transaction(
            draft(
                self.advertiser_id,
                self.campaign_id,
                self.publisher_id,
                None,
                sale_amount="5.00",
                corrects=corrects,
                original=original,
            )
        )
        assert made is not None
        return made

    def queue(self, *rows: tuple[int, int]) -> None:
        current = self.store.target(self.target.id)
        assert current is not None
        newest = max(row[0] for row in rows)
        assert self.store.queue_deliveries(self.target.id, current.cursor, newest, rows, T0)

    def claim(self, token: str = "a", *, now: str = T1, limit: int = 10) -> list[int]:
        claimed = self.store.claim_deliveries(
            self.target.id, now=now, lease_until=LATER, token=token, limit=limit
        )
        return [delivery.transaction_id for delivery in claimed]

    def settle(self, token: str, transaction_id: int, status: DeliveryStatus) -> int:
        return self.store.settle_deliveries(
            self.target.id,
            token,
            [Settlement(transaction_id, status, 1, T1, "ok")],
            [
                DeliveryAttempt(
                    self.target.id, (transaction_id,), T1, "delivered", "ok", "GET /", "204", 3
                )
            ],
        )


class DeliveryContract:
    """What the worker relies on, whatever the backend."""

    @pytest.fixture
    def outbox(self, make_storage: MakeStorage) -> Outbox:
        store = make_storage()
        advertiser = store.add_advertiser("Acme")
        publisher = store.add_publisher("Blog")
        campaign = store.add_campaign(
            advertiser.id, "Sale", PayoutRule(PayoutKind.FIXED, Decimal("1"), "USD")
        )
        target = store.add_target(
            advertiser.id,
            TargetKind.WEBHOOK,
            publisher_id=None,
            settings={"url": "http://127.0.0.1:9/"},
            sealed_secrets="v1.sealed",
            start_after=0,
        )
        return Outbox(store, target, advertiser.id, campaign.id, publisher.id)

    def test_a_target_is_stored_and_changed(self, outbox: Outbox) -> None:
        store, target = outbox.store, outbox.target
        assert target.status is TargetStatus.ACTIVE
        assert target.settings == {"url": "http://127.0.0.1:9/"}
        assert target.cursor == 0
        changed = store.set_target(target.id, {"url": "http://127.0.0.1:10/"}, "v1.other")
        assert (changed.settings, changed.sealed_secrets) == (
            {"url": "http://127.0.0.1:10/"},
            "v1.other",
        )
        store.set_target_breaker(target.id, 3, LATER)
        broken = store.target(target.id)
        assert broken is not None and (broken.failures, broken.resume_at) == (3, LATER)
        resumed = store.set_target_status(target.id, TargetStatus.ACTIVE, None)
        assert (resumed.failures, resumed.resume_at) == (0, None)
        store.set_target_status(target.id, TargetStatus.REMOVED, "by hand")
        assert store.targets(advertiser_id=outbox.advertiser_id) == []
        assert [t.id for t in store.targets(removed=True)] == [target.id]
        with pytest.raises(NotFoundError):
            store.set_target_status(target.id + 99, TargetStatus.PAUSED, None)

    def test_add_target_refuses_unknown_advertiser_and_publisher(self, outbox: Outbox) -> None:
        for advertiser_id, publisher_id in ((999, None), (outbox.advertiser_id, 999)):
            with pytest.raises(NotFoundError):
                outbox.store.add_target(
                    advertiser_id,
                    TargetKind.POSTBACK,
                    publisher_id=publisher_id,
                    settings={},
                    sealed_secrets="v1.x",
                    start_after=0,
                )

    def test_last_transaction_id(self, outbox: Outbox) -> None:
        assert outbox.store.last_transaction_id() == 0
        first = outbox.conversion("a")
        assert outbox.store.last_transaction_id() == first
        assert outbox.store.last_transaction_id(before="2026-11-25T12:00:00.000000Z") == 0
        assert outbox.store.last_transaction_id(before="2026-11-25T12:00:00.000001Z") == first

    def test_queueing_moves_the_cursor_once(self, outbox: Outbox) -> None:
        store, target = outbox.store, outbox.target
        first = outbox.conversion("a")
        assert store.queue_deliveries(target.id, 0, first, [(first, first)], T0)
        # A second worker that read the same cursor changes nothing.
        assert not store.queue_deliveries(target.id, 0, first, [(first, first)], T0)
        assert [d.transaction_id for d in store.deliveries(target.id)] == [first]
        assert store.settled_through(target.id) == first - 1

    def test_a_claim_leases_and_a_stale_token_settles_nothing(self, outbox: Outbox) -> None:
        first, second = outbox.conversion("a"), outbox.conversion("b")
        outbox.queue((first, first), (second, second))
        assert outbox.claim("a", limit=1) == [first]
        assert outbox.claim("b") == [second]  # the first is leased
        assert outbox.claim("c") == []
        assert outbox.settle("b", first, DeliveryStatus.DELIVERED) == 0  # not b's
        assert outbox.settle("a", first, DeliveryStatus.DELIVERED) == 1
        # A lease that ran out lets another worker take the row.
        assert outbox.claim("d", now=LATER) == [second]
        counts = outbox.store.delivery_counts(outbox.target.id)
        assert counts == {DeliveryStatus.DELIVERED: 1, DeliveryStatus.PENDING: 1}
        # Both attempts were made, so both are logged (newest first).
        newest, oldest = outbox.store.delivery_attempts(outbox.target.id)
        assert newest.id is not None and oldest.id is not None and newest.id > oldest.id
        assert (newest.transaction_ids, newest.outcome, newest.duration_ms) == (
            (first,),
            "delivered",
            3,
        )
        assert outbox.store.attempt_outcomes_by_day(outbox.target.id, "2026-12-01") == [
            ("2026-12-01", "delivered", 2)
        ]

    def test_a_correction_waits_for_its_original(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        fix = outbox.correction(first, first)
        outbox.queue((first, first), (fix, first))
        assert outbox.claim("a") == [first]
        assert outbox.claim("b") == []
        outbox.settle("a", first, DeliveryStatus.DELIVERED)
        [claimed] = outbox.store.claim_deliveries(
            outbox.target.id, now=T1, lease_until=LATER, token="c", limit=5
        )
        assert (claimed.transaction_id, claimed.original_status) == (fix, DeliveryStatus.DELIVERED)
        assert outbox.store.settled_through(outbox.target.id) == first

    def test_a_renewed_lease_keeps_the_rows_and_a_lost_one_is_not_renewed(
        self, outbox: Outbox
    ) -> None:
        first, second = outbox.conversion("a"), outbox.conversion("b")
        outbox.queue((first, first), (second, second))
        store, target_id = outbox.store, outbox.target.id
        assert outbox.claim("a") == [first, second]
        assert store.renew_lease(target_id, "a", lease_until=EVEN_LATER) == {first, second}
        assert outbox.claim("b", now=LATER) == []  # renewed: still a's
        assert outbox.settle("a", first, DeliveryStatus.DELIVERED) == 1
        # Past the renewed lease another worker takes the rest; a's renewal finds none.
        assert outbox.claim("c", now=EVEN_LATER) == [second]
        assert store.renew_lease(target_id, "a", lease_until=EVEN_LATER) == set()

    def test_a_paused_target_has_nothing_due(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        outbox.queue((first, first))
        outbox.store.set_target_status(outbox.target.id, TargetStatus.PAUSED, None)
        assert outbox.claim("a") == []
        outbox.store.set_target_status(outbox.target.id, TargetStatus.ACTIVE, None)
        assert outbox.claim("a") == [first]

    def test_a_correction_says_which_later_row_superseded_it(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        fix = outbox.correction(first, first)
        newer = outbox.correction(first, fix)
        outbox.queue((first, first), (fix, first), (newer, first))
        assert outbox.claim("a") == [first]
        outbox.settle("a", first, DeliveryStatus.DELIVERED)
        assert outbox.claim("b") == [fix]
        outbox.settle("b", fix, DeliveryStatus.DEAD)
        assert outbox.claim("c") == [newer]
        outbox.settle("c", newer, DeliveryStatus.DELIVERED)
        store, target_id = outbox.store, outbox.target.id
        store.move_deliveries(
            target_id,
            from_statuses=[DeliveryStatus.DEAD],
            to_status=DeliveryStatus.PENDING,
            now=T1,
            detail=None,
        )
        [again] = store.claim_deliveries(target_id, now=T1, lease_until=LATER, token="d", limit=5)
        assert (again.transaction_id, again.superseded_by) == (fix, newer)

    def test_due_deliveries_lease_nothing(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        outbox.queue((first, first))
        due = outbox.store.due_deliveries(outbox.target.id, now=T1, limit=5)
        assert [d.transaction_id for d in due] == [first]
        assert outbox.claim("a") == [first]

    def test_move_deliveries(self, outbox: Outbox) -> None:
        first, second = outbox.conversion("a"), outbox.conversion("b")
        outbox.queue((first, first), (second, second))
        store, target_id = outbox.store, outbox.target.id
        skipped = store.move_deliveries(
            target_id,
            from_statuses=[DeliveryStatus.PENDING],
            to_status=DeliveryStatus.SKIPPED,
            now=T1,
            detail="skipped by hand",
            transaction_ids=[second],
        )
        assert skipped == 1
        assert outbox.claim("a") == [first]
        # A leased row is not moved.
        assert (
            store.move_deliveries(
                target_id,
                from_statuses=[DeliveryStatus.PENDING],
                to_status=DeliveryStatus.SKIPPED,
                now=T1,
                detail=None,
            )
            == 0
        )
        back = store.move_deliveries(
            target_id,
            from_statuses=[DeliveryStatus.SKIPPED, DeliveryStatus.DEAD],
            to_status=DeliveryStatus.PENDING,
            now=T1,
            detail=None,
        )
        assert back == 1
        listed = {
            d.transaction_id: d.status
            for d in store.deliveries(target_id, status=DeliveryStatus.PENDING)
        }
        assert listed == {first: DeliveryStatus.PENDING, second: DeliveryStatus.PENDING}
        assert store.oldest_pending(target_id) == "2026-11-25T12:00:00.000000Z"

    def test_transactions_by_id(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        rows = outbox.store.transactions_by_id([first, 12345])
        assert list(rows) == [first] and rows[first].reference_id == "a"
        assert outbox.store.transactions_by_id([]) == {}

    def test_concurrent_claims_never_share_a_row(self, outbox: Outbox) -> None:
        ids = [outbox.conversion(f"r{n}") for n in range(40)]
        outbox.queue(*((i, i) for i in ids))
        claimed: list[list[int]] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def claim(token: str) -> None:
            start.wait()
            mine: list[int] = []
            while got := outbox.claim(token, limit=3):
                mine.extend(got)
            with lock:
                claimed.append(mine)

        threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [i for mine in claimed for i in mine]
        assert sorted(every) == ids

    def test_a_retried_row_is_queued_anew(self, outbox: Outbox) -> None:
        first = outbox.conversion("a")
        outbox.queue((first, first))
        store, target_id = outbox.store, outbox.target.id
        assert outbox.claim("a") == [first]
        outbox.settle("a", first, DeliveryStatus.DEAD)
        moved = store.move_deliveries(
            target_id,
            from_statuses=[DeliveryStatus.DEAD],
            to_status=DeliveryStatus.PENDING,
            now=LATER,
            detail=None,
        )
        assert moved == 1
        [row] = store.deliveries(target_id)
        assert (row.status, row.created_at, row.next_attempt_at) == (
            DeliveryStatus.PENDING,
            LATER,
            LATER,
        )
