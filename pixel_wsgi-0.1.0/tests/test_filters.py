"""Fraud and noise filters: bots, cookie stuffing, cross-site pixels, too-fast
conversions and daily caps, through the real middleware (WebTest, lint on)."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from webtest import TestApp

import pixel_wsgi.endpoints.pixel
from pixel_wsgi import ConfigurationError, PixelMiddleware, SQLiteStorage
from pixel_wsgi.endpoints.filters import (
    DEFAULT_BOT_USER_AGENTS,
    MAX_MATCHED_USER_AGENT,
    Filters,
    UserAgentFilter,
    utc_day_start,
)

from .conftest import (
    SECRET,
    FakeClock,
    World,
    clicked_store,
    host_app,
    pixel_status,
    pixel_url,
    race_in_processes,
    reasons,
)
from .storage_contract import draft
from .wsgi_calls import call

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36"
)


def visits(world: World) -> int:
    conn = world.storage._connection()
    count: int = conn.execute("SELECT COUNT(*) FROM visits").fetchone()[0]
    return count


def click(app: TestApp, link_id: int) -> None:
    assert app.get(f"/pixels/click/{link_id}").status_int == 302


# -- clicks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({"User-Agent": CHROME}, None, id="browser"),
        pytest.param({}, None, id="no-user-agent"),
        pytest.param({"User-Agent": "curl/8.5.0"}, None, id="curl-is-not-a-bot"),
        pytest.param(
            {"User-Agent": CHROME.replace("Chrome/", "HeadlessChrome/")},
            None,
            id="headless-chrome-is-not-a-bot",
        ),
        pytest.param(
            {"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"},
            "bot",
            id="slackbot",
        ),
        pytest.param(
            {
                "User-Agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
            },
            "bot",
            id="facebook",
        ),
        pytest.param({"User-Agent": "Twitterbot/1.0"}, "bot", id="twitter"),
        pytest.param(
            {
                "User-Agent": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"
            },
            "bot",
            id="linkedin",
        ),
        pytest.param(
            {
                "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
            },
            "bot",
            id="googlebot",
        ),
        pytest.param(
            {"User-Agent": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0; Pro)"},
            "bot",
            id="office-link-scanner",
        ),
        pytest.param({"User-Agent": "Proofpoint URL Defense"}, "bot", id="proofpoint"),
        pytest.param({"Sec-Fetch-Dest": "document"}, None, id="navigation"),
        pytest.param({"Sec-Fetch-Dest": "image"}, "cookie_stuffing", id="img"),
        pytest.param({"Sec-Fetch-Dest": "iframe"}, "cookie_stuffing", id="iframe"),
        pytest.param({"Sec-Fetch-Dest": "frame"}, "cookie_stuffing", id="frame"),
        pytest.param({"Sec-Fetch-Dest": "embed"}, "cookie_stuffing", id="embed"),
        pytest.param({"Sec-Fetch-Dest": "object"}, "cookie_stuffing", id="object"),
        pytest.param({"Sec-Fetch-Dest": "script"}, "cookie_stuffing", id="script"),
        pytest.param({"Sec-Fetch-Dest": "style"}, "cookie_stuffing", id="style"),
        pytest.param({"Sec-Fetch-Dest": "empty"}, "cookie_stuffing", id="fetch"),
        pytest.param({"Sec-Fetch-Dest": "IMAGE"}, "cookie_stuffing", id="upper-case"),
        pytest.param(
            {"User-Agent": "Twitterbot/1.0", "Sec-Fetch-Dest": "image"}, "bot", id="bot-first"
        ),
    ],
)
def test_clicks(app: TestApp, world: World, headers: dict[str, str], reason: str | None) -> None:
    response = app.get(f"/pixels/click/{world.percent_link_id}", headers=headers)
    # Everyone gets the same redirect: previews work, a fraudster learns nothing.
    assert response.status_int == 302
    assert response.headers["Location"].endswith("/landing?from=blog")
    assert response.headers["Cache-Control"] == "no-store, private"
    if reason is None:
        assert "Set-Cookie" in response.headers
        assert visits(world) == 1
        assert reasons(world.storage) == []
    else:
        assert "Set-Cookie" not in response.headers
        assert visits(world) == 0
        [rejection] = world.storage.rejections()
        assert (rejection.reason, rejection.source) == (reason, "click")
        assert rejection.advertiser_id == world.advertiser_id
        assert rejection.detail.startswith(f"link {world.percent_link_id}: ")


def test_a_bot_rejection_says_what_matched(app: TestApp, world: World) -> None:
    app.get(
        f"/pixels/click/{world.percent_link_id}",
        headers={"User-Agent": "Mozilla/5.0 (compatible; bingbot/2.0)"},
    )
    [rejection] = world.storage.rejections()
    assert rejection.detail == (
        f"link {world.percent_link_id}: user agent matches 'bingbot':"
        " 'Mozilla/5.0 (compatible; bingbot/2.0)'"
    )


def test_a_cookie_stuffing_rejection_says_how_the_link_was_loaded(
    app: TestApp, world: World
) -> None:
    app.get(f"/pixels/click/{world.percent_link_id}", headers={"Sec-Fetch-Dest": "iframe"})
    [rejection] = world.storage.rejections()
    assert rejection.detail == (
        f"link {world.percent_link_id}: the link was loaded as Sec-Fetch-Dest 'iframe',"
        " not followed by a person"
    )


NAVIGATION = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate"}


@pytest.mark.parametrize(
    ("headers", "flagged"),
    [
        pytest.param({**NAVIGATION, "Sec-Fetch-Site": "cross-site"}, True, id="script-or-refresh"),
        pytest.param(
            {**NAVIGATION, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-User": "?1"},
            False,
            id="a-person-clicked",
        ),
        pytest.param({**NAVIGATION, "Sec-Fetch-Site": "same-origin"}, False, id="same-origin"),
        pytest.param({**NAVIGATION, "Sec-Fetch-Site": "same-site"}, False, id="same-site"),
        pytest.param({**NAVIGATION, "Sec-Fetch-Site": "none"}, False, id="typed-or-bookmark"),
        pytest.param({}, False, id="an-older-browser"),
    ],
)
def test_a_cross_site_navigation_without_user_activation_is_flagged(
    app: TestApp, world: World, headers: dict[str, str], flagged: bool
) -> None:
    response = app.get(f"/pixels/click/{world.percent_link_id}", headers=headers)
    # A flag, like too_fast: the click counts and sets its cookie.
    assert response.status_int == 302
    assert "Set-Cookie" in response.headers
    assert visits(world) == 1
    if not flagged:
        assert reasons(world.storage) == []
        return
    [flag] = world.storage.rejections()
    assert (flag.reason, flag.source, flag.visit_id) == ("no_user_activation", "click", 1)
    assert flag.detail.startswith(f"link {world.percent_link_id}: a cross-site navigation")
    assert flag.detail.endswith("; the click counts")


def test_navigation_stuffing_can_be_refused(world: World) -> None:
    app = TestApp(
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, refuse_without_user_activation=True
        )
    )
    stuffed = app.get(
        f"/pixels/click/{world.percent_link_id}",
        headers={**NAVIGATION, "Sec-Fetch-Site": "cross-site"},
    )
    # The same redirect as a real click, without the visit and the cookie.
    assert stuffed.status_int == 302
    assert stuffed.headers["Location"].endswith("/landing?from=blog")
    assert "Set-Cookie" not in stuffed.headers
    assert visits(world) == 0
    assert reasons(world.storage) == ["no_user_activation"]
    clicked = app.get(
        f"/pixels/click/{world.percent_link_id}",
        headers={**NAVIGATION, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-User": "?1"},
    )
    assert "Set-Cookie" in clicked.headers
    assert visits(world) == 1


def test_a_bot_looking_with_head_logs_nothing(app: TestApp, world: World) -> None:
    response = app.head(
        f"/pixels/click/{world.percent_link_id}", headers={"User-Agent": "Twitterbot/1.0"}
    )
    assert response.status_int == 302
    assert reasons(world.storage) == []


def test_a_bot_never_gets_the_cookie_that_would_attribute_a_conversion(
    app: TestApp, world: World
) -> None:
    bot = {"User-Agent": "Slackbot 1.0"}
    app.get(f"/pixels/click/{world.percent_link_id}", headers=bot)
    app.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    assert reasons(world.storage) == ["bot", "no_attribution"]


@pytest.mark.parametrize(
    ("bot_user_agents", "user_agent", "reason"),
    [
        pytest.param(["MyScanner"], "myscanner/2.0", "bot", id="own-list-matches"),
        pytest.param(["MyScanner"], "Twitterbot/1.0", None, id="own-list-replaces-defaults"),
        pytest.param(
            [*DEFAULT_BOT_USER_AGENTS, "HeadlessChrome"],
            CHROME.replace("Chrome/", "HeadlessChrome/"),
            "bot",
            id="defaults-plus-one",
        ),
        pytest.param((), "Twitterbot/1.0", None, id="off"),
    ],
)
def test_the_bot_list_is_configurable(
    world: World,
    clock: FakeClock,
    bot_user_agents: Iterable[str],
    user_agent: str,
    reason: str | None,
) -> None:
    app = TestApp(
        PixelMiddleware(
            host_app,
            world.storage,
            secret_key=SECRET,
            clock=clock,
            bot_user_agents=bot_user_agents,
        )
    )
    app.get(f"/pixels/click/{world.percent_link_id}", headers={"User-Agent": user_agent})
    assert reasons(world.storage) == ([] if reason is None else [reason])


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"bot_user_agents": "Slackbot"}, id="one-string"),
        pytest.param({"bot_user_agents": ["Slackbot", ""]}, id="blank-entry"),
        pytest.param({"bot_user_agents": [None]}, id="not-a-string"),
        pytest.param({"min_seconds_to_convert": -1}, id="negative-seconds"),
        pytest.param({"min_seconds_to_convert": float("nan")}, id="nan-seconds"),
        pytest.param({"min_seconds_to_convert": True}, id="bool-seconds"),
        pytest.param({"min_seconds_to_convert": "3"}, id="text-seconds"),
        pytest.param({"refuse_without_user_activation": "yes"}, id="text-activation"),
    ],
)
def test_bad_filter_options_fail_at_construction(world: World, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PixelMiddleware(host_app, world.storage, secret_key=SECRET, **options)


def test_user_agent_filter_remembers_a_bounded_number_of_answers() -> None:
    bots = UserAgentFilter(["bot"], cache_size=2)
    assert bots.match("A Bot") == "bot"
    assert bots.match("Browser") is None
    assert bots.match("Another") is None  # clears, then remembers
    assert len(bots._seen) == 1
    assert bots.substrings == ("bot",)
    assert UserAgentFilter([" Bot ", "bot"]).substrings == ("bot",)


def test_distinct_huge_user_agents_do_not_grow_the_filters_memory(
    middleware: PixelMiddleware, world: World
) -> None:
    # Issue 9: 1,500 pixel hits with distinct 100 KB user agents kept 140 MB.
    hits = 300
    agents = [f"{i:06d}" + "M" * 100_000 for i in range(hits)]
    call(middleware, pixel_url(world.advertiser_id), headers={"User-Agent": "warm-up"})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for agent in agents:
            call(middleware, pixel_url(world.advertiser_id), headers={"User-Agent": agent})
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Unbounded, the memory would hold all 30 MB; bounded, ~300 x 512 characters.
    assert grown < 2_000_000, grown
    assert len(reasons(world.storage)) == hits + 1  # every hit still recorded


def test_a_bot_is_recognised_by_the_start_of_its_user_agent() -> None:
    bots = UserAgentFilter(["bot"])
    assert bots.match("Bot/1.0 " + "x" * 100_000) == "bot"
    assert bots.match("x" * MAX_MATCHED_USER_AGENT + " Bot/1.0") is None
    assert all(len(key) <= MAX_MATCHED_USER_AGENT for key in bots._seen)


# -- pixels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({"User-Agent": CHROME}, None, id="browser"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, None, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, None, id="same-site-subdomain"),
        pytest.param({"Sec-Fetch-Site": "none"}, None, id="none"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, "cross_site_pixel", id="cross-site"),
        pytest.param({"User-Agent": "Googlebot/2.1"}, "bot", id="bot"),
        pytest.param(
            {"User-Agent": "Googlebot/2.1", "Sec-Fetch-Site": "cross-site"}, "bot", id="bot-first"
        ),
    ],
)
def test_pixels(app: TestApp, world: World, headers: dict[str, str], reason: str | None) -> None:
    click(app, world.percent_link_id)
    response = app.get(
        pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1&email_address=a@b.example"),
        headers=headers,
    )
    assert (response.status, response.content_type) == ("200 OK", "image/gif")
    if reason is None:
        assert len(list(world.storage.transactions())) == 1
        assert reasons(world.storage) == []
    else:
        assert list(world.storage.transactions()) == []
        [rejection] = world.storage.rejections()
        assert (rejection.reason, rejection.source) == (reason, "pixel")
        assert rejection.params == ("sale_amount=10&reference_id=r1&email_address=[redacted]")


@pytest.mark.parametrize(
    ("query", "reference_id"),
    [
        pytest.param("reference_id=A-1001", "A-1001", id="reference"),
        pytest.param("reference_id=A-1001&parent_reference_id=A-1000", "A-1000", id="parent-first"),
        pytest.param("reference_id=a&reference_id=b", None, id="twice"),
        pytest.param("reference_id=%0A", None, id="control-character"),
        pytest.param("reference_id=" + "x" * 129, None, id="too-long"),
        pytest.param("sale_amount=1", None, id="none"),
    ],
)
def test_a_filtered_pixel_names_its_conversion_when_it_can(
    app: TestApp, world: World, query: str, reference_id: str | None
) -> None:
    app.get(pixel_url(world.advertiser_id, query), headers={"Sec-Fetch-Site": "cross-site"})
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("cross_site_pixel", reference_id)


def test_a_filtered_pixel_with_an_unparsable_query_keeps_only_its_size(
    app: TestApp, world: World
) -> None:
    app.get(
        pixel_url(world.advertiser_id, "sale_amount=%FF"),
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.params) == (
        "cross_site_pixel",
        "[unparsed query of 15 characters]",
    )


def test_the_legacy_pixel_is_filtered_too(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(
        f"/tracked_actions/web_sale/{world.advertiser_id}?amount=10",
        headers={"User-Agent": "Slackbot 1.0"},
    )
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.source) == ("bot", "legacy_pixel")


# -- too-fast conversions ----------------------------------------------------------------


@pytest.fixture
def flagging(world: World, clock: FakeClock) -> TestApp:
    return TestApp(
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, clock=clock, min_seconds_to_convert=3
        )
    )


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The pixel's view of time (the clock cookies are signed with) moves on."""
    real = time.time
    monkeypatch.setattr(
        pixel_wsgi.endpoints.pixel, "time", SimpleNamespace(time=lambda: real() + seconds)
    )


def test_a_too_fast_conversion_counts_and_is_flagged(flagging: TestApp, world: World) -> None:
    click(flagging, world.percent_link_id)
    flagging.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))
    [conversion] = world.storage.conversions()
    [flag] = world.storage.rejections()
    assert flag.reason == "too_fast"
    assert (flag.visit_id, flag.reference_id) == (conversion.visit_id, "r1")
    assert flag.detail.endswith(" s after the click (minimum 3 s); the conversion counts")
    assert flag.params == "sale_amount=10&reference_id=r1"


def test_a_conversion_after_the_minimum_is_not_flagged(
    flagging: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    click(flagging, world.percent_link_id)
    later(monkeypatch, 5)
    flagging.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    assert len(list(world.storage.conversions())) == 1
    assert reasons(world.storage) == []


def test_only_new_recorded_conversions_are_flagged(flagging: TestApp, world: World) -> None:
    click(flagging, world.percent_link_id)
    flagging.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))
    flagging.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r1"))  # reload
    flagging.get(pixel_url(world.advertiser_id, "sale_amount=20&parent_reference_id=r1"))
    assert reasons(world.storage) == ["too_fast", "duplicate_reference_id"]
    assert len(list(world.storage.transactions())) == 2  # the correction is in, unflagged


def test_flagging_is_off_by_default(app: TestApp, world: World) -> None:
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    assert reasons(world.storage) == []


def test_the_click_time_is_the_cookies_own_timestamp(middleware: PixelMiddleware) -> None:
    before = int(time.time())
    value = middleware.cookies.sign(1, 1)
    claim, clicked_at = middleware.cookies.verify_timed(value)
    assert claim == middleware.cookies.verify(value) == (1, 1)
    assert before <= clicked_at <= time.time()
    assert Filters(min_seconds_to_convert=3).too_fast(clicked_at, clicked_at + 3) is None
    assert Filters(min_seconds_to_convert=3).too_fast(clicked_at, clicked_at + 2.5) == (
        "converted 2.5 s after the click (minimum 3 s); the conversion counts"
    )


# -- daily caps --------------------------------------------------------------------------


def test_utc_day_start() -> None:
    moment = datetime(2026, 11, 25, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert utc_day_start(moment) == datetime(2026, 11, 26, tzinfo=timezone.utc)


def capped(world: World, cap: int | None, campaign_id: int | None = None) -> None:
    world.storage.set_campaign_daily_cap(campaign_id or world.percent_campaign_id, cap)


def test_a_daily_cap_counts_per_utc_day(app: TestApp, world: World, clock: FakeClock) -> None:
    capped(world, 2)
    click(app, world.percent_link_id)
    for n in range(3):
        app.get(pixel_url(world.advertiser_id, f"sale_amount=10&reference_id=r{n}"))
    assert [c.reference_id for c in world.storage.conversions()] == ["r0", "r1"]
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == ("daily_cap_reached", "r2")
    assert rejection.detail == (
        f"campaign {world.percent_campaign_id} reached its cap of 2 conversions for this UTC day"
    )
    assert rejection.params == "sale_amount=10&reference_id=r2"
    clock.now = datetime(2026, 11, 26, 0, 0, tzinfo=timezone.utc)  # a new UTC day
    app.get(pixel_url(world.advertiser_id, "sale_amount=10&reference_id=r2"))
    assert [c.reference_id for c in world.storage.conversions()] == ["r0", "r1", "r2"]


def test_the_cap_counts_conversions_from_every_source(app: TestApp, world: World) -> None:
    capped(world, 1)
    with world.storage.writer() as writer:
        writer.insert_transaction(
            draft(
                world.advertiser_id,
                world.percent_campaign_id,
                world.publisher_id,
                None,
                reference_id="from-the-api",
                created_at="2026-11-25T08:00:00.000000Z",
            )
        )
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    assert reasons(world.storage) == ["daily_cap_reached"]


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        pytest.param(
            "reference_id=r1", "reference_id=r1", "duplicate_reference_id", id="repeat-is-duplicate"
        ),
        pytest.param(
            "sale_amount=10", "sale_amount=10", "duplicate_reload", id="reload-is-duplicate"
        ),
        pytest.param("sale_amount=10", "sale_amount=11", "daily_cap_reached", id="no-reference"),
        pytest.param(
            "sale_amount=10&reference_id=r1",
            "sale_amount=20&parent_reference_id=r1",
            None,
            id="correction-is-not-capped",
        ),
    ],
)
def test_what_the_cap_counts(
    app: TestApp, world: World, first: str, second: str, outcome: str | None
) -> None:
    capped(world, 1)
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, first))
    app.get(pixel_url(world.advertiser_id, second))
    assert reasons(world.storage) == ([] if outcome is None else [outcome])
    assert len(list(world.storage.conversions())) == 1


def test_a_zero_cap_pauses_a_campaign_and_others_are_not_capped(app: TestApp, world: World) -> None:
    capped(world, 0)
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    click(app, world.fixed_link_id)
    app.get(pixel_url(world.advertiser_id, "reference_id=r2"))
    assert reasons(world.storage) == ["daily_cap_reached"]
    assert [c.campaign_id for c in world.storage.conversions()] == [world.fixed_campaign_id]


def test_removing_a_cap_takes_effect_on_the_serialised_path(app: TestApp, world: World) -> None:
    capped(world, 1)
    click(app, world.percent_link_id)
    app.get(pixel_url(world.advertiser_id, "reference_id=r1"))
    capped(world, None)  # this process still has the cap cached: the write reads it afresh
    app.get(pixel_url(world.advertiser_id, "reference_id=r2"))
    assert len(list(world.storage.conversions())) == 2


# -- daily caps are exact under concurrency ---------------------------------------------


CAP = 5


def _fire(middleware: PixelMiddleware, advertiser_id: int, cookie: str, reference: str) -> str:
    return pixel_status(
        middleware, advertiser_id, f"sale_amount=10&reference_id={reference}", cookie
    )


def _assert_exactly_capped(path: Path, hits: int) -> None:
    storage = SQLiteStorage(path)
    try:
        assert len(list(storage.transactions())) == CAP
        rejected = [r.reason for r in storage.rejections()]
        assert rejected == ["daily_cap_reached"] * (hits - CAP)
    finally:
        storage.close()


def test_threads_racing_a_capped_campaign_stop_exactly_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "cap.db"
    advertiser_id, cookie = clicked_store(path, daily_cap=CAP)
    storage = SQLiteStorage(path)
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, clock=FakeClock())
    barrier = threading.Barrier(8)
    statuses: list[str] = []

    def hits(thread: int) -> None:
        barrier.wait()
        for n in range(3):
            statuses.append(_fire(middleware, advertiser_id, cookie, f"t{thread}-{n}"))
        storage.close()

    threads = [threading.Thread(target=hits, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["200 OK"] * 24
    _assert_exactly_capped(path, 24)


def _process_hits(start: Any, path: str, advertiser_id: int, cookie: str, worker: int) -> None:
    middleware = PixelMiddleware(
        host_app, SQLiteStorage(path), secret_key=SECRET, clock=FakeClock()
    )
    start.wait()
    for n in range(5):
        _fire(middleware, advertiser_id, cookie, f"p{worker}-{n}")


def test_processes_racing_a_capped_campaign_stop_exactly_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "cap.db"
    advertiser_id, cookie = clicked_store(path, daily_cap=CAP)
    calls = [(str(path), advertiser_id, cookie, n) for n in range(4)]
    assert race_in_processes(_process_hits, calls) == [0, 0, 0, 0]
    _assert_exactly_capped(path, 20)
