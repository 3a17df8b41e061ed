"""The attribution cookie: our verification agrees with itsdangerous's own."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from pixel_wsgi.attribution.cookie import AttributionCookies, AttributionRejected, VisitClaim
from pixel_wsgi.models import Reason

KEY = "k" * 32
OLD_KEY = "o" * 32


def reference_signer(key: str = KEY) -> TimestampSigner:
    return TimestampSigner(key, salt="pixel-wsgi.attribution", digest_method=hashlib.sha256)


def test_round_trip() -> None:
    cookies = AttributionCookies(KEY)
    assert cookies.verify(cookies.sign(12, 3)) == VisitClaim(12, 3)


def test_itsdangerous_accepts_what_we_sign() -> None:
    value = AttributionCookies(KEY).sign(12, 3)
    assert reference_signer().unsign(value, max_age=60) == b"12-3"


def tampered_values() -> list[str]:
    good = AttributionCookies(KEY).sign(12, 3)
    payload, stamp, signature = good.split(".")
    return [
        "",
        "garbage",
        good + "x",
        good[:-1],
        f"13-3.{stamp}.{signature}",
        f"12-3.{stamp}x.{signature}",
        f"{payload}.{stamp}",
        "12-3..." + signature,
        good.replace(".", "!"),
        "ü" + good,
        reference_signer("x" * 32).sign("12-3").decode(),
        TimestampSigner(KEY, salt="other-salt", digest_method=hashlib.sha256).sign("12-3").decode(),
        reference_signer().sign("12").decode(),  # well signed, wrong payload shape
        reference_signer().sign("0-3").decode(),
        reference_signer().sign("12-3-4").decode(),
    ]


@pytest.mark.parametrize("value", tampered_values())
def test_we_refuse_what_itsdangerous_refuses_or_what_is_not_ours(value: str) -> None:
    cookies = AttributionCookies(KEY)
    with pytest.raises(AttributionRejected) as caught:
        cookies.verify(value)
    assert caught.value.reason is Reason.INVALID_COOKIE
    try:
        payload = reference_signer().unsign(value, max_age=60)
    except BadSignature:
        return
    # itsdangerous accepts it: then only its payload is not one we sign.
    assert payload not in (b"12-3",)


@pytest.mark.parametrize(
    ("age", "expired"),
    [
        pytest.param(0, False, id="fresh"),
        pytest.param(3599, False, id="inside"),
        pytest.param(3600, False, id="at-the-edge"),
        pytest.param(3601, True, id="past"),
        pytest.param(-5, True, id="from-the-future"),
    ],
)
def test_age_is_checked_like_itsdangerous(
    monkeypatch: pytest.MonkeyPatch, age: int, expired: bool
) -> None:
    cookies = AttributionCookies(KEY, window=timedelta(hours=1))
    value = cookies.sign(1, 2)
    signed_at = reference_signer().get_timestamp()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at + age)
    if expired:
        with pytest.raises(AttributionRejected) as caught:
            cookies.verify(value)
        assert caught.value.reason is Reason.EXPIRED_COOKIE
        with pytest.raises(SignatureExpired):
            reference_signer().unsign(value, max_age=3600)
    else:
        assert cookies.verify(value) == VisitClaim(1, 2)
        assert reference_signer().unsign(value, max_age=3600) == b"1-2"


def test_rotation_signs_with_the_newest_and_verifies_all() -> None:
    old = AttributionCookies(OLD_KEY)
    rotated = AttributionCookies([OLD_KEY, KEY])
    assert rotated.verify(old.sign(1, 2)) == VisitClaim(1, 2)
    fresh = rotated.sign(3, 4)
    assert AttributionCookies(KEY).verify(fresh) == VisitClaim(3, 4)
    with pytest.raises(AttributionRejected):
        old.verify(fresh)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("pixel_wsgi_a1=abc.def", "abc.def", id="alone"),
        pytest.param("a=1; pixel_wsgi_a1=1-2.x_y; b=2", "1-2.x_y", id="among-others"),
        pytest.param("xpixel_wsgi_a1=bad; pixel_wsgi_a1=good", "good", id="suffix-name"),
        pytest.param("pixel_wsgi_a12=no", None, id="longer-name"),
        pytest.param('pixel_wsgi_a1="quoted"', "quoted", id="quoted"),
        pytest.param("", None, id="empty"),
        pytest.param("a=pixel_wsgi_a1=x; pixel_wsgi_a1=real", "real", id="inside-another-value"),
        pytest.param("a=1;pixel_wsgi_a1=tight", "tight", id="no-space"),
        pytest.param("a=1;  pixel_wsgi_a1= padded ", "padded", id="padded"),
    ],
)
def test_read_finds_the_advertisers_cookie(header: str, expected: str | None) -> None:
    assert AttributionCookies(KEY).read(header, 1) == expected


@pytest.mark.parametrize(
    ("header", "secure", "expected"),
    [
        pytest.param("__Host-pixel_wsgi_a1=host", True, "host", id="https-host-prefixed"),
        pytest.param("pixel_wsgi_a1=tossed", True, None, id="https-ignores-plain"),
        pytest.param("pixel_wsgi_a1=p; __Host-pixel_wsgi_a1=h", True, "h", id="https-both"),
        pytest.param("__Host-pixel_wsgi_a1=host", False, None, id="http-ignores-prefixed"),
    ],
)
def test_on_https_only_the_host_prefixed_cookie_counts(
    header: str, secure: bool, expected: str | None
) -> None:
    assert AttributionCookies(KEY).read(header, 1, secure=secure) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("pixel_wsgi_a1=first;pixel_wsgi_a1=second", id="twice"),
        pytest.param("pixel_wsgi_a1=same; a=1; pixel_wsgi_a1=same", id="twice-the-same"),
    ],
)
def test_a_cookie_sent_twice_attributes_nothing(header: str) -> None:
    # A second cookie of the name was planted from a subdomain or a longer path:
    # "the first wins" would credit whoever planted it.
    with pytest.raises(AttributionRejected) as rejected:
        AttributionCookies(KEY).read(header, 1)
    assert rejected.value.reason is Reason.DUPLICATE_COOKIE
