"""Serving an operator's app from this machine: the dashboard's password and user,
and what a server listening beyond loopback over plain HTTP must say.

Shared by ``pixel-wsgi dashboard`` (:mod:`pixel_wsgi.cli.serve`) and the demo
(:mod:`pixel_wsgi.demo`), neither of which may import the other.
"""

from __future__ import annotations

import ipaddress

__all__ = [
    "DASHBOARD_USER",
    "PASSWORD_ENV",
    "PLAIN_HTTP_WARNING",
    "is_loopback",
    "url_host",
]

#: The environment variable that holds the dashboard's password.
PASSWORD_ENV = "PIXEL_WSGI_DASHBOARD_PASSWORD"
#: The user name that ``pixel-wsgi dashboard`` (and the demo) accept.
DASHBOARD_USER = "admin"


#: What a server listening beyond this machine over plain HTTP prints on stderr.
PLAIN_HTTP_WARNING = (
    "Warning: listening beyond this machine over plain HTTP; the password crosses"
    " the network readable. Prefer an SSH tunnel or HTTPS."
)


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" and other names: every interface, or who knows


def url_host(host: str) -> str:
    """How to write the address a server listens on in a URL to open."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL
