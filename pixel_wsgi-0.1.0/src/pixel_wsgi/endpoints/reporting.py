"""Server-side conversion reports from host code: no HTTP hop, no credential.

In a request, the middleware puts a :class:`RequestReporter` in the WSGI environ under
``"pixel_wsgi"``; the order-creating view records the conversion as it creates the
order, and a conversion the pixel never saw is credited to the visitor's attribution
cookie::

    environ["pixel_wsgi"].report(reference_id=order.id, sale_amount=order.total)

    # Flask: request.environ["pixel_wsgi"]; Pyramid: request.environ["pixel_wsgi"]

Outside a request (a background job, a refund handler) call the middleware itself,
crediting a new conversion to a campaign and publisher, or tying it by ``reference_id``
to one the pixel or the API recorded::

    middleware.report(advertiser_id=1, reference_id="order-1001", sale_amount="95.00")

Both apply exactly the rules of ``POST /pixels/api/conversions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..attribution.cookie import AttributionCookies
from ..errors import AttributionRejected, ConfigurationError
from ..ledger.ledger import Ledger
from ..ledger.server_reports import ReportResult
from ..models import Source, VisitClaim
from ..params.server_report import parse_server_report
from ..params.values import Query
from .edge import is_https

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ..settings import Settings

__all__ = ["ConversionReporter", "RequestReporter"]

Amount = Decimal | int | str


def _amount(value: Amount) -> str:
    # Money never passes through float: 0.1 + 0.2 is not 0.30.
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"sale_amount must be a Decimal, int or str, not {type(value).__name__}")
    return str(value)


class ConversionReporter:
    """Applies in-process server-side reports through the ledger.

    :param settings: the middleware's; ``settings.advertiser_id`` is the advertiser
        a report is for when the call names none (the site's own advertiser).
    """

    def __init__(
        self,
        ledger: Ledger,
        cookies: AttributionCookies,
        settings: Settings,
    ) -> None:
        self.ledger = ledger
        self.cookies = cookies
        self.default_currency = settings.default_currency
        self.limits = settings.limits
        self.advertiser_id = settings.advertiser_id

    def report(
        self,
        *,
        advertiser_id: int | None = None,
        environ: WSGIEnvironment | None = None,
        reference_id: str | None = None,
        parent_reference_id: str | None = None,
        sale_amount: Amount | None = None,
        sale_currency: str | None = None,
        reason_code: str | None = None,
        sku_list: Iterable[str] = (),
        quantity_list: Iterable[int] = (),
        campaign_id: int | None = None,
        publisher_id: int | None = None,
        reversal_reason: str | None = None,
        custom_data: Mapping[str, str] | None = None,
        personal_data: Mapping[str, str] | None = None,
    ) -> ReportResult:
        """Report one conversion, or update or reverse one, like the API does.

        :param environ: the current request's: a new conversion without
            ``campaign_id``/``publisher_id`` is credited to the visitor's cookie.
        :returns: whether the conversion was created, corrected or unchanged, and
            its current state; ``SPOOLED`` (no state yet) when the store failed and
            the report waits in the outage spool for ``pixel-wsgi replay``.
        :raises ~pixel_wsgi.params.server_report.ReportInvalid: for invalid fields.
        :raises ~pixel_wsgi.errors.ReportRefused: when the report cannot be applied
            (it is in the rejection log too).
        :raises ~pixel_wsgi.errors.StorageError: when the store failed.
        """
        advertiser = advertiser_id if advertiser_id is not None else self.advertiser_id
        if advertiser is None:
            raise ConfigurationError(
                "name the advertiser: report(advertiser_id=...) or"
                " PixelMiddleware(..., advertiser_id=...)"
            )
        args: Query = {}
        for key, value in (
            ("reference_id", reference_id),
            ("parent_reference_id", parent_reference_id),
            ("sale_currency", sale_currency),
            ("reason_code", reason_code),
            ("advertiser_campaign_id", None if campaign_id is None else str(campaign_id)),
            ("affiliate_id", None if publisher_id is None else str(publisher_id)),
            ("reversal_reason", reversal_reason),
        ):
            if value is not None:
                args[key] = [value]
        if sale_amount is not None:
            args["sale_amount"] = [_amount(sale_amount)]
        skus = list(sku_list)
        if skus:
            args["sku_list[]"] = skus
        quantities = [str(quantity) for quantity in quantity_list]
        if quantities:
            args["quantity_list[]"] = quantities
        for fields in (custom_data, personal_data):
            for key, text in (fields or {}).items():
                args.setdefault(key, []).append(text)
        server_report = parse_server_report(
            args, default_currency=self.default_currency, limits=self.limits
        )
        return self.ledger.report(
            advertiser,
            server_report,
            source=Source.IN_PROCESS,
            visit=None if environ is None else self._visit(environ, advertiser),
        )

    def _visit(self, environ: WSGIEnvironment, advertiser_id: int) -> VisitClaim | None:
        try:
            value = self.cookies.read(
                environ.get("HTTP_COOKIE", ""), advertiser_id, secure=is_https(environ)
            )
            return self.cookies.verify(value) if value else None
        except AttributionRejected:
            return None


class RequestReporter(tuple[ConversionReporter, dict[str, Any]]):
    """``environ["pixel_wsgi"]``: :meth:`ConversionReporter.report` bound to this request.

    Made for every request the middleware sees, so it is a bare tuple
    ``(reporter, environ)``, built by ``RequestReporter((reporter, environ))`` in C:
    cheaper than an object with attributes.
    """

    __slots__ = ()

    def report(self, **fields: Any) -> ReportResult:
        """Report a conversion in this request; the fields of :meth:`ConversionReporter.report`."""
        return self[0].report(environ=self[1], **fields)
