"""How a shop tests that its checkout fires the pixel, with pixel-wsgi's pytest plugin.

There is no conftest.py: installing pixel-wsgi gives pytest the ``pixel_*``
fixtures. Run it with::

    pip install . WebTest Flask    # pixel-wsgi from this checkout
    pytest examples/test_flask_shop_checkout.py
"""

from __future__ import annotations

from typing import Any

import pytest
from flask_shop import create_app
from webtest import TestApp

from pixel_wsgi.testing import (
    ConversionRecorder,
    PixelWorld,
    assert_conversion,
    assert_no_conversion,
    assert_rejected,
    fire_pixels,
    visit_through_link,
)


@pytest.fixture
def shop(pixel_storage_url: str, pixel_secret_key: str) -> TestApp:
    """The shop as a browser sees it, tracking into the test's throwaway store."""
    return TestApp(create_app(pixel_storage_url, pixel_secret_key))


def buy(page: Any, product: str, quantity: int) -> Any:
    """From a page listing products, buy one of them; returns the thank-you page."""
    form = page.click(description=product).forms[0]
    form["quantity"] = str(quantity)
    return form.submit().follow()


def test_checkout_fires_one_conversion(pixel_world: PixelWorld, shop: TestApp) -> None:
    # The shop's pixel names advertiser 1: the first one pixel_world makes.
    partner = pixel_world.add_link("/", payout="10%")

    home = visit_through_link(shop, partner)
    thanks = buy(home, "Fountain pen", 2)
    with ConversionRecorder(pixel_world.store) as fired:
        fire_pixels(shop, thanks)
        fire_pixels(shop, thanks)  # a reload of the thank-you page counts once

    fired.assert_conversion(
        sale_amount="77.00",
        payout="7.70",
        publisher_id=partner.publisher.id,
        campaign_id=partner.campaign.id,
        reference_id="order-1001",
        sku_list=["pen"],
        quantity_list=[2],
    )
    assert len(fired.transactions()) == 1


def test_the_last_click_wins(pixel_world: PixelWorld, shop: TestApp) -> None:
    blog = pixel_world.add_link("/", payout="4.50 USD")
    newsletter = pixel_world.add_link("/", campaign=blog.campaign)

    visit_through_link(shop, blog)
    home = visit_through_link(shop, newsletter)
    fire_pixels(shop, buy(home, "Dot-grid notebook", 1))

    assert_conversion(
        pixel_world.store,
        publisher_id=newsletter.publisher.id,
        sale_amount="14.00",
        payout="4.50",
    )
    assert_no_conversion(pixel_world.store, publisher_id=blog.publisher.id)


def test_a_checkout_without_a_click_is_not_credited(pixel_world: PixelWorld, shop: TestApp) -> None:
    pixel_world.add_link("/")

    thanks = shop.post("/checkout", {"sku": "pen", "quantity": "1"}).follow()
    fire_pixels(shop, thanks)

    assert_no_conversion(pixel_world.store)
    assert_rejected(pixel_world.store, "no_attribution", reference_id="order-1001")


def test_no_cookie_for_a_visitor_who_asks_not_to_be_tracked(
    pixel_world: PixelWorld, shop: TestApp
) -> None:
    partner = pixel_world.add_link("/")

    home = visit_through_link(shop, partner, headers={"Sec-GPC": "1"}, expect_cookie=False)
    fire_pixels(shop, buy(home, "Fountain pen", 1))

    assert_no_conversion(pixel_world.store)
