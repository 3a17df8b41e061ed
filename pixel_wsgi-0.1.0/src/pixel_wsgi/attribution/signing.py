"""The signer of conversion-pixel URLs: a visitor cannot edit what the pixel reports.

A signed URL carries ``expires`` (Unix seconds) and ``signature``, an
HMAC-SHA256 (keyed from the middleware's ``secret_key`` with a label of its own,
see :mod:`pixel_wsgi.attribution.keyring`) over the advertiser id and a canonical
form of every other decoded query parameter, so none can be edited, added or
removed. :mod:`pixel_wsgi.signing`, the documented public module, explains the
scheme to users and re-exports this module with the framework helpers of
:mod:`pixel_wsgi.integrations`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import ConfigurationError
from ..models import Reason
from .keyring import Keyring, SecretKey

if TYPE_CHECKING:
    from ..params.values import Query

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "EXPIRES_PARAM",
    "RESERVED_PARAMS",
    "SIGNATURE_PARAM",
    "PixelUrlSigner",
    "sign_pixel_url",
]

SIGNATURE_PARAM = "signature"
EXPIRES_PARAM = "expires"
#: Query parameters of the signing scheme itself: never custom data.
RESERVED_PARAMS = frozenset({SIGNATURE_PARAM, EXPIRES_PARAM})
#: Long enough for a slow thank-you page, short enough that a copied URL soon stops counting.
DEFAULT_EXPIRES_IN = timedelta(hours=1)

# The label of the key derivation; the attribution cookie uses another salt.
_LABEL = b"pixel-wsgi.pixel-url"
# Invoca documents the list parameters with brackets.
_LIST_NAMES = {"sku_list": "sku_list[]", "quantity_list": "quantity_list[]"}
_EXPIRES_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_NAME = itemgetter(0)
# Parameter names stay readable in the URL; everything else is escaped.
_NAME_SAFE = "[]"

ParamValue = str | int | Decimal


def _derive(secret: bytes) -> bytes:
    # The derivation itsdangerous calls "hmac": HMAC(secret, label).
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


def _text(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    # bool is an int; a float cannot hold most cents exactly (money is exact here).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"pixel parameter {name} must be a finite Decimal, got {value}")
        return format(value, "f")  # never an exponent: 1E+2 is "100"
    raise TypeError(
        f"pixel parameter {name} must be a str, int or Decimal, got {type(value).__name__}"
    )


def _pairs(params: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    """The query's (name, value) pairs for keyword arguments, in their order.

    None leaves the parameter out; a list or tuple repeats it (``sku_list`` and
    ``quantity_list`` are written ``sku_list[]`` and ``quantity_list[]``).
    """
    for name, value in params.items():
        if name in RESERVED_PARAMS:
            raise ValueError(f"{name!r} is set by the signer, not a sale parameter")
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            key = _LIST_NAMES.get(name, name)
            for item in value:
                yield key, _text(name, item)
        else:
            yield name, _text(name, value)


def _message(advertiser_id: int, pairs: list[tuple[str, str]]) -> bytes:
    """The signed text: the pixel and its advertiser, then the canonical query.

    The decoded pairs sorted by name (a stable sort: repeated names keep their
    order), each name and value prefixed with its length (as in netstrings): no
    two different queries share this form, however their values are escaped in
    the URL and whatever characters they hold.
    """
    canonical = "".join(
        f"{len(name)}:{name}{len(value)}:{value}" for name, value in sorted(pairs, key=_NAME)
    )
    return f"conversion/{advertiser_id}?{canonical}".encode()


def _expiry(expires_in: timedelta | None, expires_at: datetime | int | None) -> int:
    if expires_at is not None:
        if expires_in is not None:
            raise TypeError("give expires_in or expires_at, not both")
        if isinstance(expires_at, bool):
            raise TypeError("expires_at must be an aware datetime or Unix seconds")
        if isinstance(expires_at, int):
            return expires_at
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be an aware datetime (UTC), not a naive one")
        return int(expires_at.timestamp())
    assert expires_in is not None
    if expires_in <= timedelta(0):
        raise ValueError(f"expires_in must be positive, got {expires_in}")
    return int(time.time() + expires_in.total_seconds())


class PixelUrlSigner:
    """Builds signed conversion-pixel URLs and verifies them.

    ::

        signer = PixelUrlSigner(os.environ["PIXEL_SECRET"])
        signer.url(1, sale_amount=Decimal("24.50"), reference_id="A-1001")
        # '/pixels/conversion/1.gif?sale_amount=24.50&reference_id=A-1001&expires=...&signature=...'

    :param secret_key: the middleware's ``secret_key``: one key of at least 16
        characters, or a list for rotation (the last signs, all verify).
    :param prefix: the middleware's ``prefix``.
    :param expires_in: how long a URL counts, unless a call says otherwise.
    """

    def __init__(
        self,
        secret_key: SecretKey,
        *,
        prefix: str = "/pixels",
        expires_in: timedelta = DEFAULT_EXPIRES_IN,
    ) -> None:
        keyring = Keyring(secret_key, _derive)
        if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ConfigurationError(
                f"prefix must start with '/' and not end with one, like '/pixels', got {prefix!r}"
            )
        if expires_in <= timedelta(0):
            raise ConfigurationError(f"expires_in must be positive, got {expires_in}")
        self.prefix = prefix
        self.expires_in = expires_in
        self._keyring = keyring

    def url(
        self,
        advertiser_id: int,
        *,
        expires_in: timedelta | None = None,
        expires_at: datetime | int | None = None,
        script_root: str = "",
        **sale_params: ParamValue | Sequence[ParamValue] | None,
    ) -> str:
        """The signed pixel URL (a path: put it in an ``<img src>`` as it is).

        :param advertiser_id: the advertiser the conversion is for.
        :param expires_in: how long from now the URL counts (default: the signer's).
        :param expires_at: when the URL stops counting: an aware datetime or Unix seconds.
        :param script_root: the application's mount point (``SCRIPT_NAME``), if any.
        :param sale_params: the pixel's parameters: ``str``, ``int`` or ``Decimal``
            values (never ``float``: money is exact); None leaves one out; a list
            repeats it.
        """
        if isinstance(advertiser_id, bool) or not isinstance(advertiser_id, int):
            raise TypeError(f"advertiser_id must be an int, got {advertiser_id!r}")
        if advertiser_id < 1:
            raise ValueError(f"advertiser_id must be positive, got {advertiser_id}")
        pairs = list(_pairs(sale_params))
        expires = _expiry(
            self.expires_in if expires_in is None and expires_at is None else expires_in,
            expires_at,
        )
        pairs.append((EXPIRES_PARAM, str(expires)))
        signature = self._keyring.signature(_message(advertiser_id, pairs)).decode("ascii")
        query = "&".join(
            f"{quote(name, safe=_NAME_SAFE)}={quote(value, safe='')}" for name, value in pairs
        )
        return (
            f"{script_root.rstrip('/')}{self.prefix}/conversion/{advertiser_id}.gif"
            f"?{query}&{SIGNATURE_PARAM}={signature}"
        )

    def verify(self, advertiser_id: int, args: Query, now: float) -> tuple[Reason, str] | None:
        """Why a pixel's query is not validly signed, or None when it is.

        :param args: the parsed query, ``signature`` and ``expires`` included.
        :param now: the current Unix time.
        :returns: ``(INVALID_SIGNATURE, detail)`` or ``(EXPIRED_SIGNATURE, detail)``.
        """
        signatures = args.get(SIGNATURE_PARAM, [])
        if len(signatures) != 1 or _SIGNATURE_RE.fullmatch(signatures[0]) is None:
            return Reason.INVALID_SIGNATURE, "a signed pixel needs one well-formed signature"
        expires_values = args.get(EXPIRES_PARAM, [])
        if len(expires_values) != 1 or _EXPIRES_RE.fullmatch(expires_values[0]) is None:
            return Reason.INVALID_SIGNATURE, "a signed pixel needs one expires in Unix seconds"
        pairs = [
            (name, value)
            for name, values in args.items()
            if name != SIGNATURE_PARAM
            for value in values
        ]
        # The pattern above let only ASCII through.
        if not self._keyring.verifies(_message(advertiser_id, pairs), signatures[0].encode()):
            return Reason.INVALID_SIGNATURE, "the signature does not match the parameters"
        expires = int(expires_values[0])
        if expires < now:
            moment = datetime.fromtimestamp(expires, timezone.utc).isoformat()
            return Reason.EXPIRED_SIGNATURE, f"the signed URL expired at {moment}"
        return None


def sign_pixel_url(
    advertiser_id: int,
    *,
    secret_key: SecretKey,
    expires_in: timedelta | None = None,
    expires_at: datetime | int | None = None,
    prefix: str = "/pixels",
    script_root: str = "",
    **sale_params: ParamValue | Sequence[ParamValue] | None,
) -> str:
    """A signed conversion-pixel URL, in one call (see :meth:`PixelUrlSigner.url`).

    ::

        sign_pixel_url(1, secret_key=KEY, sale_amount="24.50", reference_id="A-1001")
        # '/pixels/conversion/1.gif?sale_amount=24.50&reference_id=A-1001&expires=...&signature=...'

    ``expires_in`` defaults to :data:`DEFAULT_EXPIRES_IN` (one hour). Templates
    that sign many URLs should keep one :class:`PixelUrlSigner` instead, which
    derives its keys once.
    """
    signer = PixelUrlSigner(secret_key, prefix=prefix)
    return signer.url(
        advertiser_id,
        expires_in=expires_in,
        expires_at=expires_at,
        script_root=script_root,
        **sale_params,
    )
