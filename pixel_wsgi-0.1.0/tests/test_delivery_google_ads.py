"""Google Ads target: OAuth, click conversions, adjustments and outcomes, against local
servers that check what Google's documentation says and answer as Google does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi.delivery.http import send
from pixel_wsgi.delivery.model import (
    ClickContext,
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
    OutcomeKind,
    Target,
    TargetKind,
    TargetStatus,
)
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.google_ads import GoogleAds
from pixel_wsgi.errors import ConfigurationError
from pixel_wsgi.models import Transaction

from .google_invoca_servers import (
    Answer,
    GoogleAdsServer,
    OAuthServer,
    google_ads_server,
    oauth_server,
    rpc_failure,
)

CLIENT_ID = "123-client.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-client-secret"
REFRESH_TOKEN = "1//refresh-token-value"
CUSTOMER = "1234567890"
MANAGER = "9876543210"
ACTION = f"customers/{CUSTOMER}/conversionActions/555"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
GCLID = "Cj0KCQiA-gclid_Value-01"
GBRAID = "0AAAAAgbraidValue"
WBRAID = "CjkKwbraidValue"


def transaction(
    transaction_id: int,
    *,
    reference_id: str | None = "order-1",
    sale_amount: str | None = "24.50",
    currency: str = "EUR",
    created_at: str = "2026-12-01T10:00:00.250000Z",
    corrects: int | None = None,
    original: int | None = None,
    reversal_reason: str | None = None,
) -> Transaction:
    return Transaction(
        transaction_id=transaction_id,
        advertiser_id=1,
        campaign_id=1,
        publisher_id=1,
        visit_id=7,
        source="pixel",
        reference_id=reference_id,
        corrects_transaction_id=corrects,
        original_transaction_id=original or transaction_id,
        sale_amount=None if sale_amount is None else Decimal(sale_amount),
        sale_currency=currency,
        reason_code=None,
        sku_list=(),
        quantity_list=(),
        external_data=None,
        custom_data={},
        payout=Decimal("2.00"),
        payout_currency=currency,
        created_at=created_at,
        reversal_reason=reversal_reason,
    )


def clicked(**click_ids: str) -> ClickContext:
    return ClickContext(click_ids=click_ids, clicked_at_ms=1764496800000)


def conversion(
    transaction_id: int, click: ClickContext | None = None, **fields: Any
) -> DeliveryItem:
    row = transaction(transaction_id, **fields)
    return DeliveryItem(row=row, original=row, click=click or clicked(gclid=GCLID))


def correction(
    of: DeliveryItem, transaction_id: int, created_at: str, **fields: Any
) -> DeliveryItem:
    row = transaction(
        transaction_id,
        reference_id=of.row.reference_id,
        created_at=created_at,
        corrects=of.row.transaction_id,
        original=of.row.transaction_id,
        **fields,
    )
    return DeliveryItem(row=row, original=of.row, click=of.click)


def google_target(secrets: dict[str, str] | None = None, **settings: str) -> GoogleAds:
    given = {"customer_id": "123-456-7890", "conversion_action": "555", "client_id": CLIENT_ID}
    given.update(settings)
    target = Target(
        id=3,
        advertiser_id=1,
        kind=TargetKind.GOOGLE_ADS,
        publisher_id=None,
        settings=given,
        secrets={"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN, **(secrets or {})},
        status=TargetStatus.ACTIVE,
        status_detail=None,
        created_at="2026-12-01T00:00:00.000000Z",
    )
    found = target_type(TargetKind.GOOGLE_ADS)(target)
    assert isinstance(found, GoogleAds)
    return found


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    with oauth_server(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN) as server:
        yield server


@pytest.fixture
def google(oauth: OAuthServer) -> Iterator[GoogleAdsServer]:
    with google_ads_server(oauth, CUSTOMER) as server:
        yield server


def connected(oauth: OAuthServer, google: GoogleAdsServer, **settings: str) -> GoogleAds:
    """A target pointed at the local servers, with its access token."""
    target = google_target(endpoint=google.base, token_endpoint=oauth.base, **settings)
    assert target.authorize(send, NOW) is None
    return target


def deliver(target: GoogleAds, items: list[DeliveryItem]) -> dict[int, Outcome]:
    """What a worker does: build the requests, send each, classify the answers."""
    outcomes: dict[int, Outcome] = {}
    for request in target.requests(items, NOW):
        outcomes.update(target.classify(request, send(request), None))
    return outcomes


def kinds(outcomes: dict[int, Outcome]) -> dict[int, OutcomeKind]:
    return {transaction_id: outcome.kind for transaction_id, outcome in outcomes.items()}


# -- OAuth -------------------------------------------------------------------------------


def test_the_refresh_token_is_exchanged_once_and_the_access_token_kept(
    oauth: OAuthServer,
) -> None:
    target = google_target(token_endpoint=oauth.base)

    assert target.authorize(send, NOW) is None
    assert target.authorize(send, NOW + timedelta(minutes=50)) is None

    assert len(oauth.received) == 1
    received = oauth.received[0]
    assert (received.method, received.path) == ("POST", "/token")
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.form() == {
        "grant_type": ["refresh_token"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH_TOKEN],
    }
    # the token lives 3599 s: renewed a few minutes before it dies
    assert target.authorize(send, NOW + timedelta(minutes=56)) is None
    assert len(oauth.received) == 2
    assert oauth.issued == ["ya29.local-1", "ya29.local-2"]


@pytest.mark.parametrize(
    ("secrets", "answer", "expected", "detail"),
    [
        pytest.param(
            {"refresh_token": "1//revoked"},
            None,
            OutcomeKind.AUTH,
            "400 invalid_grant: the refresh token was revoked or has expired",
            id="revoked-refresh-token",
        ),
        pytest.param(
            {"client_secret": "wrong"},
            None,
            OutcomeKind.AUTH,
            "401 invalid_client: the client id or client secret is wrong",
            id="wrong-client-secret",
        ),
        pytest.param(
            {},
            Answer(500, {"error": "internal_failure"}),
            OutcomeKind.RETRY,
            "500 internal_failure",
            id="server-error",
        ),
        pytest.param(
            {},
            Answer(503, None),
            OutcomeKind.RETRY,
            "503",
            id="unavailable-without-body",
        ),
        pytest.param(
            {},
            Answer(200, {"access_token": "ya29.x", "expires_in": 3599}, delay=1.0),
            OutcomeKind.RETRY,
            "no answer",
            id="timeout",
        ),
    ],
)
def test_a_refused_or_failed_token_exchange(
    oauth: OAuthServer,
    secrets: dict[str, str],
    answer: Answer | None,
    expected: OutcomeKind,
    detail: str,
) -> None:
    target = google_target(secrets, token_endpoint=oauth.base)
    if answer:
        oauth.answer_next(answer)

    outcome = target.authorize(lambda request: send(request, timeout=0.3), NOW)

    assert outcome is not None
    assert outcome.kind is expected
    assert detail in outcome.detail
    assert CLIENT_SECRET not in outcome.detail
    assert len(oauth.received) == 1


def test_a_token_endpoint_that_is_down_is_retried() -> None:
    with oauth_server(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN) as gone:
        base = gone.base
    target = google_target(token_endpoint=base)

    outcome = target.authorize(send, NOW)

    assert outcome is not None
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.detail.startswith("OAuth token endpoint: no answer")


# -- click conversions -----------------------------------------------------------------


def test_click_conversions_carry_one_click_id_the_order_id_and_the_exact_value(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    items = [
        conversion(10, clicked(gclid=GCLID, wbraid=WBRAID), reference_id="order-10"),
        conversion(11, clicked(gbraid=GBRAID, wbraid=WBRAID), reference_id="order-11"),
        conversion(12, clicked(wbraid=WBRAID, fbclid="fb"), reference_id=None),
        conversion(13, clicked(gclid="Other-gclid"), reference_id="order-13", sale_amount=None),
    ]

    outcomes = deliver(target, items)

    assert kinds(outcomes) == dict.fromkeys([10, 11, 12, 13], OutcomeKind.DELIVERED)
    [received] = google.received
    assert (received.method, received.path) == (
        "POST",
        f"/v26/customers/{CUSTOMER}:uploadClickConversions",
    )
    assert received.headers["authorization"] == "Bearer ya29.local-1"
    assert received.headers["content-type"] == "application/json"
    assert "login-customer-id" not in received.headers
    assert "developer-token" not in received.headers
    when = "2026-12-01 10:00:00+00:00"
    assert received.json() == {
        "conversions": [
            {
                "gclid": GCLID,
                "conversionAction": ACTION,
                "conversionDateTime": when,
                "conversionValue": Decimal("24.50"),
                "currencyCode": "EUR",
                "orderId": "order-10",
            },
            {
                "gbraid": GBRAID,
                "conversionAction": ACTION,
                "conversionDateTime": when,
                "conversionValue": Decimal("24.50"),
                "currencyCode": "EUR",
                "orderId": "order-11",
            },
            {
                "wbraid": WBRAID,
                "conversionAction": ACTION,
                "conversionDateTime": when,
                "conversionValue": Decimal("24.50"),
                "currencyCode": "EUR",
                "orderId": "pixel-wsgi-12",
            },
            {
                "gclid": "Other-gclid",
                "conversionAction": ACTION,
                "conversionDateTime": when,
                "orderId": "order-13",
            },
        ],
        "partialFailure": True,
        "validateOnly": False,
    }
    # the value's digits as the ledger has them, never through a float
    assert b'"conversionValue":24.50,' in received.body
    assert set(google.conversions) == {"order-10", "order-11", "pixel-wsgi-12", "order-13"}


def test_a_manager_account_sends_login_customer_id(oauth: OAuthServer) -> None:
    with google_ads_server(oauth, CUSTOMER, login_customer_id=MANAGER) as google:
        target = connected(oauth, google, login_customer_id="987-654-3210")

        outcomes = deliver(target, [conversion(10)])

        assert kinds(outcomes) == {10: OutcomeKind.DELIVERED}
        assert google.received[0].headers["login-customer-id"] == MANAGER


def test_a_full_resource_name_is_kept_as_given(oauth: OAuthServer, google: GoogleAdsServer) -> None:
    target = connected(
        oauth, google, conversion_action=f"customers/{CUSTOMER}/conversionActions/77"
    )

    assert kinds(deliver(target, [conversion(10)])) == {10: OutcomeKind.DELIVERED}
    assert google.received[0].json()["conversions"][0]["conversionAction"] == (
        f"customers/{CUSTOMER}/conversionActions/77"
    )


def test_validate_only_is_the_test_mode(oauth: OAuthServer, google: GoogleAdsServer) -> None:
    target = connected(oauth, google, validate_only="1")

    outcomes = deliver(target, [conversion(10)])

    assert outcomes[10] == Outcome(
        OutcomeKind.DELIVERED, "validated only (validate_only): Google recorded nothing"
    )
    assert google.received[0].json()["validateOnly"] is True
    assert google.conversions == {}


def test_a_second_upload_is_a_duplicate_by_order_id(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    item = conversion(10)
    [request] = target.requests([item], NOW)
    assert kinds(target.classify(request, send(request), None)) == {10: OutcomeKind.DELIVERED}

    again = target.classify(request, send(request), None)

    assert again[10].kind is OutcomeKind.DUPLICATE
    assert again[10].detail == "ORDER_ID_ALREADY_IN_USE"
    assert google.received[0].body == google.received[1].body
    assert len(google.conversions) == 1


def test_a_batch_holds_one_kind_of_row_and_at_most_2000(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    conversions = [
        conversion(n, clicked(gclid=f"gclid-{n}"), reference_id=f"order-{n}")
        for n in range(1, 2002)
    ]
    corrected = correction(conversions[0], 5000, "2026-12-02T09:00:00.000000Z", sale_amount="30.00")
    items = [*conversions[:1000], corrected, *conversions[1000:]]

    requests = target.requests(items, NOW)

    assert [len(r.transaction_ids) for r in requests] == [2000, 1, 1]
    assert [r.url.rsplit(":", 1)[1] for r in requests] == [
        "uploadClickConversions",
        "uploadClickConversions",
        "uploadConversionAdjustments",
    ]
    assert requests[0].transaction_ids == tuple(range(1, 2001))
    assert requests[1].transaction_ids == (2001,)
    assert requests[2].transaction_ids == (5000,)
    outcomes: dict[int, Outcome] = {}
    for request in requests:
        outcomes.update(target.classify(request, send(request), None))
    assert set(kinds(outcomes).values()) == {OutcomeKind.DELIVERED}
    assert len(outcomes) == 2002
    assert [len(r.json().get("conversions", [])) for r in google.received] == [2000, 1, 0]


# -- adjustments -----------------------------------------------------------------------


def test_corrections_and_reversals_are_adjustments_with_increasing_times(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    original = conversion(10, reference_id="order-10")
    first = correction(original, 20, "2026-12-02T09:00:00.000000Z", sale_amount="30.00")
    second = correction(original, 21, "2026-12-02T09:00:01.400000Z", sale_amount="12.30")
    reversal = correction(
        original, 22, "2026-12-03T08:15:00.999999Z", sale_amount="0.00", reversal_reason="refund"
    )
    assert kinds(deliver(target, [original])) == {10: OutcomeKind.DELIVERED}

    for item in (first, second, reversal):
        assert kinds(deliver(target, [item])) == {item.row.transaction_id: OutcomeKind.DELIVERED}

    adjustments = [r.json() for r in google.received[1:]]
    assert [r.path for r in google.received[1:]] == [
        f"/v26/customers/{CUSTOMER}:uploadConversionAdjustments"
    ] * 3
    assert adjustments == [
        {
            "conversionAdjustments": [
                {
                    "conversionAction": ACTION,
                    "orderId": "order-10",
                    "adjustmentDateTime": "2026-12-02 09:00:00+00:00",
                    "adjustmentType": "RESTATEMENT",
                    "restatementValue": {"adjustedValue": Decimal("30.00"), "currencyCode": "EUR"},
                }
            ],
            "partialFailure": True,
            "validateOnly": False,
        },
        {
            "conversionAdjustments": [
                {
                    "conversionAction": ACTION,
                    "orderId": "order-10",
                    "adjustmentDateTime": "2026-12-02 09:00:02+00:00",
                    "adjustmentType": "RESTATEMENT",
                    "restatementValue": {"adjustedValue": Decimal("12.30"), "currencyCode": "EUR"},
                }
            ],
            "partialFailure": True,
            "validateOnly": False,
        },
        {
            "conversionAdjustments": [
                {
                    "conversionAction": ACTION,
                    "orderId": "order-10",
                    "adjustmentDateTime": "2026-12-03 08:15:01+00:00",
                    "adjustmentType": "RETRACTION",
                }
            ],
            "partialFailure": True,
            "validateOnly": False,
        },
    ]
    assert google.restatements == [
        ("order-10", Decimal("30.00"), "2026-12-02 09:00:00+00:00"),
        ("order-10", Decimal("12.30"), "2026-12-02 09:00:02+00:00"),
    ]
    assert google.conversions["order-10"].retracted


def test_a_retried_adjustment_sends_the_same_time_and_counts_once(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    original = conversion(10)
    restated = correction(original, 20, "2026-12-02T09:00:00.500000Z", sale_amount="30.00")
    deliver(target, [original])
    # the first attempt's answer is lost (a timeout on our side), but Google applied it
    [first] = target.requests([restated], NOW)
    send(first)

    [retry] = target.requests([replace(restated, attempts=1)], NOW)
    outcome = target.classify(retry, send(retry), None)

    assert retry.body == first.body
    assert outcome[20].kind is OutcomeKind.DUPLICATE
    assert outcome[20].detail == "RESTATEMENT_ALREADY_EXISTS"
    assert len(google.restatements) == 1


def test_an_older_restatement_after_a_newer_one_counts_as_delivered(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    original = conversion(10)
    older = correction(original, 20, "2026-12-02T09:00:00.000000Z", sale_amount="30.00")
    newer = correction(original, 21, "2026-12-02T10:00:00.000000Z", sale_amount="40.00")
    deliver(target, [original, newer])

    outcome = deliver(target, [older])

    assert outcome[20].kind is OutcomeKind.DUPLICATE
    assert "MORE_RECENT_RESTATEMENT_FOUND" in outcome[20].detail
    assert google.restatements == [("order-1", Decimal("40.00"), "2026-12-02 10:00:00+00:00")]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(
            replace(conversion(10), click=None),
            "no Google click id (gclid, gbraid or wbraid) on the conversion's click",
            id="no-click",
        ),
        pytest.param(
            conversion(10, clicked(fbclid="fb", msclkid="ms")),
            "no Google click id (gclid, gbraid or wbraid) on the conversion's click",
            id="other-platforms-click-ids",
        ),
        pytest.param(
            correction(
                conversion(10, clicked(wbraid=WBRAID)),
                20,
                "2026-12-02T09:00:00.000000Z",
                sale_amount="5.00",
            ),
            "Google cannot adjust a conversion of a wbraid click",
            id="wbraid-correction",
        ),
        pytest.param(
            correction(
                conversion(10, clicked(wbraid=WBRAID)),
                20,
                "2026-12-02T09:00:00.000000Z",
                reversal_reason="refund",
            ),
            "Google cannot adjust a conversion of a wbraid click",
            id="wbraid-reversal",
        ),
        pytest.param(
            correction(conversion(10), 20, "2026-12-02T09:00:00.000000Z", sale_amount=None),
            "a correction without a sale amount has no value to restate",
            id="correction-without-amount",
        ),
    ],
)
def test_rows_google_cannot_take(item: DeliveryItem, reason: str) -> None:
    assert google_target().unsupported(item) == reason


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(conversion(10, clicked(wbraid=WBRAID)), id="wbraid-conversion"),
        pytest.param(conversion(10, clicked(gbraid=GBRAID)), id="gbraid-conversion"),
        pytest.param(
            correction(
                conversion(10, clicked(gbraid=GBRAID)),
                20,
                "2026-12-02T09:00:00.000000Z",
                reversal_reason="refund",
            ),
            id="gbraid-reversal",
        ),
    ],
)
def test_rows_google_takes(item: DeliveryItem) -> None:
    assert google_target().unsupported(item) is None


# -- outcomes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected", "retry_after", "detail"),
    [
        pytest.param(
            "CLICK_NOT_FOUND",
            OutcomeKind.PERMANENT,
            None,
            "CLICK_NOT_FOUND: Google matched no click to this conversion",
            id="click-not-found",
        ),
        pytest.param(
            "TOO_RECENT_EVENT", OutcomeKind.RETRY, 21600.0, "TOO_RECENT_EVENT", id="too-recent"
        ),
        pytest.param(
            "TOO_RECENT_CONVERSION_ACTION",
            OutcomeKind.RETRY,
            21600.0,
            "TOO_RECENT_CONVERSION_ACTION",
            id="new-action",
        ),
        pytest.param(
            "EXPIRED_EVENT",
            OutcomeKind.PERMANENT,
            None,
            "EXPIRED_EVENT: the click is older than",
            id="expired",
        ),
        pytest.param(
            "UNPARSEABLE_GCLID",
            OutcomeKind.PERMANENT,
            None,
            "UNPARSEABLE_GCLID: Google could not decode",
            id="unparseable",
        ),
        pytest.param(
            "CONVERSION_PRECEDES_EVENT",
            OutcomeKind.PERMANENT,
            None,
            "CONVERSION_PRECEDES_EVENT",
            id="before-the-click",
        ),
        pytest.param(
            "CLICK_CONVERSION_ALREADY_EXISTS",
            OutcomeKind.DUPLICATE,
            None,
            "CLICK_CONVERSION_ALREADY_EXISTS",
            id="already-exists",
        ),
        pytest.param(
            "DUPLICATE_ORDER_ID",
            OutcomeKind.DUPLICATE,
            None,
            "DUPLICATE_ORDER_ID",
            id="duplicate-order-id",
        ),
        pytest.param(
            "INVALID_CONVERSION_ACTION_TYPE",
            OutcomeKind.PERMANENT,
            None,
            "INVALID_CONVERSION_ACTION_TYPE",
            id="other-error",
        ),
    ],
)
def test_a_partial_failure_is_read_per_row(
    oauth: OAuthServer,
    google: GoogleAdsServer,
    code: str,
    expected: OutcomeKind,
    retry_after: float | None,
    detail: str,
) -> None:
    target = connected(oauth, google)
    items = [
        conversion(n, clicked(gclid=f"gclid-{n}"), reference_id=f"order-{n}") for n in (1, 2, 3)
    ]
    google.row_errors["gclid-2"] = code

    outcomes = deliver(target, items)

    assert outcomes[1] == outcomes[3] == Outcome(OutcomeKind.DELIVERED, "accepted")
    assert outcomes[2].kind is expected
    assert outcomes[2].retry_after == retry_after
    assert outcomes[2].detail.startswith(detail)
    assert set(google.conversions) == {"order-1", "order-3"}


def test_a_row_too_recent_for_google_goes_through_once_old_enough(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    item = conversion(10)
    google.row_errors[GCLID] = "TOO_RECENT_EVENT"
    assert kinds(deliver(target, [item])) == {10: OutcomeKind.RETRY}

    del google.row_errors[GCLID]  # six hours later

    assert kinds(deliver(target, [replace(item, attempts=1)])) == {10: OutcomeKind.DELIVERED}
    assert google.received[0].body == google.received[1].body


@pytest.mark.parametrize(
    ("answer", "expected", "retry_after", "detail"),
    [
        pytest.param(
            Answer(
                401,
                rpc_failure(401, "UNAUTHENTICATED", {"authenticationError": "OAUTH_TOKEN_EXPIRED"}),
            ),
            OutcomeKind.AUTH,
            None,
            "Google Ads 401 UNAUTHENTICATED OAUTH_TOKEN_EXPIRED",
            id="unauthenticated",
        ),
        pytest.param(
            Answer(
                403,
                rpc_failure(
                    403, "PERMISSION_DENIED", {"authorizationError": "USER_PERMISSION_DENIED"}
                ),
            ),
            OutcomeKind.AUTH,
            None,
            "Google Ads 403 PERMISSION_DENIED USER_PERMISSION_DENIED",
            id="permission-denied",
        ),
        pytest.param(
            Answer(
                429,
                rpc_failure(429, "RESOURCE_EXHAUSTED", {"quotaError": "RESOURCE_EXHAUSTED"}),
                {"Retry-After": "30"},
            ),
            OutcomeKind.RETRY,
            30.0,
            "Google Ads 429 RESOURCE_EXHAUSTED",
            id="quota-with-retry-after",
        ),
        pytest.param(
            Answer(
                429,
                rpc_failure(429, "RESOURCE_EXHAUSTED", {"quotaError": "RESOURCE_EXHAUSTED"}),
            ),
            OutcomeKind.RETRY,
            None,
            "Google Ads 429 RESOURCE_EXHAUSTED",
            id="quota",
        ),
        pytest.param(
            Answer(500, rpc_failure(500, "INTERNAL", {"internalError": "TRANSIENT_ERROR"})),
            OutcomeKind.RETRY,
            None,
            "Google Ads 500 INTERNAL TRANSIENT_ERROR",
            id="transient",
        ),
        pytest.param(
            Answer(
                504, rpc_failure(504, "DEADLINE_EXCEEDED", {"internalError": "DEADLINE_EXCEEDED"})
            ),
            OutcomeKind.RETRY,
            None,
            "Google Ads 504 DEADLINE_EXCEEDED",
            id="deadline",
        ),
        pytest.param(
            Answer(502, None), OutcomeKind.RETRY, None, "Google Ads 502", id="bad-gateway-no-body"
        ),
        pytest.param(
            Answer(
                400,
                rpc_failure(400, "INVALID_ARGUMENT", {"fieldError": "REQUIRED"}),
            ),
            OutcomeKind.PERMANENT,
            None,
            "Google Ads 400 INVALID_ARGUMENT REQUIRED",
            id="invalid-argument",
        ),
    ],
)
def test_a_request_level_error_holds_for_every_row(
    oauth: OAuthServer,
    google: GoogleAdsServer,
    answer: Answer,
    expected: OutcomeKind,
    retry_after: float | None,
    detail: str,
) -> None:
    target = connected(oauth, google)
    google.answer_next(answer)

    outcomes = deliver(target, [conversion(1), conversion(2, reference_id="order-2")])

    assert outcomes[1] == outcomes[2] == Outcome(expected, detail, retry_after)
    assert google.conversions == {}


def test_a_wrong_manager_account_is_an_auth_failure(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google, login_customer_id=MANAGER)

    outcomes = deliver(target, [conversion(1)])

    assert outcomes[1] == Outcome(
        OutcomeKind.AUTH, "Google Ads 403 PERMISSION_DENIED USER_PERMISSION_DENIED"
    )


def test_an_access_token_google_refuses_is_an_auth_failure_and_is_renewed_next_time(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    oauth.revoked.add("ya29.local-1")

    outcomes = deliver(target, [conversion(1)])

    assert outcomes[1].kind is OutcomeKind.AUTH
    assert target.authorize(send, NOW) is None  # a new token, not the cached one
    assert kinds(deliver(target, [conversion(1)])) == {1: OutcomeKind.DELIVERED}
    assert google.received[-1].headers["authorization"] == "Bearer ya29.local-2"


def test_no_answer_is_retried(oauth: OAuthServer, google: GoogleAdsServer) -> None:
    target = connected(oauth, google)
    google.answer_next(Answer(200, {"results": [{}]}, delay=1.0))
    [request] = target.requests([conversion(1)], NOW)

    with pytest.raises(TimeoutError) as raised:
        send(request, timeout=0.3)
    outcomes = target.classify(request, None, str(raised.value))

    assert outcomes == {1: Outcome(OutcomeKind.RETRY, "no answer: timed out")}


def test_answers_google_never_gives_are_read_safely() -> None:
    target = google_target()
    request = HttpRequest("POST", "http://127.0.0.1:1/", (), b"{}", (1, 2))
    broken = HttpResponse(200, {}, b"not json")
    failure_without_index = HttpResponse(
        200,
        {},
        b'{"partialFailureError": {"code": 3, "message": "failed", "details": []}}',
    )

    assert target.classify(request, broken, None) == dict.fromkeys(
        (1, 2), Outcome(OutcomeKind.RETRY, "Google Ads 200 without a JSON body")
    )
    assert target.classify(request, HttpResponse(200, {}, b"{}"), None) == dict.fromkeys(
        (1, 2), Outcome(OutcomeKind.DELIVERED, "accepted")
    )
    assert target.classify(request, failure_without_index, None) == dict.fromkeys(
        (1, 2), Outcome(OutcomeKind.PERMANENT, "UNKNOWN")
    )


# -- settings and the attempt log ------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"customer_id": "12a-456"}, "customer_id of a google_ads", id="customer-id"),
        pytest.param(
            {"login_customer_id": "manager"}, "login_customer_id of a google_ads", id="login-id"
        ),
        pytest.param(
            {"conversion_action": "Purchase"}, "conversion_action of a google_ads", id="action"
        ),
        pytest.param(
            {"conversion_action": "customers/1/conversionActions/x"},
            "conversion_action of a google_ads",
            id="action-resource-name",
        ),
        pytest.param({"validate_only": "yes"}, "validate_only of a google_ads", id="validate"),
        pytest.param({"endpoint": "127.0.0.1:80"}, "an endpoint is a URL", id="endpoint"),
        pytest.param({"token_endpoint": "ftp://x"}, "an endpoint is a URL", id="token-endpoint"),
        pytest.param({"developer_token": "x"}, "takes no developer_token", id="developer-token"),
    ],
)
def test_settings_that_cannot_work_are_refused(settings: dict[str, str], message: str) -> None:
    given = {"customer_id": "123-456-7890", "conversion_action": "555", "client_id": CLIENT_ID}
    with pytest.raises(ConfigurationError, match=message):
        GoogleAds.check_settings(
            {**given, **settings}, {"client_secret": "s", "refresh_token": "r"}
        )


def test_settings_as_stored_become_the_account_and_the_action() -> None:
    target = google_target(login_customer_id="987-654-3210")

    assert target.customer_id == CUSTOMER
    assert target.login_customer_id == MANAGER
    assert target.conversion_action == ACTION
    assert not target.validate_only


def test_the_attempt_log_holds_no_token_no_secret_and_no_full_click_id(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    [request] = target.requests([conversion(1)], NOW)

    logged = target.redacted(request)

    assert "ya29.local-1" not in logged
    assert "Authorization: Bearer [token]" in logged
    assert GCLID not in logged
    assert '"gclid":"Cj0KCQ…"' in logged
    assert CLIENT_SECRET not in logged and REFRESH_TOKEN not in logged
    assert '"orderId":"order-1"' in logged


def test_google_needs_the_click_six_hours_old_and_takes_2000_rows() -> None:
    assert GoogleAds.min_event_age == timedelta(hours=6)
    assert GoogleAds.batch_limit == 2000
    assert GoogleAds.max_event_age is None


def test_a_retried_retraction_counts_once_and_a_restatement_after_it_is_refused(
    oauth: OAuthServer, google: GoogleAdsServer
) -> None:
    target = connected(oauth, google)
    original = conversion(10)
    retraction = correction(
        original, 20, "2026-12-02T09:00:00.000000Z", sale_amount="0.00", reversal_reason="x"
    )
    late = correction(original, 21, "2026-12-02T10:00:00.000000Z", sale_amount="9.00")
    deliver(target, [original])
    [first] = target.requests([retraction], NOW)
    send(first)  # Google retracted it; the answer was lost

    again = deliver(target, [replace(retraction, attempts=1)])
    restated = deliver(target, [late])

    assert again[20] == Outcome(
        OutcomeKind.DUPLICATE, "CONVERSION_ALREADY_RETRACTED: the conversion was already retracted"
    )
    assert restated[21].kind is OutcomeKind.PERMANENT
    assert restated[21].detail.startswith("CONVERSION_ALREADY_RETRACTED")
    assert google.restatements == []


def test_before_authorize_the_request_says_it_has_no_token() -> None:
    [request] = google_target().requests([conversion(1)], NOW)

    assert ("Authorization", "Bearer [access token: not authorized yet]") in request.headers
    assert request.url == (
        f"https://googleads.googleapis.com/v26/customers/{CUSTOMER}:uploadClickConversions"
    )
