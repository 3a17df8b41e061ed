"""The conversion pixels: ``/pixels/conversion/<advertiser_id>.gif`` and the legacy URL.

Whatever happens inside, the browser gets the same 200 GIF: a browser never
retries an image, and a broken image on a thank-you page helps no one. What
happened is in the ledger or the rejection log instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .attribution import AttributionCookies, AttributionRejected, VisitClaim
from .edge import is_prefetch
from .errors import ParamError, StorageError
from .gif import GIF_HEADERS, TRANSPARENT_GIF
from .ledger import Ledger
from .models import Reason, SaleReport, Source
from .params import Limits, parse_legacy_params, parse_query, parse_sale_params, redacted_query

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from werkzeug.datastructures import MultiDict

logger = logging.getLogger("pixel_wsgi")

# Ids are positive integers; cap the digits so int() never sees a huge string.
_MAX_ID_DIGITS = 18


def parse_id(text: str) -> int | None:
    """A positive integer id from a path segment, or None."""
    if 0 < len(text) <= _MAX_ID_DIGITS and text.isascii() and text.isdigit():
        value = int(text)
        return value if value > 0 else None
    return None


class ConversionPixel:
    """Records a browser-reported conversion and answers the 1x1 GIF.

    :param legacy: serve the pre-2012 ``/tracked_actions/web_sale`` parameters
        (``amount``, ``currency``, ``external_data``); such conversions carry no
        ``reference_id`` and so can never be tied to a later report.
    """

    def __init__(
        self,
        ledger: Ledger,
        cookies: AttributionCookies,
        *,
        default_currency: str,
        limits: Limits,
        legacy: bool = False,
    ) -> None:
        self.ledger = ledger
        self.cookies = cookies
        self.default_currency = default_currency
        self.limits = limits
        self.legacy = legacy
        self.source = Source.LEGACY_PIXEL if legacy else Source.PIXEL

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, advertiser_text: str
    ) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        if not head and not is_prefetch(environ):
            try:
                self.record(environ, advertiser_text)
            except StorageError as exc:
                logger.error("conversion pixel not stored: %s", exc)
            except Exception:
                logger.exception("conversion pixel failed")
        start_response("200 OK", list(GIF_HEADERS))
        return [] if head else [TRANSPARENT_GIF]

    def record(self, environ: WSGIEnvironment, advertiser_text: str) -> None:
        advertiser_id = parse_id(advertiser_text)
        if advertiser_id is None:
            self.ledger.reject(
                advertiser_id=None,
                source=self.source,
                reason=Reason.UNKNOWN_ADVERTISER,
                detail=f"advertiser id must be a positive integer, got {advertiser_text[:40]!r}",
            )
            return
        query = environ.get("QUERY_STRING", "")
        args: MultiDict[str, str] | None = None
        try:
            args = parse_query(query, self.limits)
            report = self._parse(args)
        except ParamError as exc:
            self.ledger.reject(
                advertiser_id=advertiser_id,
                source=self.source,
                reason=exc.reason,
                detail=exc.detail,
                # A query that did not parse cannot be redacted: keep only its size.
                params=f"[unparsed query of {len(query)} characters]"
                if args is None
                else redacted_query(args),
            )
            return
        visit: VisitClaim | None = None
        problem: Reason | None = None
        value = self.cookies.read(environ.get("HTTP_COOKIE", ""), advertiser_id)
        if value:
            try:
                visit = self.cookies.verify(value)
            except AttributionRejected as exc:
                problem = exc.reason
        self.ledger.record_web_conversion(
            advertiser_id=advertiser_id,
            report=report,
            source=self.source,
            visit=visit,
            cookie_problem=problem,
            params=lambda: redacted_query(args),
        )

    def _parse(self, args: MultiDict[str, str]) -> SaleReport:
        if self.legacy:
            return parse_legacy_params(
                args, default_currency=self.default_currency, limits=self.limits
            )
        return parse_sale_params(args, default_currency=self.default_currency, limits=self.limits)
