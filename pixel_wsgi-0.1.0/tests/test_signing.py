"""Signed pixel URLs: the helper, the pixel's verification, the framework helpers."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware, Reason
from pixel_wsgi.ledger.catalog import Catalog
from pixel_wsgi.params.sale import parse_query
from pixel_wsgi.signing import (
    DEFAULT_EXPIRES_IN,
    PixelUrlSigner,
    flask_init_app,
    pyramid_add_pixel_url,
    sign_pixel_url,
)

from .conftest import SECRET, FakeClock, World, host_app, pixel_src, reasons

OTHER_SECRET = "another-secret-key-fedcba9876543210"
LATER = datetime(2026, 11, 25, 13, 0, tzinfo=timezone.utc)  # the FakeClock's now + 1 h


def click(app: TestApp, link_id: int) -> None:
    assert app.get(f"/pixels/click/{link_id}").status_int == 302


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def assert_gif(response: Any) -> None:
    assert response.status == "200 OK"
    assert response.content_type == "image/gif"


# -- building URLs ----------------------------------------------------------------


def test_url_shape() -> None:
    url = sign_pixel_url(
        1,
        secret_key=SECRET,
        expires_at=LATER,
        sale_amount=Decimal("24.50"),
        reference_id="A 1001&x",
        sku_list=["dog", "cat"],
        quantity_list=[1, 2],
        reason_code=None,
    )
    path, _, query = url.partition("?")
    assert path == "/pixels/conversion/1.gif"
    assert query.startswith(
        "sale_amount=24.50&reference_id=A%201001%26x&sku_list[]=dog&sku_list[]=cat"
        f"&quantity_list[]=1&quantity_list[]=2&expires={int(LATER.timestamp())}&signature="
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query_of(url)[-1][1])


def test_signing_is_deterministic_and_keyed() -> None:
    def sign(key: str, **params: Any) -> str:
        return sign_pixel_url(7, secret_key=key, expires_at=LATER, **params)

    assert sign(SECRET, sale_amount="1") == sign(SECRET, sale_amount="1")
    assert sign(SECRET, sale_amount="1") != sign(SECRET, sale_amount="2")
    assert sign(SECRET, sale_amount="1") != sign(OTHER_SECRET, sale_amount="1")


def test_expires_in_defaults_to_an_hour() -> None:
    before = datetime.now(timezone.utc).timestamp()
    expires = int(dict(query_of(sign_pixel_url(1, secret_key=SECRET)))["expires"])
    after = datetime.now(timezone.utc).timestamp()
    hour = DEFAULT_EXPIRES_IN.total_seconds()
    assert int(before + hour) <= expires <= after + hour
    short = int(
        dict(query_of(sign_pixel_url(1, secret_key=SECRET, expires_in=timedelta(60))))["expires"]
    )
    assert short > expires  # sixty days


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("10.50", "10.50", id="str"),
        pytest.param(10, "10", id="int"),
        pytest.param(Decimal("10.5"), "10.5", id="decimal"),
        pytest.param(Decimal("1E+2"), "100", id="decimal-exponent"),
        pytest.param("", "", id="blank"),
    ],
)
def test_values_are_written_exactly(value: Any, text: str) -> None:
    url = sign_pixel_url(1, secret_key=SECRET, expires_at=LATER, sale_amount=value)
    assert query_of(url)[0] == ("sale_amount", text)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"sale_amount": 10.5}, TypeError, id="float"),
        pytest.param({"sale_amount": True}, TypeError, id="bool"),
        pytest.param({"sale_amount": object()}, TypeError, id="object"),
        pytest.param({"sale_amount": Decimal("NaN")}, ValueError, id="nan"),
        pytest.param({"signature": "x"}, ValueError, id="reserved-signature"),
        pytest.param({"expires": 1}, ValueError, id="reserved-expires"),
        pytest.param({"expires_in": timedelta(0)}, ValueError, id="expires-in-zero"),
        pytest.param(
            {"expires_in": timedelta(1), "expires_at": LATER}, TypeError, id="both-expiries"
        ),
        pytest.param({"expires_at": datetime(2026, 1, 1)}, ValueError, id="naive-expiry"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        sign_pixel_url(1, secret_key=SECRET, **kwargs)


@pytest.mark.parametrize(
    "advertiser_id",
    [pytest.param(0, id="zero"), pytest.param(True, id="bool"), pytest.param("1", id="str")],
)
def test_bad_advertiser_ids(advertiser_id: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        sign_pixel_url(advertiser_id, secret_key=SECRET)


@pytest.mark.parametrize(
    ("secret", "prefix"),
    [
        pytest.param("short", "/pixels", id="short-key"),
        pytest.param([], "/pixels", id="no-keys"),
        pytest.param(SECRET, "pixels", id="relative-prefix"),
        pytest.param(SECRET, "/pixels/", id="trailing-slash"),
    ],
)
def test_bad_configuration(secret: Any, prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        PixelUrlSigner(secret, prefix=prefix)


def test_prefix_and_script_root() -> None:
    signer = PixelUrlSigner(SECRET, prefix="/track")
    assert signer.url(3, script_root="/shop/", expires_at=LATER).startswith(
        "/shop/track/conversion/3.gif?expires="
    )


# -- verifying ------------------------------------------------------------------------


def verify(signer: PixelUrlSigner, url: str, now: datetime = LATER) -> tuple[Reason, str] | None:
    advertiser = int(urlsplit(url).path.rsplit("/", 1)[1].removesuffix(".gif"))
    return signer.verify(advertiser, parse_query(urlsplit(url).query), now.timestamp() - 60)


def test_rotation_the_last_key_signs_every_key_verifies() -> None:
    old = PixelUrlSigner(OTHER_SECRET)
    rotated = PixelUrlSigner([OTHER_SECRET, SECRET])
    new = PixelUrlSigner(SECRET)
    assert verify(rotated, old.url(1, expires_at=LATER, sale_amount="5")) is None
    signed_after_rotation = rotated.url(1, expires_at=LATER, sale_amount="5")
    assert verify(new, signed_after_rotation) is None
    assert verify(old, signed_after_rotation) == (
        Reason.INVALID_SIGNATURE,
        "the signature does not match the parameters",
    )


def test_a_signature_is_for_one_advertiser() -> None:
    signer = PixelUrlSigner(SECRET)
    url = signer.url(1, expires_at=LATER, sale_amount="5")
    query = parse_query(urlsplit(url).query)
    assert signer.verify(1, query, 0) is None
    refusal = signer.verify(2, query, 0)
    assert refusal is not None and refusal[0] is Reason.INVALID_SIGNATURE


@pytest.mark.parametrize(
    ("signed_params", "sent_query"),
    [
        pytest.param({"a": "b&c=d"}, "a=b&c=d", id="escaped-separators"),
        pytest.param({"a": "b c"}, "a=b%2Bc", id="space-and-plus"),
        pytest.param({"sku_list": ["x", "y"]}, "sku_list[]=y&sku_list[]=x", id="reordered-list"),
        pytest.param({"a": "1", "b": "2"}, "a=2&b=1", id="swapped-values"),
    ],
)
def test_the_canonical_form_is_unambiguous(signed_params: dict[str, Any], sent_query: str) -> None:
    signer = PixelUrlSigner(SECRET)
    url = signer.url(1, expires_at=LATER, **signed_params)
    tail = url[url.index("&expires=") :]
    assert verify(signer, url) is None
    refusal = verify(signer, f"/pixels/conversion/1.gif?{sent_query}{tail}")
    assert refusal is not None and refusal[0] is Reason.INVALID_SIGNATURE


def test_reordering_distinct_parameters_keeps_the_signature(app: TestApp, world: World) -> None:
    url = signed(world, sale_amount="10", reference_id="r1")
    pairs = query_of(url)
    click(app, world.percent_link_id)
    app.get(edit(url, lambda _: [pairs[1], pairs[0], *pairs[2:]]))
    assert len(list(world.storage.conversions())) == 1


def test_the_key_is_not_the_cookies() -> None:
    """The same secret signs cookies and pixels, under different derived keys."""
    middleware = PixelMiddleware(host_app, "sqlite:///unused.db", secret_key=SECRET, migrate=False)
    url = middleware.pixel_urls.url(1, expires_at=LATER)
    signature = dict(query_of(url))["signature"]
    cookie_signature = middleware.cookies.sign(1, 1).rsplit(".", 1)[1]
    assert len(signature) == len(cookie_signature) == 43
    assert signature != cookie_signature


# -- through the middleware ----------------------------------------------------------


def signed(world: World, **params: Any) -> str:
    params.setdefault("expires_at", LATER)
    return sign_pixel_url(world.advertiser_id, secret_key=SECRET, **params)


def edit(url: str, change: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> str:
    """The URL with its query pairs changed, written back unencoded (as a visitor types)."""
    path = urlsplit(url).path
    return path + "?" + "&".join(f"{k}={v}" for k, v in change(query_of(url)))


def replaced(name: str, value: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [(k, value if k == name else v) for k, v in pairs]


def dropped(name: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [(k, v) for k, v in pairs if k != name]


def added(name: str, value: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [*pairs[:-1], (name, value), pairs[-1]]


def test_a_signed_pixel_counts_and_keeps_no_signing_params(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    url = signed(world, sale_amount="100.00", reference_id="order-1", coupon="SPRING")
    assert_gif(app.get(url))
    [conversion] = world.storage.conversions()
    assert (conversion.sale_amount, conversion.payout) == (Decimal("100.00"), Decimal("10.00"))
    assert conversion.reference_id == "order-1"
    assert conversion.custom_data == {"coupon": "SPRING"}  # not expires, not signature
    assert reasons(world.storage) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(replaced("sale_amount", "9999.00"), "invalid_signature", id="edit-amount"),
        pytest.param(replaced("reference_id", "order-2"), "invalid_signature", id="edit-reference"),
        pytest.param(added("sale_currency", "EUR"), "invalid_signature", id="add-param"),
        pytest.param(added("sale_amount", "1.00"), "invalid_signature", id="repeat-param"),
        pytest.param(dropped("reference_id"), "invalid_signature", id="drop-param"),
        pytest.param(dropped("signature"), "invalid_signature", id="drop-signature-only"),
        pytest.param(
            replaced("expires", str(int(LATER.timestamp()) + 3600)),
            "invalid_signature",
            id="extend-expiry",
        ),
        pytest.param(replaced("signature", "A" * 43), "invalid_signature", id="forged"),
        pytest.param(replaced("signature", "short"), "invalid_signature", id="malformed"),
        pytest.param(added("signature", "A" * 43), "invalid_signature", id="two-signatures"),
    ],
)
def test_a_tampered_url_does_not_count(
    app: TestApp,
    world: World,
    change: Callable[[list[tuple[str, str]]], list[tuple[str, str]]],
    reason: str,
) -> None:
    url = signed(world, sale_amount="100.00", reference_id="order-1")
    click(app, world.percent_link_id)
    assert_gif(app.get(edit(url, change)))
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert rejection.reason == reason
    assert rejection.reference_id in ("order-1", "order-2", None)
    # The untouched URL still counts.
    click(app, world.percent_link_id)
    assert_gif(app.get(url))
    assert [c.sale_amount for c in world.storage.conversions()] == [Decimal("100.00")]


def unsigned(url: str) -> str:
    return edit(url, lambda pairs: [(k, v) for k, v in pairs if k not in ("signature", "expires")])


def test_stripping_the_signature_is_what_requiring_signatures_stops(
    app: TestApp, world: World
) -> None:
    url = signed(world, sale_amount="100.00", reference_id="order-1")
    click(app, world.percent_link_id)
    # An advertiser that accepts unsigned pixels cannot tell a stripped URL from one.
    app.get(unsigned(edit(url, replaced("sale_amount", "9999.00"))))
    assert [c.sale_amount for c in world.storage.conversions()] == [Decimal("9999.00")]
    world.storage.set_advertiser_options(world.advertiser_id, require_signed_pixels=True)
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=FakeClock())
    app = TestApp(middleware)  # a fresh process: nothing cached
    click(app, world.percent_link_id)
    app.get(unsigned(edit(url, replaced("reference_id", "order-2"))))
    assert reasons(world.storage) == ["unsigned_pixel"]
    assert len(list(world.storage.conversions())) == 1


def test_an_expired_url_does_not_count(app: TestApp, world: World, clock: FakeClock) -> None:
    click(app, world.percent_link_id)
    url = signed(world, sale_amount="10", expires_in=None, expires_at=clock.now)
    clock.advance(timedelta(seconds=1))
    assert_gif(app.get(url))
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert rejection.reason == "expired_signature"
    assert rejection.detail == "the signed URL expired at 2026-11-25T12:00:00+00:00"
    assert "signature=" in rejection.params  # the query as sent, for the advertiser to see


def test_the_expiry_second_itself_still_counts(
    app: TestApp, world: World, clock: FakeClock
) -> None:
    click(app, world.percent_link_id)
    app.get(signed(world, reference_id="r1", expires_at=clock.now))
    assert len(list(world.storage.transactions())) == 1


def test_a_signed_pixel_with_an_advertiser_requiring_signatures(app: TestApp, world: World) -> None:
    world.storage.set_advertiser_options(world.advertiser_id, require_signed_pixels=True)
    click(app, world.percent_link_id)
    app.get(signed(world, sale_amount="10", reference_id="r1"))
    assert len(list(world.storage.transactions())) == 1
    assert reasons(world.storage) == []


def test_a_refused_signature_names_the_conversion(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    url = signed(world, sale_amount="10", reference_id="A-1001")
    app.get(edit(url, replaced("sale_amount", "99")))
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("invalid_signature", "A-1001")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/pixels/conversion/{}.gif?sale_amount=10&reference_id=r1", id="pixel"),
        pytest.param("/pixels/conversion/{}.gif", id="bare-pixel"),
        pytest.param("/tracked_actions/web_sale/{}?amount=10", id="legacy"),
    ],
)
def test_unsigned_pixels_are_refused_when_required(app: TestApp, world: World, path: str) -> None:
    world.storage.set_advertiser_options(world.advertiser_id, require_signed_pixels=True)
    click(app, world.percent_link_id)
    assert_gif(app.get(path.format(world.advertiser_id)))
    assert list(world.storage.transactions()) == []
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.advertiser_id) == ("unsigned_pixel", world.advertiser_id)
    assert rejection.detail.startswith(
        f"advertiser {world.advertiser_id} accepts only signed pixels; "
    )


def test_other_advertisers_still_accept_unsigned_pixels(app: TestApp, world: World) -> None:
    world.storage.set_advertiser_options(world.other_advertiser_id, require_signed_pixels=True)
    click(app, world.percent_link_id)
    app.get(f"/pixels/conversion/{world.advertiser_id}.gif?reference_id=r1")
    assert len(list(world.storage.transactions())) == 1


def test_the_requirement_is_cached_not_read_per_hit(
    middleware: PixelMiddleware, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    middleware.ledger.catalog = Catalog(world.storage, ttl=60, monotonic=lambda: now[0])
    reads: list[int] = []
    original = world.storage.advertiser

    def counted(advertiser_id: int) -> Any:
        reads.append(advertiser_id)
        return original(advertiser_id)

    monkeypatch.setattr(world.storage, "advertiser", counted)
    app = TestApp(middleware)
    click(app, world.percent_link_id)
    for n in range(3):
        app.get(f"/pixels/conversion/{world.advertiser_id}.gif?reference_id=r{n}")
    assert reads == [world.advertiser_id]
    # A change is seen once the entry is older than the TTL.
    world.storage.set_advertiser_options(world.advertiser_id, require_signed_pixels=True)
    app.get(f"/pixels/conversion/{world.advertiser_id}.gif?reference_id=r3")
    now[0] = 61.0
    app.get(f"/pixels/conversion/{world.advertiser_id}.gif?reference_id=r4")
    assert [c.reference_id for c in world.storage.conversions()] == ["r0", "r1", "r2", "r3"]
    assert reasons(world.storage) == ["unsigned_pixel"]


def test_head_and_prefetch_of_a_bad_signature_record_nothing(app: TestApp, world: World) -> None:
    url = edit(signed(world, sale_amount="1"), replaced("sale_amount", "2"))
    app.head(url)
    app.get(url, headers={"Sec-Purpose": "prefetch"})
    assert reasons(world.storage) == []


# -- framework helpers ---------------------------------------------------------------


def test_flask_template_global(world: World) -> None:
    flask = pytest.importorskip("flask")
    shop = flask.Flask("shop")

    @shop.get("/thanks/<order>")
    def thanks(order: str) -> str:
        return flask.render_template_string(
            '<img src="{{ pixel_url(advertiser_id, sale_amount=total, reference_id=order,'
            ' sku_list=skus) }}" width="1" height="1" alt="">',
            advertiser_id=world.advertiser_id,
            total=Decimal("80.00"),
            order=order,
            skus=["a&b", "c"],
        )

    signer = flask_init_app(shop, SECRET)
    assert shop.extensions["pixel_wsgi.signing"] is signer
    shop.wsgi_app = PixelMiddleware(shop.wsgi_app, world.storage, secret_key=SECRET)
    app = TestApp(shop)
    click(app, world.percent_link_id)
    page = app.get("/thanks/o-17")
    assert "&amp;" in page.text  # autoescaped in the HTML, as it must be
    src = pixel_src(page)
    assert src.startswith(f"/pixels/conversion/{world.advertiser_id}.gif?sale_amount=80.00&")
    assert_gif(app.get(src))
    [conversion] = world.storage.conversions()
    assert (conversion.reference_id, conversion.sku_list) == ("o-17", ("a&b", "c"))
    assert conversion.payout == Decimal("8.00")
    # Edited by the visitor: refused.
    app.get(src.replace("sale_amount=80.00", "sale_amount=8000.00"))
    assert reasons(world.storage) == ["invalid_signature"]


def test_flask_helper_honours_the_script_root(world: World) -> None:
    flask = pytest.importorskip("flask")
    shop = flask.Flask("shop")
    shop.add_url_rule(
        "/", "page", lambda: flask.render_template_string("{{ pixel_url(3, reference_id='x') }}")
    )
    flask_init_app(shop, SECRET, prefix="/track")
    page = TestApp(shop, extra_environ={"SCRIPT_NAME": "/shop"}).get("/")
    assert html.unescape(page.text).startswith("/shop/track/conversion/3.gif?reference_id=x&")
    with shop.app_context():
        rendered = flask.render_template_string("{{ pixel_url(3) }}")  # no request: no root
    assert html.unescape(rendered).startswith("/track/conversion/3.gif?expires=")


def pyramid_shop(world: World, include: Callable[[Any], None]) -> TestApp:
    pytest.importorskip("pyramid")
    from pyramid.config import Configurator
    from pyramid.response import Response

    def thanks(request: Any) -> Response:
        src = request.pixel_url(
            world.advertiser_id, sale_amount="50.00", reference_id=request.matchdict["order"]
        )
        return Response(f'<img src="{html.escape(src)}" width="1" height="1" alt="">')

    with Configurator(settings={"pixel_wsgi.secret_key": f"{OTHER_SECRET}\n{SECRET}\n"}) as config:
        include(config)
        config.add_route("thanks", "/thanks/{order}")
        config.add_view(thanks, route_name="thanks")
        pyramid_app = config.make_wsgi_app()
    return TestApp(PixelMiddleware(pyramid_app, world.storage, secret_key=SECRET))


@pytest.mark.parametrize(
    "include",
    [
        pytest.param(lambda config: pyramid_add_pixel_url(config, SECRET), id="function"),
        pytest.param(lambda config: config.include("pixel_wsgi.signing"), id="includeme"),
    ],
)
def test_pyramid_request_method(world: World, include: Callable[[Any], None]) -> None:
    app = pyramid_shop(world, include)
    click(app, world.percent_link_id)
    src = pixel_src(app.get("/thanks/o-9"))
    assert_gif(app.get(src))
    [conversion] = world.storage.conversions()
    assert (conversion.reference_id, conversion.sale_amount) == ("o-9", Decimal("50.00"))
    app.get(src.replace("reference_id=o-9", "reference_id=o-10"))
    assert reasons(world.storage) == ["invalid_signature"]


def test_pyramid_includeme_needs_a_key() -> None:
    pytest.importorskip("pyramid")
    from pyramid.config import Configurator

    with (
        pytest.raises(ConfigurationError, match=r"pixel_wsgi\.secret_key"),
        Configurator(settings={}) as config,
    ):
        config.include("pixel_wsgi.signing")
