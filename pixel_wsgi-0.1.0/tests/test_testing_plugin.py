"""``pixel_wsgi.testing``: the pytest plugin host applications test their checkout with."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from webtest import TestApp, TestResponse

import pixel_wsgi.testing
from pixel_wsgi import (
    MissingDependencyError,
    PayoutKind,
    PayoutRule,
    PixelMiddleware,
    Reason,
    SQLiteStorage,
    storage_from_url,
)
from pixel_wsgi.testing import (
    ConversionRecorder,
    PixelWorld,
    TrackedLink,
    assert_conversion,
    assert_conversions,
    assert_no_conversion,
    assert_rejected,
    fire_pixels,
    parse_payout,
    pixel_urls,
    visit_through_link,
)

from .conftest import SECRET

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

pytest_plugins = ["pytester"]

PIXEL_FIXTURES = [
    "pixel_secret_key",
    "pixel_storage_path",
    "pixel_storage_url",
    "pixel_store",
    "pixel_world",
]


class Site:
    """A host app serving given HTML pages, behind the middleware, in a TestApp.

    ``environs`` records every request that reached the middleware, to check
    what the helpers send.
    """

    def __init__(self, store: SQLiteStorage, pages: dict[str, str], *, wrap: bool = True) -> None:
        self.pages = {"/landing": "<h1>Welcome</h1>", **pages}
        self.environs: list[WSGIEnvironment] = []
        app: WSGIApplication = self.host
        if wrap:
            app = PixelMiddleware(self.host, store, secret_key=SECRET)
        self.middleware = app
        self.browser = TestApp(self.spy)

    def host(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = self.pages.get(environ["PATH_INFO"])
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"host page not found\n"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]

    def spy(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.environs.append(environ)
        return self.middleware(environ, start_response)


def thanks_page(*imgs: str) -> str:
    images = "".join(f'<img src="{src}" width="1" height="1" alt="">' for src in imgs)
    return f"<!doctype html><title>Thanks</title><p>Thank you!</p>{images}"


PIXEL = "/pixels/conversion/1.gif?sale_amount=10.00&amp;reference_id=r1"


@pytest.fixture
def partner(pixel_world: PixelWorld) -> TrackedLink:
    return pixel_world.add_link("/landing", payout="10%")


@pytest.fixture
def site(pixel_store: SQLiteStorage, partner: TrackedLink) -> Site:
    return Site(pixel_store, {"/thanks": thanks_page(PIXEL)})


def checkout(site: Site, *, page: str = "/thanks") -> list[TestResponse]:
    return fire_pixels(site.browser, site.browser.get(page))


# -- the plugin and its fixtures ----------------------------------------------------------


def test_the_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("pixel_wsgi") is pixel_wsgi.testing


def test_store_fixtures_agree(
    pixel_store: SQLiteStorage, pixel_storage_path: Path, pixel_storage_url: str, tmp_path: Path
) -> None:
    assert pixel_storage_path.parent == tmp_path
    assert pixel_store.path == pixel_storage_path
    pixel_store.check()  # migrated
    from_url = storage_from_url(pixel_storage_url)
    assert from_url.path == pixel_storage_path.resolve()  # type: ignore[attr-defined]
    assert list(pixel_store.transactions()) == list(pixel_store.rejections()) == []


def test_secret_key_is_accepted(pixel_store: SQLiteStorage, pixel_secret_key: str) -> None:
    PixelMiddleware(Site(pixel_store, {}).host, pixel_store, secret_key=pixel_secret_key)


def test_the_plugin_imports_without_webtest_or_flask() -> None:
    # Every pytest run of every user with pixel-wsgi installed imports the plugin.
    code = (
        "import sys\n"
        "sys.modules['webtest'] = sys.modules['flask'] = sys.modules['pyramid'] = None\n"
        "import pixel_wsgi.testing\n"
        "print(sorted(m for m in ('webtest', 'flask', 'pyramid', 'webob')"
        " if sys.modules.get(m) is not None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_webtest_is_named(
    monkeypatch: pytest.MonkeyPatch, site: Site, partner: TrackedLink
) -> None:
    monkeypatch.setitem(sys.modules, "webtest", None)
    with pytest.raises(MissingDependencyError, match="pip install WebTest"):
        visit_through_link(site.browser, partner)


# -- payouts and PixelWorld ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("10%", PayoutRule(PayoutKind.PERCENT, Decimal("10")), id="percent"),
        pytest.param(" 12.5 % ", PayoutRule(PayoutKind.PERCENT, Decimal("12.5")), id="spaces"),
        pytest.param("4.50", PayoutRule(PayoutKind.FIXED, Decimal("4.50")), id="fixed-usd"),
        pytest.param(
            "4.50 EUR", PayoutRule(PayoutKind.FIXED, Decimal("4.50"), "EUR"), id="currency"
        ),
        pytest.param(Decimal("3"), PayoutRule(PayoutKind.FIXED, Decimal("3")), id="decimal"),
        pytest.param(2, PayoutRule(PayoutKind.FIXED, Decimal("2")), id="int"),
        pytest.param(
            PayoutRule(PayoutKind.FIXED, Decimal("1"), "GBP", ("x",)),
            PayoutRule(PayoutKind.FIXED, Decimal("1"), "GBP", ("x",)),
            id="rule",
        ),
    ],
)
def test_parse_payout(text: Any, rule: PayoutRule) -> None:
    assert parse_payout(text) == rule


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        pytest.param("ten", ValueError, "such as '10.00'", id="words"),
        pytest.param("150%", ValueError, "0% to 100%", id="over-100"),
        pytest.param("-1", ValueError, "cannot be negative", id="negative"),
        pytest.param("4.50 usd", ValueError, "'4.50 USD'", id="lowercase-currency"),
        pytest.param("nan", ValueError, "finite", id="nan"),
        pytest.param(4.5, TypeError, "a float is not an exact amount", id="float"),
        pytest.param(True, TypeError, "str, Decimal or int", id="bool"),
    ],
)
def test_parse_payout_refuses(text: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_payout(text)


def test_world_builds_a_link_in_one_call(pixel_world: PixelWorld) -> None:
    first = pixel_world.add_link("/landing", payout="10%", reason_codes=["sale"])
    assert first.advertiser.id == 1 == pixel_world.advertiser.id
    assert first.campaign.payout == PayoutRule(PayoutKind.PERCENT, Decimal("10"), "USD", ("sale",))
    assert (first.link.destination, first.link.publisher_id) == ("/landing", first.publisher.id)
    assert first.click_path() == f"/pixels/click/{first.link.id}"
    assert first.click_path("/track") == f"/track/click/{first.link.id}"
    # Defaults: the same advertiser, a new campaign paying 5.00 USD, a new publisher.
    second = pixel_world.add_link()
    assert second.advertiser == first.advertiser
    assert second.campaign.payout == PayoutRule(PayoutKind.FIXED, Decimal("5.00"))
    assert second.publisher.id != first.publisher.id
    assert second.link.destination == "/"


def test_world_reuses_what_it_is_given(pixel_world: PixelWorld) -> None:
    first = pixel_world.add_link()
    again = pixel_world.add_link(campaign=first.campaign, publisher=first.publisher)
    assert (again.campaign, again.publisher) == (first.campaign, first.publisher)
    assert again.link.id != first.link.id
    other = pixel_world.add_advertiser("Other Corp")
    elsewhere = pixel_world.add_link(advertiser=other)
    assert (elsewhere.advertiser, elsewhere.campaign.advertiser_id) == (other, other.id)
    assert pixel_world.advertiser == first.advertiser  # still the first one made
    with pytest.raises(ValueError, match="not both"):
        pixel_world.add_link(campaign=first.campaign, payout="10%")
    with pytest.raises(ValueError, match="not both"):
        pixel_world.add_campaign(
            PayoutRule(PayoutKind.FIXED, Decimal(1), "USD", ("a",)), reason_codes=["b"]
        )


# -- visit_through_link --------------------------------------------------------------------


def test_visit_returns_the_landing_page_and_keeps_the_cookie(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    landing = visit_through_link(site.browser, partner)
    assert (landing.request.path, landing.text) == ("/landing", "<h1>Welcome</h1>")
    assert "pixel_wsgi_a1" in site.browser.cookies
    click = site.environs[0]
    assert (click["HTTP_SEC_FETCH_MODE"], click["HTTP_SEC_FETCH_DEST"]) == ("navigate", "document")
    checkout(site)
    assert_conversion(pixel_store, publisher_id=partner.publisher.id)


@pytest.mark.parametrize(
    "link", [pytest.param("link", id="Link"), pytest.param("id", id="link-id")]
)
def test_visit_takes_a_link_or_its_id(site: Site, partner: TrackedLink, link: str) -> None:
    target = partner.link if link == "link" else partner.link.id
    redirect = visit_through_link(site.browser, target, follow=False)
    assert (redirect.status_int, redirect.location) == (302, "/landing")


@pytest.mark.parametrize(
    ("link_id", "wrap", "message"),
    [
        pytest.param(99, True, "is the link in the store the application uses?", id="unknown"),
        pytest.param(1, False, "is PixelMiddleware wrapping the application", id="no-middleware"),
    ],
)
def test_visit_explains_a_link_that_does_not_redirect(
    pixel_store: SQLiteStorage, partner: TrackedLink, link_id: int, wrap: bool, message: str
) -> None:
    site = Site(pixel_store, {}, wrap=wrap)
    with pytest.raises(AssertionError, match=message) as info:
        visit_through_link(site.browser, link_id)
    assert f"/pixels/click/{link_id} answered 404 Not Found" in str(info.value)


def test_visit_checks_the_cookie(site: Site, partner: TrackedLink) -> None:
    gpc = {"Sec-GPC": "1"}
    with pytest.raises(AssertionError, match="set no attribution cookie: does the request"):
        visit_through_link(site.browser, partner, headers=gpc)
    visit_through_link(site.browser, partner, headers=gpc, expect_cookie=False)
    assert not site.browser.cookies
    with pytest.raises(AssertionError, match="set an attribution cookie"):
        visit_through_link(site.browser, partner, expect_cookie=False)


def test_visit_checks_the_cookie_is_the_links_advertisers(
    pixel_world: PixelWorld, site: Site
) -> None:
    other = pixel_world.add_link("/landing", advertiser=pixel_world.add_advertiser())
    visit_through_link(site.browser, other)
    assert set(site.browser.cookies) == {f"pixel_wsgi_a{other.advertiser.id}"}


def test_helpers_want_a_webtest_app(site: Site, partner: TrackedLink) -> None:
    with pytest.raises(TypeError, match=r"needs a webtest.TestApp .* got Site"):
        visit_through_link(site, partner)  # type: ignore[arg-type]
    page = site.browser.get("/thanks")
    with pytest.raises(TypeError, match="fire_pixels"):
        fire_pixels(site.middleware, page)


# -- fire_pixels -----------------------------------------------------------------------


def test_fire_pixels_loads_the_pixel_like_a_browser(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    visit_through_link(site.browser, partner)
    [response] = checkout(site)
    assert (response.status_int, response.content_type) == (200, "image/gif")
    # &amp; in the attribute was unescaped: both parameters arrived.
    assert_conversion(pixel_store, sale_amount="10.00", reference_id="r1", payout="1.00")
    pixel = site.environs[-1]
    assert pixel["HTTP_REFERER"] == "http://localhost/thanks"
    assert (pixel["HTTP_SEC_FETCH_DEST"], pixel["HTTP_SEC_FETCH_SITE"]) == ("image", "same-origin")


def test_pixel_urls_finds_only_this_hosts_pixels(site: Site) -> None:
    site.pages["/shop/thanks"] = """<html><body>
        <IMG SRC="/logo.png"><img alt="no src"><img src="data:image/gif;base64,R0lGOD">
        <img src="http://localhost/pixels/conversion/1.gif?reference_id=abs#frag" />
        <img src="https://cdn.example/pixels/conversion/1.gif?reference_id=cdn">
        <img src="../pixels/conversion/2.gif?reference_id=rel&amp;sale_amount=1">
        <img src="/pixels/conversion/1.gifx"><img src="/pixels/conversion/a/1.gif">
        <img src="/tracked_actions/web_sale/1?amount=5&amp;external_data=x">
        <img src="/tracked_actions/web_sale/">
        </body></html>"""
    page = site.browser.get("/shop/thanks")
    assert pixel_urls(page) == [
        "http://localhost/pixels/conversion/1.gif?reference_id=abs",
        "http://localhost/pixels/conversion/2.gif?reference_id=rel&sale_amount=1",
        "http://localhost/tracked_actions/web_sale/1?amount=5&external_data=x",
    ]
    assert pixel_urls(page, prefix="/track", legacy_prefix="/old") == []


def test_fire_pixels_fires_every_pixel_on_the_page(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    site.pages["/both"] = thanks_page(
        "http://localhost/pixels/conversion/1.gif?reference_id=a&amp;sale_amount=3",
        "/tracked_actions/web_sale/1?amount=4.00",
    )
    visit_through_link(site.browser, partner)
    assert len(checkout(site, page="/both")) == 2
    assert_conversion(pixel_store, reference_id="a", sale_amount=3, source="pixel")
    assert_conversion(pixel_store, sale_amount=Decimal("4"), source="legacy_pixel")


def test_fire_pixels_fails_on_a_page_without_a_pixel(site: Site) -> None:
    site.pages["/plain"] = '<img src="/logo.png">'
    with pytest.raises(AssertionError, match=r"http://localhost/plain has no conversion pixel"):
        checkout(site, page="/plain")
    with pytest.raises(AssertionError, match=r"its images: \['/logo.png'\]"):
        checkout(site, page="/plain")


def test_fire_pixels_fails_when_the_pixel_is_not_served(pixel_store: SQLiteStorage) -> None:
    site = Site(pixel_store, {"/thanks": thanks_page(PIXEL)}, wrap=False)
    with pytest.raises(AssertionError, match="answered 404 Not Found text/plain, not 200"):
        checkout(site)


# -- the assertions ----------------------------------------------------------------------


def test_assert_conversion_returns_the_match(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    visit_through_link(site.browser, partner)
    checkout(site)
    conversion = assert_conversion(
        pixel_store,
        advertiser_id=partner.advertiser.id,
        campaign_id=partner.campaign.id,
        publisher_id=partner.publisher.id,
        reference_id="r1",
        sale_amount=Decimal("10"),
        sale_currency="USD",
        payout="1",
        payout_currency="USD",
        sku_list=[],
        quantity_list=(),
        source="pixel",
    )
    assert conversion.transaction_id == 1
    assert assert_conversions(pixel_store, 1) == [conversion]
    assert_no_conversion(pixel_store, sale_amount="10.01")
    assert_no_conversion(pixel_store, advertiser_id=2)


def test_a_missing_conversion_is_explained(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    checkout(site)  # never clicked the tracking link
    with pytest.raises(AssertionError) as info:
        assert_conversion(pixel_store, sale_amount="10.00", publisher_id=partner.publisher.id)
    assert str(info.value).splitlines() == [
        f"expected 1 conversion with publisher_id={partner.publisher.id}, sale_amount=10.00,"
        " found 0.",
        "0 conversions recorded:",
        "  (none)",
        "latest rejections, newest first:",
        "  no_attribution (pixel, advertiser 1, reference_id 'r1'):"
        " the visitor carries no valid attribution cookie",
    ]


def test_a_wrong_expectation_shows_what_differs(
    pixel_world: PixelWorld, site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    visit_through_link(site.browser, partner)
    checkout(site)
    checkout(site)  # a reload
    with pytest.raises(AssertionError) as info:
        assert_conversion(pixel_store, sale_amount="12.00", publisher_id=partner.publisher.id)
    message = str(info.value)
    assert message.startswith("expected 1 conversion with publisher_id=1, sale_amount=12.00")
    assert (
        "  transaction 1: advertiser 1, campaign 1, publisher 1, reference_id 'r1',"
        " sale 10.00 USD, payout 1.00 USD, source pixel (differs: sale_amount=10.00)"
    ) in message
    assert "  duplicate_reference_id (pixel, advertiser 1, reference_id 'r1')" in message


def test_assert_no_conversion_lists_the_ones_it_found(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    visit_through_link(site.browser, partner)
    checkout(site)
    with pytest.raises(AssertionError, match=r"expected 0 conversions with \(any\), found 1\."):
        assert_no_conversion(pixel_store)
    with pytest.raises(AssertionError, match="expected 2 conversions with reference_id='r1'"):
        assert_conversions(pixel_store, 2, reference_id="r1")


def test_long_histories_are_cut(pixel_store: SQLiteStorage, partner: TrackedLink) -> None:
    site = Site(pixel_store, {})
    visit_through_link(site.browser, partner)
    for n in range(25):
        site.browser.get(f"/pixels/conversion/1.gif?reference_id=r{n}")
        site.browser.get(f"/pixels/conversion/1.gif?reference_id=r{n}&sale_amount=x")
    with pytest.raises(AssertionError) as info:
        assert_no_conversion(pixel_store)
    lines = str(info.value).splitlines()
    assert lines[1:3] == ["25 conversions recorded:", "  ... 5 older ones not shown"]
    assert lines[3].startswith("  transaction 6:")
    assert lines[-1] == "  ... older ones not shown"
    assert len(lines) == 3 + 20 + 1 + 10 + 1


@pytest.mark.parametrize(
    ("criteria", "error", "message"),
    [
        pytest.param({"sale_amount": 10.0}, TypeError, "not an exact amount", id="float"),
        pytest.param({"payout": "ten"}, ValueError, "payout must be an amount", id="text"),
        pytest.param({"sku_list": "pen"}, TypeError, "sku_list must be a list", id="sku-str"),
        pytest.param({"source": "web"}, ValueError, "'web' is not a valid Source", id="source"),
    ],
)
def test_assertions_refuse_bad_criteria(
    pixel_store: SQLiteStorage, criteria: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        assert_conversion(pixel_store, **criteria)


def test_assert_rejected(site: Site, partner: TrackedLink, pixel_store: SQLiteStorage) -> None:
    checkout(site)
    visit_through_link(site.browser, partner)
    site.browser.get("/pixels/conversion/1.gif?sale_amount=nan&reference_id=r2")
    rejection = assert_rejected(pixel_store, Reason.NO_ATTRIBUTION, reference_id="r1")
    assert rejection.advertiser_id == 1
    newest = assert_rejected(pixel_store, "invalid_sale_amount", advertiser_id=1, source="pixel")
    assert newest.id == 2
    with pytest.raises(AssertionError) as info:
        assert_rejected(pixel_store, "no_attribution", reference_id="r2")
    assert str(info.value).splitlines()[:4] == [
        "expected a rejection with reason='no_attribution', reference_id='r2', found none.",
        "latest rejections, newest first:",
        # The refused pixel keeps the valid reference_id it claimed (issue 9).
        f"  invalid_sale_amount (pixel, advertiser 1, reference_id 'r2'): {newest.detail}",
        "  no_attribution (pixel, advertiser 1, reference_id 'r1'):"
        " the visitor carries no valid attribution cookie",
    ]
    with pytest.raises(ValueError, match="unknown rejection reason 'no_cookie'; known: "):
        assert_rejected(pixel_store, "no_cookie")


# -- ConversionRecorder -------------------------------------------------------------------


def test_recorder_sees_only_its_window(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    checkout(site)  # before: rejected
    visit_through_link(site.browser, partner)
    site.browser.get("/pixels/conversion/1.gif?sale_amount=1&reference_id=before")
    with ConversionRecorder(pixel_store) as fired:
        checkout(site)
        checkout(site)  # a reload: rejected as a duplicate
    site.browser.get("/pixels/conversion/1.gif?sale_amount=2&reference_id=after")
    site.browser.get("/pixels/conversion/1.gif?sale_amount=x&reference_id=after2")

    assert [t.reference_id for t in fired.transactions()] == ["r1"]
    assert [t.reference_id for t in fired.conversions()] == ["r1"]
    assert [r.reason for r in fired.rejections()] == ["duplicate_reference_id"]
    assert fired.assert_conversion(sale_amount="10.00").reference_id == "r1"
    assert fired.assert_conversions(1, publisher_id=partner.publisher.id)
    fired.assert_no_conversion(reference_id="before")
    fired.assert_rejected("duplicate_reference_id")
    with pytest.raises(AssertionError) as info:
        fired.assert_rejected("no_attribution")
    assert "latest rejections in the recorder's window, newest first:" in str(info.value)
    with pytest.raises(AssertionError, match=r"1 conversion recorded in the recorder's window:"):
        fired.assert_conversion(reference_id="after")
    # The store itself sees everything.
    assert len(assert_conversions(pixel_store, 3)) == 3


def test_recorder_shows_corrections_in_their_latest_state(
    site: Site, partner: TrackedLink, pixel_store: SQLiteStorage
) -> None:
    visit_through_link(site.browser, partner)
    site.browser.get("/pixels/conversion/1.gif?sale_amount=10&reference_id=r1")
    site.browser.get("/pixels/conversion/1.gif?sale_amount=5&reference_id=r2")
    fired = ConversionRecorder(pixel_store)  # no with block: the window stays open
    site.browser.get("/pixels/conversion/1.gif?sale_amount=20&parent_reference_id=r1")
    site.browser.get("/pixels/conversion/1.gif?sale_amount=30&parent_reference_id=r1")

    assert [t.sale_amount for t in fired.transactions()] == [Decimal("20.00"), Decimal("30.00")]
    [current] = fired.conversions()
    assert (current.reference_id, current.sale_amount) == ("r1", Decimal("30.00"))
    fired.assert_conversion(reference_id="r1", sale_amount="30", payout="3.00")
    with pytest.raises(AssertionError, match="corrects transaction 3"):
        fired.assert_conversion(sale_amount="20")
    site.browser.get("/pixels/conversion/1.gif?sale_amount=7&reference_id=r3")
    assert len(fired.conversions()) == 2


def test_recorder_per_advertiser(
    pixel_world: PixelWorld, pixel_store: SQLiteStorage, partner: TrackedLink
) -> None:
    other = pixel_world.add_link("/landing", advertiser=pixel_world.add_advertiser())
    site = Site(pixel_store, {})
    with ConversionRecorder(pixel_store, advertiser_id=other.advertiser.id) as fired:
        visit_through_link(site.browser, partner)
        visit_through_link(site.browser, other)
        site.browser.get("/pixels/conversion/1.gif?reference_id=mine")
        site.browser.get(f"/pixels/conversion/{other.advertiser.id}.gif?reference_id=theirs")
    assert [t.reference_id for t in fired.conversions()] == ["theirs"]
    assert fired.assert_conversion().publisher_id == other.publisher.id


# -- a host team's own suite, with no conftest of its own ---------------------------------

HOST_SHOP = """
from flask import Flask, redirect, request
from pixel_wsgi import PixelMiddleware


def create_app(storage_url, secret_key):
    app = Flask(__name__)

    @app.get("/")
    def home():
        return "<h1>Welcome</h1>"

    @app.post("/checkout")
    def checkout():
        return redirect(f"/thanks?total={request.form['total']}", code=303)

    @app.get("/thanks")
    def thanks():
        total = request.args["total"]
        src = f"/pixels/conversion/1.gif?sale_amount={total}&amp;reference_id=order-{total}"
        return f'<p>Thank you</p><img src="{src}" width="1" height="1" alt="">'

    app.wsgi_app = PixelMiddleware(app.wsgi_app, storage_url, secret_key=secret_key)
    return app
"""

HOST_TESTS = """
import pytest
from webtest import TestApp

from shop import create_app
from pixel_wsgi.testing import assert_conversion, fire_pixels, visit_through_link


@pytest.fixture
def browser(pixel_storage_url, pixel_secret_key):
    return TestApp(create_app(pixel_storage_url, pixel_secret_key))


def test_checkout_fires_the_pixel(pixel_world, browser):
    partner = pixel_world.add_link("/", payout="10%")
    visit_through_link(browser, partner)
    thanks = browser.post("/checkout", {"total": "10.00"}).follow()
    fire_pixels(browser, thanks)
    conversion = assert_conversion(
        pixel_world.store, sale_amount="10.00", payout="1.00", publisher_id=partner.publisher.id
    )
    assert conversion.reference_id == "order-10.00"


def test_wrong_publisher_fails(pixel_world, browser):
    partner = pixel_world.add_link("/")
    visit_through_link(browser, partner)
    fire_pixels(browser, browser.post("/checkout", {"total": "10.00"}).follow())
    assert_conversion(pixel_world.store, sale_amount="10.00", publisher_id=42)


def test_checkout_without_a_click_fails(pixel_world, browser):
    pixel_world.add_link("/")
    fire_pixels(browser, browser.post("/checkout", {"total": "25.00"}).follow())
    assert_conversion(pixel_world.store, sale_amount="25.00")
"""

# A host suite's own fixtures, with the names suites typically use (ours too).
HOST_CONFTEST = """
import pytest


@pytest.fixture
def app():
    return "host app"


@pytest.fixture
def storage():
    return "host storage"


@pytest.fixture
def db():
    return "host db"


@pytest.fixture
def client():
    return "host client"


@pytest.fixture
def world():
    return "host world"


@pytest.fixture
def clock():
    return "host clock"
"""

HOST_OWN_TESTS = """
from pixel_wsgi.testing import assert_no_conversion


def test_own_fixtures_are_untouched(app, storage, db, client, world, clock, pixel_store):
    assert (app, storage, db, client, world, clock) == (
        "host app", "host storage", "host db", "host client", "host world", "host clock"
    )
    assert_no_conversion(pixel_store)
"""

HOST_INI = """
[pytest]
filterwarnings =
    error
    ignore:'cgi' is deprecated:DeprecationWarning
"""


@pytest.fixture
def host_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(shop=HOST_SHOP, test_checkout=HOST_TESTS)
    pytester.makeini(HOST_INI)
    return pytester


def test_a_host_suite_uses_the_plugin_without_a_conftest(host_suite: pytest.Pytester) -> None:
    # A separate process: the plugin is loaded by its entry point, as in a host's CI.
    result = host_suite.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_checkout_fires_the_pixel PASSED*",
            "*expected 1 conversion with publisher_id=42, sale_amount=10.00, found 0.",
            "*transaction 1: advertiser 1, campaign 1, publisher 1, reference_id 'order-10.00',"
            " sale 10.00 USD, payout 5.00 USD, source pixel (differs: publisher_id=1)",
            "*expected 1 conversion with sale_amount=25.00, found 0.",
            "*no_attribution (pixel, advertiser 1, reference_id 'order-25.00'):"
            " the visitor carries no valid attribution cookie",
        ]
    )
    # The helpers' own frames are hidden from the traceback.
    result.stdout.no_fnmatch_line("*def assert_conversions(*")


def test_a_host_suites_fixtures_do_not_clash(host_suite: pytest.Pytester) -> None:
    host_suite.makeconftest(HOST_CONFTEST)
    host_suite.makepyfile(test_own=HOST_OWN_TESTS)
    result = host_suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)


def test_the_plugin_defines_only_pixel_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    lines = result.stdout.lines
    start = lines.index(next(line for line in lines if "defined from pixel_wsgi.testing" in line))
    names = []
    for line in lines[start + 1 :]:
        if line.startswith(("-", "=")):
            break
        if " -- " in line and not line.startswith(" "):
            names.append(line.split(" -- ")[0])
    assert sorted(names) == PIXEL_FIXTURES


def test_the_plugin_can_be_turned_off(host_suite: pytest.Pytester) -> None:
    result = host_suite.runpytest_subprocess("-p", "no:pixel_wsgi", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*fixture 'pixel_world' not found*"])


def test_the_module_docstring_example_passes(pytester: pytest.Pytester) -> None:
    """The documented Flask example, run against examples/flask_shop.py as ``myshop``."""
    doc = pixel_wsgi.testing.__doc__ or ""
    example = doc[doc.index("    # tests/test_checkout.py") : doc.index("A failing expectation")]
    pytester.makepyfile(test_checkout=textwrap.dedent(example))
    shop = Path(__file__).resolve().parent.parent / "examples" / "flask_shop.py"
    pytester.makepyfile(myshop=shop.read_text())
    pytester.makeini(HOST_INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
