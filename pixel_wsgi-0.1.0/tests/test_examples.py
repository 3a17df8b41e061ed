"""Each example in ``examples/`` driven the way a visitor would, and the Paste filter."""

from __future__ import annotations

import importlib
import re
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage
from pixel_wsgi.integrations.paste import filter_app_factory
from pixel_wsgi.testing import (
    assert_conversion,
    assert_conversions,
    fire_pixels,
    visit_through_link,
)

from .conftest import SECRET, host_app, pixel_src

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytest_plugins = ["pytester"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The file the Pyramid example's development.ini names."""
    return tmp_path / "shop.db"


def seed(storage: SQLiteStorage, destination: str, payout: PayoutRule) -> int:
    """Advertiser 1 with one campaign and one tracking link; returns the link id."""
    advertiser = storage.add_advertiser("Shop")
    publisher = storage.add_publisher("Blog")
    campaign = storage.add_campaign(advertiser.id, "Launch", payout)
    return storage.add_link(campaign.id, publisher.id, destination).id


def example(name: str, monkeypatch: pytest.MonkeyPatch, *path: Path) -> ModuleType:
    for directory in (EXAMPLES, *path):
        monkeypatch.syspath_prepend(str(directory))
    return importlib.import_module(name)


# -- examples/flask_shop.py --------------------------------------------------------


def test_flask_shop(storage: SQLiteStorage, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flask_shop = example("flask_shop", monkeypatch)
    link_id = seed(storage, "/", PayoutRule(PayoutKind.FIXED, Decimal("5.00")))
    browser = TestApp(flask_shop.create_app(f"sqlite:///{db_path}", SECRET))

    home = visit_through_link(browser, link_id)
    assert "Paper &amp; Ink" in home.text
    product = home.click(description="Fountain pen")
    form = product.forms[0]
    form["quantity"] = "2"
    thanks = form.submit().follow()
    assert "Thanks! Order 1001 is on its way: 2 x Fountain pen, $77.00." in thanks.text
    src = pixel_src(thanks)
    assert src == (
        "/pixels/conversion/1.gif?sale_amount=77.00&reference_id=order-1001"
        "&sku_list%5B%5D=pen&quantity_list%5B%5D=2"
    )
    [gif] = fire_pixels(browser, thanks)
    assert gif.content_type == "image/gif"
    fire_pixels(browser, thanks)  # a reload of the thank-you page

    assert_conversions(storage, 1)
    assert_conversion(
        storage,
        reference_id="order-1001",
        sale_amount="77.00",
        payout="5.00",
        payout_currency="USD",
        sku_list=["pen"],
        quantity_list=[2],
    )
    assert len(list(storage.transactions())) == 1


def test_flask_shop_reads_the_environment(
    storage: SQLiteStorage, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flask_shop = example("flask_shop", monkeypatch)
    seed(storage, "/", PayoutRule(PayoutKind.PERCENT, Decimal("10")))
    monkeypatch.setenv("PIXEL_WSGI_STORAGE", f"sqlite:///{db_path}")
    monkeypatch.setenv("PIXEL_WSGI_SECRET_KEY", SECRET)
    app = flask_shop.create_app()
    middleware = app.wsgi_app
    assert isinstance(middleware, PixelMiddleware)
    assert middleware.storage.path == db_path  # type: ignore[attr-defined]
    browser = TestApp(app)
    visit_through_link(browser, 1)
    browser.post("/checkout", {"sku": "notebook", "quantity": "3"}).follow()
    fire_pixels(browser, browser.get("/thank-you/1001"))
    assert_conversions(storage, 1)
    assert_conversion(storage, sale_amount="42.00", payout="4.20")


# -- examples/pyramid_app ------------------------------------------------------------


@pytest.fixture
def ini_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's development.ini, copied so that %(here)s is the test's directory."""
    monkeypatch.syspath_prepend(str(EXAMPLES / "pyramid_app"))
    copy = tmp_path / "development.ini"
    shutil.copyfile(EXAMPLES / "pyramid_app" / "development.ini", copy)
    return copy


def test_pyramid_app_through_paste(storage: SQLiteStorage, ini_path: Path) -> None:
    link_id = seed(storage, "/landing", PayoutRule(PayoutKind.PERCENT, Decimal("20")))
    app = loadapp(f"config:{ini_path}")
    assert isinstance(app, PixelMiddleware)
    assert app.storage.path == storage.path  # type: ignore[attr-defined]
    browser = TestApp(app)

    landing = visit_through_link(browser, link_id)
    assert "Annual membership: $35.00" in landing.text
    form = landing.forms[0]
    form["quantity"] = "2"
    placed = form.submit()
    assert placed.status_int == 303
    thanks = placed.follow()
    order_id = thanks.request.path.removeprefix("/thank-you/")
    assert f"Welcome aboard! Order {order_id}: $70.00." in thanks.text
    src = pixel_src(thanks)
    assert src == (
        f"/pixels/conversion/1.gif?sale_amount=70.00&reference_id=order-{order_id}"
        "&sku_list%5B%5D=MEMBER-1Y&quantity_list%5B%5D=2"
    )
    fire_pixels(browser, thanks)
    fire_pixels(browser, thanks)

    assert_conversions(storage, 1)
    assert_conversion(
        storage, reference_id=f"order-{order_id}", sale_amount="70.00", payout="14.00"
    )
    assert len(list(storage.transactions())) == 1


def test_pyramid_app_bad_requests(storage: SQLiteStorage, ini_path: Path) -> None:
    browser = TestApp(loadapp(f"config:{ini_path}"))
    assert browser.post("/checkout", {"quantity": "0"}, status=400).status_int == 400
    assert browser.get("/thank-you/nope", status=404).status_int == 404
    assert browser.get("/pixels/health").json == {"status": "ok"}


def test_paste_ini_without_secret_key_fails_loudly(tmp_path: Path, ini_path: Path) -> None:
    text = ini_path.read_text()
    ini_path.write_text(re.sub(r"(?m)^secret_key = .*\n", "", text))
    with pytest.raises(ConfigurationError, match="needs the option: secret_key"):
        loadapp(f"config:{ini_path}")


# -- examples/plain_wsgi.py ------------------------------------------------------------


def test_plain_wsgi(storage: SQLiteStorage, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain_wsgi = example("plain_wsgi", monkeypatch)
    link_id = seed(storage, "/landing", PayoutRule(PayoutKind.FIXED, Decimal("3.00"), "EUR"))
    browser = TestApp(plain_wsgi.make_app(f"sqlite:///{db_path}", SECRET))

    landing = visit_through_link(browser, link_id)
    assert "New eBooks every week" in landing.text
    thanks = browser.get("/thank-you/A-1002")
    assert "Thank you for order A-1002." in thanks.text
    assert pixel_src(thanks) == (
        "/pixels/conversion/1.gif?sale_amount=50.00&reference_id=A-1002"
        "&sku_list%5B%5D=EBOOK-9&quantity_list%5B%5D=2"
    )
    fire_pixels(browser, thanks)

    assert_conversions(storage, 1)
    assert_conversion(
        storage,
        reference_id="A-1002",
        sale_amount="50.00",
        payout="3.00",
        payout_currency="EUR",
        sku_list=["EBOOK-9"],
        quantity_list=[2],
    )
    assert browser.get("/nope", status=404).text == "Not found\n"


# -- the examples' own checkout tests, as a host team runs them -----------------------------


def test_the_examples_checkout_tests_pass(pytester: pytest.Pytester) -> None:
    """The test files in examples/ that show a host team how to use pixel_wsgi.testing.

    Run in a separate pytest process, as a host's suite would run them: the
    plugin comes from its entry point, with no conftest of ours.
    """
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-v",
        str(EXAMPLES / "test_flask_shop_checkout.py"),
        str(EXAMPLES / "pyramid_app" / "test_checkout.py"),
    )
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "*test_flask_shop_checkout.py::test_checkout_fires_one_conversion PASSED*",
            "*test_checkout.py::test_joining_fires_one_conversion PASSED*",
        ]
    )


# -- the Paste filter factory ------------------------------------------------------------


def factory(store: SQLiteStorage, /, **options: str) -> PixelMiddleware:
    conf = {"storage": f"sqlite:///{store.path}", "secret_key": SECRET, **options}
    return filter_app_factory(host_app, {"here": str(store.path.parent)}, **conf)


def test_filter_defaults(storage: SQLiteStorage) -> None:
    middleware = factory(storage)
    assert middleware.application is host_app
    assert (middleware.prefix, middleware.default_currency) == ("/pixels", "USD")
    assert middleware.cookies.window == timedelta(days=30)
    assert middleware.tracking_link.honor_gpc is True
    assert middleware.tracking_link.allowed_redirect_hosts == frozenset()


def test_filter_options(storage: SQLiteStorage) -> None:
    middleware = factory(
        storage,
        prefix="/track",
        legacy_prefix="/old/web_sale",
        default_currency="EUR",
        attribution_window_days="7",
        allowed_redirect_hosts="Shop.example\n  www.shop.example",
        honor_gpc="off",
        migrate="no",
    )
    assert (middleware.prefix, middleware.legacy_prefix) == ("/track", "/old/web_sale")
    assert middleware.default_currency == "EUR"
    assert middleware.cookies.window == timedelta(days=7)
    assert middleware.tracking_link.honor_gpc is False
    assert middleware.tracking_link.allowed_redirect_hosts == frozenset(
        {"shop.example", "www.shop.example"}
    )


def test_filter_key_rotation(storage: SQLiteStorage) -> None:
    link_id = seed(storage, "/landing", PayoutRule(PayoutKind.FIXED, Decimal("1.00")))
    old_key = "the-previous-secret-key-0123456789"
    before = TestApp(factory(storage, secret_key=old_key))
    visit_through_link(before, link_id, follow=False)
    rotated = factory(storage, old_secret_keys=f"retired-key-abcdefghijkl {old_key}")
    after = TestApp(rotated, cookiejar=before.cookiejar)
    after.get("/pixels/conversion/1.gif?reference_id=r1")
    assert [c.reference_id for c in storage.conversions()] == ["r1"]
    # Without the old key the same cookie no longer verifies.
    TestApp(factory(storage), cookiejar=before.cookiejar).get(
        "/pixels/conversion/1.gif?reference_id=r2"
    )
    assert [c.reference_id for c in storage.conversions()] == ["r1"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"secret_key": ""}, "the pixel-wsgi filter needs the option: secret_key", id="no-key"
        ),
        pytest.param(
            {"storage": "  "}, "the pixel-wsgi filter needs the option: storage", id="no-storage"
        ),
        pytest.param(
            {"secretkey": "x"},
            "unknown pixel-wsgi filter option(s): secretkey (known: storage, secret_key,",
            id="unknown-option",
        ),
        pytest.param(
            {"honor_gpc": "maybe"},
            "[filter:pixel] honor_gpc must be true or false, got 'maybe'",
            id="bad-bool",
        ),
        pytest.param(
            {"attribution_window_days": "1.5"},
            "[filter:pixel] attribution_window_days must be a whole number of days, got '1.5'",
            id="bad-days",
        ),
        pytest.param(
            {"attribution_window_days": "0"}, "attribution window must be more than 0", id="zero"
        ),
        pytest.param({"default_currency": "XYZ"}, "ISO 4217", id="bad-currency"),
        pytest.param({"prefix": "pixels/"}, "prefix must start with '/'", id="bad-prefix"),
        pytest.param({"storage": "redis://x"}, "no storage backend", id="bad-storage"),
    ],
)
def test_filter_refuses_bad_options(
    storage: SQLiteStorage, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        factory(storage, **options)
    assert message in str(info.value)
