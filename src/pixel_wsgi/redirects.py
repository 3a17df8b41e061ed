"""Rules for where a tracking link may send a visitor.

A link's destination is stored when the link is created and never taken from
the request, so a tracking link can never be turned into an open redirect.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from .errors import ConfigurationError


def validate_destination(destination: str) -> str:
    """Check a destination when a link is created; return it unchanged.

    Allowed: a path on the host site (``/landing?x=1``) or an absolute
    ``http``/``https`` URL with a host and no credentials.

    :raises ConfigurationError: naming what is wrong.
    """
    if not destination or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in destination):
        raise ConfigurationError(
            f"a link destination must be non-empty with no spaces or control characters,"
            f" got {destination!r}"
        )
    if "\\" in destination:
        # Browsers read "/\evil.example" as "//evil.example".
        raise ConfigurationError(f"a link destination may not contain '\\', got {destination!r}")
    if destination.startswith("/"):
        if destination.startswith("//"):
            raise ConfigurationError(
                f"{destination!r} is a scheme-relative URL to another host; give a path"
                " such as /landing or a full https:// URL"
            )
        return destination
    parts = urlsplit(destination)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"a link destination is a path such as /landing or an http(s) URL, got {destination!r}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"a link destination may not carry credentials: {destination!r}")
    return destination


def destination_allowed(destination: str, request_host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether a stored destination may be used on this request.

    Paths always may; an absolute URL only to the request's own host or one of
    ``allowed_hosts``. A destination that no longer passes
    :func:`validate_destination` never may.
    """
    try:
        validate_destination(destination)
    except ConfigurationError:
        return False
    if destination.startswith("/"):
        return True
    host = (urlsplit(destination).hostname or "").lower()
    own_host = urlsplit(f"//{request_host}").hostname or ""
    return host == own_host.lower() or host in {h.lower() for h in allowed_hosts}
