"""Rules for where a tracking link may send a visitor.

A link's destination is stored when the link is created and never taken from
the request, so a tracking link can never be turned into an open redirect.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from werkzeug.urls import iri_to_uri

from .errors import ConfigurationError


def destination_problem(destination: str) -> str | None:
    """What is wrong with a link destination, in one line, or None when it may be used.

    Allowed: a path on the host site (``/landing?x=1``) or an absolute
    ``http``/``https`` URL with a host, a valid port and no credentials, that the
    redirect can encode (``Location`` is ASCII: the host in IDNA, the rest
    percent-encoded), exactly as a click will.
    """
    if not destination or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in destination):
        return (
            "a link destination must be non-empty with no spaces or control characters,"
            f" got {destination!r}"
        )
    if "\\" in destination:
        # Browsers read "/\evil.example" as "//evil.example".
        return f"a link destination may not contain '\\', got {destination!r}"
    if destination.startswith("//"):
        return (
            f"{destination!r} is a scheme-relative URL to another host; give a path"
            " such as /landing or a full https:// URL"
        )
    try:
        parts = urlsplit(destination)
        port = parts.port  # parsed lazily: "Port out of range 0-65535"
        # What the redirect does to the destination (the click would fail on it).
        iri_to_uri(destination)
    except ValueError as exc:  # UnicodeError included (IDNA, surrogates)
        return f"a link destination must be a valid URL ({exc}), got {destination!r}"
    if destination.startswith("/"):
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"a link destination is a path such as /landing or an http(s) URL, got {destination!r}"
        )
    if port == 0:
        return f"a link destination's port must be 1 to 65535, got {destination!r}"
    if parts.username is not None or parts.password is not None:
        return f"a link destination may not carry credentials: {destination!r}"
    return None


def validate_destination(destination: str) -> str:
    """Check a destination when a link is created; return it unchanged.

    :raises ConfigurationError: naming what is wrong (see :func:`destination_problem`).
    """
    problem = destination_problem(destination)
    if problem is not None:
        raise ConfigurationError(problem)
    return destination


def destination_host(destination: str) -> str | None:
    """The lower-case host of an absolute destination; None for a path on the host site."""
    if destination.startswith("/"):
        return None
    return (urlsplit(destination).hostname or "").lower()


def destination_allowed(destination: str, request_host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether a stored destination may be used on this request.

    Paths always may; an absolute URL only to the request's own host or one of
    ``allowed_hosts``. A destination that no longer passes
    :func:`validate_destination` never may.
    """
    if destination_problem(destination) is not None:
        return False
    host = destination_host(destination)
    if host is None:
        return True
    own_host = urlsplit(f"//{request_host}").hostname or ""
    return host == own_host.lower() or host in {h.lower() for h in allowed_hosts}
