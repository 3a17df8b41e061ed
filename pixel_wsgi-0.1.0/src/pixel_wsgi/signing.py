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

This module is the documented public one; the code lives in its parts: the
signer in :mod:`pixel_wsgi.attribution.signing`, the Flask helper in
:mod:`pixel_wsgi.integrations.flask`, the Pyramid ones in
:mod:`pixel_wsgi.integrations.pyramid`.
"""

from __future__ import annotations

from .attribution.signing import (
    DEFAULT_EXPIRES_IN,
    EXPIRES_PARAM,
    RESERVED_PARAMS,
    SIGNATURE_PARAM,
    PixelUrlSigner,
    sign_pixel_url,
)
from .integrations.flask import flask_init_app
from .integrations.pyramid import includeme, pyramid_add_pixel_url

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
