"""How a Pyramid team tests its checkout with pixel-wsgi's pytest plugin.

The shop is assembled from ``development.ini``, whose ``[filter:pixel]`` keeps
the store at ``%(here)s/shop.db``: the test copies the file into its temporary
directory and points the plugin's ``pixel_storage_path`` fixture at that store.
Run from this directory::

    pip install pixel-wsgi pyramid PasteDeploy WebTest
    pytest test_checkout.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from pixel_wsgi.testing import PixelWorld, assert_conversion, fire_pixels, visit_through_link

HERE = Path(__file__).resolve().parent


@pytest.fixture
def pixel_storage_path(tmp_path: Path) -> Path:
    """The store development.ini names, once the file is copied to tmp_path."""
    return tmp_path / "shop.db"


@pytest.fixture
def site(tmp_path: Path, pixel_world: PixelWorld) -> TestApp:
    """The whole Paste pipeline (pixel-wsgi in front of the shop), as a browser sees it."""
    shutil.copyfile(HERE / "development.ini", tmp_path / "development.ini")
    return TestApp(loadapp(f"config:{tmp_path / 'development.ini'}"))


def test_joining_fires_one_conversion(pixel_world: PixelWorld, site: TestApp) -> None:
    partner = pixel_world.add_link("/landing", payout="20%")

    landing = visit_through_link(site, partner)
    form = landing.forms[0]
    form["quantity"] = "3"
    thanks = form.submit().follow()
    fire_pixels(site, thanks)

    order_id = thanks.request.path.removeprefix("/thank-you/")
    assert_conversion(
        pixel_world.store,
        reference_id=f"order-{order_id}",
        sale_amount="105.00",
        payout="21.00",
        publisher_id=partner.publisher.id,
        sku_list=["MEMBER-1Y"],
        quantity_list=[3],
    )
