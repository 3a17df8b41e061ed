"""The signed, first-party attribution cookie that ties a conversion to a click.

The cookie names the visit a tracking link recorded and the link itself,
signed with an itsdangerous timestamp signature (SHA-256). Its age is checked
against the attribution window on every read, so an old cookie stops
attributing even if a browser kept it. One cookie per advertiser, so that
clicks for one advertiser never overwrite the attribution of another on a site
that hosts several.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from datetime import timedelta

from itsdangerous import TimestampSigner
from werkzeug.http import dump_cookie

from ..errors import AttributionRejected, ConfigurationError
from ..models import Reason, VisitClaim
from .keyring import Keyring, secret_key_list

# Browsers cap cookie lifetimes at 400 days (RFC 6265bis); a longer window
# would promise attribution the browser silently drops.
MAX_WINDOW = timedelta(days=400)
DEFAULT_WINDOW = timedelta(days=30)
_SALT = "pixel-wsgi.attribution"
_COOKIE_SEPARATORS = "; \t"
_HOST_PREFIX = "__Host-"
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def check_window(window: timedelta) -> timedelta:
    """``window`` when it can be an attribution window, else a ConfigurationError."""
    if not timedelta(0) < window <= MAX_WINDOW:
        raise ConfigurationError(
            f"attribution window must be more than 0 and at most 400 days, got {window}"
        )
    return window


class AttributionCookies:
    """Signs, verifies and formats attribution cookies.

    :param secret_keys: one key, or a list for rotation: the *last* signs, all verify.
    :param window: the attribution window, both the cookie's ``Max-Age`` and the
        maximum signature age accepted.
    :param cookie_prefix: cookie names are ``{prefix}{advertiser_id}``.
    """

    def __init__(
        self,
        secret_keys: str | bytes | Sequence[str | bytes],
        *,
        window: timedelta = DEFAULT_WINDOW,
        cookie_prefix: str = "pixel_wsgi_a",
    ) -> None:
        # itsdangerous takes keys all of one type: bytes serve both kinds.
        keys = secret_key_list(secret_keys)
        check_window(window)
        if not cookie_prefix.isidentifier():
            raise ConfigurationError(f"cookie_prefix must be a plain name, got {cookie_prefix!r}")
        self.window = window
        self.max_age = int(window.total_seconds())
        self.cookie_prefix = cookie_prefix
        self._signer = TimestampSigner(keys, salt=_SALT, digest_method=hashlib.sha256)
        # Verification runs on every conversion: derive each key's HMAC state once
        # (itsdangerous re-derives the key on every call, twice the cost).
        self._macs = Keyring(keys, self._signer.derive_key).macs

    def cookie_name(self, advertiser_id: int, *, secure: bool = False) -> str:
        """The cookie's name: ``__Host-``-prefixed on https.

        A browser accepts a ``__Host-`` cookie only from the host itself, with
        ``Secure``, ``Path=/`` and no ``Domain``: a subdomain cannot plant (toss) one.
        """
        return f"{_HOST_PREFIX if secure else ''}{self.cookie_prefix}{advertiser_id}"

    def read(self, cookie_header: str, advertiser_id: int, *, secure: bool = False) -> str | None:
        """The advertiser's attribution cookie value from a ``Cookie`` header, or None.

        :param secure: the request came over https: only the ``__Host-`` cookie
            counts, since a subdomain can plant a cookie of the plain name.
        :raises AttributionRejected: ``duplicate_cookie`` when the name comes twice.
            Browsers send every cookie whose domain and path match, so a second one
            was planted from a subdomain or a longer path to take the attribution;
            neither is trusted.

        Our values are URL-safe base64 and dots, so they need no unescaping beyond
        optional quotes: finding the name is a few times cheaper than parsing every
        cookie of the site. Anything odd in the value is left for :meth:`verify`.
        """
        target = f"{_HOST_PREFIX if secure else ''}{self.cookie_prefix}{advertiser_id}="
        value: str | None = None
        start = 0
        while (found := cookie_header.find(target, start)) >= 0:
            start = found + 1
            # A match must start the header or follow a separator: "xpixel_wsgi_a1="
            # (or "__Host-pixel_wsgi_a1=" on plain http) is another cookie.
            if found and cookie_header[found - 1] not in _COOKIE_SEPARATORS:
                continue
            if value is not None:
                raise AttributionRejected(Reason.DUPLICATE_COOKIE)
            begin = found + len(target)
            end = cookie_header.find(";", begin)
            value = cookie_header[begin:] if end < 0 else cookie_header[begin:end]
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
        return value

    def sign(self, visit_id: int, link_id: int) -> str:
        return self._signer.sign(f"{visit_id}-{link_id}").decode("ascii")

    def verify(self, value: str) -> VisitClaim:
        """What a cookie value claims, or :class:`AttributionRejected`.

        Checks exactly what itsdangerous's ``TimestampSigner.unsign(value,
        max_age=window)`` checks (the test suite holds the two to agreement),
        with the keys derived once instead of per call.
        """
        return self.verify_timed(value)[0]

    def verify_timed(self, value: str) -> tuple[VisitClaim, int]:
        """:meth:`verify`, and the Unix time the value was signed: its click's time."""
        try:
            signed = value.encode("ascii")
        except UnicodeEncodeError:
            raise AttributionRejected(Reason.INVALID_COOKIE) from None
        signed, _, signature = signed.rpartition(b".")
        # Keyring.verifies(), inline: a Python call costs ~0.5% of a pixel hit.
        for mac in self._macs:
            check = mac.copy()
            check.update(signed)
            if hmac.compare_digest(
                base64.urlsafe_b64encode(check.digest()).rstrip(b"="), signature
            ):
                break
        else:
            raise AttributionRejected(Reason.INVALID_COOKIE)
        payload, _, stamp = signed.rpartition(b".")
        try:
            # base64.urlsafe_b64decode(), without its Python-level wrapping.
            padded = stamp.translate(_FROM_URLSAFE) + b"=" * (-len(stamp) % 4)
            timestamp = int.from_bytes(binascii.a2b_base64(padded), "big")
        except (binascii.Error, ValueError):
            raise AttributionRejected(Reason.INVALID_COOKIE) from None
        if not 0 <= self._signer.get_timestamp() - timestamp <= self.max_age:
            raise AttributionRejected(Reason.EXPIRED_COOKIE)
        # The signature held, so the payload is one we wrote; these checks only
        # refuse a payload of another shape (another version, another signer).
        # A visit id is negative when its click was spooled (the store was down).
        visit_text, _, link_text = payload.rpartition(b"-")
        try:
            claim = VisitClaim(int(visit_text), int(link_text))
        except ValueError:
            raise AttributionRejected(Reason.INVALID_COOKIE) from None
        if claim.visit_id == 0 or claim.link_id < 1:
            raise AttributionRejected(Reason.INVALID_COOKIE)
        return claim, timestamp

    def set_cookie_header(
        self, advertiser_id: int, visit_id: int, link_id: int, *, secure: bool
    ) -> str:
        """The ``Set-Cookie`` value for a click: host-only, ``HttpOnly``, ``SameSite=Lax``.

        On https (``secure``): ``Secure`` and the ``__Host-`` name prefix.
        """
        return dump_cookie(
            self.cookie_name(advertiser_id, secure=secure),
            self.sign(visit_id, link_id),
            max_age=self.max_age,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
