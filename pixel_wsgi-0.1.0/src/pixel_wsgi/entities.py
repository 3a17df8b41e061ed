"""The rules of the entities: names, payout rules, daily caps and link destinations.

Every writer of an entity goes through them: :class:`~pixel_wsgi.storage.Storage`
checks each entity it is given before storing it (``check_*`` raise
:class:`~pixel_wsgi.errors.EntityInvalid` naming the bad value), so the CLI, the API,
the demo and the test helpers all get the same answer.

A link's destination is stored when the link is created and never taken from
the request, so a tracking link can never be turned into an open redirect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from urllib.parse import quote, urlsplit

from .currencies import ISO_4217_CODES
from .errors import EntityInvalid
from .models import PayoutKind, PayoutRule

#: The longest name an operator tool accepts (see :func:`name_problem`).
MAX_NAME_LENGTH = 200
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_HUNDRED = Decimal(100)


# -- names -----------------------------------------------------------------------------


def check_stored_name(name: object) -> str:
    """What a store accepts as a name: any text, stored exactly as given.

    A store keeps whatever text it is handed (the contract: text round-trips
    byte for byte); an operator's tool applies :func:`name_problem` first.

    :raises EntityInvalid: when ``name`` is not a ``str``.
    """
    if not isinstance(name, str):
        raise EntityInvalid("name", f"a name is text, got {name!r}")
    return name


def name_problem(name: str) -> str | None:
    """What is wrong with a name typed by an operator, or None: once stripped it must be
    non-empty, at most :data:`MAX_NAME_LENGTH` characters, with no control characters."""
    text = name.strip()
    if not text:
        return "must not be empty"
    if _CONTROL_RE.search(text):
        return "must not contain control characters"
    if len(text) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    return None


def label_problem(label: str) -> str | None:
    """What is wrong with a free-text label (an API credential's), or None: it may be
    empty, but at most :data:`MAX_NAME_LENGTH` characters without control characters."""
    if _CONTROL_RE.search(label) or len(label) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters, no control characters"
    return None


# -- payout rules and daily caps ----------------------------------------------------------


def payout_problem(rule: PayoutRule) -> str | None:
    """What is wrong with a campaign's payout rule, in one line, or None.

    ``kind`` is a :class:`~pixel_wsgi.models.PayoutKind`; ``value`` a finite
    :class:`~decimal.Decimal` >= 0 (a float is not exact), at most 100 for a
    percentage; ``currency`` an ISO 4217 code; ``reason_codes`` non-empty texts
    without control characters.
    """
    if not isinstance(rule, PayoutRule):
        return f"a payout is a PayoutRule, got {rule!r}"
    if not isinstance(rule.kind, PayoutKind):
        return f"a payout's kind is fixed or percent, got {rule.kind!r}"
    value = rule.value
    if not isinstance(value, Decimal) or not value.is_finite():
        return f"a payout's value is a finite Decimal, got {value!r}"
    if value < 0:
        return f"a payout cannot be negative, got {value}"
    if rule.kind is PayoutKind.PERCENT and value > _HUNDRED:
        return f"a percent payout must be 0% to 100%, got {value}"
    if not isinstance(rule.currency, str) or rule.currency not in ISO_4217_CODES:
        return f"a payout's currency is an ISO 4217 code like USD, got {rule.currency!r}"
    if not isinstance(rule.reason_codes, tuple):
        return f"a payout's reason codes are a tuple, got {rule.reason_codes!r}"
    for code in rule.reason_codes:
        problem = reason_code_problem(code)
        if problem is not None:
            return f"a reason code {problem}"
    return None


def reason_code_problem(code: object) -> str | None:
    """What is wrong with one of a payout rule's reason codes, or None: it must be
    non-empty text without control characters."""
    if not isinstance(code, str) or not code.strip() or _CONTROL_RE.search(code):
        return f"must be non-empty text, got {code!r}"
    return None


def check_payout(rule: PayoutRule) -> PayoutRule:
    """Check a campaign's payout rule (see :func:`payout_problem`); return it unchanged.

    :raises EntityInvalid: naming what is wrong.
    """
    problem = payout_problem(rule)
    if problem is not None:
        raise EntityInvalid("payout", problem)
    return rule


def check_daily_cap(cap: int | None) -> int | None:
    """Check a campaign's daily cap: a whole number >= 0, or None for no cap.

    :raises EntityInvalid: otherwise (a :class:`ValueError`).
    """
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise EntityInvalid("daily_cap", f"a daily cap is a whole number >= 0 or None, got {cap!r}")
    return cap


# -- link destinations --------------------------------------------------------------------


def _as_uri(destination: str) -> None:
    """Encode ``destination`` as the redirect's ``Location`` will (Werkzeug's
    ``iri_to_uri``): the host in IDNA, the rest percent-encoded.

    :raises ValueError: what the click would fail on (IDNA, surrogates, the port).
    """
    parts = urlsplit(destination)
    quote(parts.path, safe="%!$&'()*+,/:;=@")
    quote(parts.query, safe="%!$&'()*+,/:;=?@")
    quote(parts.fragment, safe="%!#$&'()*+,/:;=?@")
    if parts.hostname:
        parts.hostname.encode("idna")
    parts.port  # noqa: B018 - parsed lazily: "Port out of range 0-65535"
    for credential in (parts.username, parts.password):
        if credential is not None:
            quote(credential, safe="%!$&'()*+,;=")


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
        _as_uri(destination)
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

    :raises EntityInvalid: naming what is wrong (see :func:`destination_problem`); a
        :class:`~pixel_wsgi.errors.ConfigurationError`.
    """
    if not isinstance(destination, str):
        raise EntityInvalid("destination", f"a link destination is text, got {destination!r}")
    problem = destination_problem(destination)
    if problem is not None:
        raise EntityInvalid("destination", problem)
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
