"""GA4 Measurement Protocol target: what a local GA4 server receives, and what its answers mean."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pixel_wsgi import ConfigurationError
from pixel_wsgi.delivery.http import send
from pixel_wsgi.delivery.model import (
    ConversionContext,
    DeliveryItem,
    HttpRequest,
    Outcome,
    OutcomeKind,
    Target,
    TargetKind,
    TargetStatus,
)
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.ga4 import GoogleAnalytics4
from pixel_wsgi.models import Transaction

from .meta_ga4_servers import Answer, Ga4Server, transaction

MEASUREMENT_ID = "G-ABC123XYZ9"
SECRET = "sEcReT+with/odd=chars"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
CLIENT_ID = "1197596843.1673515342"

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SOLD_AT = NOW - timedelta(hours=3, microseconds=-123456)
REVERSED_AT = NOW - timedelta(hours=1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@pytest.fixture
def server() -> Iterator[Ga4Server]:
    ga4 = Ga4Server(MEASUREMENT_ID, SECRET)
    with ga4.running():
        yield ga4


def ga4_target(server: Ga4Server, secret: str = SECRET, **settings: str) -> GoogleAnalytics4:
    target = Target(
        id=9,
        advertiser_id=1,
        kind=TargetKind.GA4,
        publisher_id=None,
        settings={"measurement_id": MEASUREMENT_ID, "endpoint": server.base_url, **settings},
        secrets={"api_secret": secret},
        status=TargetStatus.ACTIVE,
        status_detail=None,
        created_at="2026-12-01T00:00:00.000000Z",
    )
    found = target_type(TargetKind.GA4)
    assert found is GoogleAnalytics4
    built = found(target)
    assert isinstance(built, GoogleAnalytics4)
    return built


CONTEXT = ConversionContext(ga_client_id=CLIENT_ID, user_agent=UA, page_url="https://s.example/")
PERSONAL = {"email_address": "Mary.Smith@gmail.com", "home_phone_number": "+16505551313"}
SALE = transaction(
    21, created_at=SOLD_AT, sku_list=("SKU-A", "SKU-B"), quantity_list=(2, 1)
)  # reference ORDER-1, 24.50 USD


def purchase(row: Transaction = SALE, **given: Any) -> DeliveryItem:
    fields: dict[str, Any] = {"conversion": CONTEXT, "personal": PERSONAL, **given}
    return DeliveryItem(row=row, original=row, **fields)


def reversal() -> DeliveryItem:
    row = transaction(
        23,
        created_at=REVERSED_AT,
        sale_amount=Decimal("0.00"),
        corrects=22,
        original=21,
        reversal_reason="cancelled",
    )
    return DeliveryItem(row=row, original=SALE, conversion=CONTEXT, personal=PERSONAL)


def deliver(target: GoogleAnalytics4, request: HttpRequest) -> dict[int, Outcome]:
    try:
        response = send(request, timeout=5)
    except OSError as exc:
        return target.classify(request, None, str(exc))
    return target.classify(request, response, None)


LIVE_OK = Outcome(
    OutcomeKind.DELIVERED, "GA4 answered 204 (it does for any payload: --validate checks one)"
)


def test_a_conversion_is_a_purchase(server: Ga4Server) -> None:
    target = ga4_target(server)
    [request] = target.requests([purchase()], NOW)
    assert deliver(target, request) == {21: LIVE_OK}
    [received] = server.received
    assert received.problems == []
    assert received.path == "/mp/collect"
    assert received.query == {"measurement_id": [MEASUREMENT_ID], "api_secret": [SECRET]}
    assert received.json() == {
        "client_id": CLIENT_ID,
        "timestamp_micros": micros(SOLD_AT),
        "events": [
            {
                "name": "purchase",
                "params": {
                    "transaction_id": "ORDER-1",
                    "value": Decimal("24.50"),
                    "currency": "USD",
                    "items": [
                        {"item_id": "SKU-A", "quantity": 2},
                        {"item_id": "SKU-B", "quantity": 1},
                    ],
                },
            }
        ],
        "user_data": {
            "sha256_email_address": [sha("marysmith@gmail.com")],
            "sha256_phone_number": [sha("+16505551313")],
        },
        "user_agent": UA,
    }
    assert b'"value":24.50,' in received.body


def test_a_reversal_is_a_refund_of_what_ga4_holds(server: Ga4Server) -> None:
    target = ga4_target(server)
    [request] = target.requests([reversal()], NOW)
    assert request.transaction_ids == (23,)
    assert deliver(target, request) == {23: LIVE_OK}
    [received] = server.received
    assert received.problems == []
    body = received.json()
    assert body["timestamp_micros"] == micros(REVERSED_AT)
    assert body["events"] == [
        {
            "name": "refund",
            "params": {"transaction_id": "ORDER-1", "value": Decimal("24.50"), "currency": "USD"},
        }
    ]


def test_one_request_per_row_and_a_sale_without_amount(server: Ga4Server) -> None:
    target = ga4_target(server)
    bare = transaction(30, created_at=SOLD_AT, reference_id=None, sale_amount=None)
    requests = target.requests([purchase(), purchase(bare, personal={})], NOW)
    assert [r.transaction_ids for r in requests] == [(21,), (30,)]
    for request in requests:
        assert deliver(target, request) == {request.transaction_ids[0]: LIVE_OK}
    body = server.received[1].json()
    assert body["events"] == [{"name": "purchase", "params": {"transaction_id": "pixel-wsgi-30"}}]
    assert "user_data" not in body
    assert [r.problems for r in server.received] == [[], []]


def test_a_retry_is_the_same_request(server: Ga4Server) -> None:
    target = ga4_target(server)
    first = target.requests([purchase()], NOW)
    again = target.requests([purchase(attempts=2)], NOW + timedelta(hours=1))
    assert first == again


def test_the_live_endpoint_says_204_even_to_a_wrong_secret(server: Ga4Server) -> None:
    target = ga4_target(server, secret="wrong")
    [request] = target.requests([purchase()], NOW)
    assert deliver(target, request) == {21: LIVE_OK}
    assert server.received[0].problems == ["api_secret"]


def test_validation_server_accepts_a_good_event(server: Ga4Server) -> None:
    # The validation server does not check the api_secret, as documented.
    target = ga4_target(server, secret="not checked", validate="1")
    [request] = target.requests([purchase()], NOW)
    assert deliver(target, request) == {
        21: Outcome(
            OutcomeKind.DELIVERED,
            "valid for GA4's validation server (which records nothing in reports)",
        )
    }
    assert server.received[0].path == "/debug/mp/collect"


def test_validation_messages_are_permanent(server: Ga4Server) -> None:
    target = ga4_target(server, validate="1")
    context = ConversionContext(ga_client_id="not-a-ga-id")
    [request] = target.requests([purchase(conversion=context)], NOW)
    assert deliver(target, request) == {
        21: Outcome(
            OutcomeKind.PERMANENT,
            "GA4 validation: : client_id is two numbers joined by a period (VALUE_INVALID)",
        )
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            Answer(429, b"", (("Retry-After", "30"),)),
            Outcome(OutcomeKind.RETRY, "GA4 answered HTTP 429", 30.0),
            id="429",
        ),
        pytest.param(Answer(503), Outcome(OutcomeKind.RETRY, "GA4 answered HTTP 503"), id="503"),
        pytest.param(
            Answer(400), Outcome(OutcomeKind.PERMANENT, "GA4 answered HTTP 400"), id="400"
        ),
        pytest.param(
            Answer(301), Outcome(OutcomeKind.PERMANENT, "GA4 answered HTTP 301"), id="301"
        ),
        pytest.param(
            Answer(200, b"anything"),
            Outcome(
                OutcomeKind.DELIVERED,
                "GA4 answered 200 (it does for any payload: --validate checks one)",
            ),
            id="200",
        ),
    ],
)
def test_live_answers(server: Ga4Server, answer: Answer, expected: Outcome) -> None:
    target = ga4_target(server)
    [request] = target.requests([purchase()], NOW)
    server.script.append(answer)
    assert deliver(target, request) == {21: expected}


def test_no_answer_in_time_is_retried(server: Ga4Server) -> None:
    target = ga4_target(server)
    [request] = target.requests([purchase()], NOW)
    server.script.append(Answer(204, delay=1.0))
    with pytest.raises(TimeoutError) as raised:
        send(request, timeout=0.2)
    assert target.classify(request, None, str(raised.value)) == {
        21: Outcome(OutcomeKind.RETRY, "no answer from GA4: timed out")
    }


def test_rows_older_than_72_hours_are_left_out(server: Ga4Server) -> None:
    target = ga4_target(server)
    old = transaction(40, created_at=NOW - timedelta(hours=72, seconds=1))
    edge = transaction(41, created_at=NOW - timedelta(hours=72) + timedelta(seconds=30))
    assert target.requests([purchase(old), purchase(edge)], NOW) == []
    assert GoogleAnalytics4.max_event_age == timedelta(hours=72)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(
            DeliveryItem(
                row=transaction(22, created_at=SOLD_AT, corrects=21, original=21),
                original=SALE,
                conversion=CONTEXT,
            ),
            "GA4 keeps the first purchase of a transaction_id: a correction cannot restate its"
            " value (a reversal is sent as a refund)",
            id="correction",
        ),
        pytest.param(
            DeliveryItem(row=SALE, original=SALE),
            "no GA4 client id: the visitor had no _ga cookie",
            id="no-context",
        ),
        pytest.param(
            DeliveryItem(row=SALE, original=SALE, conversion=ConversionContext(user_agent=UA)),
            "no GA4 client id: the visitor had no _ga cookie",
            id="no-ga-cookie",
        ),
    ],
)
def test_what_ga4_cannot_take_is_unsupported(
    server: Ga4Server, item: DeliveryItem, reason: str
) -> None:
    target = ga4_target(server)
    assert target.unsupported(item) == reason
    assert target.requests([item], NOW) == []
    assert target.unsupported(reversal()) is None


def test_the_attempt_log_keeps_no_secret_and_no_hash(server: Ga4Server) -> None:
    target = ga4_target(server)
    [request] = target.requests([purchase()], NOW)
    text = target.redacted(request)
    assert "sEcReT" not in text
    assert sha("marysmith@gmail.com") not in text
    assert text.startswith(
        f"POST {server.base_url}/mp/collect?measurement_id={MEASUREMENT_ID}&api_secret=[secret]\n"
    )
    body = json.loads(text.split("\n", 2)[2], parse_float=Decimal)
    assert body["user_data"] == {
        "sha256_email_address": "[hashed]",
        "sha256_phone_number": "[hashed]",
    }
    assert body["events"][0]["params"]["value"] == Decimal("24.50")


def test_the_documented_urls() -> None:
    def url(**settings: str) -> str:
        target = Target(
            1, 1, TargetKind.GA4, None, {"measurement_id": "G-1", **settings},
            {"api_secret": "s"}, TargetStatus.ACTIVE, None, "2026-12-01T00:00:00.000000Z",
        )  # fmt: skip
        return GoogleAnalytics4(target).url

    assert url() == "https://www.google-analytics.com/mp/collect?measurement_id=G-1&api_secret=s"
    assert url(validate="1") == (
        "https://www.google-analytics.com/debug/mp/collect?measurement_id=G-1&api_secret=s"
    )
    assert url(endpoint="http://127.0.0.1:8080") == (
        "http://127.0.0.1:8080/mp/collect?measurement_id=G-1&api_secret=s"
    )


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        pytest.param({}, {"api_secret": "s"}, "needs measurement_id", id="no-id"),
        pytest.param({"measurement_id": "G-1"}, {}, "needs api_secret", id="no-secret"),
        pytest.param(
            {"measurement_id": "UA-1234-1"}, {"api_secret": "s"}, "a GA4 measurement id", id="ua"
        ),
        pytest.param(
            {"measurement_id": "G-abc"}, {"api_secret": "s"}, "a GA4 measurement id", id="lower"
        ),
        pytest.param(
            {"measurement_id": "G-1", "validate": "yes"},
            {"api_secret": "s"},
            "validate is 1 or 0",
            id="validate",
        ),
        pytest.param(
            {"measurement_id": "G-1", "endpoint": "127.0.0.1:80"},
            {"api_secret": "s"},
            "an endpoint is a URL",
            id="endpoint",
        ),
    ],
)
def test_check_settings_refuses(
    settings: dict[str, str], secrets: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GoogleAnalytics4.check_settings(settings, secrets)


def test_check_settings_accepts() -> None:
    GoogleAnalytics4.check_settings(
        {"measurement_id": "G-ABC123", "validate": "1", "endpoint": "https://staging.example"},
        {"api_secret": "s"},
    )
