"""The demo in a real browser: publisher's site, tracking link, shop, pixel, dashboard.

Headless Chromium (see ``browser.py``) against ``pixel-wsgi demo`` served by a real
server on 127.0.0.1. The publisher's site is served by another server and opened as
``localhost``: to the browser that is another site, so the cookie rules that matter
(``SameSite=Lax``) are the real ones. Results are read back through the operator's
command line, as an advertiser would.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from pathlib import Path
from typing import Any

import pytest

from pixel_wsgi.demo import PRODUCTS

from .browser import Browser, chromium
from .servers import DemoServer, demo_server, static_site

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_PASSWORD = "e2e-dashboard-password"
THIRD_PARTY_REFERENCE = "third-party-1"
PIXEL_IMG = 'img[src*="/pixels/conversion/"]'
CENT = Decimal("0.01")

# The thank-you page's summary, as the visitor reads it.
ORDER_SUMMARY = re.compile(r"Order (order-[0-9a-f]+): (\d+) x (.+?),\s+total \$(\d+\.\d\d)\.")


@dataclass(frozen=True)
class Shop:
    """The demo shop, and the publisher's site that links to it from another host."""

    demo: DemoServer
    link: dict[str, Any]
    campaign: dict[str, Any]
    publisher_port: int

    @property
    def advertiser_id(self) -> int:
        advertiser_id: int = self.link["advertiser_id"]
        return advertiser_id

    @property
    def publisher_page(self) -> str:
        return f"http://localhost:{self.publisher_port}/"

    def embedding_page(self, host: str) -> str:
        """The page that embeds the pixel, as served on ``host``."""
        return f"http://{host}:{self.publisher_port}/embed"

    def conversions(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.demo.cli(
            "conversions", "--advertiser", str(self.advertiser_id)
        )
        return rows

    def rejections(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.demo.cli(
            "rejections", "--advertiser", str(self.advertiser_id)
        )
        return rows


@dataclass(frozen=True)
class Order:
    """What the thank-you page told the visitor."""

    reference_id: str
    quantity: int
    product_name: str
    total: Decimal


def expected_payout(campaign: dict[str, Any], sale_amount: Decimal) -> Decimal:
    """The campaign's payout rule (from ``campaign list --json``) applied to a sale."""
    rule = campaign["payout"]
    assert rule["reason_codes"] == [], "these tests report no reason_code"
    value = Decimal(rule["value"])
    if rule["kind"] == "percent":
        return (sale_amount * value / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    assert rule["kind"] == "fixed", rule
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$PIXEL_WSGI_ARTIFACTS``, else ``test-artifacts/``."""
    configured = os.environ.get("PIXEL_WSGI_ARTIFACTS")
    return Path(configured) if configured else PROJECT_ROOT / "test-artifacts"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium with an empty profile; skips when it is not installed."""
    with chromium(tmp_path / "browser") as window:
        yield window


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The demo on 127.0.0.1, and the publisher's site, to be opened as localhost."""
    store = tmp_path / "demo"
    store.mkdir()
    env = {"PIXEL_WSGI_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD}
    with demo_server(store, env=env) as demo:
        # The link the demo seeded: the one to its landing page.
        [link] = [link for link in demo.cli("link", "list") if link["destination"] == "/landing"]
        [campaign] = [c for c in demo.cli("campaign", "list") if c["id"] == link["campaign_id"]]
        click_url = f"{demo.base}{link['path']}"
        pixel_url = (
            f"{demo.base}/pixels/conversion/{link['advertiser_id']}.gif"
            f"?sale_amount=5.00&reference_id={THIRD_PARTY_REFERENCE}"
        )
        pages = {
            "/": (
                "<!doctype html><title>Deals Blog</title>"
                "<h1>Today's deals</h1>"
                f'<p><a id="deal" href="{escape(click_url)}">Spring sale at the tea shop</a></p>'
            ),
            # Somebody else's page that embeds the shop's pixel, hoping to claim
            # a conversion for whoever carries the shop's attribution cookie.
            "/embed": (
                "<!doctype html><title>Not the shop</title>"
                "<h1>Nothing to see here</h1>"
                f'<img src="{escape(pixel_url)}" width="1" height="1" alt="">'
            ),
        }
        with static_site(pages) as port:
            yield Shop(demo=demo, link=link, campaign=campaign, publisher_port=port)


def follow_the_publishers_link(browser: Browser, shop: Shop) -> None:
    """From the publisher's page on localhost, through the tracking link, to the shop."""
    browser.open(shop.publisher_page)
    browser.follow("id", "deal", to=f"{shop.demo.base}/landing")
    [cookie] = browser.cookies()
    assert cookie["name"] == f"pixel_wsgi_a{shop.advertiser_id}"
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")


def buy(browser: Browser, shop: Shop, sku: str = "TEA-100", quantity: int = 2) -> Order:
    """Arrive through the publisher's link and buy; return the thank-you page's order."""
    product = PRODUCTS[sku]
    base = shop.demo.base
    follow_the_publishers_link(browser, shop)
    browser.follow("link text", product.name, to=f"{base}/product/{sku}")
    browser.follow("css selector", "form button[type=submit]", to=f"{base}/checkout?")
    browser.fill("name", "quantity", str(quantity))
    browser.follow("css selector", "form button[type=submit]", to=f"{base}/thank-you/")
    browser.wait_for_images(PIXEL_IMG)

    match = ORDER_SUMMARY.search(browser.text())
    assert match is not None, browser.text()
    order = Order(match[1], int(match[2]), match[3], Decimal(match[4]))
    assert (order.quantity, order.product_name) == (quantity, product.name)
    assert order.total == product.price * quantity
    return order


def test_a_sale_through_the_publishers_link_is_one_attributed_conversion(
    browser: Browser, shop: Shop
) -> None:
    order = buy(browser, shop)

    [conversion] = shop.conversions()
    assert conversion["reference_id"] == order.reference_id
    assert conversion["visit_id"] is not None
    assert (conversion["campaign_id"], conversion["publisher_id"]) == (
        shop.link["campaign_id"],
        shop.link["publisher_id"],
    )
    assert (conversion["sku_list"], conversion["quantity_list"]) == (["TEA-100"], [order.quantity])
    assert (conversion["sale_amount"], conversion["sale_currency"]) == (str(order.total), "USD")
    assert conversion["payout"] == str(expected_payout(shop.campaign, order.total))
    assert shop.rejections() == []


def test_reloading_the_thank_you_page_adds_no_conversion(browser: Browser, shop: Shop) -> None:
    order = buy(browser, shop)

    browser.reload()
    browser.wait_for_images(PIXEL_IMG)

    [conversion] = shop.conversions()
    assert conversion["reference_id"] == order.reference_id
    # The reload did reach the server, and was turned away as what it is.
    [rejection] = shop.rejections()
    assert (rejection["reason"], rejection["reference_id"]) == (
        "duplicate_reference_id",
        order.reference_id,
    )


def test_a_third_party_page_cannot_fire_the_pixel_for_an_attributed_visitor(
    browser: Browser, shop: Shop
) -> None:
    follow_the_publishers_link(browser, shop)  # the visitor now carries attribution

    # localhost is another site than 127.0.0.1: the SameSite=Lax cookie stays home,
    # and the browser says Sec-Fetch-Site: cross-site, which the pixel refuses as such.
    browser.open(shop.embedding_page("localhost"))
    browser.wait_for_images("img")

    assert shop.conversions() == []
    [rejection] = shop.rejections()
    assert (rejection["reason"], rejection["reference_id"]) == (
        "cross_site_pixel",
        THIRD_PARTY_REFERENCE,
    )

    # The same page served from 127.0.0.1 (another port, but the same site) gets
    # the cookie along: the rejection above was the third-party context, nothing else.
    browser.open(shop.embedding_page("127.0.0.1"))
    browser.wait_for_images("img")

    [conversion] = shop.conversions()
    assert conversion["reference_id"] == THIRD_PARTY_REFERENCE
    assert conversion["campaign_id"] == shop.link["campaign_id"]
    assert conversion["payout"] == str(expected_payout(shop.campaign, Decimal("5.00")))


def test_the_dashboard_shows_the_conversion(browser: Browser, shop: Shop) -> None:
    order = buy(browser, shop)

    # Chromium answers the Basic challenge with the credentials in the URL.
    host = f"admin:{DASHBOARD_PASSWORD}@127.0.0.1:{shop.demo.port}"
    conversions_page = f"/dashboard/advertisers/{shop.advertiser_id}/conversions"
    browser.open(f"http://{host}{conversions_page}")
    page = browser.text()  # rendered on the server: complete once loaded
    assert order.reference_id in page, f"{browser.url}:\n{page[:1000]}"
    row = browser.driver.find_element("xpath", f"//tr[td[.='{order.reference_id}']]").text
    assert str(expected_payout(shop.campaign, order.total)) in row, row

    screenshot = browser.screenshot(artifacts_dir() / "dashboard-conversions.png")
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
