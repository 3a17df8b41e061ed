"""Ledger inputs as spool records, and back: what a replay needs to redo a write.

A spooled event holds the already validated inputs of one ledger call (the parsed
report, the verified visit claim, the redacted query for the rejection log), so a
replay applies exactly what the request would have, under the rules of the code that
replays it, and needs no configuration of the middleware that spooled it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .attribution import VisitClaim
from .models import SaleReport, ServerReport

__all__ = [
    "decode_report",
    "decode_server_report",
    "decode_visit",
    "encode_report",
    "encode_server_report",
    "encode_visit",
]


def encode_report(report: SaleReport) -> dict[str, Any]:
    return {
        "sale_amount": None if report.sale_amount is None else str(report.sale_amount),
        "sale_currency": report.sale_currency,
        "reason_code": report.reason_code,
        "sku_list": list(report.sku_list),
        "quantity_list": list(report.quantity_list),
        "reference_id": report.reference_id,
        "parent_reference_id": report.parent_reference_id,
        "external_data": report.external_data,
        "custom_data": dict(report.custom_data),
        "personal_data": dict(report.personal_data),
        "given": sorted(report.given),
    }


def decode_report(data: dict[str, Any]) -> SaleReport:
    amount = data["sale_amount"]
    return SaleReport(
        sale_amount=None if amount is None else Decimal(amount),
        sale_currency=data["sale_currency"],
        reason_code=data["reason_code"],
        sku_list=tuple(data["sku_list"]),
        quantity_list=tuple(int(q) for q in data["quantity_list"]),
        reference_id=data["reference_id"],
        parent_reference_id=data["parent_reference_id"],
        external_data=data["external_data"],
        custom_data=dict(data["custom_data"]),
        personal_data=dict(data["personal_data"]),
        given=frozenset(data["given"]),
    )


def encode_server_report(server_report: ServerReport) -> dict[str, Any]:
    return {
        "report": encode_report(server_report.report),
        "campaign_id": server_report.campaign_id,
        "publisher_id": server_report.publisher_id,
        "reversal_reason": server_report.reversal_reason,
    }


def decode_server_report(data: dict[str, Any]) -> ServerReport:
    return ServerReport(
        report=decode_report(data["report"]),
        campaign_id=data["campaign_id"],
        publisher_id=data["publisher_id"],
        reversal_reason=data["reversal_reason"],
    )


def encode_visit(visit: VisitClaim | None) -> list[int] | None:
    return None if visit is None else [visit.visit_id, visit.link_id]


def decode_visit(data: list[int] | None) -> VisitClaim | None:
    return None if data is None else VisitClaim(int(data[0]), int(data[1]))
