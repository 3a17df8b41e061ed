"""Money rules no browser can bend (issue "Trust"): each test is a hostile case.

- Once the advertiser's server has spoken about a conversion, browser pixels
  cannot change it (``server_reported``).
- Two browser claims of one ``reference_id`` from different visits are both kept;
  the server's report decides; until then the conversion is contested.
- A signed pixel URL counts once; a negative amount never creates a conversion;
  a report equal to an earlier one from the same source changes nothing.
- One ``Idempotency-Key`` applies one request, however many race.
- The host thread's decimal context never reaches our arithmetic.
- A duplicated attribution cookie attributes nothing.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.clock import iso_utc
from pixel_wsgi.models import IdempotencyRecord
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .cli_helpers import cli_runner, ok
from .conftest import FakeClock, World, pixel_url, reasons
from .spool_helpers import locked_shop, write_locked
from .wsgi_calls import call

API = "/pixels/api/conversions"
CSV = "/pixels/api/conversions.csv"


def click(app: TestApp, link_id: int, **headers: str) -> None:
    app.get(f"/pixels/click/{link_id}", headers=headers, status=302)


def fire(app: TestApp, world: World, query: str) -> None:
    app.get(pixel_url(world.advertiser_id, query), status=200)


def visitor(middleware: PixelMiddleware, world: World, link_id: int | None = None) -> TestApp:
    """A new browser that clicked ``link_id`` (the percent campaign's link by default)."""
    browser = TestApp(middleware)
    click(browser, world.percent_link_id if link_id is None else link_id)
    return browser


def conversion(world: World, reference_id: str) -> Any:
    [current] = [c for c in world.storage.conversions() if c.reference_id == reference_id]
    return current


@pytest.fixture
def rival_link_id(world: World) -> int:
    """A second publisher's link on the percent campaign."""
    rival = world.storage.add_publisher("Coupon Site")
    return world.storage.add_link(world.percent_campaign_id, rival.id, "/landing").id


# -- the advertiser's server outranks the browser ------------------------------------


@pytest.mark.parametrize(
    ("server", "browser", "expected"),
    [
        pytest.param(
            {"reversal_reason": "refunded"},
            "sale_amount=100.00",
            ("0.00", "refunded"),
            id="a-reversal-is-not-undone",
        ),
        pytest.param(
            {"sale_amount": "20.00"},
            "sale_amount=99999.99",
            ("2.00", None),
            id="a-corrected-amount-is-not-overridden",
        ),
        pytest.param(
            {"sale_amount": "100.00"},
            "sale_amount=5.00",
            ("10.00", None),
            id="a-confirmation-that-changed-nothing-still-counts",
        ),
    ],
)
def test_a_browser_cannot_change_what_the_server_reported(
    middleware: PixelMiddleware,
    auth: dict[str, str],
    world: World,
    server: dict[str, str],
    browser: str,
    expected: tuple[str, str | None],
) -> None:
    shopper = visitor(middleware, world)
    fire(shopper, world, "reference_id=ORD-1&sale_amount=100.00")
    answer = shopper.post(API, {"reference_id": "ORD-1", **server}, headers=auth)
    assert answer.status_int == 200
    fire(shopper, world, f"parent_reference_id=ORD-1&{browser}")
    current = conversion(world, "ORD-1")
    assert (f"{current.payout:.2f}", current.reversal_reason) == expected
    assert reasons(world.storage)[-1] == "server_reported"


def test_a_reason_code_the_server_set_gates_the_payout_for_good(
    middleware: PixelMiddleware, auth: dict[str, str], world: World
) -> None:
    shopper = visitor(middleware, world, world.fixed_link_id)
    fire(shopper, world, "reference_id=R-1&reason_code=confirmed_order")
    assert conversion(world, "R-1").payout == Decimal("4.50")
    shopper.post(API, {"reference_id": "R-1", "reason_code": "cancelled"}, headers=auth)
    fire(shopper, world, "parent_reference_id=R-1&reason_code=confirmed_order")
    assert conversion(world, "R-1").payout == Decimal("0.00")
    assert reasons(world.storage)[-1] == "server_reported"


def test_an_in_process_report_outranks_the_browser_too(
    middleware: PixelMiddleware, world: World
) -> None:
    shopper = visitor(middleware, world)
    fire(shopper, world, "reference_id=IP-1&sale_amount=50.00")
    middleware.report(advertiser_id=world.advertiser_id, reference_id="IP-1", sale_amount="40.00")
    fire(shopper, world, "parent_reference_id=IP-1&sale_amount=500.00")
    assert conversion(world, "IP-1").sale_amount == Decimal("40.00")
    assert reasons(world.storage)[-1] == "server_reported"


def test_a_new_browser_claim_after_the_server_spoke_is_refused(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    buyer = visitor(middleware, world)
    fire(buyer, world, "reference_id=S-1&sale_amount=80.00")
    buyer.post(API, {"reference_id": "S-1", "sale_amount": "80.00"}, headers=auth)
    late = visitor(middleware, world, rival_link_id)
    fire(late, world, "reference_id=S-1&sale_amount=80.00")
    assert reasons(world.storage)[-1] == "server_reported"
    assert middleware.storage.contested_references(world.advertiser_id) == set()


# -- two browser claims of one reference_id ---------------------------------------------


def test_a_squatted_order_number_is_contested_and_the_server_decides(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    squatter = visitor(middleware, world, rival_link_id)
    for number in range(1001, 1011):
        fire(squatter, world, f"reference_id=order-{number}&sale_amount=0.01")
    buyer = visitor(middleware, world)
    fire(buyer, world, "reference_id=order-1007&sale_amount=200.00")

    # Both claims are kept; the ledger pays one conversion, contested.
    assert "duplicate_reference_id" not in reasons(world.storage)
    assert middleware.storage.contested_references(world.advertiser_id) == {"order-1007"}
    assert len([c for c in world.storage.conversions() if c.reference_id == "order-1007"]) == 1
    contested = json.loads(_cli(world, "conversions", "--json"))
    assert [row["contested"] for row in contested if row["reference_id"] == "order-1007"] == [True]

    answer = buyer.post(API, {"reference_id": "order-1007", "sale_amount": "200.00"}, headers=auth)
    assert answer.status_int == 200
    current = conversion(world, "order-1007")
    assert (current.publisher_id, current.visit_id is not None, current.payout) == (
        world.publisher_id,
        True,
        Decimal("20.00"),
    )
    assert middleware.storage.contested_references(world.advertiser_id) == set()
    assert answer.json["transaction"]["publisher_id"] == world.publisher_id
    assert reasons(world.storage)[-1] == "contest_lost"
    # The squatter's other numbers stay his until the server says otherwise.
    assert conversion(world, "order-1001").publisher_id != world.publisher_id


def test_the_server_can_confirm_the_first_claim(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    first = visitor(middleware, world)
    fire(first, world, "reference_id=C-1&sale_amount=60.00")
    second = visitor(middleware, world, rival_link_id)
    fire(second, world, "reference_id=C-1&sale_amount=0.01")
    assert middleware.storage.contested_references(world.advertiser_id) == {"C-1"}
    first.post(API, {"reference_id": "C-1", "sale_amount": "60.00"}, headers=auth)
    current = conversion(world, "C-1")
    assert (current.publisher_id, current.payout) == (world.publisher_id, Decimal("6.00"))
    assert middleware.storage.contested_references(world.advertiser_id) == set()
    assert reasons(world.storage)[-1] == "contest_lost"


def test_the_server_naming_the_publisher_settles_a_contest(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    squatter = visitor(middleware, world, rival_link_id)
    fire(squatter, world, "reference_id=N-1&sale_amount=10.00")
    buyer = visitor(middleware, world)
    fire(buyer, world, "reference_id=N-1&sale_amount=10.00")
    answer = buyer.post(
        API,
        {"reference_id": "N-1", "affiliate_id": str(world.publisher_id), "sale_amount": "10.00"},
        headers=auth,
    )
    assert answer.status_int == 200
    assert conversion(world, "N-1").publisher_id == world.publisher_id


def test_a_report_matching_no_claim_keeps_the_contest_open(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    first = visitor(middleware, world, rival_link_id)
    fire(first, world, "reference_id=M-1&sale_amount=10.00")
    second = visitor(middleware, world)
    fire(second, world, "reference_id=M-1&sale_amount=20.00")
    first.post(API, {"reference_id": "M-1", "sale_amount": "15.00"}, headers=auth)
    assert middleware.storage.contested_references(world.advertiser_id) == {"M-1"}
    assert conversion(world, "M-1").sale_amount == Decimal("15.00")


def test_the_same_visit_claiming_again_is_a_duplicate_not_a_contest(
    middleware: PixelMiddleware, world: World, rival_link_id: int
) -> None:
    shopper = visitor(middleware, world)
    fire(shopper, world, "reference_id=D-1&sale_amount=10.00")
    fire(shopper, world, "reference_id=D-1&sale_amount=99.00")
    assert reasons(world.storage) == ["duplicate_reference_id"]
    assert middleware.storage.contested_references(world.advertiser_id) == set()
    other = visitor(middleware, world, rival_link_id)
    fire(other, world, "reference_id=D-1&sale_amount=99.00")
    fire(other, world, "reference_id=D-1&sale_amount=99.00")
    assert reasons(world.storage)[-1] == "duplicate_reference_id"
    assert middleware.storage.contested_references(world.advertiser_id) == {"D-1"}


def test_a_contested_conversion_cannot_be_corrected_from_the_browser(
    middleware: PixelMiddleware, world: World, rival_link_id: int
) -> None:
    first = visitor(middleware, world)
    fire(first, world, "reference_id=K-1&sale_amount=10.00")
    second = visitor(middleware, world, rival_link_id)
    fire(second, world, "reference_id=K-1&sale_amount=10.00")
    fire(first, world, "parent_reference_id=K-1&sale_amount=900.00")
    assert conversion(world, "K-1").sale_amount == Decimal("10.00")
    assert reasons(world.storage)[-1] == "contested_reference"


def test_a_contest_shows_in_the_transactions_api(
    middleware: PixelMiddleware, auth: dict[str, str], world: World, rival_link_id: int
) -> None:
    fire(visitor(middleware, world), world, "reference_id=T-1&sale_amount=10.00")
    fire(visitor(middleware, world, rival_link_id), world, "reference_id=T-1&sale_amount=9.00")
    fire(visitor(middleware, world), world, "reference_id=T-2&sale_amount=10.00")
    rows = TestApp(middleware).get("/pixels/api/transactions.json", headers=auth).json
    flags = {row["reference_id"]: row["contested"] for row in rows}
    assert flags == {"T-1": True, "T-2": False}


def _cli(world: World, *args: str) -> str:
    return ok(cli_runner(f"sqlite:///{world.storage.path}")(*args))


# -- signed pixels, negative amounts, repeats ---------------------------------------------


def test_a_signed_pixel_url_without_reference_id_counts_once(
    middleware: PixelMiddleware, world: World
) -> None:
    url = middleware.pixel_urls.url(world.advertiser_id, sale_amount="500.00")
    shopper = TestApp(middleware)
    for _ in range(10):
        click(shopper, world.percent_link_id)
        shopper.get(url, status=200)
    assert len(list(world.storage.conversions())) == 1
    assert reasons(world.storage) == ["duplicate_signed_pixel"] * 9


def test_the_api_never_creates_a_conversion_with_a_negative_amount(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    response = app.post(
        API,
        {
            "reference_id": "neg-1",
            "sale_amount": "-100000000000.00",
            "advertiser_campaign_id": str(world.percent_campaign_id),
            "affiliate_id": str(world.publisher_id),
        },
        headers=auth,
        status="*",
    )
    assert (response.status_int, response.json["error"]["code"]) == (422, "invalid_sale_amount")
    assert list(world.storage.transactions()) == []
    assert reasons(world.storage) == ["invalid_sale_amount"]


def _create(world: World) -> dict[str, str]:
    return {
        "reference_id": "order-9",
        "sale_amount": "100.00",
        "advertiser_campaign_id": str(world.percent_campaign_id),
        "affiliate_id": str(world.publisher_id),
    }


def test_a_retried_create_after_a_reversal_changes_nothing(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    assert app.post(API, _create(world), headers=auth).status_int == 201
    app.post(API, {"reference_id": "order-9", "reversal_reason": "fraud"}, headers=auth)
    retried = app.post(API, _create(world), headers=auth)
    assert retried.json["result"] == "unchanged"
    assert conversion(world, "order-9").reversal_reason == "fraud"


def test_a_csv_sent_again_after_a_reversal_changes_nothing(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    body = (
        "reference_id,sale_amount,advertiser_campaign_id,affiliate_id\n"
        f"order-9,100.00,{world.percent_campaign_id},{world.publisher_id}\n"
    ).encode()
    assert app.post(CSV, body, headers=auth, content_type="text/csv").json["created"] == 1
    app.post(API, {"reference_id": "order-9", "reversal_reason": "fraud"}, headers=auth)
    again = app.post(CSV, body, headers=auth, content_type="text/csv").json
    assert (again["created"], again["corrected"], again["unchanged"]) == (0, 0, 1)
    assert conversion(world, "order-9").reversal_reason == "fraud"


# -- one Idempotency-Key, one request ----------------------------------------------------


def test_racing_requests_with_one_idempotency_key_apply_once(
    middleware: PixelMiddleware, auth: dict[str, str], world: World
) -> None:
    start = threading.Barrier(8)
    statuses: list[str] = []

    def send(number: int) -> None:
        form = {**_create(world), "reference_id": f"race-{number}"}
        start.wait()
        status, _, _ = call(
            middleware, API, method="POST", form=form, headers={**auth, "Idempotency-Key": "k"}
        )
        statuses.append(status[:3])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(world.storage.transactions())) == 1
    assert statuses.count("201") == 1
    assert set(statuses) <= {"201", "409", "422"}


# -- the host's decimal context ----------------------------------------------------------


def test_the_host_threads_decimal_context_does_not_change_money(
    app: TestApp, world: World, auth: dict[str, str]
) -> None:
    click(app, world.percent_link_id)
    with decimal.localcontext() as host:
        host.prec = 8
        host.rounding = decimal.ROUND_DOWN
        app.get(pixel_url(world.advertiser_id, "reference_id=big&sale_amount=123456789.99"))
        app.post(API, {**_create(world), "sale_amount": "98765432.15"}, headers=auth)
        rows = app.get("/pixels/api/transactions.json?reference_id=big", headers=auth).json
    assert conversion(world, "big").payout == Decimal("12345679.00")
    assert conversion(world, "order-9").payout == Decimal("9876543.22")
    assert rows[0]["sale_amount"] == "123456789.99"


# -- the attribution cookie ----------------------------------------------------------------


def test_a_duplicated_attribution_cookie_attributes_nothing(
    middleware: PixelMiddleware, world: World, rival_link_id: int
) -> None:
    tossed = middleware.cookies.sign(
        world.storage.record_visit(
            world.storage.link(rival_link_id),  # type: ignore[arg-type]
            ip_prefix=None,
            user_agent=None,
            created_at="2026-11-25T12:00:00Z",
        ),
        rival_link_id,
    )
    own = middleware.cookies.sign(
        world.storage.record_visit(
            world.storage.link(world.percent_link_id),  # type: ignore[arg-type]
            ip_prefix=None,
            user_agent=None,
            created_at="2026-11-25T12:00:00Z",
        ),
        world.percent_link_id,
    )
    name = f"pixel_wsgi_a{world.advertiser_id}"
    status, _, _ = call(
        middleware,
        pixel_url(world.advertiser_id, "reference_id=dup&sale_amount=10.00"),
        headers={"Cookie": f"{name}={tossed}; {name}={own}"},
    )
    assert status.startswith("200")
    assert list(world.storage.conversions()) == []
    assert reasons(world.storage) == ["duplicate_cookie"]


def test_on_https_the_cookie_is_host_prefixed_and_a_tossed_plain_one_is_ignored(
    middleware: PixelMiddleware, world: World, rival_link_id: int
) -> None:
    browser = TestApp(middleware, extra_environ={"wsgi.url_scheme": "https"})
    response = browser.get(f"/pixels/click/{world.percent_link_id}", status=302)
    set_cookie = response.headers["Set-Cookie"]
    assert set_cookie.startswith(f"__Host-pixel_wsgi_a{world.advertiser_id}=")
    assert "Secure" in set_cookie and "Path=/" in set_cookie and "Domain" not in set_cookie
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    tosser = TestApp(middleware)
    click(tosser, rival_link_id)
    [tossed] = [c.value for c in tosser.cookiejar]
    status, _, _ = call(
        middleware,
        pixel_url(world.advertiser_id, "reference_id=h-1&sale_amount=10.00"),
        headers={
            "Cookie": f"pixel_wsgi_a{world.advertiser_id}={tossed};"
            f" __Host-pixel_wsgi_a{world.advertiser_id}={value}"
        },
        environ={"wsgi.url_scheme": "https"},
    )
    assert status.startswith("200")
    assert conversion(world, "h-1").publisher_id == world.publisher_id


def _pending_claim(world: World, request_hash: str, age: timedelta) -> None:
    created = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc) - age
    world.storage.save_idempotency_record(
        IdempotencyRecord(world.advertiser_id, "k", request_hash, 0, "pending:x", iso_utc(created)),
        expired_before="2000-01-01T00:00:00Z",
    )


def test_a_request_holding_the_key_too_long_makes_a_retry_come_back(
    app: TestApp, auth: dict[str, str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An identical request waits for the one holding the key, up to CLAIM_WAIT.
    monkeypatch.setattr("pixel_wsgi.endpoints.api.conversions.CLAIM_WAIT", 0.1)
    body = urlencode(_create(world)).encode()
    digest = hashlib.sha256(
        b"\0".join([API.encode(), b"application/x-www-form-urlencoded", body])
    ).hexdigest()
    _pending_claim(world, digest, timedelta(seconds=5))
    response = app.post(
        API,
        body,
        headers={**auth, "Idempotency-Key": "k"},
        content_type="application/x-www-form-urlencoded",
        status=409,
    )
    assert response.json["error"]["code"] == "idempotency_key_in_progress"
    assert response.headers["Retry-After"] == "1"
    assert list(world.storage.transactions()) == []


def test_a_key_left_pending_by_a_request_that_died_is_taken_over(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    _pending_claim(world, "another-request", timedelta(minutes=5))
    response = app.post(API, _create(world), headers={**auth, "Idempotency-Key": "k"})
    assert response.status_int == 201
    again = app.post(API, _create(world), headers={**auth, "Idempotency-Key": "k"})
    assert (again.status_int, again.headers["Idempotent-Replayed"]) == (201, "true")


def test_a_signed_pixel_url_spooled_twice_counts_once_when_replayed(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    url = shop.app.pixel_urls.url(world.advertiser_id, sale_amount="500.00")  # type: ignore[attr-defined]
    with write_locked(world.storage.path):
        for _ in range(2):
            click(shop, world.percent_link_id)
            shop.get(url, status=200)
    assert list(world.storage.transactions()) == []
    summary = replay(Spool(spool_dir), world.storage)
    assert summary.stopped is None
    assert len(list(world.storage.conversions())) == 1
    assert reasons(world.storage) == ["duplicate_signed_pixel"]
