"""Publisher postbacks: real ledger rows, sent over loopback to a TUNE-like endpoint."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import Transaction
from pixel_wsgi.delivery.model import (
    ClickContext,
    DeliveryItem,
    OutcomeKind,
    Target,
    TargetKind,
    TargetStatus,
)
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.postback import MACROS, Postback
from pixel_wsgi.errors import ConfigurationError

from .conftest import World
from .delivery_servers import (
    RecordingServer,
    Reply,
    TunePostbackServer,
    deliver,
    ledger_items,
    transaction,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
#: A template with every macro, each in a parameter of its own name.
EVERY_MACRO = "/aff_lsr?" + "&".join(f"{name}={{{name}}}" for name in MACROS)
SUB_IDS = {"sub1": "abc", "sub2": "b-2", "sub3": "c.3", "sub4": "d_4", "sub5": "e~5"}


def postback(url: str, publisher_id: int | None, method: str | None = None) -> Postback:
    """A postback target as ``target add`` makes it: settings checked first."""
    settings = {"url": url} if method is None else {"url": url, "method": method}
    kind = target_type(TargetKind.POSTBACK)
    kind.check_settings(settings, {})
    made = kind(
        Target(1, 1, TargetKind.POSTBACK, publisher_id, settings, {}, TargetStatus.ACTIVE, None, "")
    )
    assert isinstance(made, Postback)
    return made


def report(app: TestApp, auth: dict[str, str], fields: dict[str, Any]) -> dict[str, Any]:
    """POST one report to the Conversion Reporting API; the ledger row it wrote."""
    response = app.post("/pixels/api/conversions", fields, headers=auth)
    row: dict[str, Any] = response.json["transaction"]
    return row


def sale(world: World, reference_id: str = "order-1", **fields: str) -> dict[str, str]:
    return {
        "reference_id": reference_id,
        "sale_amount": "100.00",
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
        **fields,
    }


def item(row: Transaction, sub_ids: dict[str, str] | None = None) -> DeliveryItem:
    return DeliveryItem(row, row, click=None if sub_ids is None else ClickContext(sub_ids))


# -- what the publisher receives --------------------------------------------------------


def test_every_macro_of_a_real_conversion_its_correction_and_reversal(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    report(app, auth, sale(world))
    report(app, auth, {"reference_id": "order-1", "sale_amount": "80.00"})
    report(app, auth, {"reference_id": "order-1", "reversal_reason": "order cancelled"})
    items = ledger_items(world.storage, click=ClickContext(SUB_IDS))
    with TunePostbackServer() as server:
        target = postback(server.url + EVERY_MACRO, world.publisher_id)
        outcomes = [deliver(target, each, NOW)[1].kind for each in items]
    assert outcomes == [OutcomeKind.DELIVERED] * 3
    assert [(r.method, r.path, r.body) for r in server.received] == [("GET", "/aff_lsr", b"")] * 3
    ids = [str(each.row.transaction_id) for each in items]
    common = {
        "reference_id": "order-1",
        "sale_currency": "USD",
        "campaign_id": str(world.percent_campaign_id),
        "publisher_id": str(world.publisher_id),
        **SUB_IDS,
    }
    assert [r.query for r in server.received] == [
        {
            "transaction_id": ids[0],
            "sale_amount": "100.00",
            "payout": "10.00",
            "transaction_type": "conversion",
            **common,
        },
        {
            "transaction_id": ids[1],
            "sale_amount": "80.00",
            "payout": "8.00",
            "transaction_type": "correction",
            **common,
        },
        {
            "transaction_id": ids[2],
            "sale_amount": "0.00",
            "payout": "0.00",
            "transaction_type": "reversal",
            **common,
        },
    ]
    # The query's parameters in the template's order, nothing added.
    assert [pair.split("=")[0] for pair in server.received[0].raw_query.split("&")] == list(MACROS)
    assert list(server.counted) == ids


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param("a&b=c", "a%26b%3Dc", id="ampersand-equals"),
        pytest.param("two words", "two%20words", id="space"),
        pytest.param("café ☕", "caf%C3%A9%20%E2%98%95", id="unicode-utf8"),
        pytest.param("100%", "100%25", id="percent"),
        pytest.param("a+b", "a%2Bb", id="plus"),
        pytest.param("/?#[]@!$'()*,;:", "%2F%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A", id="gen"),
        pytest.param("A-z_0.9~", "A-z_0.9~", id="unreserved-kept"),
    ],
)
def test_every_value_is_percent_encoded(value: str, encoded: str) -> None:
    row = transaction(reference_id=value)
    with TunePostbackServer() as server:
        target = postback(
            server.url + "/aff_lsr?transaction_id={transaction_id}&s={sub1}&r={reference_id}", 3
        )
        deliver(target, item(row, {"sub1": value}), NOW)
    [received] = server.received
    assert received.raw_query == f"transaction_id=7&s={encoded}&r={encoded}"
    assert received.query == {"transaction_id": "7", "s": value, "r": value}


@pytest.mark.parametrize(
    ("row", "click", "expected"),
    [
        pytest.param(
            transaction(sale_amount=None, reference_id=None),
            None,
            {"amount": "", "ref": "", "s1": "", "s2": "", "cur": "EUR", "pay": "2.45"},
            id="no-sale-no-click",
        ),
        pytest.param(
            transaction(sale_amount=Decimal("1E+2"), payout=Decimal("0.00")),
            ClickContext({"sub2": "only-two"}),
            {
                "amount": "100",
                "ref": "order-7",
                "s1": "",
                "s2": "only-two",
                "cur": "EUR",
                "pay": "0.00",
            },
            id="exact-decimal-some-subs",
        ),
    ],
)
def test_values_that_are_absent_are_empty(
    row: Transaction, click: ClickContext | None, expected: dict[str, str]
) -> None:
    template = (
        "/aff_lsr?transaction_id={transaction_id}&amount={sale_amount}&ref={reference_id}"
        "&s1={sub1}&s2={sub2}&cur={sale_currency}&pay={payout}"
    )
    with TunePostbackServer() as server:
        _, outcome = deliver(postback(server.url + template, 3), DeliveryItem(row, row, click), NOW)
    assert outcome.kind is OutcomeKind.DELIVERED
    assert server.received[0].query == {"transaction_id": "7", **expected}


def test_only_the_publishers_rows_concern_it() -> None:
    mine, theirs = transaction(publisher_id=3), transaction(publisher_id=4)
    target = postback("https://p.example/pb?t={transaction_id}", 3)
    assert (target.concerns(mine), target.concerns(theirs)) == (True, False)
    nobody = postback("https://p.example/pb?t={transaction_id}", None)
    assert nobody.concerns(mine) is False


def test_post_sends_the_query_as_a_form_to_the_bare_url(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    report(app, auth, sale(world, "order-&=9"))
    [conversion] = ledger_items(world.storage, click=ClickContext({"sub1": "a b&c"}))
    template = "/aff_lsr?transaction_id={transaction_id}&click={sub1}&ref={reference_id}"
    with TunePostbackServer() as server:
        request, outcome = deliver(
            postback(server.url + template, world.publisher_id, "POST"), conversion, NOW
        )
    assert outcome.kind is OutcomeKind.DELIVERED
    assert request.url == server.url + "/aff_lsr"
    [received] = server.received
    assert (received.method, received.path, received.raw_query) == ("POST", "/aff_lsr", "")
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received.headers["content-length"] == str(len(received.body))
    tid = conversion.row.transaction_id
    assert received.body == f"transaction_id={tid}&click=a%20b%26c&ref=order-%26%3D9".encode()
    assert received.form == {"transaction_id": str(tid), "click": "a b&c", "ref": "order-&=9"}
    assert server.counted == {str(tid): received.form}


def test_one_request_per_row() -> None:
    rows = [transaction(transaction_id=n, original_transaction_id=n) for n in (1, 2, 3)]
    target = postback("https://p.example/pb?t={transaction_id}", 3)
    requests = target.requests([item(row) for row in rows], NOW)
    assert [(r.method, r.url, r.transaction_ids) for r in requests] == [
        ("GET", f"https://p.example/pb?t={n}", (n,)) for n in (1, 2, 3)
    ]
    assert Postback.batch_limit == 1


# -- what the publisher's answer means --------------------------------------------------


def test_tune_counts_once_and_then_says_duplicate() -> None:
    row = transaction()
    with TunePostbackServer() as server:
        target = postback(server.url + "/aff_lsr?transaction_id={transaction_id}", 3)
        first = deliver(target, item(row), NOW)[1]
        again = deliver(target, replace(item(row), attempts=1), NOW)[1]
    assert (first.kind, again.kind) == (OutcomeKind.DELIVERED, OutcomeKind.DUPLICATE)
    assert again.detail == "HTTP 200 saying failure: Duplicate conversion"
    assert [r.raw_query for r in server.received] == ["transaction_id=7"] * 2
    assert list(server.counted) == ["7"]


def test_tune_refuses_a_missing_transaction_id_with_http_200() -> None:
    with TunePostbackServer() as server:
        target = postback(server.url + "/aff_lsr?ref={reference_id}", 3)
        _, outcome = deliver(target, item(transaction()), NOW)
    assert outcome.kind is OutcomeKind.PERMANENT
    assert outcome.detail == "HTTP 200 saying failure: Invalid Trans. ID #"
    assert server.counted == {}


@pytest.mark.parametrize(
    ("reply", "kind", "detail", "retry_after"),
    [
        pytest.param(
            Reply(200, b"success=true;"), OutcomeKind.DELIVERED, "HTTP 200", None, id="tune-success"
        ),
        pytest.param(Reply(204), OutcomeKind.DELIVERED, "HTTP 204", None, id="no-content"),
        pytest.param(Reply(200, b"OK"), OutcomeKind.DELIVERED, "HTTP 200", None, id="plain-ok"),
        pytest.param(
            Reply(200, b'{"success": true}'),
            OutcomeKind.DELIVERED,
            "HTTP 200",
            None,
            id="json-success",
        ),
        pytest.param(
            Reply(200, b"success=false; err_msg=Invalid Trans. ID #7;"),
            OutcomeKind.PERMANENT,
            "HTTP 200 saying failure: Invalid Trans. ID #7",
            None,
            id="tune-failure",
        ),
        pytest.param(
            Reply(200, b"SUCCESS=False"),
            OutcomeKind.PERMANENT,
            "HTTP 200 saying failure: success=false",
            None,
            id="failure-any-case",
        ),
        pytest.param(
            Reply(201, b'{"success": false, "error": "unknown offer"}'),
            OutcomeKind.PERMANENT,
            "HTTP 201 saying failure: unknown offer",
            None,
            id="json-failure",
        ),
        pytest.param(
            Reply(200, b'{"success": false}'),
            OutcomeKind.PERMANENT,
            "HTTP 200 saying failure: success is false",
            None,
            id="json-failure-bare",
        ),
        pytest.param(
            Reply(200, b'{"success":false,"err_msg":"Duplicate conversion"}'),
            OutcomeKind.DUPLICATE,
            "HTTP 200 saying failure: Duplicate conversion",
            None,
            id="json-duplicate",
        ),
        pytest.param(
            Reply(200, b"success=false; err_msg=duplicate CONVERSION;"),
            OutcomeKind.DUPLICATE,
            "HTTP 200 saying failure: duplicate CONVERSION",
            None,
            id="duplicate-any-case",
        ),
        pytest.param(
            Reply(200, b'{"success": "true", "note": "success=false is a parameter"}'),
            OutcomeKind.DELIVERED,
            "HTTP 200",
            None,
            id="json-decides-over-text",
        ),
        pytest.param(
            Reply(429, b"slow down", (("Retry-After", "30"),)),
            OutcomeKind.RETRY,
            "HTTP 429: slow down",
            30.0,
            id="429-retry-after",
        ),
        pytest.param(
            Reply(
                503,
                b"",
                (
                    ("Retry-After", "Wed, 25 Nov 2026 12:02:00 GMT"),
                    ("Date", "Wed, 25 Nov 2026 12:00:00 GMT"),
                ),
            ),
            OutcomeKind.RETRY,
            "HTTP 503",
            120.0,
            id="503-retry-after-date",
        ),
        pytest.param(
            Reply(500, b"<h1>oops</h1>\n\n"),
            OutcomeKind.RETRY,
            "HTTP 500: <h1>oops</h1>",
            None,
            id="500",
        ),
        pytest.param(Reply(502), OutcomeKind.RETRY, "HTTP 502", None, id="502"),
        pytest.param(Reply(408), OutcomeKind.RETRY, "HTTP 408", None, id="408"),
        pytest.param(
            Reply(410, b"gone"), OutcomeKind.PERMANENT, "HTTP 410: gone", None, id="410-gone"
        ),
        pytest.param(Reply(401), OutcomeKind.AUTH, "HTTP 401", None, id="401"),
        pytest.param(Reply(403, b"no"), OutcomeKind.AUTH, "HTTP 403: no", None, id="403"),
        pytest.param(Reply(404), OutcomeKind.PERMANENT, "HTTP 404", None, id="404"),
        pytest.param(Reply(400), OutcomeKind.PERMANENT, "HTTP 400", None, id="400"),
        pytest.param(Reply(422), OutcomeKind.PERMANENT, "HTTP 422", None, id="422"),
        pytest.param(
            Reply(302, b"", (("Location", "https://new.example/pb"),)),
            OutcomeKind.PERMANENT,
            "HTTP 302: the postback URL moved to https://new.example/pb",
            None,
            id="302-not-followed",
        ),
    ],
)
def test_answers(reply: Reply, kind: OutcomeKind, detail: str, retry_after: float | None) -> None:
    with RecordingServer() as server:
        server.script(reply)
        _, outcome = deliver(
            postback(server.url + "/pb?t={transaction_id}", 3), item(transaction()), NOW
        )
    assert (outcome.kind, outcome.detail, outcome.retry_after) == (kind, detail, retry_after)
    assert [r.path for r in server.received] == ["/pb"]  # never followed, never repeated


def test_a_server_slower_than_the_timeout_is_retried() -> None:
    with RecordingServer() as server:
        server.script(Reply(200, b"success=true;", delay=3.0))
        _, outcome = deliver(
            postback(server.url + "/pb?t={transaction_id}", 3),
            item(transaction()),
            NOW,
            timeout=0.3,
        )
        assert len(server.received) == 1  # it arrived: the publisher dedupes on the id
    assert (outcome.kind, outcome.detail) == (
        OutcomeKind.RETRY,
        "no answer: TimeoutError: timed out",
    )


def test_no_server_is_retried() -> None:
    with RecordingServer() as server:
        url = server.url
    _, outcome = deliver(postback(url + "/pb?t={transaction_id}", 3), item(transaction()), NOW)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.detail.startswith("no answer: ConnectionRefusedError")


# -- settings and the attempt log -------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({}, "a postback target needs url", id="no-url"),
        pytest.param({"url": "  "}, "url of a postback target must not be empty", id="empty"),
        pytest.param(
            {"url": "https://p.example/pb", "token": "x"},
            "a postback target takes no token",
            id="unknown-setting",
        ),
        pytest.param(
            {"url": "https://p.example/pb?c={click_id}&t={transaction_id}"},
            "the url of a postback target has an unknown macro {click_id}; known: "
            "{transaction_id}, {reference_id}, {sale_amount}, {sale_currency}, {payout}, "
            "{campaign_id}, {publisher_id}, {sub1}, {sub2}, {sub3}, {sub4}, {sub5}, "
            "{transaction_type}",
            id="unknown-macro",
        ),
        pytest.param(
            {"url": "https://p.example/pb?c={SUB1}"}, "unknown macro {SUB1}", id="macro-case"
        ),
        pytest.param(
            {"url": "https://p.example/pb?t={transaction_id"},
            "the url of a postback target has an unmatched brace: "
            "'https://p.example/pb?t={transaction_id'",
            id="unmatched-brace",
        ),
        pytest.param(
            {"url": "ftp://p.example/pb?t={transaction_id}"},
            "url of a postback target must be an http(s) URL with a host, got "
            "'ftp://p.example/pb?t={transaction_id}'",
            id="not-http",
        ),
        pytest.param({"url": "/pb?t={transaction_id}"}, "must be an http(s) URL", id="relative"),
        pytest.param({"url": "https:///pb"}, "must be an http(s) URL", id="no-host"),
        pytest.param(
            {"url": "https://{sub1}.p.example/pb"},
            "macros in its path and query only",
            id="macro-in-host",
        ),
        pytest.param(
            {"url": "https://p.example/pb?note=a b"},
            "only printable ASCII without spaces",
            id="space",
        ),
        pytest.param(
            {"url": "https://p.example/pb?note=café"}, "only printable ASCII", id="raw-unicode"
        ),
        pytest.param(
            {"url": "https://p.example/pb", "method": "PUT"},
            "the method of a postback target is GET or POST, got 'PUT'",
            id="method",
        ),
    ],
)
def test_check_settings_refuses(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Postback.check_settings(settings, {})
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"url": "http://127.0.0.1:8000" + EVERY_MACRO}, id="every-macro"),
        pytest.param({"url": "https://p.example/{publisher_id}/pb", "method": "post"}, id="post"),
        pytest.param({"url": "https://p.example/pb?x=%7B%7D", "method": "GET"}, id="encoded"),
    ],
)
def test_check_settings_accepts(settings: dict[str, str]) -> None:
    Postback.check_settings(settings, {})


def test_the_attempt_log_keeps_the_url_with_its_sub_ids() -> None:
    target = postback("https://p.example/pb?t={transaction_id}&c={sub1}", 3)
    [request] = target.requests([item(transaction(), {"sub1": "pub click 1"})], NOW)
    assert target.redacted(request) == "GET https://p.example/pb?t=7&c=pub%20click%201\n"
