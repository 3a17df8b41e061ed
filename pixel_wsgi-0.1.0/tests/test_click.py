"""Tracking links: visit, signed cookie, 302 to the stored destination."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from webtest import TestApp
from werkzeug.http import parse_cookie

from pixel_wsgi import ConfigurationError, PixelMiddleware

from .conftest import SECRET, World, host_app, reasons


def visits(world: World) -> list[tuple[object, ...]]:
    conn = world.storage._connection()
    return conn.execute("SELECT link_id, ip_prefix, user_agent FROM visits ORDER BY id").fetchall()


def parsed_cookie(header: str) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    return cookie


def test_click_redirects_with_a_signed_cookie(app: TestApp, world: World) -> None:
    response = app.get(
        f"/pixels/click/{world.percent_link_id}",
        extra_environ={"REMOTE_ADDR": "203.0.113.77"},
        headers={"User-Agent": "Browser/1.0"},
    )
    assert response.status_int == 302
    assert response.headers["Location"].endswith("/landing?from=blog")
    assert response.headers["Cache-Control"] == "no-store, private"
    set_cookie = response.headers["Set-Cookie"]
    morsel = parsed_cookie(set_cookie)[f"pixel_wsgi_a{world.advertiser_id}"]
    assert morsel["max-age"] == str(30 * 24 * 3600)
    assert morsel["path"] == "/"
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]
    assert not morsel["domain"]  # host-only
    assert visits(world) == [(world.percent_link_id, "203.0.113.0", "Browser/1.0")]


def test_https_click_sets_a_secure_cookie(app: TestApp, world: World) -> None:
    response = app.get(
        f"/pixels/click/{world.percent_link_id}", extra_environ={"wsgi.url_scheme": "https"}
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_ipv6_is_truncated(app: TestApp, world: World) -> None:
    app.get(
        f"/pixels/click/{world.percent_link_id}",
        extra_environ={"REMOTE_ADDR": "2001:db8:1234:5678::1"},
    )
    assert visits(world)[0][1] == "2001:db8:1234::"


def test_attribution_window_sets_max_age(world: World) -> None:
    app = TestApp(
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, attribution_window=timedelta(days=7)
        )
    )
    response = app.get(f"/pixels/click/{world.percent_link_id}")
    assert f"Max-Age={7 * 24 * 3600}" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/pixels/click/999", id="unknown"),
        pytest.param("/pixels/click/abc", id="not-a-number"),
        pytest.param("/pixels/click/0", id="zero"),
        pytest.param("/pixels/click/-1", id="negative"),
        pytest.param("/pixels/click/" + "9" * 40, id="huge"),
    ],
)
def test_unknown_link_is_404_without_cookie(app: TestApp, world: World, path: str) -> None:
    response = app.get(path, expect_errors=True)
    assert response.status_int == 404
    assert "Set-Cookie" not in response.headers
    assert visits(world) == []
    assert reasons(world.storage) == ["unknown_link"]


def test_query_cannot_choose_the_destination(app: TestApp, world: World) -> None:
    response = app.get(
        f"/pixels/click/{world.percent_link_id}?to=https://evil.example/&url=//evil.example"
    )
    assert response.headers["Location"].endswith("/landing?from=blog")


def test_absolute_destination_on_another_host_needs_allowing(world: World) -> None:
    link = world.storage.add_link(
        world.percent_campaign_id, world.publisher_id, "https://shop.example/landing"
    )
    strict = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET))
    refused = strict.get(f"/pixels/click/{link.id}", expect_errors=True)
    assert refused.status_int == 404
    assert "Set-Cookie" not in refused.headers
    assert reasons(world.storage) == ["link_destination_not_allowed"]

    allowed = TestApp(
        PixelMiddleware(
            host_app,
            world.storage,
            secret_key=SECRET,
            allowed_redirect_hosts=["shop.example"],
        )
    )
    response = allowed.get(f"/pixels/click/{link.id}")
    assert response.status_int == 302
    assert response.headers["Location"] == "https://shop.example/landing"


def test_absolute_destination_on_the_own_host_is_fine(app: TestApp, world: World) -> None:
    link = world.storage.add_link(
        world.percent_campaign_id, world.publisher_id, "http://localhost/landing"
    )
    response = app.get(f"/pixels/click/{link.id}")
    assert response.status_int == 302
    assert response.headers["Location"] == "http://localhost/landing"


def test_head_records_nothing_and_sets_no_cookie(app: TestApp, world: World) -> None:
    response = app.head(f"/pixels/click/{world.percent_link_id}")
    assert response.status_int == 302
    assert "Set-Cookie" not in response.headers
    assert visits(world) == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Purpose": "prefetch"}, id="sec-purpose"),
        pytest.param({"Purpose": "prefetch"}, id="purpose"),
        pytest.param({"X-Moz": "prefetch"}, id="x-moz"),
    ],
)
def test_prefetch_records_nothing(app: TestApp, world: World, headers: dict[str, str]) -> None:
    response = app.get(
        f"/pixels/click/{world.percent_link_id}", headers=headers, expect_errors=True
    )
    assert response.status_int == 503
    assert "Set-Cookie" not in response.headers
    assert visits(world) == []


def test_global_privacy_control_means_no_cookie(app: TestApp, world: World) -> None:
    response = app.get(f"/pixels/click/{world.percent_link_id}", headers={"Sec-GPC": "1"})
    assert response.status_int == 302
    assert "Set-Cookie" not in response.headers


def test_gpc_can_be_ignored_by_configuration(world: World) -> None:
    app = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET, honor_gpc=False))
    response = app.get(f"/pixels/click/{world.percent_link_id}", headers={"Sec-GPC": "1"})
    assert "Set-Cookie" in response.headers


def _refuse(environ: object) -> bool:
    return False


def _explode(environ: object) -> bool:
    raise RuntimeError("consent service down")


@pytest.mark.parametrize(
    "consent",
    [pytest.param(_refuse, id="refused"), pytest.param(_explode, id="consent-hook-fails")],
)
def test_consent_hook_can_withhold_the_cookie(
    world: World, consent: Callable[[object], bool]
) -> None:
    app = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET, consent=consent))
    response = app.get(f"/pixels/click/{world.percent_link_id}")
    assert response.status_int == 302
    assert "Set-Cookie" not in response.headers


def test_consent_hook_sees_the_request(world: World) -> None:
    seen: list[str] = []

    def consent(environ: dict[str, str]) -> bool:
        choice = parse_cookie(environ).get("consent", "")
        seen.append(choice)
        return choice == "yes"

    app = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET, consent=consent))
    app.set_cookie("consent", "yes")
    assert "Set-Cookie" in app.get(f"/pixels/click/{world.percent_link_id}").headers
    assert seen == ["yes"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_get_405(app: TestApp, world: World, method: str) -> None:
    response = app.request(
        f"/pixels/click/{world.percent_link_id}", method=method, expect_errors=True
    )
    assert response.status_int == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert visits(world) == []


def test_storage_failure_still_redirects_without_cookie(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(world.storage, "record_visit", broken)
    response = app.get(f"/pixels/click/{world.percent_link_id}")
    assert response.status_int == 302
    assert "Set-Cookie" not in response.headers


def test_looking_at_an_unknown_link_records_nothing(app: TestApp, world: World) -> None:
    app.head("/pixels/click/999", status=404)
    app.get("/pixels/click/999", headers={"Sec-Purpose": "prefetch"}, status=404)
    assert list(world.storage.rejections()) == []


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        pytest.param("Bot\x00/1.0", "Bot\ufffd/1.0", id="nul"),
        pytest.param("a\rb\x1b[31m", "a\ufffdb\ufffd[31m", id="controls"),
        pytest.param("caf\xc3\xa9/1.0", "caf\u00e9/1.0", id="utf-8-bytes-as-latin-1"),
        pytest.param("bad\xff/1.0", "bad\ufffd/1.0", id="not-utf-8"),
        pytest.param("x" * 10_000, "x" * 512, id="capped"),
    ],
)
def test_a_user_agent_is_stored_clean_and_bounded(
    app: TestApp, world: World, header: str, stored: str
) -> None:
    # WSGI gives header bytes as latin-1; a development server passes a NUL on, which
    # PostgreSQL refuses (the click used to go to the spool for ever).
    response = app.get(
        f"/pixels/click/{world.percent_link_id}", extra_environ={"HTTP_USER_AGENT": header}
    )
    assert response.status_int == 302
    assert "Set-Cookie" in response.headers
    assert visits(world)[0][2] == stored


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        pytest.param("203.0.113.77", "203.0.113.0", id="ipv4"),
        pytest.param("2001:db8:1234:5678::1", "2001:db8:1234::", id="ipv6"),
        # 192.0.2.123 in 6to4: its /48 held the whole IPv4 address.
        pytest.param("2002:c000:027b::1", "2002:c000:200::", id="6to4"),
        pytest.param("::ffff:203.0.113.77", "203.0.113.0", id="ipv4-mapped"),
        # Teredo: the /48 is the prefix and half the server; the client is in the low bits.
        pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136::", id="teredo"),
        pytest.param("64:ff9b::203.0.113.77", "64:ff9b::", id="nat64"),
    ],
)
def test_an_address_holding_an_ipv4_address_is_truncated_as_ipv4(
    app: TestApp, world: World, address: str, stored: str
) -> None:
    app.get(f"/pixels/click/{world.percent_link_id}", extra_environ={"REMOTE_ADDR": address})
    assert visits(world)[0][1] == stored


# -- link destinations (issue 9) -------------------------------------------------------

# Each once answered 503 on every click (or, the first, a traceback at link add).
STORABLE_BAD_DESTINATIONS = [
    pytest.param("https://partner.example\uff0fevil.example/", id="fullwidth-solidus"),
    pytest.param("http://partner.example:99999/", id="port-out-of-range"),
    pytest.param("http://partner.example:0/", id="port-zero"),
    pytest.param("https://" + "a" * 64 + ".example/", id="idna-label-too-long"),
]


@pytest.mark.parametrize(
    "destination",
    [*STORABLE_BAD_DESTINATIONS, pytest.param("/landing\udcff", id="surrogate")],
)
def test_a_destination_no_redirect_can_use_is_refused_at_creation(
    world: World, destination: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        world.storage.add_link(world.percent_campaign_id, world.publisher_id, destination)
    assert "\n" not in str(info.value)
    assert len(world.storage.links()) == 3  # the world's own


@pytest.mark.parametrize("destination", STORABLE_BAD_DESTINATIONS)
def test_a_bad_stored_destination_answers_a_clear_404_never_a_503(
    world: World, destination: str
) -> None:
    # Stored before destinations were checked at creation.
    conn = world.storage._connection()
    conn.execute("UPDATE links SET destination = ? WHERE id = 1", (destination,))
    conn.commit()
    app = TestApp(
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, allowed_redirect_hosts=["partner.example"]
        )
    )
    response = app.get("/pixels/click/1", expect_errors=True)
    assert response.status_int == 404
    assert response.text == "This tracking link is broken: its destination is not a valid URL.\n"
    assert "Set-Cookie" not in response.headers
    assert visits(world) == []
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.advertiser_id) == (
        "invalid_link_destination",
        world.advertiser_id,
    )
    assert rejection.detail.startswith("link 1: a link destination")


def test_a_link_to_a_host_not_allowed_says_so(world: World) -> None:
    link = world.storage.add_link(
        world.percent_campaign_id, world.publisher_id, "https://partner.example/"
    )
    app = TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET))
    response = app.get(f"/pixels/click/{link.id}", status=404)
    assert response.text == "This tracking link leads to a site this one does not redirect to.\n"
    assert reasons(world.storage) == ["link_destination_not_allowed"]


def test_an_unexpected_failure_still_redirects_and_is_kept_in_the_rejection_log(
    app: TestApp, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug in recording the visit")

    monkeypatch.setattr(app.app.ledger, "record_visit", broken)  # type: ignore[attr-defined]
    response = app.get(f"/pixels/click/{world.percent_link_id}", status=302)
    assert "Set-Cookie" not in response.headers
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.source) == ("internal_error", "click")
    assert rejection.detail.endswith("RuntimeError: a bug in recording the visit")
