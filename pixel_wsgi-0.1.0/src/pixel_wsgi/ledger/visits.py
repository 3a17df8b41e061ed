"""Which campaign a visit credits, including a visit whose click was spooled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import Attribution, VisitClaim

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter

__all__ = ["visit_attribution"]


def visit_attribution(writer: LedgerWriter, visit: VisitClaim, now: str) -> Attribution | None:
    """The attribution of a cookie's visit; a spooled click's visit is stored first."""
    attribution = writer.attribution(visit.visit_id)
    # A negative id: the click was spooled while the store was down. Its signed
    # cookie is the record of the visit until the replay stores it.
    if (
        attribution is None
        and visit.visit_id < 0
        and writer.ensure_visit(visit.visit_id, visit.link_id, now)
    ):
        attribution = writer.attribution(visit.visit_id)
    return attribution
