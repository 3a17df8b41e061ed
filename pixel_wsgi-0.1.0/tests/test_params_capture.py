"""What a click and a conversion keep for delivery: pure parsing, and the spool's checks."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from pixel_wsgi.models import ClickContext, ConversionContext
from pixel_wsgi.params.click_ids import (
    MAX_CAPTURED_LENGTH,
    parse_click_context,
    validated_click_context,
)
from pixel_wsgi.params.conversion_context import (
    MAX_PAGE_URL,
    MAX_USER_AGENT,
    _page_url,
    conversion_context,
    fbp,
    ga_client_id,
    page_url,
    stored_user_agent,
    tracker_cookies,
    validated_conversion_context,
)
from pixel_wsgi.params.network import truncated_ip

AT = 1_764_072_000_000
GCLID = "Cj0KCQiA-ZWvBhD_ARIsAKbmM4yR2dUk3n7fQlFvU0Ja5vS-xY4RkzL9_wcB"


def click(sub_ids: dict[str, str] | None = None, **click_ids: str) -> ClickContext:
    return ClickContext(sub_ids=sub_ids or {}, click_ids=click_ids, clicked_at_ms=AT)


# -- the click ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", None, id="empty"),
        pytest.param("utm_source=x&ref=y", None, id="nothing-kept"),
        pytest.param(
            "sub1=a&sub2=b&sub3=c&sub4=d&sub5=e",
            click({"sub1": "a", "sub2": "b", "sub3": "c", "sub4": "d", "sub5": "e"}),
            id="sub-ids",
        ),
        pytest.param(
            "aff_sub=a&aff_sub2=b&aff_sub3=c&aff_sub4=d&aff_sub5=e",
            click({"sub1": "a", "sub2": "b", "sub3": "c", "sub4": "d", "sub5": "e"}),
            id="tune-aliases",
        ),
        pytest.param("aff_sub=alias&sub1=name", click({"sub1": "name"}), id="sub-n-wins"),
        pytest.param("sub1=name&aff_sub=alias", click({"sub1": "name"}), id="sub-n-wins-first"),
        pytest.param("sub1=&aff_sub=alias", click({"sub1": "alias"}), id="empty-sub-n"),
        pytest.param(
            f"gclid={GCLID}&gbraid=0AAAAAp&wbraid=Cj8KAb&fbclid=IwAR3xYz&ttclid=E.C.P.Ab&msclkid=a1B2",
            click(
                gclid=GCLID,
                gbraid="0AAAAAp",
                wbraid="Cj8KAb",
                fbclid="IwAR3xYz",
                ttclid="E.C.P.Ab",
                msclkid="a1B2",
            ),
            id="click-ids",
        ),
        pytest.param("gclid=AbC-dEf_Gh", click(gclid="AbC-dEf_Gh"), id="case-kept"),
        pytest.param("GCLID=abc", None, id="names-are-lower-case"),
        pytest.param("fbclid=a%2Bb%2Fc%3D", click(fbclid="a+b/c="), id="percent-decoded"),
        pytest.param("sub1=a+b", click({"sub1": "a b"}), id="plus-is-space"),
        pytest.param("sub1=%C3%A9t%C3%A9", click({"sub1": "été"}), id="utf-8"),
        pytest.param("sub1=\xc3\xa9", click({"sub1": "é"}), id="raw-utf-8-bytes"),
        pytest.param("sub1=%ff&sub2=ok", click({"sub2": "ok"}), id="not-utf-8-dropped"),
        pytest.param("sub1=\xff&sub2=ok", click({"sub2": "ok"}), id="raw-latin-1-dropped"),
        pytest.param("sub1=a%00b&sub2=ok", click({"sub2": "ok"}), id="nul-dropped"),
        pytest.param("sub1=a%0Ab&gclid=x", click(gclid="x"), id="newline-dropped"),
        pytest.param("gclid=%ED%A0%80&sub1=ok", click({"sub1": "ok"}), id="surrogate-dropped"),
        pytest.param(f"gclid={'x' * MAX_CAPTURED_LENGTH}", click(gclid="x" * 512), id="at-the-cap"),
        pytest.param(f"gclid={'x' * (MAX_CAPTURED_LENGTH + 1)}", None, id="over-the-cap"),
        pytest.param(f"gclid={'%41' * 513}&sub1=ok", click({"sub1": "ok"}), id="encoded-over"),
        pytest.param("gclid=a&gclid=a", click(gclid="a"), id="repeated-same"),
        pytest.param("gclid=a&gclid=b&sub1=ok", click({"sub1": "ok"}), id="repeated-differently"),
        pytest.param("sub1=a&sub1=b&aff_sub=c", click({"sub1": "c"}), id="ambiguous-sub-n"),
        pytest.param("gclid&sub1=ok", click({"sub1": "ok"}), id="no-equals-sign"),
        pytest.param("%67clid=x", click(gclid="x"), id="encoded-name"),
        pytest.param("a=%zz&gclid=x&&=&b", click(gclid="x"), id="junk-around"),
        pytest.param("gclid=%G1", click(gclid="%G1"), id="broken-escape-kept-as-is"),
    ],
)
def test_a_click_keeps_its_sub_ids_and_click_ids(query: str, expected: ClickContext | None) -> None:
    assert parse_click_context(query, AT) == expected


def test_a_server_that_broke_pep_3333_passes_text() -> None:
    assert parse_click_context("sub1=\u20ac", AT) == click({"sub1": "\u20ac"})


def test_click_parsing_never_raises() -> None:
    rng = random.Random(7)
    alphabet = "gclidsub1aff_=&%+\x00\xff\u20ac0123456789ABCDEF"
    for _ in range(3000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        parsed = parse_click_context(query, AT)
        if parsed is not None:
            assert validated_click_context(_click_json(parsed)) == parsed


def _click_json(context: ClickContext) -> dict[str, Any]:
    from pixel_wsgi.models import click_context_json

    return click_context_json(context)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"sub_ids": {"sub1": "a"}, "clicked_at_ms": AT}, id="sub-ids"),
        pytest.param({"click_ids": {"gclid": GCLID}, "clicked_at_ms": AT}, id="click-ids"),
    ],
)
def test_a_spooled_click_context_is_read_back(data: dict[str, Any]) -> None:
    context = validated_click_context(data)
    assert context is not None and _click_json(context) == data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({"clicked_at_ms": AT}, id="nothing-in-it"),
        pytest.param({"sub_ids": {"sub6": "a"}, "clicked_at_ms": AT}, id="unknown-sub-id"),
        pytest.param({"sub_ids": {"aff_sub": "a"}, "clicked_at_ms": AT}, id="alias-not-folded"),
        pytest.param({"click_ids": {"dclid": "a"}, "clicked_at_ms": AT}, id="unknown-click-id"),
        pytest.param({"click_ids": {"gclid": ""}, "clicked_at_ms": AT}, id="empty-value"),
        pytest.param({"click_ids": {"gclid": "a\nb"}, "clicked_at_ms": AT}, id="control"),
        pytest.param({"click_ids": {"gclid": "x" * 513}, "clicked_at_ms": AT}, id="too-long"),
        pytest.param({"click_ids": {"gclid": 1}, "clicked_at_ms": AT}, id="not-text"),
        pytest.param({"sub_ids": ["sub1"], "clicked_at_ms": AT}, id="sub-ids-not-an-object"),
        pytest.param({"sub_ids": {"sub1": "a"}}, id="no-time"),
        pytest.param({"sub_ids": {"sub1": "a"}, "clicked_at_ms": True}, id="time-not-a-number"),
        pytest.param({"sub_ids": {"sub1": "a"}, "clicked_at_ms": -1}, id="time-negative"),
        pytest.param({"sub_ids": {"sub1": "a"}, "clicked_at_ms": 10**16}, id="time-too-late"),
        pytest.param(
            {"sub_ids": {}, "click_ids": {"gclid": "a"}, "clicked_at_ms": AT}, id="empty-member"
        ),
        pytest.param({"sub_ids": {"sub1": "a"}, "clicked_at_ms": AT, "x": 1}, id="extra-member"),
    ],
)
def test_a_spooled_click_context_that_no_click_makes_is_refused(data: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        validated_click_context(data)


# -- the conversion ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["GA1.2.1234567890.1700000000"], "1234567890.1700000000", id="gtag"),
        pytest.param(["GA1.1.987.654"], "987.654", id="domain-depth-1"),
        pytest.param(["GA1.3.1.2"], "1.2", id="domain-depth-3"),
        pytest.param([], None, id="none"),
        pytest.param(["GA1.2.1.2", "GA1.2.3.4"], None, id="two-cookies"),
        pytest.param(["GA1.2.1.2", "GA1.2.1.2"], None, id="two-cookies-alike"),
        pytest.param(["GA2.2.1.2"], None, id="another-version"),
        pytest.param(["GA1.2.1234567890"], None, id="three-parts"),
        pytest.param(["GA1.2.abc.def"], None, id="not-numbers"),
        pytest.param(["GA1.2.1.2.3"], None, id="five-parts"),
        pytest.param(["GA1.2.1.2\n"], None, id="newline"),
        pytest.param(["GS1.1.1700000000.1.1.1700000000.0.0.0"], None, id="a-session-cookie"),
        pytest.param(["1234567890.1700000000"], None, id="bare-client-id"),
    ],
)
def test_the_ga_cookie_gives_the_client_id(values: list[str], expected: str | None) -> None:
    assert ga_client_id(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["fb.1.1700000000000.1234567890"], "fb.1.1700000000000.1234567890", id="fbp"),
        pytest.param(["fb.2.1700000000000.123.Bg"], "fb.2.1700000000000.123.Bg", id="appendix"),
        pytest.param(["fb.1.1700000000000.123", "fb.1.1.2"], None, id="two-cookies"),
        pytest.param(["fb.1.1700000000000"], None, id="three-parts"),
        pytest.param(["xfb.1.1.2"], None, id="not-fb"),
        pytest.param(["fb.1.1.2 3"], None, id="space"),
        pytest.param([f"fb.1.1.{'9' * 65}"], None, id="too-long"),
        pytest.param(["fb.1.1.2.3.4"], None, id="six-parts"),
    ],
)
def test_the_fbp_cookie_is_kept_as_meta_wrote_it(values: list[str], expected: str | None) -> None:
    assert fbp(values) == expected


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("https://shop.example/thanks", "https://shop.example/thanks", id="page"),
        pytest.param(
            "https://shop.example/thanks?email=a%40b.example&order=1#top",
            "https://shop.example/thanks",
            id="query-and-fragment-dropped",
        ),
        pytest.param("http://shop.example:8080/", "http://shop.example:8080/", id="port"),
        pytest.param("https://shop.example", "https://shop.example", id="no-path"),
        pytest.param("HTTPS://Shop.Example/A", "https://Shop.Example/A", id="scheme-lowered"),
        pytest.param(
            "https://user:pass@shop.example/t", "https://shop.example/t", id="credentials"
        ),
        pytest.param("https://[2001:db8::1]/t", "https://[2001:db8::1]/t", id="ipv6-host"),
        pytest.param("https://[2001:db8::1/t", None, id="broken-ipv6-host"),
        pytest.param("https://shop.example:x/t", None, id="broken-port"),
        pytest.param("https://shop.example:99999/t", None, id="port-out-of-range"),
        pytest.param("https://shop.example:443/t", "https://shop.example:443/t", id="port-kept"),
        pytest.param("https://shop.example?q=1", "https://shop.example", id="query-no-path"),
        pytest.param("ftp://shop.example/t", None, id="not-http"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("/thanks", None, id="relative"),
        pytest.param("https:///thanks", None, id="no-host"),
        pytest.param("https://shop.example/a b", None, id="space"),
        pytest.param("https://shop.example/a\x00", None, id="nul"),
        pytest.param("https://shop.example/\xc3\xa9", "https://shop.example/é", id="raw-utf-8"),
        pytest.param("https://shop.example/\xff", None, id="not-utf-8"),
        pytest.param("https://shop.example/" + "a" * MAX_PAGE_URL, None, id="too-long"),
    ],
)
def test_the_referer_gives_the_page(referer: str | None, expected: str | None) -> None:
    assert page_url(referer) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("Browser/1.0", "Browser/1.0", id="plain"),
        pytest.param("Bot\x00/1.0", "Bot\ufffd/1.0", id="nul"),
        pytest.param("B\xc3\xa9/1", "Bé/1", id="raw-utf-8"),
        pytest.param("B\xff/1", "B\ufffd/1", id="not-utf-8"),
        pytest.param("x" * 600, "x" * MAX_USER_AGENT, id="cut"),
    ],
)
def test_the_user_agent_is_kept_printable_and_bounded(header: str, expected: str) -> None:
    assert stored_user_agent(header) == expected


def test_a_request_context_holds_what_the_request_gave() -> None:
    context = conversion_context(
        cookie_header="session=1; _fbp=fb.1.1700000000000.42; _ga=GA1.2.111.222; _ga_X=GS1.1",
        user_agent="Browser/1.0",
        remote_addr="203.0.113.77",
        referer="https://shop.example/thanks?order=1",
    )
    assert context == ConversionContext(
        fbp="fb.1.1700000000000.42",
        ga_client_id="111.222",
        user_agent="Browser/1.0",
        ip_prefix="203.0.113.0",
        page_url="https://shop.example/thanks",
    )


def test_a_request_that_gives_nothing_keeps_no_context() -> None:
    empty = {"cookie_header": None, "user_agent": "", "remote_addr": None, "referer": None}
    assert conversion_context(**empty) is None
    junk = {"cookie_header": "_fbp=x; _ga=y", "user_agent": None, "remote_addr": "z"}
    assert conversion_context(**junk, referer="/thanks") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, ([], []), id="none"),
        pytest.param("", ([], []), id="empty"),
        pytest.param("a=1; b=2", ([], []), id="neither"),
        pytest.param("_fbp=f; _ga=g", (["f"], ["g"]), id="both"),
        pytest.param("_ga=g;_fbp=f", (["f"], ["g"]), id="no-space"),
        pytest.param('_ga="g"; _fbp= f ', (["f"], ["g"]), id="quotes-and-spaces"),
        pytest.param("_ga=1; x=2; _ga=3", ([], ["1", "3"]), id="twice"),
        pytest.param("x_ga=1; _gat=2; _ga_ABC=3; a=_ga=4", ([], []), id="other-names"),
        pytest.param("_ga=", ([], [""]), id="empty-value"),
    ],
)
def test_the_tracker_cookies_are_found_by_name(
    header: str | None, expected: tuple[list[str], list[str]]
) -> None:
    assert tracker_cookies(header) == expected


@pytest.mark.parametrize(
    ("header", "fbp_value", "client_id"),
    [
        pytest.param("_ga=GA1.2.1.2; _ga=GA1.2.1.2", None, None, id="two-ga-cookies"),
        pytest.param(
            "_fbp=fb.1.1.2; _ga=GA1.2.1.2; _fbp=fb.1.1.3", None, "1.2", id="two-fbp-cookies"
        ),
    ],
)
def test_a_cookie_sent_twice_is_not_kept(
    header: str, fbp_value: str | None, client_id: str | None
) -> None:
    context = conversion_context(
        cookie_header=header, user_agent="B/1", remote_addr=None, referer=None
    )
    assert context is not None
    assert (context.fbp, context.ga_client_id) == (fbp_value, client_id)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            {
                "fbp": "fb.1.1700000000000.42",
                "ga_client_id": "111.222",
                "user_agent": "Bé/1.0",
                "ip_prefix": "2001:db8:1234::",
                "page_url": "https://shop.example/é",
            },
            id="everything",
        ),
        pytest.param({"ip_prefix": "203.0.113.0"}, id="one-member"),
    ],
)
def test_a_spooled_conversion_context_is_read_back(data: dict[str, str]) -> None:
    assert validated_conversion_context(data) == ConversionContext(**data)


def test_an_erased_or_absent_conversion_context_is_none() -> None:
    assert validated_conversion_context(None) is None
    assert validated_conversion_context({}) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(["x"], id="not-an-object"),
        pytest.param({"fbp": "x"}, id="bad-fbp"),
        pytest.param({"ga_client_id": "GA1.2.1.2"}, id="bad-client-id"),
        pytest.param({"user_agent": "a\x00b"}, id="unprintable-user-agent"),
        pytest.param({"user_agent": "x" * 513}, id="long-user-agent"),
        pytest.param({"user_agent": ""}, id="empty-user-agent"),
        pytest.param({"ip_prefix": "203.0.113.77"}, id="full-ip"),
        pytest.param({"page_url": "https://shop.example/t?email=a"}, id="url-with-query"),
        pytest.param({"page_url": "javascript:x"}, id="not-a-page"),
        pytest.param({"ip_prefix": None}, id="null-member"),
        pytest.param({"ip_prefix": 3}, id="not-text"),
        pytest.param({"referer": "https://shop.example/"}, id="unknown-member"),
    ],
)
def test_a_spooled_conversion_context_no_request_makes_is_refused(data: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        validated_conversion_context(data)


# -- truncated_ip: the fast path for plain IPv4 changes no answer ----------------------


def reference_truncated_ip(address: str | None) -> str | None:
    """truncated_ip as it was, on ipaddress alone: what the fast path must agree with."""
    if not address:
        return None
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            prefix = 16 + 24 if ip.sixtofour is not None else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("203.0.113.77", "203.0.113.0", id="ipv4"),
        pytest.param("0.0.0.0", "0.0.0.0", id="zeros"),
        pytest.param("255.255.255.255", "255.255.255.0", id="ones"),
        pytest.param("10.0.0.1", "10.0.0.0", id="private"),
        pytest.param("01.2.3.4", None, id="leading-zero"),
        pytest.param("1.2.3.04", None, id="leading-zero-last"),
        pytest.param("1.2.3.00", None, id="double-zero"),
        pytest.param("256.1.1.1", None, id="256"),
        pytest.param("1.2.3.256", None, id="256-last"),
        pytest.param("1.2.3", None, id="three-octets"),
        pytest.param("1.2.3.4.5", None, id="five-octets"),
        pytest.param(" 1.2.3.4", None, id="leading-space"),
        pytest.param("1.2.3.4 ", None, id="trailing-space"),
        pytest.param("1.2.3.4\n", None, id="newline"),
        pytest.param("1.2.3.\u0664", None, id="arabic-indic-digit"),
        pytest.param("1.2.3.+4", None, id="sign"),
        pytest.param("1..3.4", None, id="empty-octet"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param("2001:db8:1234:5678::1", "2001:db8:1234::", id="ipv6"),
        pytest.param("::ffff:203.0.113.7", "203.0.113.0", id="ipv4-mapped"),
        pytest.param("2002:cb00:7107::1", "2002:cb00:7100::", id="6to4"),
        pytest.param("::1", "::", id="loopback-v6"),
        pytest.param("fe80::1%eth0", reference_truncated_ip("fe80::1%eth0"), id="zone"),
        pytest.param("localhost", None, id="name"),
    ],
)
def test_truncated_ip(address: str | None, expected: str | None) -> None:
    assert truncated_ip(address) == expected == reference_truncated_ip(address)


def test_truncated_ip_agrees_with_ipaddress_everywhere() -> None:
    rng = random.Random(24)
    pieces = ["0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255"]
    pieces += ["256", "299", "300", "999", "1000", "", " 1", "1 ", "a", "-1", "0x1", "\u0661"]
    cases = [
        ".".join(rng.choice(pieces) for _ in range(rng.choice((3, 4, 4, 4, 5))))
        for _ in range(5000)
    ]
    cases += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(2000)]
    cases += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(500)]
    cases += [f"::ffff:{ipaddress.IPv4Address(rng.getrandbits(32))}" for _ in range(200)]
    for address in cases:
        assert truncated_ip(address) == reference_truncated_ip(address), address


def reference_page_url(text: str) -> str | None:
    """page_url on urllib.parse.urlsplit(): what its single match must agree with."""
    from urllib.parse import urlsplit

    if len(text) > MAX_PAGE_URL or any(c in text for c in " \x00\n\t\x7f"):
        return None
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a broken port
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host:
        return None
    return f"{parts.scheme}://{host}{parts.path}"


def test_page_url_agrees_with_urlsplit() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        text = "".join(
            (
                rng.choice(("http://", "https://", "HTTPS://")),
                rng.choice(("", "u@", "u:p@")),
                rng.choice(("shop.example", "Shop.Example", "127.0.0.1", "[::1]", "[2001:db8::1]")),
                rng.choice(("", ":443", ":8080", ":65535")),
                rng.choice(("", "/", "/a", "/a/b;c", "/%C3%A9", "/é", "//x")),
                rng.choice(("", "?q=1", "#f", "?q=a@b#f", "?")),
            )
        )
        assert _page_url(text) == reference_page_url(text), text


def test_page_url_keeps_only_what_urlsplit_reads_back_alike() -> None:
    rng = random.Random(12)
    pieces = ["https://", "http://", "HTTP://", "ftp://", "//", "shop.example", "a@", "u:p@"]
    pieces += [":443", ":", ":x", "[::1]", "[2001:db8::1]", "[::1", "/", "/a", "?q=1", "#f"]
    pieces += ["/b/c", "%20", "é", ";p", "@", "[", "]", ":99999"]
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 7)))
        kept = _page_url(text)
        assert kept is None or reference_page_url(kept) == kept, text
