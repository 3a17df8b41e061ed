"""Pyramid: ``request.pixel_url(...)`` for signed conversion-pixel URLs.

``config.include("pixel_wsgi.signing")`` runs :func:`includeme` (re-exported by
:mod:`pixel_wsgi.signing`, the documented module); :func:`pyramid_add_pixel_url`
does the same with the key in hand. See :mod:`pixel_wsgi.attribution.signing`
for what a signed pixel URL is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from ..attribution.signing import DEFAULT_EXPIRES_IN, PixelUrlSigner
from ..errors import ConfigurationError

__all__ = ["includeme", "pyramid_add_pixel_url"]


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
