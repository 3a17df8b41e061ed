"""The types delivery works with: targets, the rows they send, and what came back.

Plain data, shared by the storage (which keeps targets and deliveries), the target types
(which turn rows into HTTP requests and responses into outcomes) and the worker (which
moves rows between states). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from ..models import DeliveryStatus, TargetKind, TargetStatus, Transaction

__all__ = [
    "CLICK_ID_PARAMS",
    "SUB_ID_ALIASES",
    "SUB_ID_PARAMS",
    "ClickContext",
    "ConversionContext",
    "DeliveryItem",
    "DeliveryStatus",
    "HttpRequest",
    "HttpResponse",
    "Outcome",
    "OutcomeKind",
    "Target",
    "TargetKind",
    "TargetStatus",
]


@dataclass(frozen=True, slots=True)
class Target:
    """One destination of one advertiser's ledger rows.

    :param settings: the kind's options that are not secret (``url``, ``pixel_id``,
        ``endpoint``, ...), as given to ``target add``.
    :param secrets: the kind's credentials (``access_token``, ``secret``,
        ``refresh_token``, ...), decrypted; stored encrypted, never printed after ``add``.
    """

    id: int
    advertiser_id: int
    kind: TargetKind
    publisher_id: int | None
    settings: Mapping[str, str]
    secrets: Mapping[str, str]
    status: TargetStatus
    #: why the target is paused or failing, for the operator
    status_detail: str | None
    created_at: str


#: Sub id parameters of a tracking link, kept with the visit for the publisher's postback.
SUB_ID_PARAMS = ("sub1", "sub2", "sub3", "sub4", "sub5")
#: TUNE's names for the same sub ids (``aff_sub`` is ``sub1``).
SUB_ID_ALIASES = {
    "aff_sub": "sub1",
    "aff_sub2": "sub2",
    "aff_sub3": "sub3",
    "aff_sub4": "sub4",
    "aff_sub5": "sub5",
}
#: Ad platforms' click ids of a tracking link, kept byte for byte (they are case-sensitive).
CLICK_ID_PARAMS = ("gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid")


@dataclass(frozen=True, slots=True)
class ClickContext:
    """What the tracking link's query carried, kept with the visit."""

    #: ``sub1``..``sub5`` (aliases already folded), only those given
    sub_ids: Mapping[str, str] = field(default_factory=dict)
    #: ``gclid``, ``gbraid``, ``wbraid``, ``fbclid``, ``ttclid``, ``msclkid``, only those given
    click_ids: Mapping[str, str] = field(default_factory=dict)
    #: when the click happened, in Unix milliseconds (Meta's ``fbc`` carries it)
    clicked_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ConversionContext:
    """What the conversion's request carried that a target needs, kept only for delivery."""

    #: Meta's browser id, the ``_fbp`` cookie of the host's domain
    fbp: str | None = None
    #: GA4's client id, from the ``_ga`` cookie (``GA1.2.X.Y`` gives ``X.Y``)
    ga_client_id: str | None = None
    #: the browser's ``User-Agent``
    user_agent: str | None = None
    #: the visitor's network, truncated (IPv4 /24, IPv6 /48), never the full address
    ip_prefix: str | None = None
    #: the page that fired the pixel (``Referer``): Meta's ``event_source_url``
    page_url: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One ledger row on its way to one target, with what the target may need."""

    #: the row to send: a conversion, a correction or a reversal
    row: Transaction
    #: the first row of its chain (the row itself for a conversion)
    original: Transaction
    #: the click that led to the conversion, when it came through a tracking link
    click: ClickContext | None = None
    #: the conversion request's context, when a target of the advertiser needed it
    conversion: ConversionContext | None = None
    #: the conversion's personal (remarketing) fields, to be hashed by targets that take them
    personal: Mapping[str, str] = field(default_factory=dict)
    #: how many times this row was sent to this target before (0 the first time)
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request a target type built: what a worker sends, as it is sent.

    :param transaction_ids: the ledger rows it carries, in order.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    transaction_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What came back. Header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class OutcomeKind(str, Enum):
    """What a response means for one row, as the platform's documentation says."""

    DELIVERED = "delivered"
    #: the platform already had it: counts as delivered
    DUPLICATE = "duplicate"
    #: try again later (5xx, 429, a timeout, a documented transient error)
    RETRY = "retry"
    #: refused for good: dead-lettered with the reason
    PERMANENT = "permanent"
    #: the credentials were refused: the target pauses until an operator resumes it
    AUTH = "auth"
    #: the target cannot express the row
    UNSUPPORTED = "unsupported"
    #: too old for the platform: dead, never retried
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The outcome of one row in one attempt.

    :param detail: a short, redacted explanation (never a credential or personal data).
    :param retry_after: seconds the platform asked to wait (``Retry-After``), for RETRY.
    """

    kind: OutcomeKind
    detail: str
    retry_after: float | None = None
