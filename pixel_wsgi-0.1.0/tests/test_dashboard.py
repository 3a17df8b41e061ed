"""The operator dashboard, driven with WebTest over data recorded by the real middleware."""

from __future__ import annotations

import csv
import io
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from webtest import TestApp, TestResponse
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from pixel_wsgi import (
    ConfigurationError,
    PayoutKind,
    PayoutRule,
    PixelError,
    PixelMiddleware,
    Reason,
    SQLiteStorage,
    StorageError,
)
from pixel_wsgi.dashboard import REALM, Dashboard, basic_auth
from pixel_wsgi.dashboard.reports import DateRange, describe_payout
from pixel_wsgi.dashboard.views import meaning
from pixel_wsgi.errors import BadRequest, NotFound

from .conftest import SECRET, FakeClock, World, basic_authorization, host_app

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

PASSWORD = "correct horse"
SVG_NS = "{http://www.w3.org/2000/svg}"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


def _authorization(user: str, password: str) -> str:
    return basic_authorization(user, password)["Authorization"]


def signed_in(application: Any) -> TestApp:
    browser = TestApp(application)
    browser.authorization = ("Basic", ("admin", PASSWORD))
    return browser


def parse_csv(response: TestResponse) -> list[dict[str, str]]:
    assert response.content_type == "text/csv"
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(response.body.decode("utf-8"), newline="")))


def cells(page: TestResponse, column: int) -> list[str]:
    """The text of one column of the page's last table, tags stripped."""
    body = page.text.rsplit("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    texts = []
    for row in rows:
        tds = re.findall(r"<td[^>]*>(.*?)</td>", row)
        # The one cell of "No rows." spans every column.
        texts.append(re.sub(r"<[^>]+>", "", tds[column] if column < len(tds) else tds[0]))
    return texts


@dataclass
class Shop:
    """What the fixture recorded through the middleware."""

    world: World
    middleware: PixelMiddleware
    clock: FakeClock
    dash: TestApp
    visitor_a: TestApp  # bought o1 (percent campaign), later corrected

    @property
    def advertiser(self) -> str:
        return f"/advertisers/{self.world.advertiser_id}"

    def visit(self, link_id: int) -> TestApp:
        browser = TestApp(self.middleware)
        browser.get(f"/pixels/click/{link_id}")
        return browser

    def pixel(self, browser: TestApp, query: str, advertiser_id: int | None = None) -> None:
        advertiser = self.world.advertiser_id if advertiser_id is None else advertiser_id
        response = browser.get(f"/pixels/conversion/{advertiser}.gif?{query}")
        assert response.content_type == "image/gif"

    def transaction_id(self, reference_id: str) -> int:
        [row] = [c for c in self.world.storage.conversions() if c.reference_id == reference_id]
        return row.original_transaction_id


def _at(clock: FakeClock, day: int) -> None:
    clock.now = datetime(2026, 11, day, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def shop(world: World, middleware: PixelMiddleware, clock: FakeClock) -> Shop:
    """Three conversions in the default range, one long before, one of another advertiser.

    - o0, 2026-09-01: 999.00 USD (outside the last 30 days)
    - o1, 2026-11-23: 100.00 USD on "Ten percent", corrected to 80.00 (payout 8.00 USD)
    - o2, 2026-11-24: 20.00 EUR reason renewal on "Renewals" (payout 4.50 USD)
    - o3, 2026-11-25: 50.00 EUR on "Ten percent" (payout 5.00 EUR)
    - rejections: two without a cookie, one duplicate of o2
    """
    dash = signed_in(Dashboard(world.storage, authenticate=basic_auth(PASSWORD), clock=clock))
    data = Shop(world, middleware, clock, dash, TestApp(middleware))
    clock.now = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)
    data.pixel(data.visit(world.percent_link_id), "sale_amount=999.00&reference_id=o0")

    _at(clock, 23)
    data.visitor_a.get(f"/pixels/click/{world.percent_link_id}")
    data.pixel(data.visitor_a, "sale_amount=100.00&reference_id=o1")
    _at(clock, 24)
    data.pixel(data.visitor_a, "sale_amount=80.00&parent_reference_id=o1")

    renewer = data.visit(world.fixed_link_id)
    data.pixel(renewer, "sale_amount=20.00&sale_currency=EUR&reason_code=renewal&reference_id=o2")
    data.pixel(renewer, "sale_amount=20.00&sale_currency=EUR&reason_code=renewal&reference_id=o2")

    _at(clock, 25)
    data.pixel(
        data.visit(world.percent_link_id), "sale_amount=50.00&sale_currency=EUR&reference_id=o3"
    )
    data.pixel(TestApp(middleware), "sale_amount=5.00&reference_id=lost1")
    data.pixel(TestApp(middleware), "sale_amount=6.00&reference_id=lost2")
    stranger = data.visit(world.other_link_id)
    data.pixel(stranger, "sale_amount=7.00&reference_id=x1", world.other_advertiser_id)
    return data


# -- construction and authentication -----------------------------------------------------


def test_authenticate_is_required(storage: SQLiteStorage) -> None:
    with pytest.raises(ConfigurationError, match="authenticate"):
        Dashboard(storage)
    with pytest.raises(ConfigurationError, match="authenticate"):
        Dashboard(storage, authenticate="secret")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="storage"):
        Dashboard(42, authenticate=basic_auth("pw"))  # type: ignore[arg-type]


def test_a_storage_url_is_accepted(db_path: Any, storage: SQLiteStorage) -> None:
    storage.add_advertiser("Solo")
    dash = signed_in(Dashboard(f"sqlite:///{db_path}", authenticate=basic_auth(PASSWORD)))
    assert dash.get("/").status_int == 302


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="none"),
        pytest.param(_authorization("admin", "wrong"), id="wrong-password"),
        pytest.param(_authorization("root", PASSWORD), id="wrong-user"),
        pytest.param(_authorization("admin", PASSWORD + "x"), id="longer-password"),
        pytest.param("Basic !!!not-base64", id="garbage"),
        pytest.param("Bearer " + PASSWORD, id="other-scheme"),
    ],
)
def test_unauthenticated_requests_get_401(shop: Shop, header: str | None) -> None:
    browser = TestApp(shop.dash.app)
    headers = {} if header is None else {"Authorization": header}
    for path in ("/", shop.advertiser, f"{shop.advertiser}/conversions.csv", "/nowhere"):
        response = browser.get(path, headers=headers, status=401)
        assert response.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        assert response.headers["Cache-Control"] == "no-store"
        assert "Acme" not in response.text
    # Even a POST learns nothing before signing in.
    browser.post(shop.advertiser, headers=headers, status=401)


def test_basic_auth_checks_user_and_password() -> None:
    check = basic_auth("s3cret", username="ops")

    def env(value: str) -> WSGIEnvironment:
        return {"HTTP_AUTHORIZATION": value}

    assert check(env(_authorization("ops", "s3cret")))
    assert not check(env(_authorization("admin", "s3cret")))
    assert not check(env(_authorization("ops", "s3cre")))
    assert not check({})
    # A password containing ':' is fine; only the first ':' separates the user.
    assert basic_auth("a:b")(env(_authorization("admin", "a:b")))
    # Non-ASCII passwords compare as UTF-8 bytes.
    assert basic_auth("pässwörd")(env(_authorization("admin", "pässwörd")))


@pytest.mark.parametrize(
    ("password", "username"),
    [
        pytest.param("", "admin", id="empty-password"),
        pytest.param("pw", "", id="empty-user"),
        pytest.param("pw", "a:b", id="colon-in-user"),
    ],
)
def test_basic_auth_refuses_bad_settings(password: str, username: str) -> None:
    with pytest.raises(ConfigurationError):
        basic_auth(password, username)


def test_a_custom_authenticate_sees_the_environ(shop: Shop) -> None:
    seen: list[str] = []

    def staff_only(environ: WSGIEnvironment) -> bool:
        seen.append(environ["PATH_INFO"])
        return environ.get("HTTP_X_STAFF") == "yes"

    browser = TestApp(Dashboard(shop.world.storage, authenticate=staff_only, clock=shop.clock))
    browser.get(shop.advertiser, status=401)
    assert browser.get(shop.advertiser, headers={"X-Staff": "yes"}).status_int == 200
    assert seen == [shop.advertiser, shop.advertiser]


def test_a_failing_authenticate_denies(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    def broken(environ: WSGIEnvironment) -> bool:
        raise RuntimeError("session store down")

    browser = TestApp(Dashboard(shop.world.storage, authenticate=broken))
    with caplog.at_level(logging.ERROR, logger="pixel_wsgi.dashboard"):
        response = browser.get("/", status=401)
    assert "session store down" not in response.text
    assert "authenticate callable failed" in caplog.text


# -- responses ---------------------------------------------------------------------------


def test_every_page_is_self_contained_and_locked_down(shop: Shop) -> None:
    o1 = shop.transaction_id("o1")
    paths = [
        "/",
        shop.advertiser,
        f"{shop.advertiser}/campaigns",
        f"{shop.advertiser}/publishers",
        f"{shop.advertiser}/days",
        f"{shop.advertiser}/conversions",
        f"{shop.advertiser}/conversions/{o1}",
        f"{shop.advertiser}/rejections",
        f"{shop.advertiser}/rejections/reasons",
        "/nowhere",
    ]
    for path in paths:
        response = shop.dash.get(path, status="*")
        assert response.status_int in (200, 404), path
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        text = response.text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
        assert text.count("<style>") == 1
        assert "<script" not in text.lower()
        assert "<link" not in text.lower()
        # No external resources: every URL is a path of this site.
        assert not re.search(r"(src|href|action)=\"(?!/)", text), path
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_head_answers_the_headers_only(shop: Shop) -> None:
    get = shop.dash.get(shop.advertiser)
    head = shop.dash.head(shop.advertiser)
    assert head.status_int == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == str(len(get.body))


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_other_methods_get_405(shop: Shop, method: str) -> None:
    response = getattr(shop.dash, method)(shop.advertiser, status=405)
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.headers["Content-Security-Policy"] == CSP


# -- the advertiser picker -----------------------------------------------------------------


def test_index_lists_the_advertisers(shop: Shop) -> None:
    page = shop.dash.get("/")
    assert page.status_int == 200
    assert f'<a href="/advertisers/{shop.world.advertiser_id}">Acme</a>' in page.text
    assert f'<a href="/advertisers/{shop.world.other_advertiser_id}">Other Corp</a>' in page.text
    picked = page.click("Acme")
    assert "Acme: overview" in picked.text


def test_index_redirects_to_the_only_advertiser(storage: SQLiteStorage) -> None:
    solo = storage.add_advertiser("Solo")
    dash = signed_in(Dashboard(storage, authenticate=basic_auth(PASSWORD)))
    response = dash.get("/", params={"from": "2026-01-01"}, status=302)
    assert response.headers["Location"].endswith(f"/advertisers/{solo.id}?from=2026-01-01")
    assert response.headers["Cache-Control"] == "no-store"


def test_index_without_advertisers(storage: SQLiteStorage) -> None:
    page = signed_in(Dashboard(storage, authenticate=basic_auth(PASSWORD))).get("/")
    assert "No advertisers yet" in page.text


# -- the overview ----------------------------------------------------------------------------


def test_overview_totals_per_currency(shop: Shop) -> None:
    page = shop.dash.get(shop.advertiser)
    assert "<span>Conversions</span><b>3</b>" in page.text
    assert "<span>Sales</span><b>70.00 EUR</b><b>80.00 USD</b>" in page.text
    assert "<span>Payouts</span><b>5.00 EUR</b><b>12.50 USD</b>" in page.text
    # The default range is the last 30 days, today (2026-11-25) included.
    assert 'name="from" value="2026-10-27"' in page.text
    assert 'name="to" value="2026-11-25"' in page.text

    totals = parse_csv(page.click("Download totals as CSV"))
    assert totals == [
        {"metric": "conversions", "currency": "", "value": "3"},
        {"metric": "reversed", "currency": "", "value": "0"},
        {"metric": "sales", "currency": "EUR", "value": "70.00"},
        {"metric": "sales", "currency": "USD", "value": "80.00"},
        {"metric": "payouts", "currency": "EUR", "value": "5.00"},
        {"metric": "payouts", "currency": "USD", "value": "12.50"},
    ]


def test_the_range_selects_conversions_by_their_first_day(shop: Shop) -> None:
    rows = parse_csv(
        shop.dash.get(f"{shop.advertiser}.csv", {"from": "2026-09-01", "to": "2026-09-01"})
    )
    assert {row["metric"]: row["value"] for row in rows} == {
        "conversions": "1",
        "reversed": "0",
        "sales": "999.00",
        "payouts": "99.90",
    }
    # o1 was made on the 23rd and corrected on the 24th: it belongs to the 23rd,
    # with its corrected values.
    rows = parse_csv(
        shop.dash.get(f"{shop.advertiser}.csv", {"from": "2026-11-23", "to": "2026-11-23"})
    )
    assert [r["value"] for r in rows if r["metric"] in ("conversions", "sales")] == ["1", "80.00"]
    # Only "from": up to today.
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}.csv", {"from": "2026-09-01"}))
    assert rows[0] == {"metric": "conversions", "currency": "", "value": "4"}


def test_by_campaign_and_by_publisher(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/campaigns")
    rows = parse_csv(page.click("Download CSV"))
    assert rows == [
        {
            "id": str(shop.world.percent_campaign_id),
            "campaign": "Ten percent",
            "payout_rule": "10% of the sale",
            "conversions": "2",
            "sales_EUR": "50.00",
            "sales_USD": "80.00",
            "payouts_EUR": "5.00",
            "payouts_USD": "8.00",
        },
        {
            "id": str(shop.world.fixed_campaign_id),
            "campaign": "Renewals",
            "payout_rule": "4.50 USD per conversion (renewal, confirmed_order only)",
            "conversions": "1",
            "sales_EUR": "20.00",
            "sales_USD": "0.00",
            "payouts_EUR": "0.00",
            "payouts_USD": "4.50",
        },
    ]
    publishers = parse_csv(shop.dash.get(f"{shop.advertiser}/publishers.csv"))
    assert publishers == [
        {
            "id": str(shop.world.publisher_id),
            "publisher": "Deals Blog",
            "conversions": "3",
            "sales_EUR": "70.00",
            "sales_USD": "80.00",
            "payouts_EUR": "5.00",
            "payouts_USD": "12.50",
        }
    ]
    # A campaign's name links to its conversions.
    conversions = page.click("Renewals")
    assert cells(conversions, 2) == ["o2"]
    assert "campaign: Renewals" in conversions.text


def test_a_campaign_without_conversions_is_listed(shop: Shop) -> None:
    shop.world.storage.add_campaign(
        shop.world.advertiser_id, "Winter", PayoutRule(PayoutKind.FIXED, Decimal("2"), "GBP")
    )
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}/campaigns.csv", {"sort": "campaign"}))
    assert [(r["campaign"], r["conversions"], r["payout_rule"]) for r in rows] == [
        ("Renewals", "1", "4.50 USD per conversion (renewal, confirmed_order only)"),
        ("Ten percent", "2", "10% of the sale"),
        ("Winter", "0", "2.00 GBP per conversion"),
    ]


@pytest.mark.parametrize(
    ("sort", "direction", "expected"),
    [
        pytest.param("conversions", "desc", ["Ten percent", "Renewals"], id="count-desc"),
        pytest.param("conversions", "asc", ["Renewals", "Ten percent"], id="count-asc"),
        pytest.param("campaign", "asc", ["Renewals", "Ten percent"], id="name"),
        pytest.param("sales_EUR", "desc", ["Ten percent", "Renewals"], id="eur-sales"),
        pytest.param("payouts_USD", "desc", ["Ten percent", "Renewals"], id="usd-payouts"),
        pytest.param("payouts_USD", "asc", ["Renewals", "Ten percent"], id="usd-payouts-asc"),
        # A currency nobody used: a column of zeros, in natural order.
        pytest.param("sales_JPY", "desc", ["Ten percent", "Renewals"], id="absent-currency"),
    ],
)
def test_campaigns_sort(shop: Shop, sort: str, direction: str, expected: list[str]) -> None:
    page = shop.dash.get(f"{shop.advertiser}/campaigns", {"sort": sort, "dir": direction})
    assert cells(page, 1) == expected


def test_the_daily_table_and_chart(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/days")
    assert len(cells(page, 0)) == 30
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}/days.csv", {"sort": "date", "dir": "desc"}))
    assert [r["date"] for r in rows[:3]] == ["2026-11-25", "2026-11-24", "2026-11-23"]
    assert rows[0] == {
        "date": "2026-11-25",
        "conversions": "1",
        "sales_EUR": "50.00",
        "sales_USD": "0.00",
        "payouts_EUR": "5.00",
        "payouts_USD": "0.00",
    }
    assert rows[2]["payouts_USD"] == "8.00"
    assert rows[1]["payouts_USD"] == "4.50"
    busy = parse_csv(
        shop.dash.get(f"{shop.advertiser}/days.csv", {"sort": "conversions", "dir": "desc"})
    )
    assert [r["conversions"] for r in busy[:4]] == ["1", "1", "1", "0"]
    assert svg_of(page) is not None


def svg_of(page: TestResponse) -> ET.Element:
    match = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert match is not None
    return ET.fromstring(match.group(0))  # well-formed XML, or this raises


def test_the_chart_is_well_formed_svg(shop: Shop) -> None:
    svg = svg_of(shop.dash.get(shop.advertiser))
    assert svg.tag == f"{SVG_NS}svg"
    assert svg.get("viewBox", "").startswith("0 0 ")
    titles = [t.text for t in svg.iter(f"{SVG_NS}title")]
    assert titles[0] == "Conversions and payouts per day, 2026-10-27 to 2026-11-25"
    # A panel of conversions and one per payout currency; a bar per day with any.
    assert "2026-11-23: 1 conversion" in titles
    assert "2026-11-25: 1 conversion" in titles
    assert "2026-11-23: 8.00 USD" in titles
    assert "2026-11-24: 4.50 USD" in titles
    assert "2026-11-25: 5.00 EUR" in titles
    texts = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert "Payouts per day (EUR)" in texts
    assert "Payouts per day (USD)" in texts
    assert len(list(svg.iter(f"{SVG_NS}rect"))) == 3 + 1 + 2
    for rect in svg.iter(f"{SVG_NS}rect"):
        for name in ("x", "y", "width", "height"):
            assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", rect.get(name, "")), rect.attrib


def test_an_empty_range_draws_an_empty_chart(shop: Shop) -> None:
    page = shop.dash.get(shop.advertiser, {"from": "2020-01-01", "to": "2020-01-01"})
    svg = svg_of(page)
    assert list(svg.iter(f"{SVG_NS}rect")) == []
    assert "nothing in this range" in [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert "<span>Conversions</span><b>0</b>" in page.text


# -- conversions --------------------------------------------------------------------------


def test_conversions_show_the_current_state(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/conversions")
    # Newest first by default.
    assert cells(page, 2) == ["o3", "o2", "o1"]
    rows = parse_csv(page.click("Download CSV"))
    o1 = rows[2]
    assert o1["conversion_id"] == str(shop.transaction_id("o1"))
    assert (o1["sale_amount"], o1["sale_currency"]) == ("80.00", "USD")
    assert (o1["payout"], o1["payout_currency"]) == ("8.00", "USD")
    assert (o1["corrections"], o1["status"]) == ("1", "corrected")
    assert o1["recorded_at"].startswith("2026-11-23T12:00:00")
    assert o1["updated_at"].startswith("2026-11-24T12:00:00")
    assert int(o1["transaction_id"]) > int(o1["conversion_id"])
    o2 = rows[1]
    assert (o2["campaign"], o2["publisher"], o2["reason_code"]) == (
        "Renewals",
        "Deals Blog",
        "renewal",
    )
    assert (o2["sale_amount"], o2["sale_currency"], o2["payout"], o2["payout_currency"]) == (
        "20.00",
        "EUR",
        "4.50",
        "USD",
    )
    # Another advertiser's conversion never shows.
    assert "x1" not in page.text


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"sort": "sale", "dir": "desc"}, ["o1", "o3", "o2"], id="sale-desc"),
        pytest.param({"sort": "sale", "dir": "asc"}, ["o2", "o3", "o1"], id="sale-asc"),
        pytest.param({"sort": "payout", "dir": "asc"}, ["o2", "o3", "o1"], id="payout"),
        pytest.param({"sort": "reference_id"}, ["o1", "o2", "o3"], id="reference"),
        pytest.param({"sort": "recorded", "dir": "asc"}, ["o1", "o2", "o3"], id="oldest"),
        pytest.param({"q": "renewal"}, ["o2"], id="filter-reason-code"),
        pytest.param({"q": "EUR"}, ["o3", "o2"], id="filter-currency"),
        pytest.param({"q": "  ten PERCENT "}, ["o3", "o1"], id="filter-case-and-space"),
        pytest.param({"q": "nothing like it"}, [], id="filter-none"),
        pytest.param({"q": "EUR", "sort": "reference_id"}, ["o2", "o3"], id="filter-and-sort"),
    ],
)
def test_conversions_sort_and_filter(
    shop: Shop, params: dict[str, str], expected: list[str]
) -> None:
    page = shop.dash.get(f"{shop.advertiser}/conversions", params)
    assert cells(page, 2) == (expected or ["No rows."])
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}/conversions.csv", params))
    assert [row["reference_id"] for row in rows] == expected


def test_sort_links_toggle_and_keep_the_filter(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/conversions", {"q": "percent"})
    sorted_page = page.click("Sale")
    assert sorted_page.request.GET["q"] == "percent"
    assert sorted_page.request.GET["sort"] == "sale"
    assert sorted_page.request.GET["dir"] == "desc"  # amounts: biggest first
    assert cells(sorted_page, 2) == ["o1", "o3"]
    again = sorted_page.click("Sale")
    assert again.request.GET["dir"] == "asc"
    assert cells(again, 2) == ["o3", "o1"]
    # The filter form keeps the range and the order.
    form = again.forms[1]
    form["q"] = "o3"
    filtered = form.submit()
    assert filtered.request.GET["sort"] == "sale"
    assert filtered.request.GET["from"] == "2026-10-27"
    assert cells(filtered, 2) == ["o3"]
    csv_rows = parse_csv(filtered.click("Download CSV"))
    assert [row["reference_id"] for row in csv_rows] == ["o3"]


def test_the_range_form(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/conversions")
    form = page.forms[0]
    form["from"] = "2026-09-01"
    form["to"] = "2026-09-30"
    assert cells(form.submit(), 2) == ["o0"]
    assert cells(page.click("7 days"), 2) == ["o3", "o2", "o1"]


def test_conversions_of_one_publisher(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/conversions", {"publisher": shop.world.publisher_id})
    assert cells(page, 2) == ["o3", "o2", "o1"]
    assert "publisher: Deals Blog" in page.text
    other = shop.world.storage.add_publisher("Nobody")
    page = shop.dash.get(f"{shop.advertiser}/conversions", {"publisher": other.id})
    assert cells(page, 2) == ["No rows."]


def test_too_many_rows_are_cut_from_the_page_not_the_csv(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pixel_wsgi.dashboard.pages.MAX_HTML_ROWS", 2)
    page = shop.dash.get(f"{shop.advertiser}/conversions")
    assert len(cells(page, 2)) == 2
    assert "Showing the first 2 of 3 rows" in page.text
    assert len(parse_csv(shop.dash.get(f"{shop.advertiser}/conversions.csv"))) == 3


# -- the correction chain --------------------------------------------------------------------


def test_the_correction_chain(shop: Shop) -> None:
    conversions = shop.dash.get(f"{shop.advertiser}/conversions")
    o1 = shop.transaction_id("o1")
    chain = conversions.click(str(o1), href=rf"/conversions/{o1}\?")
    assert f"Acme: conversion {o1}" in chain.text
    assert "<span>Reference id</span><b>o1</b>" in chain.text
    assert "<span>Sale now</span><b>80.00 USD</b>" in chain.text
    assert "<span>Corrections</span><b>1</b>" in chain.text
    assert "sale: 100.00 USD \u2192 80.00 USD; payout: 10.00 USD \u2192 8.00 USD" in chain.text

    rows = parse_csv(chain.click("Download CSV"))
    assert [(r["step"], r["type"], r["sale_amount"], r["payout"]) for r in rows] == [
        ("1", "conversion", "100.00", "10.00"),
        ("2", "correction", "80.00", "8.00"),
    ]
    assert rows[0]["corrects_transaction_id"] == ""
    assert rows[1]["corrects_transaction_id"] == rows[0]["transaction_id"] == str(o1)
    assert rows[0]["changes"] == "first report"
    assert (
        rows[1]["changes"] == "sale: 100.00 USD \u2192 80.00 USD; payout: 10.00 USD \u2192 8.00 USD"
    )

    # The correction's own row id leads to the same chain.
    same = shop.dash.get(f"{shop.advertiser}/conversions/{rows[1]['transaction_id']}.csv")
    assert parse_csv(same) == rows


def test_a_second_correction_extends_the_chain(shop: Shop) -> None:
    shop.pixel(shop.visitor_a, "sale_amount=80.00&reason_code=renewal&parent_reference_id=o1")
    o1 = shop.transaction_id("o1")
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}/conversions/{o1}.csv"))
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["corrects_transaction_id"] == rows[1]["transaction_id"]
    assert rows[2]["changes"] == "reason_code: - \u2192 renewal"


def test_a_chain_of_another_advertiser_is_not_found(shop: Shop) -> None:
    [foreign] = shop.world.storage.conversions(advertiser_id=shop.world.other_advertiser_id)
    shop.dash.get(f"{shop.advertiser}/conversions/{foreign.transaction_id}", status=404)
    shop.dash.get(f"{shop.advertiser}/conversions/9999", status=404)


def test_the_chain_of_a_conversion_without_reference_id(shop: Shop) -> None:
    shop.pixel(shop.visit(shop.world.percent_link_id), "sale_amount=30.00")
    [row] = [
        c
        for c in shop.world.storage.conversions(advertiser_id=shop.world.advertiser_id)
        if c.reference_id is None
    ]
    rows = parse_csv(shop.dash.get(f"{shop.advertiser}/conversions/{row.transaction_id}.csv"))
    assert [(r["step"], r["type"], r["sale_amount"]) for r in rows] == [
        ("1", "conversion", "30.00")
    ]


def _spy_on_reads(monkeypatch: pytest.MonkeyPatch, storage: SQLiteStorage) -> list[str]:
    """The ``created_at`` of every ledger row and rejection the store hands out."""
    seen: list[str] = []
    for name in ("transactions", "conversions", "rejections"):
        read = getattr(storage, name)

        def spy(*args: Any, read: Any = read, **kwargs: Any) -> Iterable[Any]:
            for row in read(*args, **kwargs):
                seen.append(row.created_at)
                yield row

        monkeypatch.setattr(storage, name, spy)
    return seen


@pytest.mark.parametrize(
    "section",
    [
        pytest.param("", id="overview"),
        pytest.param(".csv", id="totals-csv"),
        pytest.param("/campaigns", id="campaigns"),
        pytest.param("/publishers", id="publishers"),
        pytest.param("/days", id="days"),
        pytest.param("/conversions", id="conversions"),
        pytest.param("/conversions.csv", id="conversions-csv"),
        pytest.param("/conversions/o1", id="chain"),
        pytest.param("/rejections", id="rejections"),
        pytest.param("/rejections/reasons", id="reasons"),
    ],
)
def test_pages_read_only_rows_of_their_range(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    """o0 (2026-09-01) and its rejection-free day lie before the default range: the
    store is asked for the range, so no row of that day is read at all."""
    section = section.replace("o1", str(shop.transaction_id("o1")))
    seen = _spy_on_reads(monkeypatch, shop.world.storage)
    shop.dash.get(shop.advertiser + section)
    assert seen, "the page read nothing"
    assert min(seen) >= "2026-10-27T00:00:00", seen


def test_a_conversion_corrected_after_the_range_shows_its_whole_chain(shop: Shop) -> None:
    # o1 was recorded on the 23rd and corrected on the 24th, after this range.
    page = shop.dash.get(f"{shop.advertiser}/conversions.csv?from=2026-11-23&to=2026-11-23")
    [o1] = parse_csv(page)
    assert (o1["reference_id"], o1["corrections"], o1["status"]) == ("o1", "1", "corrected")
    assert (o1["payout"], o1["payout_currency"]) == ("8.00", "USD")
    assert o1["updated_at"].startswith("2026-11-24T12:00:00")


@pytest.mark.parametrize(
    ("start", "end", "bounds"),
    [
        pytest.param(
            date(2026, 11, 25),
            date(2026, 11, 25),
            ("2026-11-25T00:00:00.000000Z", "2026-11-26T00:00:00.000000Z"),
            id="one-day",
        ),
        pytest.param(
            date(2026, 12, 1),
            date(2026, 12, 31),
            ("2026-12-01T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z"),
            id="new-year",
        ),
        pytest.param(
            date(9999, 12, 1),
            date.max,
            ("9999-12-01T00:00:00.000000Z", None),
            id="last-day",
        ),
    ],
)
def test_a_date_range_as_store_bounds(
    start: date, end: date, bounds: tuple[str, str | None]
) -> None:
    assert DateRange(start, end).bounds() == bounds


# -- rejections ------------------------------------------------------------------------------


def test_rejection_counts_and_log(shop: Shop) -> None:
    page = shop.dash.get(f"{shop.advertiser}/rejections")
    reasons = parse_csv(shop.dash.get(f"{shop.advertiser}/rejections/reasons.csv"))
    assert [(r["reason"], r["count"]) for r in reasons] == [
        ("no_attribution", "2"),
        ("duplicate_reference_id", "1"),
    ]
    assert reasons[0]["meaning"] == "the visitor carried no attribution cookie"
    log = parse_csv(page.click("Download CSV", index=1))
    assert [r["reason"] for r in log] == [
        "no_attribution",
        "no_attribution",
        "duplicate_reference_id",
    ]
    assert [r["reference_id"] for r in log] == ["lost2", "lost1", "o2"]
    assert log[0]["params"] == "sale_amount=6.00&reference_id=lost2"

    only = page.click("no_attribution", index=0)
    assert only.request.GET["reason"] == "no_attribution"
    assert cells(only, 3) == ["no_attribution", "no_attribution"]
    assert "reason: no_attribution" in only.text
    rows = parse_csv(
        shop.dash.get(
            f"{shop.advertiser}/rejections.csv", {"reason": "no_attribution", "sort": "id"}
        )
    )
    assert [r["reference_id"] for r in rows] == ["lost1", "lost2"]
    assert (
        parse_csv(shop.dash.get(f"{shop.advertiser}/rejections.csv", {"reason": "unknown_link"}))
        == []
    )


def test_every_reason_code_is_explained() -> None:
    missing = [reason.value for reason in Reason if not reason.meaning]
    assert missing == [], "add these to pixel_wsgi.models._REASON_MEANINGS"
    assert meaning("no_attribution") == "the visitor carried no attribution cookie"
    assert meaning("a_code_from_the_future") == "-"


# -- escaping and privacy ------------------------------------------------------------------------


HOSTILE = '<script>alert("x")</script>&amp;\'"'


def test_hostile_names_are_escaped(world: World, clock: FakeClock) -> None:
    storage = world.storage
    campaign = storage.add_campaign(
        world.advertiser_id, HOSTILE, PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
    )
    publisher = storage.add_publisher('=HYPERLINK("http://evil.example")')
    link = storage.add_link(campaign.id, publisher.id, "/x")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, clock=clock)
    browser = TestApp(middleware)
    browser.get(f"/pixels/click/{link.id}")
    browser.get(
        f"/pixels/conversion/{world.advertiser_id}.gif",
        {"reference_id": "<b>ref</b>", "reason_code": "<i>r</i>", "sale_amount": "1.00"},
    )
    browser.get(
        f"/pixels/conversion/{world.advertiser_id}.gif",
        {"reference_id": "<b>ref</b>", "reason_code": "<i>r</i>", "sale_amount": "1.00"},
    )
    dash = signed_in(Dashboard(storage, authenticate=basic_auth(PASSWORD), clock=clock))
    base = f"/advertisers/{world.advertiser_id}"
    for path in (base, f"{base}/campaigns", f"{base}/conversions", f"{base}/rejections"):
        text = dash.get(path, {"q": "<script>"} if path.endswith("campaigns") else {}).text
        assert "<script" not in text
        assert "<b>ref" not in text
        assert "<i>r" not in text
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;&#x27;&quot;"
        in dash.get(f"{base}/campaigns").text
    )
    # In a CSV the name is kept as it is, but a would-be formula stays text.
    rows = parse_csv(dash.get(f"{base}/conversions.csv"))
    assert rows[0]["campaign"] == HOSTILE
    assert rows[0]["publisher"] == '\'=HYPERLINK("http://evil.example")'
    assert rows[0]["reference_id"] == "<b>ref</b>"


def test_no_personal_data_is_shown(shop: Shop) -> None:
    personal = (
        "email_address=alice%40example.com&name=Alice+Liddell&home_phone_number=%2B15555550100"
    )
    shop.pixel(
        shop.visit(shop.world.percent_link_id), f"sale_amount=9.00&reference_id=p1&{personal}"
    )
    shop.pixel(TestApp(shop.middleware), f"sale_amount=9.00&reference_id=p2&{personal}")
    p1 = shop.transaction_id("p1")
    assert shop.world.storage.personal_data(p1)["name"] == "Alice Liddell"  # it is stored
    base = shop.advertiser
    pages = [
        base,
        f"{base}.csv",
        f"{base}/conversions",
        f"{base}/conversions.csv",
        f"{base}/conversions/{p1}",
        f"{base}/conversions/{p1}.csv",
        f"{base}/rejections",
        f"{base}/rejections.csv",
    ]
    for path in pages:
        body = shop.dash.get(path).text
        for secret in ("alice", "Alice", "Liddell", "5555550100"):
            assert secret not in body, (path, secret)
    # Both reports are there, without their personal fields.
    assert "p1" in shop.dash.get(f"{base}/conversions").text
    [rejected] = parse_csv(shop.dash.get(f"{base}/rejections.csv", {"q": "p2"}))
    assert rejected["params"] == (
        "sale_amount=9.00&reference_id=p2&email_address=[redacted]&name=[redacted]"
        "&home_phone_number=[redacted]"
    )


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        pytest.param("", {"from": "garbage"}, 400, "from must be a date like", id="bad-from"),
        pytest.param("", {"to": "2026-02-30"}, 400, "to is not a real date", id="no-such-day"),
        pytest.param("", {"from": "2026-1-5"}, 400, "YYYY-MM-DD", id="short-date"),
        pytest.param("", {"from": "20261105"}, 400, "YYYY-MM-DD", id="basic-format"),
        pytest.param(
            "", {"from": "2026-11-20", "to": "2026-11-01"}, 400, "must not be after", id="reversed"
        ),
        pytest.param(
            "", {"from": "2020-01-01", "to": "2026-01-01"}, 400, "at most 731 days", id="too-long"
        ),
        pytest.param(
            "", [("from", "2026-11-01"), ("from", "2026-11-02")], 400, "more than once", id="twice"
        ),
        pytest.param("/conversions", {"sort": "nope"}, 400, "cannot sort by", id="bad-sort"),
        pytest.param("/conversions", {"sort": "sales_USD"}, 400, "cannot sort", id="group-col"),
        pytest.param("/campaigns", {"sort": "sales_usd"}, 400, "cannot sort", id="lower-currency"),
        pytest.param("/conversions", {"dir": "up"}, 400, "dir must be", id="bad-dir"),
        pytest.param("/conversions", {"q": "x" * 201}, 400, "at most 200", id="long-filter"),
        pytest.param("/conversions", {"campaign": "abc"}, 400, "campaign must be an id", id="id"),
        pytest.param("/conversions", {"publisher": "0"}, 400, "publisher must be", id="zero-id"),
        pytest.param("/rejections", {"reason": "<x>"}, 400, "reason must be", id="bad-reason"),
        pytest.param("/nope", {}, 404, "no page", id="unknown-section"),
        pytest.param("/conversions/abc", {}, 404, "no page", id="bad-transaction"),
        pytest.param("/conversions/0", {}, 404, "no page", id="zero-transaction"),
        pytest.param("/conversions.json", {}, 404, "no page", id="other-format"),
        pytest.param("/", {}, 404, "no page", id="trailing-slash"),
    ],
)
def test_bad_requests(shop: Shop, path: str, params: Any, status: int, message: str) -> None:
    response = shop.dash.get(shop.advertiser + path, params, status=status)
    assert message in response.text
    assert "Traceback" not in response.text
    assert response.headers["Content-Security-Policy"] == CSP
    # The same for the CSV export of the page, when there is one.
    if status == 400:
        shop.dash.get(shop.advertiser + path + ".csv", params, status=400)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/advertisers/999", id="unknown-advertiser"),
        pytest.param("/advertisers/999/conversions.csv", id="unknown-advertiser-csv"),
        pytest.param("/advertisers/abc", id="not-an-id"),
        pytest.param("/advertisers/01", id="leading-zero"),
        pytest.param("/advertisers/%C3%A9", id="non-ascii"),
        pytest.param("/advertisers/%FF", id="not-utf8"),
        pytest.param("/favicon.ico", id="favicon"),
    ],
)
def test_not_found(shop: Shop, path: str) -> None:
    response = shop.dash.get(path, status=404)
    assert "404 Not Found" in response.text


# -- failures ---------------------------------------------------------------------------------


def test_a_storage_failure_is_a_503_page(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(**_: Any) -> Iterable[Any]:
        raise StorageError("database is locked")

    monkeypatch.setattr(shop.world.storage, "transactions", down)
    with caplog.at_level(logging.ERROR, logger="pixel_wsgi.dashboard"):
        response = shop.dash.get(f"{shop.advertiser}/conversions.csv", status=503)
    assert response.headers["Retry-After"] == "30"
    assert response.content_type == "text/html"
    assert "database is locked" not in response.text
    assert "database is locked" in caplog.text


def test_a_store_without_schema_is_a_503(tmp_path: Any) -> None:
    dash = signed_in(
        Dashboard(f"sqlite:///{tmp_path / 'empty.db'}", authenticate=basic_auth(PASSWORD))
    )
    dash.get("/", status=503)


def test_a_bug_is_a_500_page_without_traceback(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: Any) -> Iterable[Any]:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(shop.world.storage, "rejections", broken)
    with caplog.at_level(logging.ERROR, logger="pixel_wsgi.dashboard"):
        response = shop.dash.get(f"{shop.advertiser}/rejections", status=500)
    assert "oops" not in response.text
    assert "ZeroDivisionError" in caplog.text


# -- mounting ---------------------------------------------------------------------------------


def test_mounted_under_a_prefix(shop: Shop) -> None:
    site = DispatcherMiddleware(shop.middleware, {"/ops/dashboard": shop.dash.app})
    browser = signed_in(site)
    assert browser.get("/some/page").text == "host page /some/page"

    index = browser.get("/ops/dashboard/")
    overview = index.click("Acme")
    assert overview.request.path == f"/ops/dashboard{shop.advertiser}"
    o1 = shop.transaction_id("o1")
    pages = [
        overview,
        overview.click("Conversions", href="/conversions\\?"),
        browser.get(f"/ops/dashboard{shop.advertiser}/conversions/{o1}"),
        browser.get(f"/ops/dashboard{shop.advertiser}/rejections"),
    ]
    for page in pages:
        targets = re.findall(r'(?:href|action)="([^"]+)"', page.text)
        assert targets
        assert all(t.startswith("/ops/dashboard/") for t in targets), targets
    # Links followed under the prefix keep working, the CSV too.
    rows = parse_csv(pages[1].click("Download CSV"))
    assert len(rows) == 3
    # The bare mount point is the index too.
    assert browser.get("/ops/dashboard").status_int == 200

    solo = SQLiteStorage(shop.world.storage.path.parent / "solo.db")
    solo.migrate()
    solo.add_advertiser("Solo")
    mounted = signed_in(
        DispatcherMiddleware(
            host_app, {"/dash": Dashboard(solo, authenticate=basic_auth(PASSWORD))}
        )
    )
    assert mounted.get("/dash/", status=302).headers["Location"] == "/dash/advertisers/1"
    solo.close()


def test_a_contested_conversion_says_so_until_the_server_decides(shop: Shop, world: World) -> None:
    rival = world.storage.add_publisher("Coupon Site")
    rival_link = world.storage.add_link(world.percent_campaign_id, rival.id, "/landing").id
    shop.pixel(shop.visit(rival_link), "sale_amount=1.00&reference_id=o3")
    page = shop.dash.get(f"{shop.advertiser}/conversions")
    statuses = {row["reference_id"]: row["status"] for row in parse_csv(page.click("Download CSV"))}
    assert statuses == {"o3": "contested, as reported", "o2": "as reported", "o1": "corrected"}
    chain = shop.dash.get(f"{shop.advertiser}/conversions/{shop.transaction_id('o3')}")
    assert "contested, as reported" in chain.text
    rejections = shop.dash.get(f"{shop.advertiser}/rejections")
    assert "contested_claim" in rejections.text


@pytest.mark.parametrize(
    ("rule", "field_names", "text"),
    [
        pytest.param(
            PayoutRule(PayoutKind.PERCENT, Decimal("10")), False, "10% of the sale", id="percent"
        ),
        pytest.param(
            PayoutRule(PayoutKind.PERCENT, Decimal("12.5"), reason_codes=("sale",)),
            True,
            "12.5% of sale_amount (only for reason_code sale)",
            id="percent-cli",
        ),
        pytest.param(
            PayoutRule(PayoutKind.FIXED, Decimal("4.50"), "USD", ("renewal", "confirmed_order")),
            False,
            "4.50 USD per conversion (renewal, confirmed_order only)",
            id="fixed-codes",
        ),
        pytest.param(
            PayoutRule(PayoutKind.FIXED, Decimal("2.50"), "USD"),
            True,
            "2.50 USD per conversion",
            id="fixed-cli",
        ),
    ],
)
def test_describe_payout_in_words(rule: PayoutRule, field_names: bool, text: str) -> None:
    assert describe_payout(rule, field_names=field_names) == text


@pytest.mark.parametrize(
    "error", [pytest.param(BadRequest, id="bad-request"), pytest.param(NotFound, id="not-found")]
)
def test_the_dashboards_errors_are_pixel_errors(error: type[Exception]) -> None:
    assert issubclass(error, PixelError)
    assert error.__module__ == "pixel_wsgi.errors"
