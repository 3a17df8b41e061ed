"""Capture for delivery, end to end: what a tracking link's query and a conversion's
request leave with the ledger, through the store and through the outage spool."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.models import ClickContext, ConversionContext, DeliveryContext
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .conftest import SECRET, FakeClock, World, host_app, pixel_url
from .spool_helpers import locked_shop, quarantine_reasons, rewrite_spool, write_locked

# The FakeClock's time, 2026-11-25 12:00 UTC, in Unix milliseconds.
CLICKED_AT_MS = 1_795_608_000_000
GCLID = "Cj0KCQiA-ZWvBhD_ARIsAKbmM4yR2dUk3n7fQlFvU0Ja5vS-xY4RkzL9_wcB"
TRACKERS = "_fbp=fb.1.1764071000000.1122334455; _ga=GA1.2.1234567890.1764071000"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
THANKS = "https://shop.example/checkout/thanks?order=o-1&email=a%40b.example"
KEPT = ConversionContext(
    fbp="fb.1.1764071000000.1122334455",
    ga_client_id="1234567890.1764071000",
    user_agent=BROWSER,
    ip_prefix="203.0.113.0",
    page_url="https://shop.example/checkout/thanks",
)


def click(app: TestApp, world: World, query: str = "") -> str:
    """Follow the percent link with ``query``; the attribution cookie it set."""
    url = f"/pixels/click/{world.percent_link_id}" + (f"?{query}" if query else "")
    response = app.get(url, extra_environ={"REMOTE_ADDR": "198.51.100.9"})
    assert response.status_int == 302
    return "; ".join(f"{c.name}={c.value}" for c in app.cookiejar)


def fire(app: TestApp, world: World, query: str, cookie: str, *, path: str | None = None) -> None:
    """The conversion pixel, from the thank-you page of a browser carrying ``cookie``."""
    app.get(
        path or pixel_url(world.advertiser_id, query),
        headers={"Cookie": cookie, "User-Agent": BROWSER, "Referer": THANKS},
        extra_environ={"REMOTE_ADDR": "203.0.113.77"},
    )


def click_data(world: World) -> list[Any]:
    conn = sqlite3.connect(world.storage.path)
    try:
        return [row[0] for row in conn.execute("SELECT click_data FROM visits ORDER BY id")]
    finally:
        conn.close()


def stored_contexts(world: World) -> list[Any]:
    conn = sqlite3.connect(world.storage.path)
    try:
        return [row[0] for row in conn.execute("SELECT delivery_context FROM transactions")]
    finally:
        conn.close()


def contexts(world: World) -> dict[int, DeliveryContext]:
    ids = [row.transaction_id for row in world.storage.transactions()]
    return world.storage.delivery_contexts(ids)


# -- the click ---------------------------------------------------------------------


def test_a_click_keeps_the_sub_ids_and_click_ids_of_its_link(app: TestApp, world: World) -> None:
    cookie = click(
        app,
        world,
        f"aff_sub=Blog%20Post&sub2=Top%2010&aff_sub2=ignored&gclid={GCLID}"
        "&fbclid=IwAR0xYz-AbC&utm_source=news&sub3=x%00y",
    )
    expected = ClickContext(
        sub_ids={"sub1": "Blog Post", "sub2": "Top 10"},
        click_ids={"gclid": GCLID, "fbclid": "IwAR0xYz-AbC"},
        clicked_at_ms=CLICKED_AT_MS,
    )
    assert click_data(world) == [
        '{"sub_ids":{"sub1":"Blog Post","sub2":"Top 10"},"click_ids":{"gclid":"'
        + GCLID
        + '","fbclid":"IwAR0xYz-AbC"},"clicked_at_ms":1795608000000}'
    ]
    fire(app, world, "sale_amount=10&reference_id=o-1", cookie)
    [context] = contexts(world).values()
    assert context == DeliveryContext(
        click=expected, conversion=None, personal={}, original_click=expected
    )


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("", id="no-query"),
        pytest.param("utm_source=news&ref=x", id="nothing-for-delivery"),
        pytest.param(f"gclid={'x' * 513}&sub1=%ff", id="only-junk"),
    ],
)
def test_a_click_without_sub_ids_or_click_ids_keeps_nothing(
    app: TestApp, world: World, query: str
) -> None:
    click(app, world, query)
    assert click_data(world) == [None]


def test_a_bot_click_keeps_nothing(app: TestApp, world: World) -> None:
    app.get(
        f"/pixels/click/{world.percent_link_id}?gclid=abc",
        headers={"User-Agent": "Slackbot-LinkExpanding 1.0"},
    )
    assert click_data(world) == []


# -- the conversion ------------------------------------------------------------------


def test_without_the_advertisers_consent_a_conversion_keeps_no_context(
    app: TestApp, world: World
) -> None:
    cookie = click(app, world, "gclid=abc")
    fire(app, world, "sale_amount=10&reference_id=o-1", f"{cookie}; {TRACKERS}")
    fire(app, world, "sale_amount=12", f"{cookie}; {TRACKERS}")  # the serialised path
    assert stored_contexts(world) == [None, None]
    assert {c.conversion for c in contexts(world).values()} == {None}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("sale_amount=10&reference_id=o-1", id="with-reference"),
        pytest.param("sale_amount=10", id="without-reference"),
    ],
)
def test_an_advertiser_that_keeps_contexts_gets_the_requests(
    app: TestApp, world: World, query: str
) -> None:
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, True)
    cookie = click(app, world, "sub1=a")
    fire(app, world, query, f"{cookie}; session=s; {TRACKERS}")
    [context] = contexts(world).values()
    assert context.conversion == KEPT
    assert context.click is not None and context.click.sub_ids == {"sub1": "a"}
    [stored] = stored_contexts(world)
    assert json.loads(stored) == {
        "fbp": KEPT.fbp,
        "ga_client_id": KEPT.ga_client_id,
        "user_agent": BROWSER,
        "ip_prefix": "203.0.113.0",
        "page_url": KEPT.page_url,
    }
    assert "203.0.113.77" not in stored and "email" not in stored


def test_the_legacy_pixel_keeps_one_too(app: TestApp, world: World) -> None:
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, True)
    cookie = click(app, world)
    legacy = f"/tracked_actions/web_sale/{world.advertiser_id}?amount=5"
    fire(app, world, "", f"{cookie}; {TRACKERS}", path=legacy)
    [context] = contexts(world).values()
    assert context.conversion == KEPT


@pytest.mark.parametrize(
    ("trackers", "fbp", "client_id"),
    [
        pytest.param(f"{TRACKERS}; _ga=GA1.2.9.9", KEPT.fbp, None, id="two-ga-cookies"),
        pytest.param(f"_fbp=fb.1.1.2; {TRACKERS}", None, KEPT.ga_client_id, id="two-fbp"),
        pytest.param("_ga=GA1.2.oops; _fbp=nope", None, None, id="malformed"),
        pytest.param("", None, None, id="none"),
    ],
)
def test_tracker_cookies_that_cannot_be_trusted_are_left_out(
    app: TestApp, world: World, trackers: str, fbp: str | None, client_id: str | None
) -> None:
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, True)
    cookie = click(app, world)
    fire(app, world, "sale_amount=1&reference_id=o-1", f"{cookie}; {trackers}")
    [context] = contexts(world).values()
    assert context.conversion is not None
    assert (context.conversion.fbp, context.conversion.ga_client_id) == (fbp, client_id)
    assert context.conversion.user_agent == BROWSER  # the rest is kept


def test_corrections_and_reversals_share_the_conversions_context(
    app: TestApp, world: World, auth: dict[str, str]
) -> None:
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, True)
    cookie = click(app, world, "sub1=a&gclid=g")
    fire(
        app,
        world,
        "sale_amount=10&reference_id=o-1&email_address=a@b.example",
        f"{cookie}; {TRACKERS}",
    )
    # An update from the same browser, then the advertiser's server corrects and voids it.
    fire(app, world, "sale_amount=8&parent_reference_id=o-1", f"{cookie}; _ga=GA1.2.5.5")
    api = "/pixels/api/conversions"
    app.post(api, {"reference_id": "o-1", "sale_amount": "7.00"}, headers=auth)
    app.post(api, {"reference_id": "o-1", "reversal_reason": "refund"}, headers=auth)
    rows = list(world.storage.transactions())
    assert [row.transaction_type.value for row in rows] == [
        "conversion",
        "correction",
        "correction",
        "reversal",
    ]
    found = contexts(world)
    first = found[rows[0].transaction_id]
    assert first.conversion == KEPT and first.personal == {"email_address": "a@b.example"}
    assert first.click is not None and first.click.click_ids == {"gclid": "g"}
    assert all(found[row.transaction_id] == first for row in rows)
    # Each is the original's, never a copy.
    assert stored_contexts(world)[1:] == [None, None, None]
    assert (
        world.storage.forget_conversion_contexts(world.advertiser_id, rows[0].transaction_id) == 1
    )
    assert {c.conversion for c in contexts(world).values()} == {None}


def test_the_choice_reaches_running_processes_within_the_catalogs_ttl(
    world: World, clock: FakeClock
) -> None:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET, clock=clock)
    app = TestApp(middleware)
    cookie = click(app, world)
    fire(app, world, "sale_amount=1&reference_id=before", f"{cookie}; {TRACKERS}")
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, True)
    for cache in (middleware.ledger.catalog._advertisers, middleware.ledger.catalog._attributions):
        cache.clear()  # what ttl seconds do
    fire(app, world, "sale_amount=1&reference_id=after", f"{cookie}; {TRACKERS}")
    assert [c is None for c in stored_contexts(world)] == [True, False]


# -- through the outage spool ----------------------------------------------------------


def spooled_world(world: World, clock: FakeClock, spool_dir: Path, keep: bool) -> TestApp:
    """A click with sub ids and a conversion, both spooled (the store is locked)."""
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, keep)
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        cookie = click(shop, world, f"aff_sub=pub-7&gclid={GCLID}")
        fire(
            shop,
            world,
            "sale_amount=10&reference_id=o-1&email_address=a@b.example",
            f"{cookie}; {TRACKERS}",
        )
    assert list(world.storage.transactions()) == []
    return shop


def spooled_text(spool_dir: Path) -> str:
    return "".join(path.read_text() for path in spool_dir.glob("*.spool"))


def test_a_spooled_click_and_conversion_keep_their_contexts_through_replay(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_world(world, clock, spool_dir, keep=True)
    text = spooled_text(spool_dir)
    assert GCLID in text  # a click's data is as the visit's: in clear
    assert BROWSER not in text and "1234567890.1764071000" not in text  # sealed
    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined) == (2, 0)
    [context] = contexts(world).values()
    clicked = ClickContext(
        sub_ids={"sub1": "pub-7"}, click_ids={"gclid": GCLID}, clicked_at_ms=CLICKED_AT_MS
    )
    assert context == DeliveryContext(
        click=clicked,
        conversion=KEPT,
        personal={"email_address": "a@b.example"},
        original_click=clicked,
    )


def test_an_advertiser_known_to_keep_none_spools_none(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_world(world, clock, spool_dir, keep=False)
    assert "conversion_context" not in spooled_text(spool_dir)
    replay(Spool(spool_dir), world.storage)
    [context] = contexts(world).values()
    assert context.conversion is None and context.click is not None


def test_the_replay_keeps_a_spooled_context_only_if_the_advertiser_still_wants_it(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_world(world, clock, spool_dir, keep=True)
    world.storage.set_advertiser_keeps_conversion_context(world.advertiser_id, False)
    replay(Spool(spool_dir), world.storage)
    [context] = contexts(world).values()
    assert context.conversion is None


def test_erasing_a_spooled_conversion_erases_its_context(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_world(world, clock, spool_dir, keep=True)
    assert Spool(spool_dir).erase(world.advertiser_id, "o-1")
    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined) == (2, 0)
    [context] = contexts(world).values()
    assert (context.conversion, context.personal) == (None, {})


def test_a_conversion_before_the_replay_then_the_click_replayed(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        cookie = click(shop, world, "sub2=late")
    # The store is back before the replay: the cookie alone credits the visit.
    fire(shop, world, "sale_amount=3&reference_id=early", cookie)
    [context] = contexts(world).values()
    assert context.click is None
    replay(Spool(spool_dir), world.storage)
    [context] = contexts(world).values()
    assert context.click is not None and context.click.sub_ids == {"sub2": "late"}


def _forge_click(change: dict[str, Any]) -> Any:
    def apply(event: dict[str, Any]) -> None:
        if event["kind"] == "visit":
            event["click"].update(change)

    return apply


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"click_ids": {"gclid": "a\nb"}}, "would not have kept", id="control"),
        pytest.param({"click_ids": {"dclid": "x"}}, "unknown name", id="unknown-id"),
        pytest.param({"clicked_at_ms": "soon"}, "must be an integer", id="time"),
        pytest.param({"extra": 1}, "sub_ids, click_ids and clicked_at_ms", id="member"),
    ],
)
def test_a_forged_click_context_is_quarantined(
    world: World, clock: FakeClock, tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_world(world, clock, spool_dir, keep=False)
    rewrite_spool(spool_dir, _forge_click(change))
    summary = replay(Spool(spool_dir), world.storage)
    # The click is refused; its conversion still counts (its cookie stores the visit).
    assert (summary.applied, summary.quarantined, summary.stopped) == (1, 1, None)
    [quarantined] = quarantine_reasons(spool_dir)
    assert reason in quarantined
    [context] = contexts(world).values()
    assert context.click is None


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        pytest.param({"ip_prefix": "203.0.113.77"}, "could not have given", id="full-ip"),
        pytest.param({"page_url": "https://x/?email=a"}, "could not have given", id="query"),
        pytest.param({"referer": "x"}, "unknown member", id="member"),
        pytest.param(["x"], "must be an object", id="not-an-object"),
    ],
)
def test_a_forged_conversion_context_is_quarantined(
    world: World, clock: FakeClock, tmp_path: Path, context: Any, reason: str
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):  # no personal data, no context: nothing sealed
        cookie = click(shop, world)
        fire(shop, world, "sale_amount=10&reference_id=o-1", cookie)

    def forge(event: dict[str, Any]) -> None:
        if event["kind"] == "web_conversion":
            event["conversion_context"] = context

    rewrite_spool(spool_dir, forge)
    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined, summary.stopped) == (1, 1, None)
    [quarantined] = quarantine_reasons(spool_dir)
    assert reason in quarantined
    assert list(world.storage.transactions()) == []
