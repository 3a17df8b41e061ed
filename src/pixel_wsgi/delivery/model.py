"""The types delivery works with: targets, the rows they send, and what came back.

Plain data, shared by the storage (which keeps targets and deliveries), the target types
(which turn rows into HTTP requests and responses into outcomes) and the worker (which
moves rows between states). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

# The types the storage keeps live in the kernel (the storage may not import
# delivery); re-exported here, where targets have always found them.
from ..models import (
    CLICK_ID_PARAMS,
    SUB_ID_ALIASES,
    SUB_ID_PARAMS,
    ClickContext,
    ConversionContext,
    DeliveryStatus,
    TargetKind,
    TargetStatus,
    Transaction,
)

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


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One ledger row on its way to one target, with what the target may need."""

    #: the row to send: a conversion, a correction or a reversal
    row: Transaction
    #: the first row of its chain (the row itself for a conversion)
    original: Transaction
    #: the click that led to the conversion, when it came through a tracking link (for
    #: a row a contest credited to another visit, that visit's)
    click: ClickContext | None = None
    #: the conversion request's context, when a target of the advertiser needed it
    conversion: ConversionContext | None = None
    #: the conversion's personal (remarketing) fields, to be hashed by targets that take them
    personal: Mapping[str, str] = field(default_factory=dict)
    #: how many times this row was sent to this target before (0 the first time)
    attempts: int = 0
    #: the click of the original's visit (the same as ``click`` but after a contest)
    original_click: ClickContext | None = None


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
