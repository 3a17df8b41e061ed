"""Invoca Signal API target: signals on calls, their corrections and outcomes, against a
local server that checks what Invoca documents and answers as Invoca does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi.delivery.http import send
from pixel_wsgi.delivery.model import (
    DeliveryItem,
    HttpRequest,
    Outcome,
    OutcomeKind,
    Target,
    TargetKind,
    TargetStatus,
)
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.invoca_signal import InvocaSignal
from pixel_wsgi.errors import ConfigurationError
from pixel_wsgi.models import Transaction

from .google_invoca_servers import Answer, InvocaServer, invoca_server

API_TOKEN = "invoca-api-token-0123456789"
CALL = "00000000-0000ABCD"
FIELD = "invoca_call"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
PATH = "/api/2018-02-01/transactions.json"


def transaction(
    transaction_id: int,
    *,
    reference_id: str | None = "order-1",
    sale_amount: str | None = "24.50",
    currency: str = "USD",
    created_at: str = "2026-12-01T10:00:00.250000Z",
    custom_data: dict[str, str] | None = None,
    corrects: int | None = None,
    original: int | None = None,
    reversal_reason: str | None = None,
) -> Transaction:
    return Transaction(
        transaction_id=transaction_id,
        advertiser_id=1,
        campaign_id=1,
        publisher_id=1,
        visit_id=None,
        source="api",
        reference_id=reference_id,
        corrects_transaction_id=corrects,
        original_transaction_id=original or transaction_id,
        sale_amount=None if sale_amount is None else Decimal(sale_amount),
        sale_currency=currency,
        reason_code=None,
        sku_list=(),
        quantity_list=(),
        external_data=None,
        custom_data={FIELD: CALL} if custom_data is None else custom_data,
        payout=Decimal("2.00"),
        payout_currency=currency,
        created_at=created_at,
        reversal_reason=reversal_reason,
    )


def conversion(transaction_id: int, **fields: Any) -> DeliveryItem:
    row = transaction(transaction_id, **fields)
    return DeliveryItem(row=row, original=row)


def correction(of: DeliveryItem, transaction_id: int, **fields: Any) -> DeliveryItem:
    row = transaction(
        transaction_id,
        reference_id=of.row.reference_id,
        corrects=of.row.transaction_id,
        original=of.row.transaction_id,
        custom_data={},
        created_at="2026-12-02T09:00:00.000000Z",
        **fields,
    )
    return DeliveryItem(row=row, original=of.row)


def invoca_target(token: str = API_TOKEN, **settings: str) -> InvocaSignal:
    given = {"signal_name": "Sale", "call_id_field": FIELD, **settings}
    target = Target(
        id=6,
        advertiser_id=1,
        kind=TargetKind.INVOCA_SIGNAL,
        publisher_id=None,
        settings=given,
        secrets={"api_token": token},
        status=TargetStatus.ACTIVE,
        status_detail=None,
        created_at="2026-12-01T00:00:00.000000Z",
    )
    found = target_type(TargetKind.INVOCA_SIGNAL)(target)
    assert isinstance(found, InvocaSignal)
    return found


@pytest.fixture
def invoca() -> Iterator[InvocaServer]:
    with invoca_server(API_TOKEN, {CALL}) as server:
        yield server


def deliver(target: InvocaSignal, items: list[DeliveryItem]) -> dict[int, Outcome]:
    """What a worker does: authorize, build the requests, send each, classify."""
    assert target.authorize(send, NOW) is None
    outcomes: dict[int, Outcome] = {}
    for request in target.requests(items, NOW):
        outcomes.update(target.classify(request, send(request), None))
    return outcomes


def signal(**fields: str) -> dict[str, Any]:
    return {
        "search": {"transaction_id": CALL},
        "signals": [
            {
                "name": "Sale",
                "partner_unique_id": "order-1",
                "occurred_at_time": "2026-12-01T10:00:00+00:00",
                **fields,
            }
        ],
    }


NOTE = "revenue sent in USD as it is (Invoca reads the organisation's currency)"


def test_a_conversion_becomes_a_signal_on_its_call(invoca: InvocaServer) -> None:
    target = invoca_target(endpoint=invoca.base)

    outcomes = deliver(target, [conversion(10)])

    assert outcomes == {10: Outcome(OutcomeKind.DELIVERED, f"201 signal recorded; {NOTE}")}
    [received] = invoca.received
    assert (received.method, received.path) == ("POST", PATH)
    assert received.headers["authorization"] == API_TOKEN
    assert received.headers["content-type"] == "application/json"
    assert received.json() == signal(revenue="24.50", value="true")
    assert invoca.signals[(CALL, "sale", "order-1")].revenue == "24.50"


def test_corrections_repost_the_same_signal_and_a_reversal_sets_it_not_met(
    invoca: InvocaServer,
) -> None:
    target = invoca_target(endpoint=invoca.base)
    original = conversion(10, sale_amount="24.5")
    corrected = correction(original, 20, sale_amount="30.00")
    reversed_ = correction(original, 21, sale_amount="0.00", reversal_reason="refund")

    outcomes = deliver(target, [original, corrected, reversed_])

    assert [outcome.detail[:20] for outcome in outcomes.values()] == [
        "201 signal recorded;",
        "200 signal recorded;",
        "200 signal recorded;",
    ]
    assert [r.json() for r in invoca.received] == [
        signal(revenue="24.50", value="true"),
        signal(revenue="30.00", value="true"),
        signal(revenue="0.00", value="false"),
    ]
    stored = invoca.signals[(CALL, "sale", "order-1")]
    assert (stored.revenue, stored.value) == ("0.00", "false")
    assert stored.corrects_transaction_id == "00000000-00000002"  # it corrects the correction


def test_a_retry_changes_nothing(invoca: InvocaServer) -> None:
    target = invoca_target(endpoint=invoca.base)
    item = conversion(10)
    deliver(target, [item])

    again = deliver(target, [replace(item, attempts=1)])

    assert again[10].kind is OutcomeKind.DELIVERED
    assert again[10].detail.startswith("200 ")
    assert invoca.received[0].body == invoca.received[1].body
    assert invoca.signals[(CALL, "sale", "order-1")].transaction_id == "00000000-00000001"


def test_one_call_per_request_and_rows_in_other_currencies_say_so(invoca: InvocaServer) -> None:
    target = invoca_target(endpoint=invoca.base)
    items = [
        conversion(10, reference_id=None),
        conversion(11, reference_id="order-11", currency="EUR", sale_amount=None),
    ]

    requests = target.requests(items, NOW)
    outcomes = {}
    for request in requests:
        outcomes.update(target.classify(request, send(request), None))

    assert [request.transaction_ids for request in requests] == [(10,), (11,)]
    assert [r.json()["signals"][0] for r in invoca.received] == [
        {
            "name": "Sale",
            "partner_unique_id": "pixel-wsgi-10",
            "occurred_at_time": "2026-12-01T10:00:00+00:00",
            "revenue": "24.50",
            "value": "true",
        },
        {
            "name": "Sale",
            "partner_unique_id": "order-11",
            "occurred_at_time": "2026-12-01T10:00:00+00:00",
            "value": "true",
        },
    ]
    assert outcomes[11].detail == (
        "201 signal recorded; revenue sent in EUR as it is "
        "(Invoca reads the organisation's currency)"
    )


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(
            conversion(10, custom_data={}),
            f"no Invoca call id in custom field {FIELD}",
            id="no-field",
        ),
        pytest.param(
            conversion(10, custom_data={FIELD: "  "}),
            f"no Invoca call id in custom field {FIELD}",
            id="blank-field",
        ),
        pytest.param(
            conversion(10, custom_data={"other": CALL}),
            f"no Invoca call id in custom field {FIELD}",
            id="another-field",
        ),
        pytest.param(
            correction(conversion(10, custom_data={}), 20, sale_amount="5.00"),
            f"no Invoca call id in custom field {FIELD}",
            id="correction-of-a-web-only-conversion",
        ),
    ],
)
def test_rows_without_a_call_are_unsupported(item: DeliveryItem, reason: str) -> None:
    assert invoca_target().unsupported(item) == reason


def test_a_correction_finds_the_call_on_its_conversion() -> None:
    original = conversion(10)
    corrected = correction(original, 20, sale_amount="5.00")

    assert corrected.row.custom_data == {}
    assert invoca_target().unsupported(corrected) is None
    assert invoca_target().call_id(corrected) == CALL


@pytest.mark.parametrize(
    ("answer", "expected", "detail"),
    [
        pytest.param(
            Answer(403, {"errors": {"class": "InvalidInput", "invalid_data": "search"}}),
            OutcomeKind.PERMANENT,
            'Invoca 403 InvalidInput {"class":"InvalidInput","invalid_data":"search"}',
            id="invalid-input",
        ),
        pytest.param(
            Answer(403, {"errors": {"class": "RecordInvalid", "invalid_data": "revenue"}}),
            OutcomeKind.PERMANENT,
            'Invoca 403 RecordInvalid {"class":"RecordInvalid","invalid_data":"revenue"}',
            id="record-invalid",
        ),
        pytest.param(
            Answer(403, {"errors": {"class": "UnauthorizedOperation", "invalid_data": ""}}),
            OutcomeKind.AUTH,
            'Invoca 403 UnauthorizedOperation {"class":"UnauthorizedOperation","invalid_data":""}',
            id="unauthorized-operation",
        ),
        pytest.param(
            Answer(403, {"errors": {"class": "UnauthorizedAdvertiser", "invalid_data": "7"}}),
            OutcomeKind.AUTH,
            'Invoca 403 UnauthorizedAdvertiser {"class":"UnauthorizedAdvertiser",'
            '"invalid_data":"7"}',
            id="unauthorized-advertiser",
        ),
        pytest.param(
            Answer(
                500,
                {
                    "errors": {
                        "class": "InternalServiceError",
                        "invalid_data": "error handle: 4f1c-77",
                    }
                },
            ),
            OutcomeKind.RETRY,
            'Invoca 500 InternalServiceError {"class":"InternalServiceError",'
            '"invalid_data":"error handle: 4f1c-77"}',
            id="internal-error-keeps-the-handle",
        ),
        pytest.param(Answer(504, None), OutcomeKind.RETRY, "Invoca 504", id="gateway-timeout"),
        pytest.param(
            Answer(400, {"errors": {"class": "InvalidApiVersion", "invalid_data": "x"}}),
            OutcomeKind.PERMANENT,
            'Invoca 400 InvalidApiVersion {"class":"InvalidApiVersion","invalid_data":"x"}',
            id="bad-request",
        ),
    ],
)
def test_invoca_errors(
    invoca: InvocaServer, answer: Answer, expected: OutcomeKind, detail: str
) -> None:
    target = invoca_target(endpoint=invoca.base)
    invoca.answer_next(answer)

    outcomes = deliver(target, [conversion(10)])

    assert outcomes == {10: Outcome(expected, detail)}
    assert invoca.signals == {}


def test_a_refused_token_pauses_the_target(invoca: InvocaServer) -> None:
    target = invoca_target("revoked-token", endpoint=invoca.base)

    outcomes = deliver(target, [conversion(10)])

    assert outcomes[10].kind is OutcomeKind.AUTH
    assert outcomes[10].detail == (
        'Invoca 401 Unauthorized {"class":"Unauthorized","invalid_data":"bad oauth token"}: '
        "the API token was refused"
    )
    assert invoca.received[0].headers["authorization"] == "revoked-token"


def test_a_call_not_recorded_yet_is_retried_until_it_is(invoca: InvocaServer) -> None:
    target = invoca_target(endpoint=invoca.base)
    item = conversion(10, custom_data={FIELD: "00000000-0000BEEF"})

    first = deliver(target, [item])
    invoca.calls.add("00000000-0000BEEF")  # Invoca records the call when it ends
    second = deliver(target, [replace(item, attempts=1)])

    assert first[10].kind is OutcomeKind.RETRY
    assert first[10].detail == (
        'Invoca 404 RecordNotFound {"class":"RecordNotFound","invalid_data":"No call found"}: '
        "the call may not be recorded yet, trying again"
    )
    assert second[10].kind is OutcomeKind.DELIVERED
    assert invoca.received[0].body == invoca.received[1].body


def test_no_answer_is_retried(invoca: InvocaServer) -> None:
    target = invoca_target(endpoint=invoca.base)
    invoca.answer_next(Answer(201, {}, delay=1.0))
    [request] = target.requests([conversion(10)], NOW)

    with pytest.raises(TimeoutError) as raised:
        send(request, timeout=0.3)

    assert target.classify(request, None, str(raised.value)) == {
        10: Outcome(OutcomeKind.RETRY, "no answer: timed out")
    }


def test_the_documented_url_and_the_attempt_log() -> None:
    target = invoca_target()
    [request] = target.requests([conversion(10)], NOW)

    logged = target.redacted(request)

    assert request.url == "https://invoca.net/api/2018-02-01/transactions.json"
    assert API_TOKEN not in logged
    assert "Authorization: [secret]" in logged
    assert isinstance(request, HttpRequest)


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        pytest.param(
            {"signal_name": "Sale"}, {"api_token": "t"}, "needs call_id_field", id="field"
        ),
        pytest.param({"call_id_field": FIELD}, {"api_token": "t"}, "needs signal_name", id="name"),
        pytest.param(
            {"signal_name": "Sale", "call_id_field": FIELD}, {}, "needs api_token", id="token"
        ),
        pytest.param(
            {"signal_name": "Sale", "call_id_field": FIELD, "endpoint": "invoca.net"},
            {"api_token": "t"},
            "an endpoint is a URL",
            id="endpoint",
        ),
        pytest.param(
            {"signal_name": " ", "call_id_field": FIELD},
            {"api_token": "t"},
            "signal_name of a invoca_signal target must not be empty",
            id="blank-name",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused(
    settings: dict[str, str], secrets: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        InvocaSignal.check_settings(settings, secrets)


def test_one_call_per_request() -> None:
    assert InvocaSignal.batch_limit == 1
    assert InvocaSignal.min_event_age is None
    assert InvocaSignal.max_event_age is None
