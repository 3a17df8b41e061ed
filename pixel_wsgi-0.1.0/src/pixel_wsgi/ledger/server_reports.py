"""Reports from the advertiser's own servers: planned first, then written.

:func:`plan_report` decides what a report does to the ledger, reading only;
:func:`apply_plan` writes what was decided. Both run inside one serialised write.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from ..clock import iso_utc
from ..errors import ReportRefused, StorageError
from ..models import (
    Attribution,
    Reason,
    ReferenceClaim,
    SaleReport,
    ServerReport,
    Source,
    Transaction,
    VisitClaim,
)
from ..money import ZERO
from .contests import claimed_values, decide_contest, settle_contest
from .corrections import corrected_values, insert_correction, values_of
from .fingerprints import report_digest
from .payouts import new_draft
from .visits import visit_attribution

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter

__all__ = ["Plan", "ReportResult", "ReportStatus", "apply_plan", "plan_report"]


class ReportStatus(str, enum.Enum):
    """What a server-side report did to the ledger."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    CORRECTED = "corrected"
    #: the store failed; the report is in the outage spool, to be applied by a replay
    SPOOLED = "spooled"


class ReportResult(NamedTuple):
    """A server-side report's effect and the conversion's current state after it.

    ``transaction`` is None only for ``SPOOLED``, which gives the spooled ``event_id``.
    """

    status: ReportStatus
    transaction: Transaction | None
    event_id: str | None = None


class Plan(NamedTuple):
    """What :func:`plan_report` decided a report does; :func:`apply_plan` writes it."""

    status: ReportStatus
    attribution: Attribution | None = None
    visit_id: int | None = None
    original: Transaction | None = None
    current: Transaction | None = None
    values: SaleReport | None = None
    #: the report's digest, remembered once applied (None: already seen)
    report_hash: str | None = None
    #: the contest this report decides: every open claim, and the winner among them
    #: (None when the conversion's current holder won)
    decided: tuple[list[ReferenceClaim], ReferenceClaim | None] | None = None


def plan_report(
    writer: LedgerWriter,
    now: datetime,
    advertiser_id: int,
    server_report: ServerReport,
    source: Source,
    visit: VisitClaim | None,
) -> Plan | ReportRefused:
    """Decide what a server-side report does; nothing is written here."""
    report = server_report.report
    reference_id = report.parent_reference_id or report.reference_id
    if reference_id is None:
        return ReportRefused(
            Reason.MISSING_FIELD,
            "a server-side report needs reference_id (or parent_reference_id)",
            field="reference_id",
        )
    if not writer.advertiser_exists(advertiser_id):
        return ReportRefused(Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}")
    digest = report_digest(server_report, source)
    original = writer.find_original(advertiser_id, reference_id)
    if original is None:
        plan = _plan_new(writer, now, advertiser_id, server_report, visit)
        return plan if isinstance(plan, ReportRefused) else plan._replace(report_hash=digest)
    current = writer.chain_end(original.transaction_id)
    if writer.server_report_seen(advertiser_id, reference_id, source._value_, digest):
        # Sent before, whatever happened since (a reversal, a correction): a retry.
        return Plan(ReportStatus.UNCHANGED, original=original, current=current)
    claims = writer.open_claims(advertiser_id, reference_id)
    decided, winner = decide_contest(server_report, current, claims) if claims else (False, None)
    credited = (current.campaign_id, current.publisher_id)
    if winner is not None:
        credited = (winner.campaign_id, winner.publisher_id)
    for field, given, held in (
        ("advertiser_campaign_id", server_report.campaign_id, credited[0]),
        ("affiliate_id", server_report.publisher_id, credited[1]),
    ):
        if given is not None and given != held:
            return ReportRefused(
                Reason.ATTRIBUTION_CONFLICT,
                f"conversion {reference_id!r} is credited to {field} {held}, not {given}",
                field=field,
            )
    plan = Plan(
        ReportStatus.UNCHANGED,
        original=original,
        current=current,
        report_hash=digest,
        decided=(claims, winner) if decided else None,
    )
    if winner is not None:
        # Another visit's claim is confirmed: it takes the attribution, with the
        # values it claimed as updated by the report.
        claimed = claimed_values(winner)
        base = dataclasses.replace(
            current,
            sale_amount=claimed.sale_amount,
            sale_currency=claimed.sale_currency,
            reason_code=claimed.reason_code,
            sku_list=claimed.sku_list,
            quantity_list=claimed.quantity_list,
            custom_data=claimed.custom_data,
        )
        values = corrected_values(base, report) or values_of(
            base, personal_data=report.personal_data
        )
        if server_report.reversal_reason is not None:
            values.sale_amount = ZERO
        return plan._replace(status=ReportStatus.CORRECTED, values=values)
    if server_report.reversal_reason is not None:
        if current.reversal_reason == server_report.reversal_reason:
            return plan
        voided = values_of(current, personal_data=report.personal_data)
        voided.sale_amount = ZERO
        return plan._replace(status=ReportStatus.CORRECTED, values=voided)
    changed = corrected_values(current, report)
    if changed is None:
        if current.reversal_reason is None:
            return plan
        # Restating a reversed conversion's values (in a report not sent before)
        # brings it back.
        changed = values_of(current, personal_data=report.personal_data)
    return plan._replace(status=ReportStatus.CORRECTED, values=changed)


def _plan_new(
    writer: LedgerWriter,
    now: datetime,
    advertiser_id: int,
    server_report: ServerReport,
    visit: VisitClaim | None,
) -> Plan | ReportRefused:
    report = server_report.report
    if report.parent_reference_id is not None or server_report.reversal_reason is not None:
        return ReportRefused(
            Reason.UNKNOWN_PARENT_REFERENCE,
            "no conversion has this reference_id to update",
            field="parent_reference_id" if report.parent_reference_id else "reference_id",
        )
    if report.sale_amount is not None and report.sale_amount < 0:
        return ReportRefused(
            Reason.INVALID_SALE_AMOUNT,
            "a negative sale_amount claws back an existing conversion; it cannot create one",
            field="sale_amount",
        )
    campaign_id, publisher_id = server_report.campaign_id, server_report.publisher_id
    if campaign_id is None and publisher_id is None and visit is not None:
        attribution = visit_attribution(writer, visit, iso_utc(now))
        if attribution is None or attribution.advertiser_id != advertiser_id:
            return ReportRefused(
                Reason.NO_ATTRIBUTION, "the visitor's visit does not credit this advertiser"
            )
        return Plan(ReportStatus.CREATED, attribution=attribution, visit_id=visit.visit_id)
    if campaign_id is None or publisher_id is None:
        return ReportRefused(
            Reason.NO_ATTRIBUTION,
            "no earlier conversion has this reference_id, so a new one needs"
            " advertiser_campaign_id and affiliate_id",
            field="advertiser_campaign_id" if campaign_id is None else "affiliate_id",
        )
    campaign = writer.campaign(campaign_id)
    if campaign is None or campaign.advertiser_id != advertiser_id:
        return ReportRefused(
            Reason.UNKNOWN_CAMPAIGN,
            f"advertiser {advertiser_id} has no campaign {campaign_id}",
            field="advertiser_campaign_id",
        )
    if not writer.publisher_approved(campaign_id, publisher_id):
        return ReportRefused(
            Reason.PUBLISHER_NOT_APPROVED,
            f"publisher {publisher_id} has no tracking link for campaign {campaign_id}",
            field="affiliate_id",
        )
    attribution = Attribution(advertiser_id, campaign_id, publisher_id, campaign.payout)
    return Plan(ReportStatus.CREATED, attribution=attribution)


def apply_plan(
    writer: LedgerWriter,
    now: datetime,
    advertiser_id: int,
    plan: Plan,
    server_report: ServerReport,
    source: Source,
) -> ReportResult:
    """Write what :func:`plan_report` decided; return the conversion's new current state."""
    if plan.status is ReportStatus.CREATED:
        assert plan.attribution is not None
        draft = new_draft(plan.attribution, plan.visit_id, server_report.report, source, "", now)
        transaction_id = writer.insert_transaction(draft)
        if transaction_id is None:
            # Writers are serialised and the reference was free a moment ago.
            raise StorageError("the reference key was taken inside a serialised write")
        original_id = transaction_id
    else:
        assert plan.original is not None and plan.current is not None
        original_id = plan.original.transaction_id
        if plan.status is ReportStatus.CORRECTED:
            assert plan.values is not None
            insert_correction(
                writer,
                now,
                plan.original,
                plan.current,
                plan.values,
                source,
                server_report.reversal_reason,
                credit=None if plan.decided is None else plan.decided[1],
            )
        if plan.decided is not None:
            settle_contest(writer, now, plan.current, *plan.decided, source)
    current = writer.chain_end(original_id)
    if plan.report_hash is not None:
        assert current.reference_id is not None
        writer.note_server_report(
            advertiser_id, current.reference_id, source._value_, plan.report_hash, iso_utc(now)
        )
    return ReportResult(plan.status, current)
