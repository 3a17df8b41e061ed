"""The demo shop: seeded once, and the whole publisher-to-pixel flow through WebTest."""

from __future__ import annotations

import re
import stat
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp, TestResponse

from pixel_wsgi import (
    ConfigurationError,
    MissingDependencyError,
    PayoutKind,
    PayoutRule,
    SQLiteStorage,
)
from pixel_wsgi.demo import (
    DASHBOARD_PASSWORD_ENV,
    PRODUCTS,
    OrderBook,
    create_demo_app,
    demo_secret_key,
    run_demo,
    seed_demo,
)

from .cli_helpers import cli_runner, failed
from .conftest import SECRET, basic_authorization, pixel_src


@pytest.fixture
def shop(storage: SQLiteStorage) -> TestApp:
    return TestApp(create_demo_app(storage, secret_key=SECRET))


def buy(shop: TestApp, product_link: str, quantity: str) -> TestResponse:
    """From the landing page: product page, checkout form, thank-you page."""
    landing = shop.get("/landing")
    product = landing.click(description=product_link)
    checkout = product.forms[0].submit()
    assert checkout.request.path_qs == f"/checkout?sku={checkout.forms[0]['sku'].value}"
    form = checkout.forms[0]
    form["quantity"] = quantity
    placed = form.submit()
    assert placed.status_int == 303
    return placed.follow()


# -- seeding -----------------------------------------------------------------------


def test_seed_demo_creates_once(storage: SQLiteStorage) -> None:
    first = seed_demo(storage)
    assert first["created"] is True
    assert (first["advertiser"].id, first["advertiser"].name) == (1, "Demo Shop")
    assert (first["publisher"].id, first["publisher"].name) == (1, "Demo Publisher")
    assert (first["campaign"].id, first["campaign"].name) == (1, "Spring sale")
    assert first["campaign"].payout == PayoutRule(PayoutKind.PERCENT, Decimal("10"))
    assert (first["link"].id, first["link"].destination) == (1, "/landing")

    second = seed_demo(storage)
    assert second["created"] is False
    assert second == {**first, "created": False}
    assert [a.name for a in storage.advertisers()] == ["Demo Shop"]
    assert storage.publisher(2) is None
    assert storage.campaign(2) is None
    assert storage.link(2) is None


def test_seed_demo_finds_its_link_among_others(storage: SQLiteStorage) -> None:
    other = storage.add_advertiser("Other")
    campaign = storage.add_campaign(other.id, "X", PayoutRule(PayoutKind.FIXED, Decimal("1.00")))
    publisher = storage.add_publisher("P")
    storage.add_link(campaign.id, publisher.id, "/landing")

    first = seed_demo(storage)
    storage.add_link(campaign.id, publisher.id, "/elsewhere")
    second = seed_demo(storage)
    assert (first["created"], second["created"]) == (True, False)
    assert first["link"].id == second["link"].id == 2
    assert second["advertiser"].name == "Demo Shop"
    assert storage.link(4) is None


def test_seed_demo_completes_a_half_done_seed(storage: SQLiteStorage) -> None:
    advertiser = storage.add_advertiser("Demo Shop")
    seeded = seed_demo(storage)
    assert seeded["created"] is True
    assert seeded["advertiser"] == advertiser
    assert seeded["link"].advertiser_id == advertiser.id
    assert [a.id for a in storage.advertisers()] == [advertiser.id]


def test_seed_demo_migrates_a_fresh_store(tmp_path: Path) -> None:
    fresh = SQLiteStorage(tmp_path / "fresh.db")
    assert seed_demo(fresh)["link"].id == 1
    fresh.close()


def test_create_demo_app_seeds_and_accepts_a_url(tmp_path: Path) -> None:
    app = create_demo_app(f"sqlite:///{tmp_path / 'url.db'}", secret_key=SECRET)
    seed = app.extensions["pixel_wsgi_demo"]
    assert (seed["advertiser"].name, seed["link"].id) == ("Demo Shop", 1)
    assert TestApp(app).get("/pixels/health").json == {"status": "ok"}


# -- the flow ----------------------------------------------------------------------


def test_publisher_link_to_conversion(shop: TestApp, storage: SQLiteStorage) -> None:
    publisher = shop.get("/publisher")
    assert (
        '<a href="/pixels/click/1?sub1=spring-tea-post">Shop the Spring sale at Demo Shop</a>'
        in publisher.text
    )
    click = publisher.click(description="Shop the Spring sale")
    assert click.status_int == 302
    assert click.headers["Location"] == "/landing"
    assert "pixel_wsgi_a1=" in click.headers["Set-Cookie"]
    assert "Everything is on sale this spring." in click.follow().text

    thanks = buy(shop, "Green tea sampler", "2")
    assert "Your order has been placed." in thanks.text
    order_id = thanks.request.path.removeprefix("/thank-you/")
    assert re.fullmatch(r"[0-9a-f]{12}", order_id)
    assert (
        '<img src="/pixels/conversion/1.gif?sale_amount=49.00&amp;sale_currency=USD'
        f"&amp;reference_id=order-{order_id}&amp;sku_list%5B%5D=TEA-100"
        '&amp;quantity_list%5B%5D=2" width="1" height="1" alt="">'
    ) in thanks.text

    pixel = shop.get(pixel_src(thanks))
    assert (pixel.status_int, pixel.content_type) == (200, "image/gif")
    [conversion] = storage.conversions(advertiser_id=1)
    assert conversion.reference_id == f"order-{order_id}"
    assert (conversion.sale_amount, conversion.sale_currency) == (Decimal("49.00"), "USD")
    assert (conversion.payout, conversion.payout_currency) == (Decimal("4.90"), "USD")
    assert (conversion.sku_list, conversion.quantity_list) == (("TEA-100",), (2,))
    assert (conversion.campaign_id, conversion.publisher_id) == (1, 1)

    # Reloading the thank-you page fires the same pixel: nothing new is counted.
    shop.get(pixel_src(shop.get(thanks.request.path)))
    assert len(list(storage.transactions())) == 1
    assert [r.reason for r in storage.rejections()] == ["duplicate_reference_id"]

    report = shop.get("/report")
    assert f"<td>order-{order_id}</td><td>49.00 USD</td>" in report.text
    assert "<td>4.90 USD</td>" in report.text
    assert "duplicate_reference_id" in report.text


@pytest.mark.parametrize(
    ("product_link", "quantity", "sale_amount", "payout"),
    [
        pytest.param("Stoneware mug", "1", Decimal("12.00"), Decimal("1.20"), id="mug"),
        pytest.param("Gooseneck kettle", "3", Decimal("179.97"), Decimal("18.00"), id="kettles"),
    ],
)
def test_payout_is_ten_percent(
    shop: TestApp,
    storage: SQLiteStorage,
    product_link: str,
    quantity: str,
    sale_amount: Decimal,
    payout: Decimal,
) -> None:
    shop.get("/pixels/click/1")
    shop.get(pixel_src(buy(shop, product_link, quantity)))
    [conversion] = storage.conversions()
    assert (conversion.sale_amount, conversion.payout) == (sale_amount, payout)


def test_a_purchase_without_the_tracking_link_is_not_credited(
    shop: TestApp, storage: SQLiteStorage
) -> None:
    shop.get(pixel_src(buy(shop, "Stoneware mug", "1")))
    assert list(storage.conversions()) == []
    assert [r.reason for r in storage.rejections()] == ["no_attribution"]


@pytest.mark.parametrize(
    ("method", "path", "params", "status"),
    [
        pytest.param("get", "/product/NOPE", None, 404, id="unknown-product"),
        pytest.param("get", "/checkout?sku=NOPE", None, 404, id="checkout-unknown-sku"),
        pytest.param("post", "/checkout", {"sku": "NOPE", "quantity": "1"}, 404, id="post-sku"),
        pytest.param("post", "/checkout", {"sku": "MUG-200", "quantity": "0"}, 400, id="zero"),
        pytest.param("post", "/checkout", {"sku": "MUG-200", "quantity": "100"}, 400, id="100"),
        pytest.param("post", "/checkout", {"sku": "MUG-200", "quantity": "-1"}, 400, id="minus"),
        pytest.param("post", "/checkout", {"sku": "MUG-200", "quantity": "²"}, 400, id="unicode"),
        pytest.param("get", "/thank-you/0123456789ab", None, 404, id="unknown-order"),
    ],
)
def test_bad_shop_requests(
    shop: TestApp, method: str, path: str, params: dict[str, str] | None, status: int
) -> None:
    response = getattr(shop, method)(path, params=params, status="*")
    assert response.status_int == status


def test_index_explains_the_demo(shop: TestApp) -> None:
    page = shop.get("/")
    assert '<a href="/publisher">' in page.text
    assert "<code>/pixels/click/1?sub1=spring-tea-post</code>" in page.text


def test_products_have_exact_prices() -> None:
    assert {sku: p.price for sku, p in PRODUCTS.items()} == {
        "TEA-100": Decimal("24.50"),
        "MUG-200": Decimal("12.00"),
        "KTL-300": Decimal("59.99"),
    }


def test_order_book_keeps_the_newest() -> None:
    book = OrderBook(max_orders=2)
    mug = PRODUCTS["MUG-200"]
    first, second, third = (book.place(mug, 1) for _ in range(3))
    assert book.get(first.id) is None
    assert book.get(second.id) == second
    assert book.get(third.id) == third
    assert len({first.id, second.id, third.id}) == 3


def test_without_flask(storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)
    with pytest.raises(MissingDependencyError) as info:
        create_demo_app(storage, secret_key=SECRET)
    assert str(info.value) == "the demo needs Flask: pip install 'pixel-wsgi[demo]'"


# -- the secret key and run_demo ---------------------------------------------------------


def test_secret_key_is_kept_beside_the_database(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "demo.db")
    key = demo_secret_key(storage)
    path = tmp_path / "demo.db.secret"
    assert path.read_text() == key + "\n"
    assert len(key) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_secret_key(storage) == key


def test_a_broken_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "demo.db.secret").write_text("short\n")
    with pytest.raises(ConfigurationError, match=r"demo\.db\.secret does not hold a secret key"):
        demo_secret_key(SQLiteStorage(tmp_path / "demo.db"))


def test_run_demo(
    tmp_path: Path, served: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    run_demo(url, host="127.0.0.1", port=8123)
    [(host, port, app, options)] = served
    assert (host, port, options) == ("127.0.0.1", 8123, {"threaded": True})
    assert (tmp_path / "demo.db.secret").exists()

    out = capsys.readouterr().out
    assert "  1. the publisher's page:  http://127.0.0.1:8123/publisher\n" in out
    link = "http://127.0.0.1:8123/pixels/click/1?sub1=spring-tea-post"
    assert f"  2. its tracking link:     {link}\n" in out
    assert "  the publisher's postbacks: http://127.0.0.1:8123/publisher/postbacks\n" in out
    assert "  3. buy something, then:   http://127.0.0.1:8123/report\n" in out
    assert f"pixel-wsgi --storage {url} conversions\n" in out

    # The served app works, and a restart keeps the cookie key and the seed.
    browser = TestApp(app)
    browser.get("/pixels/click/1")
    run_demo(url, host="localhost", port=8124)
    restarted = TestApp(served[1][2], cookiejar=browser.cookiejar)
    restarted.get(pixel_src(buy(restarted, "Stoneware mug", "1")))
    store = SQLiteStorage(tmp_path / "demo.db")
    assert [c.payout for c in store.conversions()] == [Decimal("1.20")]
    # The postback target follows the demo to its new address, once.
    [target] = store.targets()
    assert target.settings["url"].startswith("http://localhost:8124/publisher/postback?")
    store.close()
    for _, _, served_app, _ in served:
        served_app.extensions["pixel_wsgi_middleware"].close()
    assert "http://localhost:8124/publisher" in capsys.readouterr().out


def test_run_demo_takes_the_key_from_the_environment(
    tmp_path: Path, served: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_WSGI_SECRET_KEY", SECRET)
    run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host="::1", port=8000)
    assert not (tmp_path / "demo.db.secret").exists()
    [(host, _port, app, _options)] = served
    assert host == "::1"
    # The app signs with the environment's key: its cookie verifies under that key.
    browser = TestApp(app)
    browser.get("/pixels/click/1")
    other = create_demo_app(f"sqlite:///{tmp_path / 'demo.db'}", secret_key=SECRET)
    TestApp(other, cookiejar=browser.cookiejar).get("/pixels/conversion/1.gif?reference_id=r1")
    store = SQLiteStorage(tmp_path / "demo.db")
    assert [c.reference_id for c in store.conversions()] == ["r1"]
    store.close()


def test_run_demo_without_flask_writes_nothing(
    tmp_path: Path, served: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)
    with pytest.raises(MissingDependencyError):
        run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host="127.0.0.1", port=8000)
    assert list(tmp_path.iterdir()) == []
    assert served == []


# -- listening beyond this machine -------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("0.0.0.0", id="every-ipv4-interface"),
        pytest.param("", id="every-interface"),
        pytest.param("::", id="every-ipv6-interface"),
        pytest.param("192.0.2.7", id="a-public-address"),
        pytest.param("shop.example", id="a-name"),
    ],
)
@pytest.mark.parametrize(
    "password",
    [
        pytest.param(None, id="unset"),
        pytest.param("demo", id="the-demo-password"),
        pytest.param("short", id="too-short"),
    ],
)
def test_the_demo_refuses_to_serve_the_demo_password_beyond_this_machine(
    tmp_path: Path,
    served: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    password: str | None,
) -> None:
    if password is not None:
        monkeypatch.setenv(DASHBOARD_PASSWORD_ENV, password)
    with pytest.raises(ConfigurationError, match=DASHBOARD_PASSWORD_ENV) as raised:
        run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host=host, port=8000)
    assert "beyond this machine" in str(raised.value)
    assert served == []
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_a_real_password_serves_beyond_this_machine_with_a_warning(
    tmp_path: Path,
    served: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(DASHBOARD_PASSWORD_ENV, "a real password")
    run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host="0.0.0.0", port=8000)
    [(host, _port, app, _options)] = served
    assert host == "0.0.0.0"
    assert "Warning: listening beyond this machine over plain HTTP" in capsys.readouterr().err
    dashboard = TestApp(app)
    try:
        dashboard.get(
            "/dashboard/advertisers/1", headers=basic_authorization("admin", "demo"), status=401
        )
        dashboard.get(
            "/dashboard/advertisers/1", headers=basic_authorization("admin", "a real password")
        )
    finally:
        app.wsgi_app.app.storage.close()  # the PixelMiddleware inside the dispatcher


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_the_demo_password_is_fine_on_this_machine(
    tmp_path: Path,
    served: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    host: str,
) -> None:
    run_demo(f"sqlite:///{tmp_path / 'demo.db'}", host=host, port=8000)
    assert [call[0] for call in served] == [host]
    assert "Warning" not in capsys.readouterr().err


def test_the_demo_command_refuses_a_public_host_in_one_line(
    tmp_path: Path, served: list[tuple[Any, ...]]
) -> None:
    run = cli_runner(f"sqlite:///{tmp_path / 'demo.db'}")
    stderr = failed(run("demo", "--host", "0.0.0.0"), 1)
    assert stderr.startswith("Error: the demo would serve its dashboard on '0.0.0.0'")
    assert stderr.count("\n") == 1
    assert served == []
