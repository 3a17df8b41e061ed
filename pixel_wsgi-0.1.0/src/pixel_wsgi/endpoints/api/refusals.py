"""The HTTP status the API answers a refused report with, chosen from its reason.

The ledger refuses a report with a reason only
(:class:`~pixel_wsgi.errors.ReportRefused`); what that means in HTTP is the API's.
"""

from __future__ import annotations

from ...models import Reason

__all__ = ["refusal_status"]

# Any other reason: 422 Unprocessable Content (well-formed, but the ledger cannot apply it).
_STATUS_OF_REASON: dict[Reason, int] = {
    Reason.MISSING_FIELD: 400,
    Reason.UNKNOWN_ADVERTISER: 404,
    Reason.UNKNOWN_PARENT_REFERENCE: 404,
    Reason.ATTRIBUTION_CONFLICT: 409,
    Reason.IMMUTABLE_TRANSACTION: 409,
}


def refusal_status(reason: Reason) -> int:
    """The status a report refused for ``reason`` is answered with."""
    return _STATUS_OF_REASON.get(reason, 422)
