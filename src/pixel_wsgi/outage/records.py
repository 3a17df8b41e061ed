"""Ledger inputs as spool records, and back: what a replay needs to redo a write.

A spooled event holds the already validated inputs of one ledger call (the parsed
report, the verified visit claim, the redacted query for the rejection log), so a
replay applies exactly what the request would have, under the rules of the code that
replays it, and needs no configuration of the middleware that spooled it.

A spool file is input like any other: the ``validated_*`` and ``decode_*`` functions
a replay uses trust nothing in it (:func:`decode_report` alone reads back what the
store itself wrote, trusted). A report is rebuilt as the fields a request would carry
and goes through the very parsers the request went through
(:func:`~pixel_wsgi.params.sale.parse_sale_params`,
:func:`~pixel_wsgi.params.sale.parse_legacy_params`,
:func:`~pixel_wsgi.params.server_report.parse_server_report`), and must come out exactly as
spooled; every other field is checked for its type and range. Anything else raises
``ValueError`` (a :class:`~pixel_wsgi.errors.ParamError` or
:class:`~pixel_wsgi.params.server_report.ReportInvalid` for a broken field rule), ``TypeError``
or ``KeyError``, and the replay quarantines the record with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..attribution.cookie import VisitClaim
from ..endpoints.edge import truncated_ip
from ..models import Reason, SaleReport, ServerReport, Source
from ..params.sale import DEFAULT_LIMITS, Limits, parse_legacy_params, parse_sale_params
from ..params.server_report import parse_server_report

__all__ = [
    "SpooledClick",
    "SpooledRejection",
    "decode_click",
    "decode_id",
    "decode_rejection",
    "decode_report",
    "decode_source",
    "decode_text",
    "decode_visit",
    "encode_report",
    "encode_server_report",
    "encode_visit",
    "validated_report",
    "validated_server_report",
]

#: where a spooled browser conversion may come from, and a spooled server report
WEB_SOURCES = (Source.PIXEL, Source.LEGACY_PIXEL)
SERVER_SOURCES = (Source.API, Source.IN_PROCESS, Source.CSV_UPLOAD)
_REJECTION_SOURCES = frozenset({*(s.value for s in Source), "click"})


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


def decode_id(value: Any, name: str, *, negative: bool = False) -> int:
    """A positive id (a negative one with ``negative``: a spooled click's visit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer")
    if (value >= 0) if negative else (value <= 0):
        raise ValueError(f"{name} must be {'negative' if negative else 'positive'}")
    return value


def decode_text(value: Any, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be text")
    return value


def decode_source(value: Any, allowed: tuple[Source, ...]) -> Source:
    source = Source(value)
    if source not in allowed:
        raise ValueError(f"source {source.value!r} cannot spool this kind of event")
    return source


def _report_args(data: dict[str, Any], *, legacy: bool) -> dict[str, list[str]]:
    """A spooled report as the request fields that make it."""
    args: dict[str, list[str]] = {}

    def add(key: str, value: Any) -> None:
        text = decode_text(value, key, optional=True)
        if text is not None:
            args.setdefault(key, []).append(text)

    names = ("amount", "currency") if legacy else ("sale_amount", "sale_currency")
    add(names[0], data["sale_amount"])
    add(names[1], data["sale_currency"])
    if legacy:
        add("external_data", data["external_data"])
    else:
        for key in ("reason_code", "reference_id", "parent_reference_id"):
            add(key, data[key])
        for sku in data["sku_list"]:
            add("sku_list[]", sku)
        for quantity in data["quantity_list"]:
            add("quantity_list[]", str(decode_id(quantity, "quantity_list")))
    for fields in (data["custom_data"], data["personal_data"]):
        if not isinstance(fields, dict):
            raise TypeError("custom_data and personal_data must be objects")
        for key, value in fields.items():
            add(key, value)
    return args


def _as_spooled(report: SaleReport, data: dict[str, Any]) -> SaleReport:
    """``report`` (parsed) with the spooled record's word on whether the currency was
    given (a parsed report always carries one), checked to be exactly ``data``."""
    given = data["given"]
    if not isinstance(given, list):
        raise TypeError("given must be a list")
    report.given = report.given - {"sale_currency"} | ({"sale_currency"} & set(given))
    if encode_report(report) != data:
        raise ValueError("the spooled report is not what its fields parse to")
    return report


def decode_report(data: dict[str, Any]) -> SaleReport:
    """A report :func:`encode_report` made, read back from the store (trusted: a spool
    record goes through :func:`validated_report`)."""
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


def validated_report(
    data: dict[str, Any], *, source: Source = Source.PIXEL, limits: Limits = DEFAULT_LIMITS
) -> SaleReport:
    """A spooled browser report, validated by the pixel's own parser for ``source``.

    :raises ValueError: (``ParamError`` for a broken rule), ``TypeError``, ``KeyError``.
    """
    legacy = source is Source.LEGACY_PIXEL
    args = _report_args(data, legacy=legacy)
    parse = parse_legacy_params if legacy else parse_sale_params
    return _as_spooled(parse(args, limits=limits), data)


def encode_server_report(server_report: ServerReport) -> dict[str, Any]:
    return {
        "report": encode_report(server_report.report),
        "campaign_id": server_report.campaign_id,
        "publisher_id": server_report.publisher_id,
        "reversal_reason": server_report.reversal_reason,
    }


def validated_server_report(
    data: dict[str, Any], *, limits: Limits = DEFAULT_LIMITS
) -> ServerReport:
    """A spooled server report, validated by the API's own parser.

    :raises ValueError: (``ReportInvalid`` for broken rules), ``TypeError``, ``KeyError``.
    """
    args = _report_args(data["report"], legacy=False)
    for key, value in (
        ("advertiser_campaign_id", data["campaign_id"]),
        ("affiliate_id", data["publisher_id"]),
    ):
        if value is not None:
            args[key] = [str(decode_id(value, key))]
    reversal = decode_text(data["reversal_reason"], "reversal_reason", optional=True)
    if reversal is not None:
        args["reversal_reason"] = [reversal]
    parsed = parse_server_report(args, limits=limits)
    _as_spooled(parsed.report, data["report"])
    if encode_server_report(parsed) != data:
        raise ValueError("the spooled server report is not what its fields parse to")
    return parsed


def encode_visit(visit: VisitClaim | None) -> list[int] | None:
    return None if visit is None else [visit.visit_id, visit.link_id]


def decode_visit(data: Any) -> VisitClaim | None:
    """A verified cookie's claim: a visit id (negative for a spooled click) and a link."""
    if data is None:
        return None
    if not isinstance(data, list) or len(data) != 2:
        raise TypeError("visit must be [visit_id, link_id]")
    return VisitClaim(_visit_id(data[0]), decode_id(data[1], "link_id"))


def _visit_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("visit_id must be an integer")
    if value == 0:
        raise ValueError("visit_id must not be 0")
    return value


@dataclass(frozen=True, slots=True)
class SpooledClick:
    """A spooled click: its link, the negative visit id its cookie carries, and what
    the visit stores (the truncated network, the bounded ``User-Agent``)."""

    link_id: int
    visit_id: int
    ip_prefix: str | None
    user_agent: str | None


def decode_click(event: dict[str, Any]) -> SpooledClick:
    ip_prefix = decode_text(event["ip_prefix"], "ip_prefix", optional=True)
    # What the click stores is already truncated: truncating it again changes nothing.
    if ip_prefix is not None and truncated_ip(ip_prefix) != ip_prefix:
        raise ValueError("ip_prefix is not a truncated network address")
    return SpooledClick(
        link_id=decode_id(event["link_id"], "link_id"),
        visit_id=decode_id(event["visit_id"], "visit_id", negative=True),
        ip_prefix=ip_prefix,
        user_agent=decode_text(event["user_agent"], "user_agent", optional=True),
    )


@dataclass(frozen=True, slots=True)
class SpooledRejection:
    """The arguments of :meth:`~pixel_wsgi.ledger.rules.Ledger.reject` a spooled one carries."""

    advertiser_id: int | None
    source: str
    reason: Reason
    detail: str
    params: str
    visit_id: int | None
    reference_id: str | None


def decode_rejection(event: dict[str, Any]) -> SpooledRejection:
    advertiser_id = event["advertiser_id"]
    visit_id = event["visit_id"]
    source = decode_text(event["source"], "source")
    if source not in _REJECTION_SOURCES:
        raise ValueError(f"unknown source {source!r}")
    return SpooledRejection(
        advertiser_id=None if advertiser_id is None else decode_id(advertiser_id, "advertiser_id"),
        source=source,
        reason=Reason(event["reason"]),
        detail=str(decode_text(event["detail"], "detail")),
        params=str(decode_text(event["params"], "params")),
        visit_id=None if visit_id is None else _visit_id(visit_id),
        reference_id=decode_text(event["reference_id"], "reference_id", optional=True),
    )
