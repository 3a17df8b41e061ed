"""What ``/pixels/health`` and the dashboard read of delivery: one contract for every
backend. A backend's test module subclasses :class:`DeliveryHealthContract` and provides
``make_storage`` (as for :class:`~tests.storage_contract.StorageContract`)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, Storage
from pixel_wsgi.models import (
    DeliveryAttempt,
    DeliveryStatus,
    Settlement,
    TargetHealth,
    TargetKind,
    TargetStatus,
)

from .storage_contract import MakeStorage, draft

NOW = "2026-11-25T12:00:00.000000Z"
LATER = "2026-11-25T13:00:00.000000Z"


def attempt(target_id: int, outcome: str, transaction_id: int = 1) -> DeliveryAttempt:
    return DeliveryAttempt(
        target_id=target_id,
        transaction_ids=(transaction_id,),
        attempted_at=NOW,
        outcome=outcome,
        detail=f"it was {outcome}",
        request="POST http://127.0.0.1/hook",
        response="HTTP 200",
        duration_ms=3,
    )


class DeliveryHealthContract:
    """``delivery_health`` (one read for every target) and the filtered attempt log."""

    @pytest.fixture
    def store(self, make_storage: MakeStorage) -> Storage:
        return make_storage()

    @pytest.fixture
    def ids(self, store: Storage) -> dict[str, int]:
        acme = store.add_advertiser("Acme")
        other = store.add_advertiser("Other")
        publisher = store.add_publisher("Pub")
        rule = PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        campaign = store.add_campaign(acme.id, "A", rule)
        other_campaign = store.add_campaign(other.id, "O", rule)
        return {
            "acme": acme.id,
            "other": other.id,
            "publisher": publisher.id,
            "campaign": campaign.id,
            "other_campaign": other_campaign.id,
        }

    def _row(self, store: Storage, ids: dict[str, int], reference: str, created_at: str) -> int:
        made = store.append_transaction(
            draft(
                ids["acme"],
                ids["campaign"],
                ids["publisher"],
                None,
                reference_id=reference,
                created_at=created_at,
            )
        )
        assert made is not None
        return made

    def _target(
        self,
        store: Storage,
        advertiser_id: int,
        start_after: int = 0,
        kind: TargetKind = TargetKind.WEBHOOK,
    ) -> int:
        return store.add_target(
            advertiser_id,
            kind,
            publisher_id=None,
            settings={"url": "http://127.0.0.1:9/hook"},
            sealed_secrets="v1.sealed",
            start_after=start_after,
        ).id

    def test_each_target_with_its_backlog_in_one_read(
        self, store: Storage, ids: dict[str, int]
    ) -> None:
        first = self._row(store, ids, "r1", "2026-11-25T10:00:00.000000Z")
        second = self._row(store, ids, "r2", "2026-11-25T10:30:00.000000Z")
        third = self._row(store, ids, "r3", "2026-11-25T11:00:00.000000Z")
        behind = self._target(store, ids["acme"])
        caught_up = self._target(store, ids["acme"], start_after=third, kind=TargetKind.META_CAPI)
        elsewhere = self._target(store, ids["other"])
        # Two rows queued, the third not yet; the first delivered.
        assert store.queue_deliveries(behind, 0, second, [(first, first), (second, second)], NOW)
        claimed = store.claim_deliveries(behind, now=NOW, lease_until=LATER, token="t", limit=1)
        assert [d.transaction_id for d in claimed] == [first]
        store.settle_deliveries(
            behind, "t", [Settlement(first, DeliveryStatus.DELIVERED, 1, NOW, "HTTP 204")], []
        )
        store.set_target_status(elsewhere, TargetStatus.AUTH_FAILED, "HTTP 401: bad token")
        store.set_target_breaker(caught_up, 2, LATER)

        assert store.delivery_health() == [
            TargetHealth(
                target_id=behind,
                advertiser_id=ids["acme"],
                kind=TargetKind.WEBHOOK,
                status=TargetStatus.ACTIVE,
                status_detail=None,
                failures=0,
                resume_at=None,
                pending=1,
                oldest_pending_at="2026-11-25T10:30:00.000000Z",
                oldest_unqueued_at="2026-11-25T11:00:00.000000Z",
            ),
            TargetHealth(
                target_id=caught_up,
                advertiser_id=ids["acme"],
                kind=TargetKind.META_CAPI,
                status=TargetStatus.ACTIVE,
                status_detail=None,
                failures=2,
                resume_at=LATER,
                pending=0,
                oldest_pending_at=None,
                oldest_unqueued_at=None,
            ),
            TargetHealth(
                target_id=elsewhere,
                advertiser_id=ids["other"],
                kind=TargetKind.WEBHOOK,
                status=TargetStatus.AUTH_FAILED,
                status_detail="HTTP 401: bad token",
                failures=0,
                resume_at=None,
                pending=0,
                oldest_pending_at=None,
                # Acme's rows are not the other advertiser's backlog.
                oldest_unqueued_at=None,
            ),
        ]
        [health] = [h for h in store.delivery_health() if h.target_id == behind]
        assert health.oldest_undelivered_at == "2026-11-25T10:30:00.000000Z"

    def test_filters_by_advertiser_and_leaves_out_removed_targets(
        self, store: Storage, ids: dict[str, int]
    ) -> None:
        kept = self._target(store, ids["acme"])
        removed = self._target(store, ids["acme"])
        other = self._target(store, ids["other"])
        store.set_target_status(removed, TargetStatus.REMOVED, None)
        assert [h.target_id for h in store.delivery_health()] == [kept, other]
        assert [h.target_id for h in store.delivery_health(advertiser_id=ids["acme"])] == [kept]
        assert [
            h.target_id for h in store.delivery_health(advertiser_id=ids["acme"], removed=True)
        ] == [kept, removed]
        assert store.delivery_health(advertiser_id=ids["other"] + 100) == []

    def test_an_empty_store_has_no_targets(self, store: Storage) -> None:
        assert store.delivery_health() == []

    def test_the_last_errors_leave_out_the_outcomes_asked(
        self, store: Storage, ids: dict[str, int]
    ) -> None:
        target = self._target(store, ids["acme"])
        outcomes = ["delivered", "retry", "duplicate", "permanent", "mixed", "delivered"]
        store.settle_deliveries(target, "t", [], [attempt(target, o) for o in outcomes])
        every = store.delivery_attempts(target)
        assert [a.outcome for a in every] == list(reversed(outcomes))
        errors = store.delivery_attempts(target, exclude_outcomes=("delivered", "duplicate"))
        assert [a.outcome for a in errors] == ["mixed", "permanent", "retry"]
        assert [a.detail for a in errors] == ["it was mixed", "it was permanent", "it was retry"]
        assert [
            a.outcome
            for a in store.delivery_attempts(target, limit=2, exclude_outcomes=("delivered",))
        ] == ["mixed", "permanent"]
        assert store.delivery_attempts(target, exclude_outcomes=tuple(set(outcomes))) == []
