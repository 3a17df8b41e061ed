"""Request facts decided at the edge, before anything is recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def is_prefetch(environ: WSGIEnvironment) -> bool:
    """Whether the browser is only speculatively fetching, not navigating.

    Chrome and Safari send ``Sec-Purpose: prefetch`` (possibly ``;prerender``),
    older Chrome ``Purpose: prefetch``, Firefox ``X-Moz: prefetch``. A prefetch
    that is never used must not count as a click or a conversion.
    """
    sec_purpose: str = environ.get("HTTP_SEC_PURPOSE", "")
    purpose: str = environ.get("HTTP_PURPOSE", "")
    x_moz: str = environ.get("HTTP_X_MOZ", "")
    return "prefetch" in sec_purpose or purpose == "prefetch" or x_moz == "prefetch"


def sends_global_privacy_control(environ: WSGIEnvironment) -> bool:
    """``Sec-GPC: 1``: the visitor asks not to be tracked across sites."""
    gpc: str = environ.get("HTTP_SEC_GPC", "")
    return gpc.strip() == "1"


def is_https(environ: WSGIEnvironment) -> bool:
    return environ.get("wsgi.url_scheme") == "https"
