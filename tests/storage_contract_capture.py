"""The storage contract of delivery's capture: what a click and a conversion keep, on
every backend (subclass :class:`CaptureContract` beside a ``make_storage`` fixture)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi import EntityInvalid, NotFoundError, PayoutKind, PayoutRule, Storage, StorageError
from pixel_wsgi.models import ClickContext, ConversionContext, DeliveryContext, Transaction

from .storage_contract import MakeStorage, draft

CLICK = ClickContext(
    sub_ids={"sub1": "Summer Sale", "sub3": "été ✓"},
    click_ids={"gclid": "Cj0KCQiA-AbC_xYz", "fbclid": "IwAR0dEf"},
    clicked_at_ms=1_764_072_000_123,
)
CONTEXT = ConversionContext(
    fbp="fb.1.1764072000123.987654321",
    ga_client_id="1234567890.1764072000",
    user_agent='Mozilla/5.0 (X11) "quoted" é',
    ip_prefix="203.0.113.0",
    page_url="https://shop.example/thanks",
)
AT = "2026-11-25T11:00:00.000000Z"


def _raw(store: Storage, sql: str) -> None:
    """Run one statement as the store's own write (its driver's errors mapped)."""
    with store._transaction("run a test statement") as execute:  # type: ignore[attr-defined]
        execute(sql, ())


class CaptureContract:
    """Click and conversion contexts, for delivery."""

    @pytest.fixture
    def store(self, make_storage: MakeStorage) -> Storage:
        return make_storage()

    @pytest.fixture
    def world(self, store: Storage) -> dict[str, Any]:
        advertiser = store.add_advertiser("Acme")
        publisher = store.add_publisher("Pub")
        campaign = store.add_campaign(
            advertiser.id, "Camp", PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        )
        link = store.add_link(campaign.id, publisher.id, "/landing")
        return {
            "advertiser": advertiser.id,
            "publisher": publisher.id,
            "campaign": campaign.id,
            "link": link,
            "clicked": store.record_visit(
                link, ip_prefix="203.0.113.0", user_agent="UA", created_at=AT, click=CLICK
            ),
            "plain": store.record_visit(link, ip_prefix=None, user_agent=None, created_at=AT),
        }

    def _draft(self, world: dict[str, Any], visit: str = "clicked", **options: Any) -> Any:
        conversion = options.pop("conversion", None)
        made = draft(
            world["advertiser"], world["campaign"], world["publisher"], world[visit], **options
        )
        return dataclasses.replace(made, conversion=conversion)

    def _chain(self, store: Storage, world: dict[str, Any]) -> tuple[int, int, int]:
        """A conversion with its context and personal data, a correction, a reversal."""
        with store.writer() as writer:
            original = writer.insert_transaction(
                self._draft(
                    world,
                    reference_id="o-1",
                    conversion=CONTEXT,
                    personal_data={"email_address": "a@b.example"},
                )
            )
            assert original is not None
            correction = writer.insert_transaction(
                self._draft(
                    world,
                    reference_id="o-1",
                    corrects=original,
                    original=original,
                    sale_amount="8.00",
                    personal_data={"email_address": "other@b.example"},
                )
            )
            assert correction is not None
            reversal = writer.insert_transaction(
                self._draft(
                    world,
                    reference_id="o-1",
                    corrects=correction,
                    original=original,
                    reversal_reason="refund",
                )
            )
            assert reversal is not None
        return original, correction, reversal

    # -- the click ----------------------------------------------------------------------

    def test_a_visit_keeps_its_click_context_exactly(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        new_id = store.append_transaction(self._draft(world, reference_id="r"))
        assert new_id is not None
        assert store.delivery_contexts([new_id]) == {
            new_id: DeliveryContext(click=CLICK, conversion=None, personal={}, original_click=CLICK)
        }

    def test_a_click_that_carried_nothing_keeps_none(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        empty = store.record_visit(
            world["link"], ip_prefix=None, user_agent=None, created_at=AT, click=ClickContext()
        )
        only_time = store.record_visit(
            world["link"],
            ip_prefix=None,
            user_agent=None,
            created_at=AT,
            click=ClickContext(clicked_at_ms=1),
        )
        rows = []
        for visit in (empty, only_time, world["plain"]):
            with store.writer() as writer:
                rows.append(
                    writer.insert_transaction(
                        dataclasses.replace(self._draft(world), visit_id=visit)
                    )
                )
        contexts = store.delivery_contexts([r for r in rows if r is not None])
        assert [contexts[r].click for r in rows if r is not None] == [None, None, None]

    def test_a_replayed_click_fills_the_visit_its_conversion_stored_first(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        link = world["link"]
        with store.writer() as writer:  # a conversion came with the cookie before the replay
            assert writer.ensure_visit(-7, link.id, AT)
            new_id = writer.insert_transaction(dataclasses.replace(self._draft(world), visit_id=-7))
        assert new_id is not None
        assert store.delivery_contexts([new_id])[new_id].click is None
        for _ in range(2):  # the replay, then the replay again (idempotent)
            store.record_visit(
                link, ip_prefix=None, user_agent=None, created_at=AT, visit_id=-7, click=CLICK
            )
        assert store.delivery_contexts([new_id])[new_id].click == CLICK
        other = dataclasses.replace(CLICK, sub_ids={"sub1": "later"})
        store.record_visit(
            link, ip_prefix=None, user_agent=None, created_at=AT, visit_id=-7, click=other
        )
        assert store.delivery_contexts([new_id])[new_id].click == CLICK  # the first stays

    # -- the conversion --------------------------------------------------------------

    def test_a_conversion_keeps_its_request_context(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        appended = store.append_transaction(
            self._draft(world, reference_id="fast", conversion=CONTEXT)
        )
        partial = ConversionContext(ip_prefix="2001:db8:1234::")
        with store.writer() as writer:
            written = writer.insert_transaction(
                self._draft(world, "plain", reference_id="slow", conversion=partial)
            )
            bare = writer.insert_transaction(self._draft(world, "plain", reference_id="bare"))
        assert appended is not None and written is not None and bare is not None
        contexts = store.delivery_contexts([appended, written, bare])
        assert contexts[appended] == DeliveryContext(CLICK, CONTEXT, {}, CLICK)
        assert contexts[written] == DeliveryContext(None, partial, {})
        assert contexts[bare] == DeliveryContext(None, None, {})
        # The ledger rows themselves read as they always did.
        assert [row.reference_id for row in store.transactions()] == ["fast", "slow", "bare"]

    def test_corrections_and_reversals_share_their_originals_context(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        original, correction, reversal = self._chain(store, world)
        expected = DeliveryContext(CLICK, CONTEXT, {"email_address": "a@b.example"}, CLICK)
        assert store.delivery_contexts([reversal, correction, original, 999]) == {
            original: expected,
            correction: expected,
            reversal: expected,
        }

    def test_contexts_of_no_rows(self, store: Storage, world: dict[str, Any]) -> None:
        assert store.delivery_contexts([]) == {}
        assert store.delivery_contexts([998, 999]) == {}
        assert store.forget_conversion_contexts(world["advertiser"], 999) == 0

    def test_a_large_batch_is_read_whole(self, store: Storage, world: dict[str, Any]) -> None:
        with store.writer() as writer:
            ids = [
                writer.insert_transaction(
                    self._draft(world, reference_id=f"b-{n}", conversion=CONTEXT)
                )
                for n in range(1234)
            ]
        contexts = store.delivery_contexts([*ids, *ids[:10]])
        assert sorted(contexts) == sorted(ids)
        assert {c.conversion for c in contexts.values()} == {CONTEXT}
        last = max(i for i in ids if i is not None)
        assert store.forget_conversion_contexts(world["advertiser"] + 1000, last) == 0
        assert store.forget_conversion_contexts(world["advertiser"], last - 34) == 1200
        assert store.forget_conversion_contexts(world["advertiser"], last) == 34

    def test_erasing_a_conversions_personal_data_forgets_its_request_context(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        _, correction, _ = self._chain(store, world)
        assert store.erase_personal_data(world["advertiser"], "o-1") == 2
        expected = DeliveryContext(CLICK, None, {}, CLICK)
        assert store.delivery_contexts([correction])[correction] == expected

    # -- forgetting, the one change the ledger allows ------------------------------------

    def test_a_forgotten_context_is_gone_for_the_whole_chain(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        original, correction, reversal = self._chain(store, world)
        before = list(store.transactions())
        # Only the original carries the context: the chain's rows share it.
        assert store.forget_conversion_contexts(world["advertiser"], original - 1) == 0
        assert store.forget_conversion_contexts(world["advertiser"], reversal) == 1
        assert store.forget_conversion_contexts(world["advertiser"], reversal) == 0
        for context in store.delivery_contexts([original, correction, reversal]).values():
            assert context == DeliveryContext(CLICK, None, {"email_address": "a@b.example"}, CLICK)
        assert list(store.transactions()) == before

    @pytest.mark.parametrize(
        "statement",
        [
            pytest.param("UPDATE transactions SET sale_amount = '999.00'", id="a-value"),
            pytest.param("UPDATE transactions SET sale_amount = sale_amount", id="a-value-alike"),
            pytest.param(
                "UPDATE transactions SET created_at = created_at WHERE corrects_transaction_id"
                " IS NULL",
                id="one-row",
            ),
            pytest.param("UPDATE transactions SET reversal_reason = 'x'", id="reversal"),
            pytest.param(
                "UPDATE transactions SET delivery_context = NULL, payout = '0.00'",
                id="forget-and-more",
            ),
            pytest.param("UPDATE transactions SET delivery_context = '{}'", id="a-context"),
            pytest.param(
                "UPDATE transactions SET delivery_context = delivery_context",
                id="a-context-alike",
            ),
            pytest.param("DELETE FROM transactions", id="delete"),
        ],
    )
    def test_the_ledger_refuses_every_other_change(
        self, store: Storage, world: dict[str, Any], statement: str
    ) -> None:
        self._chain(store, world)
        before = list(store.transactions())
        contexts = store.delivery_contexts([row.transaction_id for row in before])
        with pytest.raises(StorageError, match="append-only"):
            _raw(store, statement)
        assert list(store.transactions()) == before
        assert store.delivery_contexts([row.transaction_id for row in before]) == contexts

    def test_the_ledger_allows_forgetting_contexts_by_sql(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        original, _, _ = self._chain(store, world)
        before: list[Transaction] = list(store.transactions())
        _raw(store, "UPDATE transactions SET delivery_context = NULL")
        assert store.delivery_contexts([original])[original].conversion is None
        assert list(store.transactions()) == before

    # -- the advertiser's choice ------------------------------------------------------

    def test_an_advertiser_keeps_contexts_only_when_asked(
        self, store: Storage, world: dict[str, Any]
    ) -> None:
        advertiser = world["advertiser"]
        with store.writer() as writer:
            attribution = writer.attribution(world["clicked"])
        assert attribution is not None and not attribution.keeps_conversion_context
        stored = store.advertiser(advertiser)
        assert stored is not None and not stored.keeps_conversion_context
        store.set_advertiser_keeps_conversion_context(advertiser, True)
        stored = store.advertiser(advertiser)
        assert stored is not None and stored.keeps_conversion_context
        assert stored.require_signed_pixels is False
        assert [a.keeps_conversion_context for a in store.advertisers()] == [True]
        with store.writer() as writer:
            attribution = writer.attribution(world["clicked"])
        assert attribution is not None and attribution.keeps_conversion_context
        store.set_advertiser_keeps_conversion_context(advertiser, False)
        stored = store.advertiser(advertiser)
        assert stored is not None and not stored.keeps_conversion_context

    def test_the_choice_of_an_unknown_advertiser(self, store: Storage) -> None:
        with pytest.raises(NotFoundError):
            store.set_advertiser_keeps_conversion_context(999, True)
        advertiser = store.add_advertiser("A")
        with pytest.raises(EntityInvalid):
            store.set_advertiser_keeps_conversion_context(advertiser.id, 1)  # type: ignore[arg-type]
