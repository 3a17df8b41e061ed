"""Contested conversions: a ``reference_id`` claimed by more than one visit.

A second browser claim from another visit is kept, not paid (``contested_claim``);
the advertiser's server report decides which claim wins the attribution (the
others: ``contest_lost``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from ..clock import iso_utc
from ..models import Reason, ReferenceClaim, SaleReport, ServerReport, Source, Transaction
from .refusals import write_rejection

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter

__all__ = [
    "MAX_OPEN_CLAIMS",
    "claimed_values",
    "decide_contest",
    "server_spoke",
    "settle_contest",
]

#: How many other visits may contest one reference_id before further claims are duplicates.
MAX_OPEN_CLAIMS = 8
_BROWSER_SOURCES = frozenset({Source.PIXEL.value, Source.LEGACY_PIXEL.value})
# The values a server report can confirm a browser claim by.
_CONFIRMABLE_FIELDS = ("sale_amount", "sale_currency", "reason_code", "sku_list", "quantity_list")


def server_spoke(writer: LedgerWriter, original: Transaction) -> bool:
    """Whether the advertiser's server has reported the conversion ``original`` begins."""
    assert original.reference_id is not None
    return original.source not in _BROWSER_SOURCES or writer.server_reported(
        original.advertiser_id, original.reference_id
    )


def _confirms(
    server_report: ServerReport,
    values: SaleReport | Transaction,
    campaign_id: int,
    publisher_id: int,
) -> bool | None:
    """Whether a server report confirms a browser claim; None when it says nothing to tell.

    ``values``: a claim's reported values, or the current row of the conversion's holder
    (both carry the confirmable fields under the same names).
    """
    report = server_report.report
    checks = [
        (getattr(report, name), getattr(values, name))
        for name in _CONFIRMABLE_FIELDS
        if name in report.given
    ]
    if server_report.campaign_id is not None:
        checks.append((server_report.campaign_id, campaign_id))
    if server_report.publisher_id is not None:
        checks.append((server_report.publisher_id, publisher_id))
    if not checks:
        return None
    return all(given == held for given, held in checks)


def claimed_values(claim: ReferenceClaim) -> SaleReport:
    """The sale values a contesting claim reported (stored as JSON, personal data left out)."""
    return SaleReport.from_json(json.loads(claim.report))


def decide_contest(
    server_report: ServerReport, current: Transaction, claims: list[ReferenceClaim]
) -> tuple[bool, ReferenceClaim | None]:
    """Which claim a server report confirms: ``(decided, winner)``.

    The winner is None when the conversion's current holder is confirmed; nothing is
    decided unless exactly one claim (the holder's included) has the reported values.
    """
    holder = _confirms(server_report, current, current.campaign_id, current.publisher_id)
    if holder is None:
        return False, None
    confirmed = [
        claim
        for claim in claims
        if _confirms(server_report, claimed_values(claim), claim.campaign_id, claim.publisher_id)
    ]
    if holder and not confirmed:
        return True, None
    if not holder and len(confirmed) == 1:
        return True, confirmed[0]
    return False, None


def settle_contest(
    writer: LedgerWriter,
    now: datetime,
    holder: Transaction,
    claims: list[ReferenceClaim],
    winner: ReferenceClaim | None,
    source: Source,
) -> None:
    """Close a contest: every claim but the winner is refused, with a reason."""
    writer.resolve_claims(
        [claim.claim_id for claim in claims],
        None if winner is None else winner.claim_id,
        iso_utc(now),
    )
    losers: list[tuple[int | None, int]] = [
        (c.visit_id, c.publisher_id) for c in claims if c is not winner
    ]
    if winner is not None:
        losers.insert(0, (holder.visit_id, holder.publisher_id))
    for visit_id, publisher_id in losers:
        write_rejection(
            writer,
            now,
            holder.advertiser_id,
            source,
            Reason.CONTEST_LOST,
            f"the advertiser's server report confirmed another claim of this reference_id;"
            f" publisher {publisher_id} is not credited",
            "",
            visit_id,
            holder.reference_id,
        )
