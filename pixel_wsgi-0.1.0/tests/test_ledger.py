"""Payout arithmetic and the ledger's fingerprints, without WSGI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pixel_wsgi import PayoutKind, PayoutRule, SaleReport, compute_payout
from pixel_wsgi.clock import iso_utc
from pixel_wsgi.ledger.fingerprints import reload_fingerprint

PERCENT_10 = PayoutRule(PayoutKind.PERCENT, Decimal("10"))
PERCENT_ODD = PayoutRule(PayoutKind.PERCENT, Decimal("12.5"))
FIXED = PayoutRule(PayoutKind.FIXED, Decimal("4.5"), "GBP")
FIXED_RENEWALS = PayoutRule(PayoutKind.FIXED, Decimal("4.50"), "USD", ("renewal",))
PERCENT_RENEWALS = PayoutRule(PayoutKind.PERCENT, Decimal("10"), "USD", ("renewal",))


@pytest.mark.parametrize(
    ("rule", "amount", "reason_code", "currency", "expected"),
    [
        pytest.param(PERCENT_10, "10.00", None, "USD", ("1.00", "USD"), id="percent"),
        pytest.param(PERCENT_10, "0.05", None, "USD", ("0.01", "USD"), id="half-cent-rounds-up"),
        pytest.param(PERCENT_10, "0.04", None, "USD", ("0.00", "USD"), id="under-half-cent"),
        pytest.param(PERCENT_ODD, "19.99", None, "EUR", ("2.50", "EUR"), id="percent-in-eur"),
        pytest.param(PERCENT_10, None, None, "USD", ("0.00", "USD"), id="percent-of-no-sale"),
        pytest.param(
            PERCENT_10, "999999999999.99", None, "USD", ("100000000000.00", "USD"), id="huge"
        ),
        pytest.param(FIXED, "10.00", None, "USD", ("4.50", "GBP"), id="fixed"),
        pytest.param(FIXED, None, None, "USD", ("4.50", "GBP"), id="fixed-without-sale"),
        pytest.param(FIXED_RENEWALS, "10.00", "renewal", "USD", ("4.50", "USD"), id="listed"),
        pytest.param(FIXED_RENEWALS, "10.00", "new", "USD", ("0.00", "USD"), id="not-listed"),
        pytest.param(FIXED_RENEWALS, "10.00", None, "USD", ("0.00", "USD"), id="no-reason"),
        pytest.param(PERCENT_RENEWALS, "10.00", "new", "USD", ("0.00", "USD"), id="pct-unlisted"),
    ],
)
def test_compute_payout(
    rule: PayoutRule,
    amount: str | None,
    reason_code: str | None,
    currency: str,
    expected: tuple[str, str],
) -> None:
    payout, payout_currency = compute_payout(
        rule, None if amount is None else Decimal(amount), reason_code, currency
    )
    assert (str(payout), payout_currency) == expected
    assert isinstance(payout, Decimal)


def test_fingerprint_tells_values_apart() -> None:
    base = SaleReport(sale_amount=Decimal("10.00"), reason_code="a", sku_list=("x",))
    assert reload_fingerprint(base) == reload_fingerprint(
        SaleReport(sale_amount=Decimal("10.00"), reason_code="a", sku_list=("x",))
    )
    others = [
        SaleReport(sale_amount=Decimal("10.01"), reason_code="a", sku_list=("x",)),
        SaleReport(sale_amount=Decimal("10.00"), reason_code="b", sku_list=("x",)),
        SaleReport(sale_amount=Decimal("10.00"), reason_code="a", sku_list=("y",)),
        SaleReport(
            sale_amount=Decimal("10.00"), reason_code="a", sku_list=("x",), sale_currency="EUR"
        ),
        SaleReport(
            sale_amount=Decimal("10.00"), reason_code="a", sku_list=("x",), custom_data={"k": "v"}
        ),
    ]
    assert len({reload_fingerprint(r) for r in [base, *others]}) == 6


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(
            datetime(2026, 11, 25, 12, 0, 0, 7, tzinfo=timezone.utc),
            "2026-11-25T12:00:00.000007Z",
            id="microseconds",
        ),
        pytest.param(
            datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc),
            "2026-11-25T12:00:00.000000Z",
            id="zero-microseconds-keep-the-width",
        ),
        pytest.param(
            datetime(2026, 11, 25, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-24T23:30:00.000000Z",
            id="converted-to-utc",
        ),
    ],
)
def test_timestamps_are_fixed_width_utc(moment: datetime, text: str) -> None:
    assert iso_utc(moment) == text
