"""The conversion pixel, driven through the real middleware with WebTest."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from itsdangerous import TimestampSigner
from webtest import TestApp, TestRequest

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.endpoints.gif import TRANSPARENT_GIF
from pixel_wsgi.storage.sqlite import SQLiteLedgerWriter

from .conftest import FakeClock, World, host_app, pixel_url, reasons

NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"


def click(app: TestApp, link_id: int) -> None:
    response = app.get(f"/pixels/click/{link_id}")
    assert response.status_int == 302


def assert_gif(response: object) -> None:
    assert response.status == "200 OK"  # type: ignore[attr-defined]
    assert response.content_type == "image/gif"  # type: ignore[attr-defined]
    assert response.body == TRANSPARENT_GIF  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Content-Length"] == "43"
    assert headers["Cache-Control"] == NO_STORE
    assert headers["Pragma"] == "no-cache"
    assert headers["Expires"] == "0"


def test_gif_is_a_1x1_gif89a() -> None:
    assert TRANSPARENT_GIF[:6] == b"GIF89a"
    assert TRANSPARENT_GIF[6:10] == b"\x01\x00\x01\x00"
    assert TRANSPARENT_GIF.endswith(b";")
    assert len(TRANSPARENT_GIF) == 43


# -- the spec's example URLs -----------------------------------------------------


def test_most_basic_url_reports_a_conversion_without_a_sale(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    assert_gif(app.get(pixel_url(world.advertiser_id)))
    [conversion] = world.storage.conversions()
    assert conversion.sale_amount is None
    assert conversion.payout == Decimal("0.00")
    assert conversion.campaign_id == world.percent_campaign_id
    assert conversion.publisher_id == world.publisher_id
    assert conversion.source == "pixel"


def test_ten_dollar_sale(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10")))
    [conversion] = world.storage.conversions()
    assert conversion.sale_amount == Decimal("10.00")
    assert str(conversion.sale_amount) == "10.00"
    assert conversion.sale_currency == "USD"
    assert conversion.payout == Decimal("1.00")


def test_sale_with_reason_code_and_sku(app: TestApp, world: World) -> None:
    click(app, world.fixed_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reason_code=renewal&sku_list[]=34657"))
    [conversion] = world.storage.conversions()
    assert (conversion.reason_code, conversion.sku_list) == ("renewal", ("34657",))
    assert conversion.payout == Decimal("4.50")


def test_multiple_skus_keep_their_order(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&sku_list[]=dog&sku_list[]=cat"))
    [conversion] = world.storage.conversions()
    assert conversion.sku_list == ("dog", "cat")


def test_reference_id_then_update_with_parent_reference_id(app: TestApp, world: World) -> None:
    click(app, world.fixed_link_id)
    app.get(
        pixel_url(
            world.advertiser_id, "sale_amount=0&reason_code=new_signup&reference_id=2012994455"
        )
    )
    [signup] = world.storage.conversions()
    assert (signup.reason_code, signup.payout) == ("new_signup", Decimal("0.00"))

    app.get(
        pixel_url(
            world.advertiser_id,
            "sale_amount=95.0&reason_code=confirmed_order&parent_reference_id=2012994455",
        )
    )
    rows = list(world.storage.transactions())
    assert len(rows) == 2
    original, correction = rows
    assert correction.corrects_transaction_id == original.transaction_id
    assert correction.original_transaction_id == original.transaction_id
    assert correction.reference_id == "2012994455"
    assert (correction.campaign_id, correction.publisher_id, correction.visit_id) == (
        original.campaign_id,
        original.publisher_id,
        original.visit_id,
    )
    [current] = world.storage.conversions()
    assert current.transaction_id == correction.transaction_id
    assert current.sale_amount == Decimal("95.00")
    assert current.reason_code == "confirmed_order"
    # The fixed campaign pays for confirmed orders but not for signups.
    assert current.payout == Decimal("4.50")


def test_update_keeps_fields_it_does_not_give(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(
        pixel_url(
            world.advertiser_id,
            "sale_amount=20&sale_currency=EUR&reason_code=new&sku_list[]=a&reference_id=r1",
        )
    )
    app.get(pixel_url(world.advertiser_id, "sale_amount=30&parent_reference_id=r1"))
    [current] = world.storage.conversions()
    assert (current.sale_amount, current.sale_currency) == (Decimal("30.00"), "EUR")
    assert (current.reason_code, current.sku_list) == ("new", ("a",))
    assert (current.payout, current.payout_currency) == (Decimal("3.00"), "EUR")


def test_chain_of_two_updates_ends_at_the_latest(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))
    app.get(pixel_url(world.advertiser_id, "sale_amount=20&parent_reference_id=r1"))
    app.get(pixel_url(world.advertiser_id, "sale_amount=30&parent_reference_id=r1"))
    first, second, third = world.storage.transactions()
    assert second.corrects_transaction_id == first.transaction_id
    assert third.corrects_transaction_id == second.transaction_id
    assert third.original_transaction_id == first.transaction_id
    [current] = world.storage.conversions()
    assert (current.transaction_id, current.sale_amount) == (third.transaction_id, Decimal("30.00"))


# -- idempotency -------------------------------------------------------------------


def test_reload_with_reference_id_adds_nothing(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    url = pixel_url(world.advertiser_id, "sale_amount=10&reference_id=order-1")
    for _ in range(3):
        assert_gif(app.get(url))
    assert len(list(world.storage.transactions())) == 1
    assert reasons(world.storage) == ["duplicate_reference_id", "duplicate_reference_id"]


def test_same_reference_id_with_other_values_does_not_overwrite(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=order-1"))
    app.get(pixel_url(world.advertiser_id, "sale_amount=9999&reference_id=order-1"))
    [conversion] = world.storage.conversions()
    assert conversion.sale_amount == Decimal("10.00")
    assert reasons(world.storage) == ["duplicate_reference_id"]


def test_reload_without_reference_id_within_window_adds_nothing(
    app: TestApp, world: World, clock: FakeClock
) -> None:
    click(app, world.percent_link_id)
    url = pixel_url(world.advertiser_id, "sale_amount=10&reason_code=x")
    app.get(url)
    clock.advance(timedelta(hours=23))
    app.get(url)
    assert len(list(world.storage.transactions())) == 1
    assert reasons(world.storage) == ["duplicate_reload"]
    clock.advance(timedelta(hours=2))
    app.get(url)
    assert len(list(world.storage.transactions())) == 2


def test_different_values_without_reference_id_are_two_conversions(
    app: TestApp, world: World
) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10"))
    app.get(pixel_url(world.advertiser_id, "sale_amount=11"))
    assert [c.sale_amount for c in world.storage.conversions()] == [
        Decimal("10.00"),
        Decimal("11.00"),
    ]


def test_unchanged_update_adds_nothing(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))
    update = pixel_url(world.advertiser_id, "sale_amount=20&parent_reference_id=r1")
    app.get(update)
    app.get(update)
    assert len(list(world.storage.transactions())) == 2
    assert reasons(world.storage) == ["unchanged_correction"]


def test_update_from_another_visit_is_refused(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))
    other_visitor = TestApp(app.app)
    click(other_visitor, world.percent_link_id)
    other_visitor.get(pixel_url(world.advertiser_id, "sale_amount=1000&parent_reference_id=r1"))
    [current] = world.storage.conversions()
    assert current.sale_amount == Decimal("10.00")
    assert reasons(world.storage) == ["parent_from_other_visit"]


def test_update_of_unknown_reference_is_refused(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&parent_reference_id=nope"))
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["unknown_parent_reference"]


# -- attribution -----------------------------------------------------------------


def test_no_cookie_is_rejected_but_answered(app: TestApp, world: World) -> None:
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1")))
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.advertiser_id, rejection.reference_id) == (
        "no_attribution",
        world.advertiser_id,
        "r1",
    )


def test_unknown_advertiser(app: TestApp, world: World) -> None:
    assert_gif(app.get(pixel_url(999, "sale_amount=10")))
    assert_gif(app.get("/pixels/conversion/abc.gif"))
    assert reasons(world.storage) == ["unknown_advertiser", "unknown_advertiser"]


def test_tampered_cookie_is_no_attribution(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    name = f"pixel_wsgi_a{world.advertiser_id}"
    value = app.cookies[name]
    payload, rest = value.split(".", 1)
    visit_id, link_id = payload.split("-")
    app.reset()
    # Claim another visit and link under the same signature.
    app.set_cookie(name, f"{int(visit_id) + 1}-{int(link_id) + 1}.{rest}")
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10")))
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["invalid_cookie"]


def test_expired_cookie_is_no_attribution(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    click(app, world.percent_link_id)
    # Verify 31 days later: past the default 30-day attribution window.
    later = int(time.time()) + 31 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10")))
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["expired_cookie"]


def test_cookie_within_the_window_still_attributes(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    click(app, world.percent_link_id)
    later = int(time.time()) + 29 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10"))
    assert len(list(world.storage.conversions())) == 1


def test_rotated_keys_still_verify_old_cookies(world: World) -> None:
    old = TestApp(PixelMiddleware(host_app, world.storage, secret_key=["old-key-0123456789abc"]))
    click(old, world.percent_link_id)
    rotated = PixelMiddleware(
        host_app, world.storage, secret_key=["old-key-0123456789abc", "new-key-0123456789abc"]
    )
    app = TestApp(rotated, cookiejar=old.cookiejar)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10"))
    assert len(list(world.storage.conversions())) == 1
    # A click after rotation signs with the new key only.
    click(app, world.percent_link_id)
    retired = TestApp(
        PixelMiddleware(host_app, world.storage, secret_key=["old-key-0123456789abc"]),
        cookiejar=app.cookiejar,
    )
    retired.get(pixel_url(world.advertiser_id, "sale_amount=12"))
    assert reasons(world.storage) == ["invalid_cookie"]


def test_cookie_of_another_advertiser_is_cross_advertiser(app: TestApp, world: World) -> None:
    click(app, world.other_link_id)
    foreign = app.cookies[f"pixel_wsgi_a{world.other_advertiser_id}"]
    app.reset()
    app.set_cookie(f"pixel_wsgi_a{world.advertiser_id}", foreign)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10"))
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["cross_advertiser"]


def test_last_click_wins(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    click(app, world.fixed_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reason_code=renewal"))
    [conversion] = world.storage.conversions()
    assert conversion.campaign_id == world.fixed_campaign_id


def test_each_advertiser_keeps_its_own_attribution(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    click(app, world.other_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10"))
    app.get(pixel_url(world.other_advertiser_id, "sale_amount=10"))
    assert sorted(c.advertiser_id for c in world.storage.conversions()) == [
        world.advertiser_id,
        world.other_advertiser_id,
    ]


# -- what never records ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Purpose": "prefetch"}, id="sec-purpose"),
        pytest.param({"Sec-Purpose": "prefetch;prerender"}, id="prerender"),
        pytest.param({"Purpose": "prefetch"}, id="purpose"),
        pytest.param({"X-Moz": "prefetch"}, id="x-moz"),
    ],
)
def test_prefetch_records_nothing(app: TestApp, world: World, headers: dict[str, str]) -> None:
    click(app, world.percent_link_id)
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10"), headers=headers))
    assert list(world.storage.transactions()) == []
    assert list(world.storage.rejections()) == []


def test_head_records_nothing(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    response = app.head(pixel_url(world.advertiser_id, "sale_amount=10"))
    assert response.status_int == 200
    assert response.headers["Content-Length"] == "43"
    assert response.body == b""
    assert list(world.storage.transactions()) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405(app: TestApp, world: World, method: str) -> None:
    response = app.request(pixel_url(world.advertiser_id), method=method, expect_errors=True)
    assert response.status_int == 405
    assert response.headers["Allow"] == "GET, HEAD"


# -- bad input through the middleware ----------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        pytest.param("sale_amount=nan", "invalid_sale_amount", id="nan"),
        pytest.param("sale_amount=inf", "invalid_sale_amount", id="inf"),
        pytest.param("sale_amount=1e309", "invalid_sale_amount", id="huge-exponent"),
        pytest.param("sale_amount=-5", "invalid_sale_amount", id="negative"),
        pytest.param("sale_amount=1,000", "invalid_sale_amount", id="thousands"),
        pytest.param("sale_amount=1_000", "invalid_sale_amount", id="underscore"),
        pytest.param("sale_amount=%2410", "invalid_sale_amount", id="dollar-sign"),
        pytest.param("sale_amount=%D9%A1%D9%A0", "invalid_sale_amount", id="arabic-digits"),
        pytest.param("sale_amount=10.001", "invalid_sale_amount", id="three-places"),
        pytest.param("sale_amount=1&sale_amount=1", "duplicate_parameter", id="twice"),
        pytest.param("reference_id=a&reference_id=b", "duplicate_parameter", id="ref-twice"),
        pytest.param("sale_currency=XXY", "invalid_currency", id="currency"),
        pytest.param("reason_code=a%00b", "invalid_text", id="nul"),
        pytest.param("reason_code=a%07b", "invalid_text", id="bell"),
        pytest.param("reason_code=%FF", "invalid_query", id="bad-utf8"),
        pytest.param("reason_code=" + "x" * 300, "value_too_long", id="too-long"),
        pytest.param("&".join(f"k{i}=v" for i in range(100)), "too_many_parameters", id="many"),
        pytest.param("q=" + "x" * 9000, "query_too_long", id="huge-query"),
        pytest.param("sku_list[]=a&quantity_list[]=0", "invalid_quantity", id="zero-quantity"),
        pytest.param(
            "sku_list[]=a&quantity_list[]=1&quantity_list[]=2", "quantity_mismatch", id="mismatch"
        ),
    ],
)
def test_bad_input_is_rejected_with_a_reason_and_still_a_gif(
    app: TestApp, world: World, query: str, reason: str
) -> None:
    click(app, world.percent_link_id)
    assert_gif(app.get(pixel_url(world.advertiser_id, query)))
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.advertiser_id) == (reason, world.advertiser_id)


def test_raw_invalid_utf8_in_query_is_rejected(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    request = TestRequest.blank(pixel_url(world.advertiser_id))
    # PEP 3333: the raw bytes 0xFF 0xFE arrive as latin-1 characters.
    request.environ["QUERY_STRING"] = "reason_code=\xff\xfe"
    assert_gif(app.do_request(request))
    assert reasons(world.storage) == ["invalid_query"]


def test_personal_data_is_stored_apart_and_never_in_the_rejection_log(
    app: TestApp, world: World
) -> None:
    click(app, world.percent_link_id)
    app.get(
        pixel_url(
            world.advertiser_id,
            "sale_amount=5&reference_id=r1&email_address=jo%40example.com&name=Jo",
        )
    )
    [conversion] = world.storage.conversions()
    assert "email_address" not in conversion.custom_data
    assert world.storage.personal_data(conversion.transaction_id) == {
        "email_address": "jo@example.com",
        "name": "Jo",
    }
    app.get(pixel_url(world.advertiser_id, "sale_amount=5&reference_id=r1&name=Secret%20Name"))
    [rejection] = world.storage.rejections()
    assert "Secret" not in rejection.params
    assert world.storage.erase_personal_data(world.advertiser_id, "r1") == 1
    assert world.storage.personal_data(conversion.transaction_id) == {}


def test_unknown_parameters_are_kept_as_custom_data(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=5&coupon=SPRING&channel=email"))
    [conversion] = world.storage.conversions()
    assert conversion.custom_data == {"coupon": "SPRING", "channel": "email"}


# -- the legacy pixel -------------------------------------------------------------------


def test_legacy_pixel_records_a_conversion(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    response = app.get(
        f"/tracked_actions/web_sale/{world.advertiser_id}?amount=25.50&currency=GBP"
        "&external_data=order%2042"
    )
    assert_gif(response)
    [conversion] = world.storage.conversions()
    assert conversion.source == "legacy_pixel"
    assert (conversion.sale_amount, conversion.sale_currency) == (Decimal("25.50"), "GBP")
    assert conversion.external_data == "order 42"
    assert conversion.reference_id is None
    assert conversion.payout == Decimal("2.55")


def test_legacy_pixel_defaults_to_usd_and_dedups_reloads(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    url = f"/tracked_actions/web_sale/{world.advertiser_id}?amount=10"
    app.get(url)
    app.get(url)
    [conversion] = world.storage.conversions()
    assert conversion.sale_currency == "USD"
    assert reasons(world.storage) == ["duplicate_reload"]


def test_legacy_conversion_cannot_be_updated_by_reference(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(f"/tracked_actions/web_sale/{world.advertiser_id}?amount=10&reference_id=x")
    app.get(pixel_url(world.advertiser_id, "sale_amount=99&parent_reference_id=x"))
    [conversion] = world.storage.conversions()
    assert conversion.sale_amount == Decimal("10.00")
    assert reasons(world.storage) == ["unknown_parent_reference"]


def test_storage_failure_still_answers_the_gif(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    click(app, world.percent_link_id)

    def broken() -> None:
        from pixel_wsgi.errors import StorageError

        raise StorageError("disk on fire")

    monkeypatch.setattr(world.storage, "writer", broken)
    assert_gif(app.get(pixel_url(world.advertiser_id, "sale_amount=10")))


def test_an_unexpected_failure_is_kept_in_the_rejection_log(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Python 3.12's sqlite3 warning about ``?1`` placeholders, raised as an error (as the
    suite's warnings-as-errors did), made a correction vanish with only a traceback."""
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=A"))

    def warns(self: object, original_transaction_id: int) -> None:
        raise DeprecationWarning("Binding 1 ('?1') is a named parameter")

    monkeypatch.setattr(SQLiteLedgerWriter, "chain_end", warns)
    query = "sale_amount=20&parent_reference_id=A&email_address=a%40b.example"
    assert_gif(app.get(pixel_url(world.advertiser_id, query)))
    [conversion] = world.storage.conversions()
    assert conversion.sale_amount == Decimal("10.00")
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("internal_error", "A")
    assert rejection.detail == "DeprecationWarning: Binding 1 ('?1') is a named parameter"
    assert "sale_amount=20" in rejection.params and "a@b.example" not in rejection.params
    assert "conversion pixel failed" in caplog.text


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("sale_amount=10&reference_id=r1", id="with-reference"),
        pytest.param("sale_amount=10", id="without-reference"),
    ],
)
def test_a_signed_cookie_for_a_visit_the_store_lost_is_unknown_visit(
    app: TestApp, middleware: PixelMiddleware, world: World, query: str
) -> None:
    # As after restoring an old backup: the signature is good, the visit is gone.
    value = middleware.cookies.sign(999, world.percent_link_id)
    app.set_cookie(f"pixel_wsgi_a{world.advertiser_id}", value)
    assert_gif(app.get(pixel_url(world.advertiser_id, query)))
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["unknown_visit"]
