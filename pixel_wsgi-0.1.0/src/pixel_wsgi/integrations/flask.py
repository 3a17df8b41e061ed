"""Flask: a ``pixel_url(...)`` template global for signed conversion-pixel URLs.

See :mod:`pixel_wsgi.attribution.signing` for what a signed pixel URL is;
:mod:`pixel_wsgi.signing` re-exports :func:`flask_init_app`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..attribution.signing import DEFAULT_EXPIRES_IN, PixelUrlSigner

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["flask_init_app"]


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
