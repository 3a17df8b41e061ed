"""Who is calling the APIs: per-advertiser credentials, and refusing browsers.

A credential's secret is ``pwk_<credential id>_<43 random URL-safe characters>``
(256 random bits). Only the SHA-256 digest of the random part is stored: a random
secret of that size needs no slow password hash, and the digest is compared in
constant time. The id inside the secret finds the stored digest without a table scan.

Clients send it as HTTP Basic, the advertiser's id as the user name and the secret as
the password (as Invoca's Conversion Reporting clients do), or as
``Authorization: Bearer <secret>``. Cookies are never credentials here, and requests
that a browser sends on a page's behalf (an ``Origin`` not allow-listed, or
``Sec-Fetch-Site`` other than ``same-origin``/``none``) are refused, so no web page a
visitor opens can use the APIs with anything the browser holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple

from werkzeug.datastructures import Authorization

from ...errors import StorageError
from ...models import ApiCredential
from ...params.values import parse_positive_id

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ...storage.base import Storage

__all__ = [
    "CHALLENGES",
    "AuthFailure",
    "Authenticator",
    "IssuedCredential",
    "hash_token",
    "issue_credential",
]

_PREFIX = "pwk_"
_MAX_HEADER = 1024
_BROWSER_SAFE_FETCH_SITES = frozenset({"same-origin", "none"})
_MAX_KNOWN = 1000
#: Seconds a credential read before the store failed stays usable during the outage.
OUTAGE_CREDENTIAL_TTL = 15 * 60

#: The ``WWW-Authenticate`` challenges of a ``401``.
CHALLENGES = (
    ("WWW-Authenticate", 'Basic realm="pixel-wsgi", charset="UTF-8"'),
    ("WWW-Authenticate", 'Bearer realm="pixel-wsgi"'),
)


def hash_token(token: str) -> str:
    """The digest stored for a secret's random part."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class IssuedCredential(NamedTuple):
    credential: ApiCredential
    #: shown once to the operator; never stored
    secret: str


def issue_credential(storage: Storage, advertiser_id: int, label: str = "") -> IssuedCredential:
    """Make a credential for an advertiser; the secret is in the result only.

    :raises ~pixel_wsgi.errors.NotFoundError: when the advertiser does not exist.
    """
    token = secrets.token_urlsafe(32)
    credential = storage.add_credential(advertiser_id, label, hash_token(token))
    return IssuedCredential(credential, f"{_PREFIX}{credential.id}_{token}")


class AuthFailure(NamedTuple):
    """Why a request is not let in: ``401`` (who are you?) or ``403`` (not from a browser)."""

    status: int
    code: str
    message: str


class Authenticator:
    """Finds the advertiser an API request speaks for.

    :param storage: where credentials are kept.
    :param allowed_origins: ``Origin`` values (``https://admin.example.com``) whose
        pages may call the APIs; by default none may.
    """

    def __init__(self, storage: Storage, *, allowed_origins: Collection[str] = ()) -> None:
        self.storage = storage
        self.allowed_origins = frozenset(allowed_origins)
        # credential id -> (credential, when it was last read from the store)
        self._known: dict[int, tuple[ApiCredential, float]] = {}

    def __call__(self, environ: WSGIEnvironment) -> int | AuthFailure:
        """The advertiser id, or why the request is refused."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin not in self.allowed_origins:
            return AuthFailure(403, "browser_request", "requests from web pages are refused")
        fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
        if fetch_site is not None and fetch_site not in _BROWSER_SAFE_FETCH_SITES:
            return AuthFailure(403, "browser_request", "cross-site browser requests are refused")
        header: str = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            return AuthFailure(401, "unauthorized", "credentials are required")
        authorization = Authorization.from_header(header[:_MAX_HEADER])
        user: str | None = None
        if authorization is None:
            # Werkzeug gives None for a header only when its Basic value does not decode.
            return AuthFailure(401, "unauthorized", "malformed Basic credentials")
        if authorization.type == "bearer":
            secret = authorization.token or ""
        elif authorization.type == "basic":
            user, secret = authorization.username or "", authorization.password or ""
        else:
            return AuthFailure(401, "unauthorized", "use Basic or Bearer credentials")
        credential = self._credential(secret)
        if credential is None or (user is not None and user != str(credential.advertiser_id)):
            return AuthFailure(401, "unauthorized", "unknown, revoked or mismatched credentials")
        return credential.advertiser_id

    def _read_credential(self, credential_id: int) -> ApiCredential | None:
        """The stored credential; while the store fails, the last one read, for a while.

        So that a report can still reach the outage spool (``202``) when the store is
        down. Revocations take effect at once whenever the store answers.
        """
        now = time.monotonic()
        try:
            credential = self.storage.credential(credential_id)
        except StorageError:
            known = self._known.get(credential_id)
            if known is None or now - known[1] > OUTAGE_CREDENTIAL_TTL:
                raise
            return known[0]
        if credential is not None and credential.active:
            if len(self._known) >= _MAX_KNOWN and credential_id not in self._known:
                self._known.clear()
            self._known[credential_id] = (credential, now)
        else:
            self._known.pop(credential_id, None)
        return credential

    def _credential(self, secret: str) -> ApiCredential | None:
        if not secret.startswith(_PREFIX):
            return None
        id_text, _, token = secret[len(_PREFIX) :].partition("_")
        credential_id = parse_positive_id(id_text)
        if credential_id is None:
            return None
        credential = self._read_credential(credential_id)
        if credential is None or not credential.active:
            return None
        if not hmac.compare_digest(credential.secret_hash, hash_token(token)):
            return None
        return credential
