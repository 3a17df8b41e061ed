"""``POST /pixels/api/conversions``: the Conversion Reporting API, driven over WSGI."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp, TestResponse

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.endpoints.api.conversions import MAX_BATCH, MAX_BODY_BYTES
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .conftest import SECRET, FakeClock, World, host_app, pixel_url, reasons

URL = "/pixels/api/conversions"


def new_report(world: World, reference_id: str = "order-1", **fields: Any) -> dict[str, Any]:
    return {
        "reference_id": reference_id,
        "sale_amount": "100.00",
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
        **fields,
    }


def post(app: TestApp, auth: dict[str, str], fields: dict[str, Any], **kw: Any) -> TestResponse:
    return app.post(URL, fields, headers=auth, status="*", **kw)


def post_json(app: TestApp, auth: dict[str, str], document: Any, **kw: Any) -> TestResponse:
    return app.post_json(URL, document, headers=auth, status="*", **kw)


# -- create, repeat, correct ---------------------------------------------------------


def test_a_new_reference_id_creates_a_conversion(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = post(app, auth, new_report(world, sku_list="a", reason_code="sale"))
    assert response.status_int == 201
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store, private"
    row = response.json["transaction"]
    assert response.json["result"] == "created"
    assert (row["reference_id"], row["sale_amount"], row["payout"]) == (
        "order-1",
        "100.00",
        "10.00",
    )
    assert (row["campaign_id"], row["publisher_id"], row["source"]) == (
        world.percent_campaign_id,
        world.publisher_id,
        "api",
    )
    [conversion] = world.storage.conversions()
    assert conversion.payout == Decimal("10.00")


def test_the_same_report_again_changes_nothing(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    first = post(app, auth, new_report(world))
    again = post(app, auth, new_report(world))
    assert (first.status_int, again.status_int) == (201, 200)
    assert again.json["result"] == "unchanged"
    assert again.json["transaction"] == first.json["transaction"]
    assert len(list(world.storage.transactions())) == 1


def test_the_same_reference_id_with_other_values_appends_a_correction(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    post(app, auth, new_report(world, reason_code="sale"))
    response = post(app, auth, {"reference_id": "order-1", "sale_amount": "80.00"})
    assert response.status_int == 200
    assert response.json["result"] == "corrected"
    row = response.json["transaction"]
    # Fields not sent are kept; the payout follows the new amount.
    assert (row["sale_amount"], row["reason_code"], row["payout"]) == ("80.00", "sale", "8.00")
    assert (row["corrects_transaction_id"], row["transaction_type"]) == (1, "correction")
    assert [r.sale_amount for r in world.storage.transactions()] == [
        Decimal("100.00"),
        Decimal("80.00"),
    ]


def test_parent_reference_id_corrects_and_a_repeat_is_unchanged(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    post(app, auth, new_report(world))
    update = {"parent_reference_id": "order-1", "sale_amount": "95.0", "reason_code": "confirmed"}
    assert post(app, auth, update).json["result"] == "corrected"
    assert post(app, auth, update).json["result"] == "unchanged"
    assert len(list(world.storage.transactions())) == 2


def test_a_report_ties_to_the_pixel_conversion_and_inherits_its_attribution(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    app.get(f"/pixels/click/{world.fixed_link_id}")
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=2012994455"))
    app.reset()  # the server has no cookie
    response = post(
        app,
        auth,
        {"reference_id": "2012994455", "sale_amount": "95.00", "reason_code": "confirmed_order"},
    )
    assert response.status_int == 200
    row = response.json["transaction"]
    assert (row["campaign_id"], row["publisher_id"]) == (
        world.fixed_campaign_id,
        world.publisher_id,
    )
    assert row["visit_id"] is not None  # the pixel's visit, inherited
    assert (row["payout"], row["corrects_transaction_id"]) == ("4.50", 1)


def test_negative_amounts_claw_back_a_percentage(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    # A negative amount only updates an existing conversion (test_trust_money: never
    # a new one).
    assert post(app, auth, new_report(world, "refund-1")).status_int == 201
    response = post(app, auth, {"reference_id": "refund-1", "sale_amount": "-25.00"})
    assert response.status_int == 200
    assert (
        response.json["transaction"]["sale_amount"],
        response.json["transaction"]["payout"],
    ) == (
        "-25.00",
        "-2.50",
    )
    fixed = new_report(world, "refund-2", sale_amount="5")
    fixed.update(advertiser_campaign_id=str(world.fixed_campaign_id), reason_code="renewal")
    assert post(app, auth, fixed).json["transaction"]["payout"] == "4.50"
    clawback = {"reference_id": "refund-2", "sale_amount": "-5"}
    assert post(app, auth, clawback).json["transaction"]["payout"] == "0.00"


def test_a_reversal_voids_the_conversion_once(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    post(app, auth, new_report(world))
    reverse = {"reference_id": "order-1", "reversal_reason": "order cancelled"}
    response = post(app, auth, reverse)
    row = response.json["transaction"]
    assert (response.status_int, row["transaction_type"]) == (200, "reversal")
    assert (row["sale_amount"], row["payout"], row["reversal_reason"]) == (
        "0.00",
        "0.00",
        "order cancelled",
    )
    assert post(app, auth, reverse).json["result"] == "unchanged"
    [current] = world.storage.conversions()
    assert current.reversal_reason == "order cancelled"
    # New values bring it back, as a correction of the reversal.
    back = post(app, auth, {"reference_id": "order-1", "sale_amount": "100.00"})
    assert back.json["transaction"]["transaction_type"] == "correction"
    assert back.json["transaction"]["payout"] == "10.00"


def test_json_numbers_are_exact_and_lists_are_arrays(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    document = {
        "reference_id": "j-1",
        "sale_amount": 19.99,
        "advertiser_campaign_id": world.percent_campaign_id,
        "affiliate_id": world.publisher_id,
        "sku_list": ["a,1", "b"],
        "quantity_list": [2, 1],
        "custom_data": {"coupon": "SPRING"},
        "email_address": "buyer@example.com",
        "opt_in_SMS": True,
    }
    response = post_json(app, auth, document)
    assert response.status_int == 201, response.json
    row = response.json["transaction"]
    assert (row["sale_amount"], row["payout"]) == ("19.99", "2.00")
    assert (row["sku_list"], row["quantity_list"]) == (["a,1", "b"], [2, 1])
    assert row["custom_data"] == {"coupon": "SPRING"}
    assert "email_address" not in json.dumps(row)
    stored = world.storage.personal_data(row["transaction_id"])
    assert stored == {"email_address": "buyer@example.com", "opt_in_SMS": "1"}


def test_bearer_credentials_work_too(app: TestApp, world: World) -> None:
    secret = issue_credential(world.storage, world.advertiser_id).secret
    response = app.post(URL, new_report(world), headers={"Authorization": f"Bearer {secret}"})
    assert response.status_int == 201


# -- refusals --------------------------------------------------------------------------


def test_every_bad_field_is_named_with_a_stable_code(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = post(
        app,
        auth,
        {
            "reference_id": "bad-1",
            "sale_amount": "1e3",
            "sale_currency": "XXXX",
            "quantity_list[]": "0",
            "advertiser_campaign_id": "abc",
        },
    )
    assert response.status_int == 400
    error = response.json["error"]
    assert error["code"] == "invalid_report"
    codes = {(f["field"], f["code"]) for f in error["fields"]}
    assert codes == {
        ("advertiser_campaign_id", "invalid_field"),
        ("sale_amount", "invalid_sale_amount"),
        ("sale_currency", "invalid_currency"),
        ("quantity_list[]", "invalid_quantity"),
    }
    assert "Traceback" not in response.text
    assert reasons(world.storage) == ["invalid_field"]


def test_a_rule_between_fields_is_named_too(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = post(app, auth, new_report(world, **{"sku_list[]": "a", "quantity_list[]": "1,2"}))
    assert response.status_int == 400
    response = app.post(
        URL,
        [
            ("reference_id", "x"),
            ("sku_list[]", "a"),
            ("quantity_list[]", "1"),
            ("quantity_list[]", "2"),
        ],
        headers=auth,
        status=400,
    )
    assert response.json["error"]["fields"] == [
        {
            "field": "quantity_list[]",
            "code": "quantity_mismatch",
            "message": "2 quantities for 1 SKUs",
        }
    ]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        pytest.param({"sale_amount": "5"}, 400, "invalid_report", id="no-reference-id"),
        pytest.param(
            {"parent_reference_id": "nope", "sale_amount": "5"},
            404,
            "unknown_parent_reference",
            id="unknown-parent",
        ),
        pytest.param(
            {"reference_id": "nope", "reversal_reason": "x"},
            404,
            "unknown_parent_reference",
            id="reverse-unknown",
        ),
        pytest.param({"reference_id": "new-1"}, 422, "no_attribution", id="no-attribution"),
        pytest.param(
            {"reference_id": "new-1", "advertiser_campaign_id": "999", "affiliate_id": "1"},
            422,
            "unknown_campaign",
            id="unknown-campaign",
        ),
    ],
)
def test_refusals(
    app: TestApp,
    auth: dict[str, str],
    world: World,
    fields: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = post(app, auth, fields)
    assert response.status_int == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert list(world.storage.transactions()) == []
    assert len(reasons(world.storage)) == 1


def test_another_advertisers_campaign_is_unknown(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    other = world.storage.campaigns(advertiser_id=world.other_advertiser_id)[0]
    response = post(app, auth, new_report(world, advertiser_campaign_id=str(other.id)))
    assert (response.status_int, response.json["error"]["code"]) == (422, "unknown_campaign")


def test_a_publisher_without_a_link_to_the_campaign_is_not_approved(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    stranger = world.storage.add_publisher("Stranger")
    response = post(app, auth, new_report(world, affiliate_id=str(stranger.id)))
    assert (response.status_int, response.json["error"]["code"]) == (422, "publisher_not_approved")


def test_changing_a_conversions_credit_is_a_conflict(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    post(app, auth, new_report(world))
    response = post(
        app, auth, new_report(world, advertiser_campaign_id=str(world.fixed_campaign_id))
    )
    assert response.status_int == 409
    assert response.json["error"] == {
        "code": "attribution_conflict",
        "message": "conversion 'order-1' is credited to advertiser_campaign_id"
        f" {world.percent_campaign_id}, not {world.fixed_campaign_id}",
        "field": "advertiser_campaign_id",
    }


def test_personal_data_never_reaches_the_rejection_log(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    post(app, auth, {"sale_amount": "x", "email_address": "secret@example.com"})
    [rejection] = world.storage.rejections()
    assert "secret@example.com" not in rejection.params + rejection.detail
    assert "email_address=[redacted]" in rejection.params


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(b"reference_id=1", "text/plain", 415, "unsupported_media_type", id="text"),
        pytest.param(b"{", "application/json", 400, "invalid_query", id="broken-json"),
        pytest.param(b"[]", "application/json", 400, "invalid_batch", id="empty-batch"),
        pytest.param(b"3", "application/json", 400, "invalid_request", id="json-scalar"),
        pytest.param(
            b"%ff=1", "application/x-www-form-urlencoded", 400, "invalid_query", id="not-utf8"
        ),
        pytest.param(b'{"sale_amount": NaN}', "application/json", 400, "invalid_query", id="nan"),
        pytest.param(
            b'{"reference_id": true}', "application/json", 400, "invalid_report", id="boolean"
        ),
    ],
)
def test_malformed_bodies(
    app: TestApp, auth: dict[str, str], body: bytes, content_type: str, status: int, code: str
) -> None:
    response = app.post(URL, body, headers={**auth, "Content-Type": content_type}, status="*")
    assert (response.status_int, response.json["error"]["code"]) == (status, code)


def test_a_body_over_the_limit_is_refused_unread(app: TestApp, auth: dict[str, str]) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = app.post(URL, body, headers={**auth, "Content-Type": "application/json"}, status="*")
    assert (response.status_int, response.json["error"]["code"]) == (413, "body_too_large")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods(app: TestApp, auth: dict[str, str], method: str) -> None:
    response = app.request(URL, method=method, headers=auth, status="*")
    assert (response.status_int, response.headers["Allow"]) == (405, "POST")


def test_unknown_api_paths_are_404(app: TestApp, auth: dict[str, str]) -> None:
    response = app.get("/pixels/api/nothing", headers=auth, status=404)
    assert response.json["error"]["code"] == "not_found"


# -- batches -----------------------------------------------------------------------


def test_a_batch_answers_item_by_item(app: TestApp, auth: dict[str, str], world: World) -> None:
    batch = [
        new_report(world, "b-1"),
        new_report(world, "b-1"),
        {"reference_id": "b-2", "sale_amount": "x"},
        "not an object",
        {"reference_id": "b-1", "sale_amount": "50"},
    ]
    response = post_json(app, auth, batch)
    assert response.status_int == 200
    results = response.json["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, 201),
        (1, 200),
        (2, 400),
        (3, 400),
        (4, 200),
    ]
    assert [r.get("result") for r in results] == ["created", "unchanged", None, None, "corrected"]
    assert len(list(world.storage.transactions())) == 2


def test_a_batch_is_bounded(app: TestApp, auth: dict[str, str], world: World) -> None:
    batch = [new_report(world, f"b-{i}") for i in range(MAX_BATCH + 1)]
    response = post_json(app, auth, batch)
    assert (response.status_int, response.json["error"]["code"]) == (400, "invalid_batch")
    assert list(world.storage.transactions()) == []


# -- Idempotency-Key ---------------------------------------------------------------


def test_an_idempotency_key_replays_the_first_answer(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    headers = {**auth, "Idempotency-Key": "req-1"}
    first = app.post(URL, new_report(world), headers=headers)
    # Even after the conversion changed, the retry gets what the first request got.
    post(app, auth, {"reference_id": "order-1", "sale_amount": "1.00"})
    retry = app.post(URL, new_report(world), headers=headers)
    assert (first.status_int, retry.status_int) == (201, 201)
    assert retry.json == first.json
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(list(world.storage.transactions())) == 2


def test_an_idempotency_key_reused_for_another_request_is_refused(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    headers = {**auth, "Idempotency-Key": "req-1"}
    app.post(URL, new_report(world), headers=headers)
    response = app.post(URL, new_report(world, "order-2"), headers=headers, status="*")
    assert (response.status_int, response.json["error"]["code"]) == (422, "idempotency_key_reused")
    assert [c.reference_id for c in world.storage.conversions()] == ["order-1"]


def test_idempotency_keys_expire_after_a_day(
    app: TestApp, auth: dict[str, str], world: World, clock: FakeClock
) -> None:
    from datetime import timedelta

    headers = {**auth, "Idempotency-Key": "req-1"}
    app.post(URL, new_report(world), headers=headers)
    clock.advance(timedelta(hours=25))
    response = app.post(URL, new_report(world, "order-2"), headers=headers)
    assert response.status_int == 201


def test_idempotency_keys_belong_to_one_advertiser(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    other_secret = issue_credential(world.storage, world.other_advertiser_id).secret
    app.post(URL, new_report(world), headers={**auth, "Idempotency-Key": "k"})
    response = app.post(
        URL,
        {"reference_id": "order-1", "sale_amount": "1"},
        headers={"Authorization": f"Bearer {other_secret}", "Idempotency-Key": "k"},
        status="*",
    )
    # Not a replay of advertiser 1's answer: advertiser 2 has no such conversion.
    assert (response.status_int, response.json["error"]["code"]) == (422, "no_attribution")


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_malformed_idempotency_keys(
    app: TestApp, auth: dict[str, str], world: World, key: str
) -> None:
    headers = {**auth, "Idempotency-Key": key.encode("utf-8").decode("latin-1")}
    response = app.post(URL, new_report(world), headers=headers, status="*")
    assert (response.status_int, response.json["error"]["code"]) == (400, "invalid_idempotency_key")
    assert list(world.storage.transactions()) == []


# -- the store failing -------------------------------------------------------------


def test_a_locked_store_spools_the_report_and_answers_202(
    world: World, auth: dict[str, str], tmp_path: Path
) -> None:
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.2)
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=tmp_path / "spool")
    holder = sqlite3.connect(world.storage.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = TestApp(middleware).post(URL, new_report(world), headers=auth, status="*")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status_int == 202
    assert response.json["result"] == "spooled" and response.json["event_id"]
    assert list(world.storage.transactions()) == []
    summary = replay(Spool(tmp_path / "spool"), world.storage)
    assert (summary.applied, summary.stopped) == (1, None)
    [conversion] = world.storage.conversions()
    assert (conversion.reference_id, conversion.source) == ("order-1", "api")


def test_when_neither_the_store_nor_a_spool_takes_it_the_answer_is_503(
    world: World, auth: dict[str, str]
) -> None:
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.2)
    app = TestApp(PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=None))
    holder = sqlite3.connect(world.storage.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = app.post(URL, new_report(world), headers=auth, status="*")
        keyed = app.post(
            URL, new_report(world), headers={**auth, "Idempotency-Key": "k"}, status="*"
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for answer in (response, keyed):
        assert answer.status_int == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json["error"]["code"] == "storage_unavailable"
    # The client retries, as Invoca documents: now it lands once.
    assert app.post(URL, new_report(world), headers=auth).status_int == 201
    assert app.post(URL, new_report(world), headers=auth).status_int == 200


# -- text no store can hold, JSON no parser should recurse into (issue 9) ------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"reference_id": "a\ud800"}, "reference_id", id="value"),
        pytest.param({"sku_list": ["a", "\udfff"]}, "sku_list", id="list-item"),
        pytest.param({"custom_data": {"coupon": "\ud800"}}, "custom_data", id="custom-value"),
        pytest.param({"custom_data": {"\ud800": "x"}}, "custom_data", id="custom-key"),
        pytest.param({"\ud800": True}, "\\ud800", id="key"),
        pytest.param({"note\x00": "x"}, "note\\x00", id="nul-in-key"),
        pytest.param({"reason_code": "a\x00b"}, "reason_code", id="nul-in-value"),
    ],
)
def test_text_that_cannot_be_stored_is_refused_naming_the_field(
    app: TestApp, auth: dict[str, str], world: World, fields: dict[str, Any], field: str
) -> None:
    response = post_json(app, auth, {**new_report(world), **fields})
    assert response.status_int == 400, response.text
    error = response.json["error"]
    assert error["code"] == "invalid_report"
    assert [(f["field"], f["code"]) for f in error["fields"]] == [(field, "invalid_text")]
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert rejection.reason == "invalid_text"
    assert rejection.detail.encode("utf-8")  # logged, and storable on PostgreSQL too
    assert "\x00" not in rejection.detail + rejection.params


def test_a_batch_item_with_text_that_cannot_be_stored_is_refused_alone(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = post_json(app, auth, [new_report(world, "ok-1"), new_report(world, "bad-\ud800")])
    results = response.json["results"]
    assert [(r["index"], r["status"]) for r in results] == [(0, 201), (1, 400)]
    assert results[1]["error"]["fields"][0]["code"] == "invalid_text"
    assert [row.reference_id for row in world.storage.transactions()] == ["ok-1"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * MAX_BODY_BYTES, id="a-megabyte-of-brackets"),
        pytest.param(b'{"custom_data": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="deep-value"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-batch"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_recursion_error(
    app: TestApp, auth: dict[str, str], world: World, body: bytes
) -> None:
    response = app.post(URL, body, headers={**auth, "Content-Type": "application/json"}, status="*")
    assert (response.status_int, response.json["error"]["code"]) == (400, "invalid_query")
    assert reasons(world.storage) == ["invalid_query"]


def test_a_refused_report_keeps_its_reference_id_and_names_its_field_once(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = post(app, auth, {"reference_id": "z", "sale_amount": "1,00"})
    assert response.status_int == 400
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("invalid_sale_amount", "z")
    assert rejection.detail.startswith("sale_amount must be ASCII digits")
    assert "sale_amount: sale_amount" not in rejection.detail
