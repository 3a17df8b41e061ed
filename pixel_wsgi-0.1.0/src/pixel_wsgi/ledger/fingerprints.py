"""Digests that recognise a report seen before: a reloaded page, a resent server report."""

from __future__ import annotations

import hashlib
import json

from ..models import SaleReport, ServerReport, Source

__all__ = ["reload_fingerprint", "report_digest"]


def reload_fingerprint(report: SaleReport) -> str:
    """A digest of the reported values, to recognise a reload without a reference id."""
    canonical = json.dumps(
        [
            None if report.sale_amount is None else str(report.sale_amount),
            report.sale_currency,
            report.reason_code,
            report.sku_list,
            report.quantity_list,
            report.external_data,
            sorted(report.custom_data.items()),
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def report_digest(server_report: ServerReport, source: Source) -> str:
    """A digest of everything a server-side report says, and where it came from."""
    canonical = json.dumps(
        [source._value_, server_report.as_json()],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
