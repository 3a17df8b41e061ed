"""What a conversion pays its publisher, computed in exact decimals when its row is written."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ..clock import iso_utc
from ..models import Attribution, PayoutKind, PayoutRule, SaleReport, Source, TransactionDraft
from ..money import ZERO, format_money, percent_of, to_cents

__all__ = ["compute_payout", "describe_payout", "new_draft"]


def compute_payout(
    rule: PayoutRule, sale_amount: Decimal | None, reason_code: str | None, sale_currency: str
) -> tuple[Decimal, str]:
    """The publisher's payout for one conversion, and its currency.

    A campaign restricted to some reason codes pays nothing for the others; a
    percentage of no sale is nothing. Rounded half-up to the cent, in pixel-wsgi's
    own decimal context (:mod:`pixel_wsgi.money`), whatever the host thread's is.
    """
    if rule.kind is PayoutKind.PERCENT:
        currency = sale_currency
        if rule.reason_codes and reason_code not in rule.reason_codes:
            return ZERO, currency
        amount = sale_amount if sale_amount is not None else ZERO
        return percent_of(amount, rule.value), currency
    if rule.reason_codes and reason_code not in rule.reason_codes:
        return ZERO, rule.currency
    if sale_amount is not None and sale_amount < 0:
        # A refund reported as a negative sale (server side only) claws back a
        # percentage; it never earns a fixed payout.
        return ZERO, rule.currency
    return to_cents(rule.value), rule.currency


def new_draft(
    attribution: Attribution,
    visit_id: int | None,
    report: SaleReport,
    source: Source,
    fingerprint: str,
    now: datetime,
) -> TransactionDraft:
    """A conversion's first row, credited and paid as ``attribution`` says."""
    payout, payout_currency = compute_payout(
        attribution.payout, report.sale_amount, report.reason_code, report.sale_currency
    )
    return TransactionDraft(
        advertiser_id=attribution.advertiser_id,
        campaign_id=attribution.campaign_id,
        publisher_id=attribution.publisher_id,
        visit_id=visit_id,
        source=source._value_,  # the documented raw value, without .value's descriptor
        reference_id=report.reference_id,
        corrects_transaction_id=None,
        original_transaction_id=None,
        sale_amount=report.sale_amount,
        sale_currency=report.sale_currency,
        reason_code=report.reason_code,
        sku_list=report.sku_list,
        quantity_list=report.quantity_list,
        external_data=report.external_data,
        custom_data=report.custom_data,
        payout=payout,
        payout_currency=payout_currency,
        fingerprint=fingerprint,
        created_at=iso_utc(now),
        personal_data=report.personal_data,
    )


def describe_payout(rule: PayoutRule, *, field_names: bool = False) -> str:
    """A payout rule in words: ``10% of the sale``, ``4.50 USD per conversion (renewal
    only)``; with ``field_names``, as the CLI says it, naming the report's fields:
    ``10% of sale_amount``, ``4.50 USD per conversion (only for reason_code renewal)``.
    """
    if rule.kind is PayoutKind.PERCENT:
        text = f"{rule.value:f}% of {'sale_amount' if field_names else 'the sale'}"
    else:
        text = f"{format_money(rule.value)} {rule.currency} per conversion"
    if rule.reason_codes:
        codes = ", ".join(rule.reason_codes)
        text += f" (only for reason_code {codes})" if field_names else f" ({codes} only)"
    return text
