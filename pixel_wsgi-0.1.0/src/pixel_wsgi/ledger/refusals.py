"""The rejection log: why a report or click did not count, written with the reason."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..clock import iso_utc
from ..models import Reason, RejectionDraft, Source

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter

__all__ = [
    "DUPLICATE_REFERENCE_DETAIL",
    "SERVER_REPORTED_DETAIL",
    "Params",
    "loggable",
    "write_rejection",
]

# The redacted query kept with a rejection, or a callable that makes it on demand:
# the accepted path never pays for redaction.
Params = str | Callable[[], str]

DUPLICATE_REFERENCE_DETAIL = (
    "this reference_id was already reported; use parent_reference_id to update it"
)
SERVER_REPORTED_DETAIL = (
    "the advertiser's server has reported this conversion; browser pixels can no longer change it"
)


def loggable(params: Params) -> str:
    """The redacted query itself, made now if it was deferred."""
    return params if isinstance(params, str) else params()


def write_rejection(
    writer: LedgerWriter,
    now: datetime,
    advertiser_id: int | None,
    source: Source | str,
    reason: Reason,
    detail: str,
    params: Params,
    visit_id: int | None,
    reference_id: str | None,
) -> None:
    """Write one rejection (or flag) into the log, inside ``writer``'s write."""
    writer.insert_rejection(
        RejectionDraft(
            advertiser_id=advertiser_id,
            source=source.value if isinstance(source, Source) else source,
            reason=reason,
            detail=detail,
            visit_id=visit_id,
            reference_id=reference_id,
            params=loggable(params),
            created_at=iso_utc(now),
        )
    )
