"""The signed, first-party attribution cookie that ties a conversion to a click.

The cookie holds nothing but the id of the visit a tracking link recorded,
signed with an itsdangerous timestamp signature. Its age is checked against the
attribution window on every read, so an old cookie stops attributing even if a
browser kept it. One cookie per advertiser, so that clicks for one advertiser
never overwrite the attribution of another on a site that hosts several.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from werkzeug.http import dump_cookie

from .errors import ConfigurationError
from .models import Reason

# Browsers cap cookie lifetimes at 400 days (RFC 6265bis); a longer window
# would promise attribution the browser silently drops.
MAX_WINDOW = timedelta(days=400)
DEFAULT_WINDOW = timedelta(days=30)
_SALT = "pixel-wsgi.attribution"
# name=value pairs of a Cookie header whose value is a bare token.
_COOKIE_PAIR = re.compile(r"(?:^|;)\s*([^=;\s]+)\s*=([^;]*)")


class AttributionRejected(Exception):
    """The cookie was present but cannot attribute; ``reason`` says why."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


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
        given = [secret_keys] if isinstance(secret_keys, (str, bytes)) else list(secret_keys)
        # itsdangerous takes keys all of one type: bytes serve both kinds.
        keys = [key.encode() if isinstance(key, str) else key for key in given]
        if not keys or any(len(key) < 16 for key in keys):
            raise ConfigurationError(
                "secret_key must be a key (or list of keys) of at least 16 characters"
            )
        if not timedelta(0) < window <= MAX_WINDOW:
            raise ConfigurationError(
                f"attribution window must be more than 0 and at most 400 days, got {window}"
            )
        if not cookie_prefix.isidentifier():
            raise ConfigurationError(f"cookie_prefix must be a plain name, got {cookie_prefix!r}")
        self.window = window
        self.max_age = int(window.total_seconds())
        self.cookie_prefix = cookie_prefix
        self._signer = TimestampSigner(keys, salt=_SALT, digest_method=hashlib.sha256)

    def cookie_name(self, advertiser_id: int) -> str:
        return f"{self.cookie_prefix}{advertiser_id}"

    def read(self, cookie_header: str, advertiser_id: int) -> str | None:
        """The advertiser's attribution cookie value from a ``Cookie`` header, or None.

        Our values are URL-safe base64 and dots, so they need no unescaping beyond
        optional quotes: a scan for the name is about 3x cheaper than parsing every
        cookie of the site. With the same name sent twice, the first wins, as in
        Werkzeug. Anything odd in the value is left for :meth:`verify` to refuse.
        """
        if not cookie_header:
            return None
        name = self.cookie_name(advertiser_id)
        for match in _COOKIE_PAIR.finditer(cookie_header):
            if match.group(1) == name:
                value = match.group(2).strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value
        return None

    def sign(self, visit_id: int) -> str:
        return self._signer.sign(str(visit_id)).decode("ascii")

    def verify(self, value: str) -> int:
        """The visit id in a cookie value, or :class:`AttributionRejected`."""
        try:
            payload = self._signer.unsign(value, max_age=self.max_age)
        except SignatureExpired:
            raise AttributionRejected(Reason.EXPIRED_COOKIE) from None
        except BadSignature:
            raise AttributionRejected(Reason.INVALID_COOKIE) from None
        if not payload.isdigit():
            raise AttributionRejected(Reason.INVALID_COOKIE)
        return int(payload)

    def set_cookie_header(self, advertiser_id: int, visit_id: int, *, secure: bool) -> str:
        """The ``Set-Cookie`` value for a click: host-only, ``HttpOnly``, ``SameSite=Lax``."""
        return dump_cookie(
            self.cookie_name(advertiser_id),
            self.sign(visit_id),
            max_age=self.max_age,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
