"""Request facts decided at the edge, before anything is recorded."""

from __future__ import annotations

import ipaddress
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


def truncated_ip(address: str | None) -> str | None:
    """The visitor's network, never the full address: IPv4 /24, IPv6 /48.

    IPv6 addresses that carry an IPv4 address are truncated as that IPv4 address:

    - IPv4-mapped ``::ffff:203.0.113.7`` (a dual-stack server's view of an IPv4
      visitor) gives ``203.0.113.0``;
    - 6to4 ``2002:cb00:7107::1`` holds the whole IPv4 address in its first 48 bits, so
      it keeps only the ``2002::/16`` prefix and the address's /24: ``2002:cb00:7100::``.

    Teredo (``2001:0::/32``) keeps its /48, which holds only the first half of the
    Teredo *server's* address; the client's address and port are in the last 64 bits.
    NAT64 (``64:ff9b::/96``) and IPv4-compatible addresses hold theirs in the last 32.
    """
    if not address:
        return None
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            # 16 bits of 2002::/16, then the embedded IPv4 address's /24.
            prefix = 16 + 24 if ip.sixtofour is not None else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def is_https(environ: WSGIEnvironment) -> bool:
    return environ.get("wsgi.url_scheme") == "https"
