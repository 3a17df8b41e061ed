"""Corrections and reversals: a new row at the end of a conversion's chain, never an edit."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..models import Attribution, ReferenceClaim, SaleReport, Source, Transaction
from ..money import ZERO
from .payouts import new_draft

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter

__all__ = ["corrected_values", "insert_correction", "values_of"]


def values_of(current: Transaction, *, personal_data: dict[str, str]) -> SaleReport:
    """A conversion's current values as a report (to restate them in a new row)."""
    return SaleReport(
        sale_amount=current.sale_amount,
        sale_currency=current.sale_currency,
        reason_code=current.reason_code,
        sku_list=current.sku_list,
        quantity_list=current.quantity_list,
        reference_id=current.reference_id,
        external_data=current.external_data,
        custom_data=dict(current.custom_data),
        personal_data=personal_data,
    )


def corrected_values(current: Transaction, report: SaleReport) -> SaleReport | None:
    """The values a conversion has after ``report`` updates it; None when nothing changes.

    Only the fields the report carried are replaced (SKUs and quantities
    together); custom data is merged key by key.
    """
    given = report.given
    sale_amount = report.sale_amount if "sale_amount" in given else current.sale_amount
    sale_currency = report.sale_currency if "sale_currency" in given else current.sale_currency
    reason_code = report.reason_code if "reason_code" in given else current.reason_code
    if "sku_list" in given or "quantity_list" in given:
        sku_list, quantity_list = report.sku_list, report.quantity_list
    else:
        sku_list, quantity_list = current.sku_list, current.quantity_list
    custom_data = {**current.custom_data, **report.custom_data}
    if (
        sale_amount == current.sale_amount
        and sale_currency == current.sale_currency
        and reason_code == current.reason_code
        and sku_list == current.sku_list
        and quantity_list == current.quantity_list
        and custom_data == current.custom_data
    ):
        return None
    return SaleReport(
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        reason_code=reason_code,
        sku_list=sku_list,
        quantity_list=quantity_list,
        reference_id=current.reference_id,
        external_data=current.external_data,
        custom_data=custom_data,
        personal_data=report.personal_data,
    )


def insert_correction(
    writer: LedgerWriter,
    now: datetime,
    original: Transaction,
    current: Transaction,
    corrected: SaleReport,
    source: Source,
    reversal_reason: str | None = None,
    credit: ReferenceClaim | None = None,
) -> int:
    """Append a correction to ``current``, the end of ``original``'s chain.

    It is credited like the row it corrects, or to ``credit``, a contesting claim
    the server's report confirmed, and paid by the credited campaign's current
    rule (nothing for a reversal).
    """
    campaign_id, publisher_id, visit_id = (
        (current.campaign_id, current.publisher_id, current.visit_id)
        if credit is None
        else (credit.campaign_id, credit.publisher_id, credit.visit_id)
    )
    attribution = Attribution(
        advertiser_id=original.advertiser_id,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        payout=writer.campaign_payout(campaign_id),
    )
    draft = new_draft(attribution, visit_id, corrected, source, "", now)
    draft.corrects_transaction_id = current.transaction_id
    draft.original_transaction_id = original.transaction_id
    if reversal_reason is not None:
        draft.reversal_reason = reversal_reason
        draft.payout = ZERO
    transaction_id = writer.insert_transaction(draft)
    assert transaction_id is not None  # corrections carry no new idempotency key
    return transaction_id
