"""The conversion pixels: ``/pixels/conversion/<advertiser_id>.gif`` and the legacy URL.

Whatever happens inside, the browser gets the same 200 GIF: a browser never
retries an image, and a broken image on a thank-you page helps no one. What
happened is in the ledger or the rejection log instead.

Before a hit counts it passes, in this order: the edge filters (``bot``,
``cross_site_pixel``, see :mod:`pixel_wsgi.endpoints.filters`), the query's size limits,
the signature (:mod:`pixel_wsgi.signing`: ``invalid_signature``,
``expired_signature``, or ``unsigned_pixel`` for an advertiser that requires
signed pixels), the parameters' rules, then the ledger's (attribution,
duplicates, daily caps).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..attribution.cookie import AttributionCookies
from ..attribution.signing import EXPIRES_PARAM, SIGNATURE_PARAM, PixelUrlSigner
from ..errors import AttributionRejected, ParamError, StorageError
from ..models import ConversionContext, Reason, SaleReport, Source, VisitClaim
from ..params.conversion_context import conversion_context
from ..params.sale import (
    claimed_reference,
    parse_legacy_params,
    parse_query,
    parse_sale_params,
    redacted_query,
)
from ..params.values import Query, parse_positive_id
from .edge import is_https, is_prefetch
from .filters import Filters
from .gif import GIF_HEADERS, TRANSPARENT_GIF

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..outage.spooling import SpoolingLedger
    from ..settings import Settings

logger = logging.getLogger("pixel_wsgi")

# How much of an unexpected exception's message the rejection log keeps.
_MAX_FAILURE_DETAIL = 300


def request_context(environ: WSGIEnvironment) -> ConversionContext | None:
    """What delivery targets need of a conversion's request (see
    :func:`~pixel_wsgi.params.conversion_context.conversion_context`): the ``_fbp`` and
    ``_ga`` cookies of the host's domain, the User-Agent, the network, the page.

    Never raises: a context that fails (a bug of ours) is logged and left out, and the
    conversion counts without it.
    """
    try:
        return conversion_context(
            cookie_header=environ.get("HTTP_COOKIE"),
            user_agent=environ.get("HTTP_USER_AGENT"),
            remote_addr=environ.get("REMOTE_ADDR"),
            referer=environ.get("HTTP_REFERER"),
        )
    except Exception:
        logger.exception("the conversion's request context failed; it is kept without one")
        return None


class ConversionPixel:
    """Records a browser-reported conversion and answers the 1x1 GIF.

    :param legacy: serve the pre-2012 ``/tracked_actions/web_sale`` parameters
        (``amount``, ``currency``, ``external_data``); such conversions carry no
        ``reference_id`` and so can never be tied to a later report. The legacy
        pixel cannot be signed: an advertiser that requires signed pixels refuses it.
    :param filters: the fraud and noise filters
        (default: :class:`~pixel_wsgi.endpoints.filters.Filters`).
    :param signer: verifies signed pixels; without one, a signed pixel is refused.
    """

    def __init__(
        self,
        ledger: SpoolingLedger,
        cookies: AttributionCookies,
        settings: Settings,
        *,
        legacy: bool = False,
        filters: Filters | None = None,
        signer: PixelUrlSigner | None = None,
    ) -> None:
        self.ledger = ledger
        self.cookies = cookies
        # Copied, not read through settings: one attribute look-up less per hit.
        self.default_currency = settings.default_currency
        self.limits = settings.limits
        self.legacy = legacy
        self.filters = filters if filters is not None else Filters()
        self.signer = signer
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
            except Exception as exc:
                # A bug of ours: the hit must not vanish with only a traceback.
                logger.exception("conversion pixel failed")
                self._log_failure(environ, advertiser_text, exc)
        start_response("200 OK", list(GIF_HEADERS))
        return [] if head else [TRANSPARENT_GIF]

    def record(self, environ: WSGIEnvironment, advertiser_text: str) -> None:
        advertiser_id = parse_positive_id(advertiser_text)
        if advertiser_id is None:
            self.ledger.reject(
                advertiser_id=None,
                source=self.source,
                reason=Reason.UNKNOWN_ADVERTISER,
                detail=f"advertiser id must be a positive integer, got {advertiser_text[:40]!r}",
            )
            return
        query = environ.get("QUERY_STRING", "")
        refusal = self.filters.pixel_problem(environ)
        if refusal is not None:
            self._refuse(advertiser_id, *refusal, query, self._parsed_or_none(query))
            return
        args: Query | None = None
        try:
            args = parse_query(query, self.limits)
            signatures = args.get(SIGNATURE_PARAM)
            signature: str | None = signatures[0] if signatures else None
            try:
                refusal = self._check_signature(advertiser_id, args)
                requirement_unread = False
            except StorageError:
                # Whether the advertiser requires signed pixels could not be read:
                # the hit goes to the outage spool, and its replay decides it.
                refusal, requirement_unread = None, True
            if refusal is not None:
                self._refuse(advertiser_id, *refusal, query, args)
                return
            report = self._parse(args)
        except ParamError as exc:
            self._refuse(advertiser_id, exc.reason, exc.detail, query, args)
            return
        visit: VisitClaim | None = None
        problem: Reason | None = None
        too_fast: str | None = None
        try:
            value = self.cookies.read(
                environ.get("HTTP_COOKIE", ""), advertiser_id, secure=is_https(environ)
            )
            if value:
                visit, clicked_at = self.cookies.verify_timed(value)
                # The cookie's own timestamp is the click's: no read needed.
                if self.filters.min_seconds_to_convert:
                    too_fast = self.filters.too_fast(clicked_at, time.time())
        except AttributionRejected as exc:
            problem = exc.reason
        outcome = self.ledger.record_web_conversion(
            advertiser_id=advertiser_id,
            report=report,
            source=self.source,
            visit=visit,
            cookie_problem=problem,
            params=lambda: redacted_query(args),
            signed_requirement_unread=requirement_unread,
            once_key=self._once_key(advertiser_id, signature, report),
            # Made only for an advertiser that keeps conversion contexts.
            conversion=lambda: request_context(environ),
        )
        counted = outcome.accepted or outcome.spooled  # queued or spooled: applied later
        if too_fast is not None and counted and report.parent_reference_id is None:
            # A flag in the rejection log: the conversion above stands.
            self.ledger.reject(
                advertiser_id=advertiser_id,
                source=self.source,
                reason=Reason.TOO_FAST,
                detail=too_fast,
                params=lambda: redacted_query(args),
                visit_id=None if visit is None else visit.visit_id,
                reference_id=report.reference_id,
            )

    def _once_key(
        self, advertiser_id: int, signature: str | None, report: SaleReport
    ) -> str | None:
        """What makes a validly signed URL without ``reference_id`` count once.

        Its signature covers the advertiser, the expiry and every parameter, so it
        names the URL: anyone replaying it, after any number of new clicks, gets
        ``duplicate_signed_pixel``.
        """
        if signature is None or report.reference_id or report.parent_reference_id:
            return None
        return f"signed-pixel:{advertiser_id}:{signature}"

    def _log_failure(self, environ: WSGIEnvironment, advertiser_text: str, exc: Exception) -> None:
        """Keep a hit that failed unexpectedly in the rejection log, as ``internal_error``."""
        try:
            query = environ.get("QUERY_STRING", "")
            self._refuse(
                parse_positive_id(advertiser_text),
                Reason.INTERNAL_ERROR,
                f"{type(exc).__name__}: {exc}"[:_MAX_FAILURE_DETAIL],
                query,
                self._parsed_or_none(query),
            )
        except Exception:
            logger.exception("the failed conversion pixel could not be logged either: it is lost")

    def _refuse(
        self,
        advertiser_id: int | None,
        reason: Reason,
        detail: str,
        query: str,
        args: Query | None,
    ) -> None:
        """Keep a hit that does not count in the rejection log, with what it claimed."""
        self.ledger.reject(
            advertiser_id=advertiser_id,
            source=self.source,
            reason=reason,
            detail=detail,
            params=self._loggable(query, args),
            reference_id=claimed_reference(args, self.limits),
        )

    def _parsed_or_none(self, query: str) -> Query | None:
        """The query's parameters for the log of a refused hit, or None if it does not parse."""
        try:
            return parse_query(query, self.limits)
        except ParamError:
            return None

    def _loggable(self, query: str, args: Query | None) -> str:
        """The query as the rejection log keeps it: redacted, or only its size."""
        if args is None:
            # A query that did not parse cannot be redacted: keep only its size.
            return f"[unparsed query of {len(query)} characters]"
        return redacted_query(args)

    def _check_signature(self, advertiser_id: int, args: Query) -> tuple[Reason, str] | None:
        """Why the hit's signature (or its lack) refuses it; None to go on.

        A valid signature's ``signature`` and ``expires`` are taken out of
        ``args``: they are not sale parameters.
        """
        if not self.legacy and (SIGNATURE_PARAM in args or EXPIRES_PARAM in args):
            if self.signer is None:
                return Reason.INVALID_SIGNATURE, "this pixel has no key to verify signatures"
            refusal = self.signer.verify(advertiser_id, args, self.ledger.clock().timestamp())
            if refusal is None:
                del args[SIGNATURE_PARAM], args[EXPIRES_PARAM]
            return refusal
        return self.ledger.catalog.unsigned_refusal(advertiser_id, self.legacy)

    def _parse(self, args: Query) -> SaleReport:
        if self.legacy:
            return parse_legacy_params(
                args, default_currency=self.default_currency, limits=self.limits
            )
        return parse_sale_params(args, default_currency=self.default_currency, limits=self.limits)
