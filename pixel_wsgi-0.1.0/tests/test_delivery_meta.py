"""Meta's Conversions API target: what a local Meta server receives, and what its answers mean."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pixel_wsgi import ConfigurationError
from pixel_wsgi.delivery.http import send
from pixel_wsgi.delivery.model import (
    ClickContext,
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
from pixel_wsgi.delivery.targets.meta_capi import MetaConversionsApi

from .meta_ga4_servers import Answer, MetaServer, transaction

PIXEL_ID = "1234567890"
TOKEN = "EAAtoken/with+odd=chars"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"
PAGE = "https://shop.example/checkout/thanks?order=ORDER-1"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def server() -> Iterator[MetaServer]:
    meta = MetaServer(PIXEL_ID, TOKEN)
    with meta.running():
        yield meta


def meta_target(server: MetaServer, **settings: str) -> MetaConversionsApi:
    target = Target(
        id=7,
        advertiser_id=1,
        kind=TargetKind.META_CAPI,
        publisher_id=None,
        settings={"pixel_id": PIXEL_ID, "endpoint": server.base_url, **settings},
        secrets={"access_token": settings.pop("token", TOKEN)},
        status=TargetStatus.ACTIVE,
        status_detail=None,
        created_at="2026-12-01T00:00:00.000000Z",
    )
    found = target_type(TargetKind.META_CAPI)
    assert found is MetaConversionsApi
    built = found(target)
    assert isinstance(built, MetaConversionsApi)
    return built


NOW = datetime.now(timezone.utc).replace(microsecond=0)
SOLD_AT = NOW - timedelta(hours=2)
CLICKED_MS = int((NOW - timedelta(days=1)).timestamp() * 1000)


def conversion_item(
    transaction_id: int = 11,
    *,
    created_at: datetime = SOLD_AT,
    reference_id: str | None = "ORDER-1",
    **context: str | None,
) -> DeliveryItem:
    row = transaction(
        transaction_id,
        created_at=created_at,
        reference_id=reference_id,
        sku_list=("SKU-A", "SKU-B"),
        quantity_list=(2, 1),
    )
    given = {"fbp": "fb.1.1733000000000.987654321", "user_agent": UA, "page_url": PAGE}
    given.update(context)
    return DeliveryItem(
        row=row,
        original=row,
        click=ClickContext(
            sub_ids={"sub1": "a"}, click_ids={"fbclid": FBCLID}, clicked_at_ms=CLICKED_MS
        ),
        conversion=ConversionContext(ip_prefix="203.0.113.0/24", ga_client_id="1.2", **given),
        personal={
            "email_address": " Mary.Smith@Example.com ",
            "name": "Mary O'Brien",
            "cell_phone_number": "+16505551212",
            "zip_code": "94025",
        },
    )


def deliver(target: MetaConversionsApi, request: HttpRequest) -> dict[int, Outcome]:
    try:
        response = send(request, timeout=5)
    except OSError as exc:
        return target.classify(request, None, str(exc))
    return target.classify(request, response, None)


def test_a_conversion_reaches_meta_as_a_deduplicable_purchase(server: MetaServer) -> None:
    target = meta_target(server)
    [request] = target.requests([conversion_item()], NOW)
    outcomes = deliver(target, request)
    assert outcomes == {
        11: Outcome(OutcomeKind.DELIVERED, "Meta received 1 of 1 events (fbtrace_id trace1)")
    }
    [received] = server.received
    assert received.problems == []
    assert received.path == f"/v26.0/{PIXEL_ID}/events"
    assert received.query == {"access_token": [TOKEN]}
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {
        "data": [
            {
                "event_name": "Purchase",
                "event_time": int(SOLD_AT.timestamp()),
                "event_id": "ORDER-1",
                "action_source": "website",
                "event_source_url": PAGE,
                "user_data": {
                    "client_user_agent": UA,
                    "fbc": f"fb.1.{CLICKED_MS}.{FBCLID}",
                    "fbp": "fb.1.1733000000000.987654321",
                    "em": [sha("mary.smith@example.com")],
                    "ph": [sha("16505551212")],
                    "fn": [sha("mary")],
                    "ln": [sha("obrien")],
                },
                "custom_data": {
                    "value": Decimal("24.50"),
                    "currency": "USD",
                    "order_id": "ORDER-1",
                    "contents": [
                        {"id": "SKU-A", "quantity": 2},
                        {"id": "SKU-B", "quantity": 1},
                    ],
                },
            }
        ]
    }
    # the exact decimal's digits, never a float's
    assert b'"value":24.50,' in received.body
    assert server.events.keys() == {("Purchase", "ORDER-1")}


def test_a_retry_carries_the_same_event_id_and_meta_counts_it_once(server: MetaServer) -> None:
    target = meta_target(server)
    first = target.requests([conversion_item()], NOW)
    again = target.requests([replace(conversion_item(), attempts=1)], NOW + timedelta(minutes=5))
    assert first == again
    for request in (*first, *again):
        assert deliver(target, request)[11].kind is OutcomeKind.DELIVERED
    assert len(server.received) == 2
    assert list(server.events) == [("Purchase", "ORDER-1")]


def test_test_event_code_and_a_conversion_without_reference_id(server: MetaServer) -> None:
    target = meta_target(server, test_event_code="TEST12345")
    item = conversion_item(5, reference_id=None)
    [request] = target.requests([item], NOW)
    assert deliver(target, request)[5].kind is OutcomeKind.DELIVERED
    body = server.received[0].json()
    assert body["test_event_code"] == "TEST12345"
    assert body["data"][0]["event_id"] == "pixel-wsgi-5"
    assert body["data"][0]["custom_data"]["order_id"] == "pixel-wsgi-5"


def test_fbc_without_a_click_time_and_no_fbc_without_fbclid(server: MetaServer) -> None:
    target = meta_target(server)
    item = conversion_item()
    timeless = DeliveryItem(
        row=item.row,
        original=item.original,
        click=ClickContext(click_ids={"fbclid": FBCLID, "gclid": "G"}),
        conversion=item.conversion,
    )
    no_click = DeliveryItem(row=item.row, original=item.original, conversion=item.conversion)
    [request] = target.requests([timeless], NOW)
    [bare] = target.requests([no_click], NOW)
    for each in (request, bare):
        assert deliver(target, each)[11].kind is OutcomeKind.DELIVERED
    users = [received.json()["data"][0]["user_data"] for received in server.received]
    assert users[0]["fbc"] == f"fb.1.{int(SOLD_AT.timestamp()) * 1000}.{FBCLID}"
    assert "em" not in users[0]  # no personal data given
    assert users[1] == {"client_user_agent": UA, "fbp": "fb.1.1733000000000.987654321"}


def test_quantity_one_when_the_sale_gave_no_quantities(server: MetaServer) -> None:
    target = meta_target(server)
    row = transaction(3, created_at=SOLD_AT, sku_list=("X", "Y"))
    context = ConversionContext(user_agent=UA, page_url=PAGE)
    [request] = target.requests([DeliveryItem(row=row, original=row, conversion=context)], NOW)
    assert deliver(target, request)[3].kind is OutcomeKind.DELIVERED
    custom = server.received[0].json()["data"][0]["custom_data"]
    assert custom["contents"] == [{"id": "X", "quantity": 1}, {"id": "Y", "quantity": 1}]


def test_1001_conversions_go_in_two_batches(server: MetaServer) -> None:
    target = meta_target(server)
    items = [conversion_item(n, reference_id=f"ORDER-{n}") for n in range(1, 1002)]
    requests = target.requests(items, NOW)
    assert [len(request.transaction_ids) for request in requests] == [1000, 1]
    assert [n for request in requests for n in request.transaction_ids] == list(range(1, 1002))
    outcomes = [deliver(target, request) for request in requests]
    assert all(o.kind is OutcomeKind.DELIVERED for each in outcomes for o in each.values())
    assert [r.json()["data"].__len__() for r in server.received] == [1000, 1]
    assert len(server.events) == 1001


def test_a_stale_event_is_left_out_so_its_batch_still_arrives(server: MetaServer) -> None:
    target = meta_target(server)
    stale = conversion_item(1, created_at=NOW - timedelta(days=7, seconds=1), reference_id="OLD")
    edge = conversion_item(2, created_at=NOW - timedelta(days=7) + timedelta(seconds=30))
    fresh = conversion_item(3, reference_id="NEW")
    [request] = target.requests([stale, edge, fresh], NOW)
    assert request.transaction_ids == (3,)  # the edge row would turn stale on the way
    assert deliver(target, request) == {
        3: Outcome(OutcomeKind.DELIVERED, "Meta received 1 of 1 events (fbtrace_id trace1)")
    }
    assert target.requests([stale], NOW) == []


def test_meta_fails_the_whole_request_for_one_stale_event(server: MetaServer) -> None:
    # Built as if "now" were 8 days ago (a worker with a wrong clock): the server, whose
    # clock is right, refuses the whole request, and no row is retried forever.
    target = meta_target(server)
    old = conversion_item(1, created_at=NOW - timedelta(days=8), reference_id="OLD")
    fresh = conversion_item(2, created_at=NOW - timedelta(days=8), reference_id="NEW")
    [request] = target.requests([old, fresh], NOW - timedelta(days=8))
    outcomes = deliver(target, request)
    assert {o.kind for o in outcomes.values()} == {OutcomeKind.PERMANENT}
    assert outcomes.keys() == {1, 2}
    assert "Graph error 100/2804003" in outcomes[1].detail
    assert "more than 7 days ago" in outcomes[1].detail
    assert server.events == {}


def test_a_refused_token_pauses_the_target(server: MetaServer) -> None:
    target = meta_target(server, token="EAAwrong")
    [request] = target.requests([conversion_item()], NOW)
    outcome = deliver(target, request)[11]
    assert outcome.kind is OutcomeKind.AUTH
    assert outcome.detail == (
        "HTTP 400 Graph error 190/None OAuthException: Invalid OAuth access token"
        " - Cannot parse access token (fbtrace_id trace1)"
    )
    assert server.received[0].query == {"access_token": ["EAAwrong"]}
    assert server.events == {}


def graph_error(code: int, **extra: object) -> bytes:
    error = {"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "T", **extra}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("answer", "kind", "retry_after"),
    [
        pytest.param(Answer(429, b"", (("Retry-After", "7"),)), OutcomeKind.RETRY, 7.0, id="429"),
        pytest.param(Answer(500, b"oops"), OutcomeKind.RETRY, None, id="500"),
        pytest.param(Answer(503, graph_error(2)), OutcomeKind.RETRY, None, id="service-2"),
        pytest.param(Answer(400, graph_error(1)), OutcomeKind.RETRY, None, id="unknown-1"),
        pytest.param(Answer(400, graph_error(4)), OutcomeKind.RETRY, None, id="throttle-4"),
        pytest.param(Answer(403, graph_error(17)), OutcomeKind.RETRY, None, id="user-limit-17"),
        pytest.param(Answer(400, graph_error(341)), OutcomeKind.RETRY, None, id="limit-341"),
        pytest.param(
            Answer(400, graph_error(100, is_transient=True)),
            OutcomeKind.RETRY,
            None,
            id="transient",
        ),
        pytest.param(
            Answer(400, graph_error(100, error_subcode=2804014, is_transient=False)),
            OutcomeKind.PERMANENT,
            None,
            id="invalid-parameter",
        ),
        pytest.param(Answer(403, graph_error(200)), OutcomeKind.AUTH, None, id="permission-200"),
        pytest.param(Answer(400, graph_error(10)), OutcomeKind.AUTH, None, id="permission-10"),
        pytest.param(Answer(400, graph_error(102)), OutcomeKind.AUTH, None, id="session-102"),
        pytest.param(Answer(404, b"<html>"), OutcomeKind.PERMANENT, None, id="404-no-json"),
        pytest.param(
            Answer(200, b'{"events_received": 0, "messages": [], "fbtrace_id": "T"}'),
            OutcomeKind.RETRY,
            None,
            id="fewer-received",
        ),
    ],
)
def test_answers_as_meta_documents_them(
    server: MetaServer, answer: Answer, kind: OutcomeKind, retry_after: float | None
) -> None:
    target = meta_target(server)
    requests = target.requests([conversion_item(1), conversion_item(2, reference_id="O2")], NOW)
    server.script.append(answer)
    outcomes = deliver(target, requests[0])
    assert outcomes.keys() == {1, 2}
    assert {o.kind for o in outcomes.values()} == {kind}
    assert {o.retry_after for o in outcomes.values()} == {retry_after}
    assert TOKEN not in outcomes[1].detail
    assert server.received[0].problems == []


def test_no_answer_in_time_is_retried(server: MetaServer) -> None:
    target = meta_target(server)
    [request] = target.requests([conversion_item()], NOW)
    server.script.append(Answer(200, b'{"events_received": 1}', delay=1.0))
    with pytest.raises(TimeoutError) as raised:
        send(request, timeout=0.2)
    outcome = target.classify(request, None, str(raised.value))[11]
    assert outcome == Outcome(OutcomeKind.RETRY, "no answer from Meta: timed out")


def test_no_server_is_retried() -> None:
    meta = MetaServer(PIXEL_ID, TOKEN)  # never started, then closed: its port refuses
    meta._server.server_close()
    target = meta_target(meta)
    [request] = target.requests([conversion_item()], NOW)
    assert deliver(target, request)[11].kind is OutcomeKind.RETRY


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(
            DeliveryItem(
                row=transaction(2, created_at=SOLD_AT, corrects=1, original=1),
                original=transaction(1, created_at=SOLD_AT),
            ),
            "Meta's Conversions API has no way to correct or retract an event"
            " (this row is a correction)",
            id="correction",
        ),
        pytest.param(
            DeliveryItem(
                row=transaction(2, created_at=SOLD_AT, corrects=1, original=1, reversal_reason="x"),
                original=transaction(1, created_at=SOLD_AT),
            ),
            "Meta's Conversions API has no way to correct or retract an event"
            " (this row is a reversal)",
            id="reversal",
        ),
        pytest.param(
            DeliveryItem(
                row=transaction(1, created_at=SOLD_AT, sale_amount=None),
                original=transaction(1, created_at=SOLD_AT, sale_amount=None),
                conversion=ConversionContext(user_agent=UA, page_url=PAGE),
            ),
            "Meta's Purchase event needs a value: this conversion has no sale_amount",
            id="no-amount",
        ),
        pytest.param(
            DeliveryItem(
                row=transaction(1, created_at=SOLD_AT), original=transaction(1, created_at=SOLD_AT)
            ),
            "Meta requires client_user_agent and event_source_url for a website event: the"
            " conversion's request left none (a server-side report, or a row from before the"
            " target)",
            id="no-context",
        ),
        pytest.param(
            DeliveryItem(
                row=transaction(1, created_at=SOLD_AT),
                original=transaction(1, created_at=SOLD_AT),
                conversion=ConversionContext(user_agent=UA),
            ),
            "Meta requires event_source_url for a website event: the conversion's request"
            " left none (a server-side report, or a row from before the target)",
            id="no-page-url",
        ),
    ],
)
def test_what_meta_cannot_take_is_unsupported_and_never_sent(
    server: MetaServer, item: DeliveryItem, reason: str
) -> None:
    target = meta_target(server)
    assert target.unsupported(item) == reason
    assert target.requests([item], NOW) == []
    assert target.unsupported(conversion_item()) is None


def test_the_attempt_log_keeps_no_token_and_no_hash(server: MetaServer) -> None:
    target = meta_target(server)
    [request] = target.requests([conversion_item()], NOW)
    text = target.redacted(request)
    assert TOKEN not in text
    assert "EAAtoken%2Fwith%2Bodd%3Dchars" in request.url
    assert "EAAtoken" not in text
    assert FBCLID not in text
    for personal in ("mary.smith@example.com", "16505551212", "mary", "obrien"):
        assert sha(personal) not in text
    assert text.startswith(
        f"POST {server.base_url}/v26.0/{PIXEL_ID}/events?access_token=[secret]\n"
    )
    body = json.loads(text.split("\n", 2)[2], parse_float=Decimal)
    assert body["data"][0]["user_data"] == {
        "client_user_agent": UA,
        "fbc": "[id]",
        "fbp": "[id]",
        "em": "[hashed]",
        "ph": "[hashed]",
        "fn": "[hashed]",
        "ln": "[hashed]",
    }
    assert body["data"][0]["custom_data"]["value"] == Decimal("24.50")


def test_the_documented_url_and_endpoint_override() -> None:
    settings = {"pixel_id": PIXEL_ID}
    target = MetaConversionsApi(
        Target(1, 1, TargetKind.META_CAPI, None, settings, {"access_token": "T"},
               TargetStatus.ACTIVE, None, "2026-12-01T00:00:00.000000Z")
    )  # fmt: skip
    assert target.url == f"https://graph.facebook.com/v26.0/{PIXEL_ID}/events?access_token=T"
    assert MetaConversionsApi.batch_limit == 1000
    assert MetaConversionsApi.max_event_age == timedelta(days=7)
    assert MetaConversionsApi.needs_conversion_context


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        pytest.param({}, {"access_token": "T"}, "a meta_capi target needs pixel_id", id="no-pixel"),
        pytest.param({"pixel_id": "1"}, {}, "a meta_capi target needs access_token", id="no-token"),
        pytest.param(
            {"pixel_id": "12a"}, {"access_token": "T"}, "a Meta pixel id is its digits", id="pixel"
        ),
        pytest.param(
            {"pixel_id": "1", "endpoint": "ftp://x"},
            {"access_token": "T"},
            "an endpoint is a URL",
            id="endpoint",
        ),
        pytest.param(
            {"pixel_id": "1", "validate": "1"},
            {"access_token": "T"},
            "a meta_capi target takes no validate",
            id="unknown",
        ),
    ],
)
def test_check_settings_refuses(
    settings: dict[str, str], secrets: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MetaConversionsApi.check_settings(settings, secrets)


def test_check_settings_accepts() -> None:
    MetaConversionsApi.check_settings(
        {"pixel_id": "1234", "test_event_code": "TEST1", "endpoint": "http://127.0.0.1:9"},
        {"access_token": "T"},
    )
