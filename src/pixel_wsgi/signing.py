"""Signed conversion-pixel URLs: a visitor cannot edit what the pixel reports.

The thank-you page's pixel carries the sale in its query string, in plain sight
of the visitor, who could edit ``sale_amount`` to inflate a percentage payout or
change ``reference_id`` to report the same sale twice. A *signed* pixel URL
carries an expiry and an HMAC-SHA256 over the advertiser id and every other
query parameter::

    /pixels/conversion/1.gif?sale_amount=24.50&reference_id=A-1001
        &expires=1795000000&signature=3q0V...

The signature covers a canonical form of the whole decoded query (every
parameter but ``signature``, sorted by name, repeated names in their order), so
no parameter can be edited, added or removed. ``expires`` (Unix seconds) bounds
how long the URL counts. A pixel whose signature does not match (or that has
``expires`` without a ``signature``: a signed URL stripped of it) is rejected
``invalid_signature``, one past its expiry ``expired_signature``; both still get
the GIF. Only an advertiser's refusal of unsigned pixels stops a visitor from
stripping both, so require them once the templates sign::

    pixel-wsgi advertiser set 1 --require-signed-pixels

Then a pixel without a signature (the legacy pixel, which cannot be signed,
included) is rejected ``unsigned_pixel``. ``signature`` and ``expires`` are
reserved: they never become custom data.

Sign with the middleware's own ``secret_key`` (a list rotates as for the
cookie: the last signs, every one verifies). The signing key is derived from it
with a label of its own, so a pixel signature can never pass for a cookie's,
nor the other way round.

In a template, through :func:`sign_pixel_url` or one of the framework helpers::

    <img src="{{ pixel_url(1, sale_amount=order.total, reference_id=order.number) }}"
         width="1" height="1" alt="">

Flask: :func:`flask_init_app`. Pyramid: ``config.include("pixel_wsgi.signing")``
(see :func:`includeme`) or :func:`pyramid_add_pixel_url`. Plain WSGI:
:class:`PixelUrlSigner`, or the middleware's own ``pixel_urls`` attribute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .attribution.cookie import secret_key_list
from .errors import ConfigurationError
from .models import Reason

if TYPE_CHECKING:
    from flask import Flask

    from .params.values import Query

__all__ = [
    "DEFAULT_EXPIRES_IN",
    "EXPIRES_PARAM",
    "RESERVED_PARAMS",
    "SIGNATURE_PARAM",
    "PixelUrlSigner",
    "flask_init_app",
    "includeme",
    "pyramid_add_pixel_url",
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
        secret_key: str | bytes | Sequence[str | bytes],
        *,
        prefix: str = "/pixels",
        expires_in: timedelta = DEFAULT_EXPIRES_IN,
    ) -> None:
        keys = secret_key_list(secret_key)
        if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ConfigurationError(
                f"prefix must start with '/' and not end with one, like '/pixels', got {prefix!r}"
            )
        if expires_in <= timedelta(0):
            raise ConfigurationError(f"expires_in must be positive, got {expires_in}")
        self.prefix = prefix
        self.expires_in = expires_in
        # The derivation itsdangerous calls "hmac": HMAC(secret, label). Derived
        # once per key; each verification copies the ready HMAC state.
        self._macs = [
            hmac.new(hmac.new(key, _LABEL, hashlib.sha256).digest(), digestmod=hashlib.sha256)
            for key in reversed(keys)
        ]

    def _sign(self, message: bytes, mac: hmac.HMAC) -> str:
        check = mac.copy()
        check.update(message)
        return base64.urlsafe_b64encode(check.digest()).rstrip(b"=").decode("ascii")

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
        signature = self._sign(_message(advertiser_id, pairs), self._macs[0])
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
        message = _message(advertiser_id, pairs)
        given = signatures[0]
        if not any(hmac.compare_digest(self._sign(message, mac), given) for mac in self._macs):
            return Reason.INVALID_SIGNATURE, "the signature does not match the parameters"
        expires = int(expires_values[0])
        if expires < now:
            moment = datetime.fromtimestamp(expires, timezone.utc).isoformat()
            return Reason.EXPIRED_SIGNATURE, f"the signed URL expired at {moment}"
        return None


def sign_pixel_url(
    advertiser_id: int,
    *,
    secret_key: str | bytes | Sequence[str | bytes],
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


# -- framework helpers ------------------------------------------------------------


def flask_init_app(
    app: Flask,
    secret_key: str | bytes | Sequence[str | bytes],
    *,
    prefix: str = "/pixels",
    expires_in: timedelta = DEFAULT_EXPIRES_IN,
    name: str = "pixel_url",
) -> PixelUrlSigner:
    """Give a Flask app's templates a ``pixel_url(advertiser_id, **sale_params)`` global.

    ::

        app.wsgi_app = PixelMiddleware(app.wsgi_app, STORE, secret_key=SECRET)
        flask_init_app(app, SECRET)

    .. code-block:: jinja

        <img src="{{ pixel_url(1, sale_amount=order.total, reference_id=order.id) }}"
             width="1" height="1" alt="">

    The URL starts with the request's ``script_root``, so it is right for an app
    mounted below the site's root. Returns the signer (also in
    ``app.extensions["pixel_wsgi.signing"]``).
    """
    from flask import has_request_context, request

    signer = PixelUrlSigner(secret_key, prefix=prefix, expires_in=expires_in)

    def pixel_url(advertiser_id: int, **sale_params: Any) -> str:
        root = request.script_root if has_request_context() else ""
        return signer.url(advertiser_id, script_root=root, **sale_params)

    app.jinja_env.globals[name] = pixel_url
    app.extensions["pixel_wsgi.signing"] = signer
    return signer


def pyramid_add_pixel_url(
    config: Any,
    secret_key: str | bytes | Sequence[str | bytes],
    *,
    prefix: str = "/pixels",
    expires_in: timedelta = DEFAULT_EXPIRES_IN,
    name: str = "pixel_url",
) -> PixelUrlSigner:
    """Add ``request.pixel_url(advertiser_id, **sale_params)`` to a Pyramid configuration.

    ::

        with Configurator() as config:
            pyramid_add_pixel_url(config, SECRET)

    The URL starts with the request's ``script_name``. Returns the signer.
    """
    signer = PixelUrlSigner(secret_key, prefix=prefix, expires_in=expires_in)

    def pixel_url(request: Any, advertiser_id: int, **sale_params: Any) -> str:
        return signer.url(advertiser_id, script_root=request.script_name, **sale_params)

    config.add_request_method(pixel_url, name)
    return signer


def includeme(config: Any) -> None:
    """``config.include("pixel_wsgi.signing")``: :func:`pyramid_add_pixel_url` from settings.

    ``pixel_wsgi.secret_key`` (required): the middleware's key; several keys,
    one per line, rotate (the last signs). ``pixel_wsgi.prefix``: the
    middleware's prefix (default ``/pixels``).
    """
    settings = config.get_settings()
    value = settings.get("pixel_wsgi.secret_key")
    if not value:
        raise ConfigurationError("config.include('pixel_wsgi.signing') needs pixel_wsgi.secret_key")
    keys = (
        [line.strip() for line in value.splitlines() if line.strip()]
        if isinstance(value, str)
        else list(value)
    )
    pyramid_add_pixel_url(config, keys, prefix=settings.get("pixel_wsgi.prefix", "/pixels"))
