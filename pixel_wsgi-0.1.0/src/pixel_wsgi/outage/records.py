"""The spool's record kinds: ledger inputs as spool records, and back.

:data:`RECORD_KINDS` is the one table of kinds: :class:`SpooledClick`,
:class:`SpooledRejection`, :class:`SpooledConversion` and :class:`SpooledReport`.
Each holds what one ledger call needed; the spooling ledger
(:class:`~pixel_wsgi.outage.spooling.SpoolingLedger`) encodes it with
:meth:`SpooledEvent.fields`, the replay decodes it with :meth:`SpooledEvent.decode`
and redoes the call with :meth:`SpooledEvent.apply`.

A spooled event holds the already validated inputs of one ledger call (the parsed
report, the verified visit claim, the redacted query for the rejection log), so a
replay applies exactly what the request would have, under the rules of the code that
replays it, and needs no configuration of the middleware that spooled it.

A spool file is input like any other: the ``decode`` methods and ``validated_*``
functions a replay uses trust nothing in it. A report is rebuilt as the fields a
request would carry and goes through the very parsers the request went through
(:func:`~pixel_wsgi.params.sale.parse_sale_params`,
:func:`~pixel_wsgi.params.sale.parse_legacy_params`,
:func:`~pixel_wsgi.params.server_report.parse_server_report`), and must come out
exactly as spooled; every other field is checked for its type and range. Anything else raises
``ValueError`` (a :class:`~pixel_wsgi.errors.ParamError` or
:class:`~pixel_wsgi.params.server_report.ReportInvalid` for a broken field rule), ``TypeError``
or ``KeyError``, and the replay quarantines the record with that reason.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..errors import ReportRefused
from ..ledger.ledger import Ledger
from ..models import (
    ClickContext,
    ConversionContext,
    Reason,
    SaleReport,
    ServerReport,
    Source,
    VisitClaim,
    click_context_json,
    conversion_context_json,
)
from ..params.click_ids import validated_click_context
from ..params.conversion_context import validated_conversion_context
from ..params.network import truncated_ip
from ..params.sale import DEFAULT_LIMITS, Limits, parse_legacy_params, parse_sale_params
from ..params.server_report import parse_server_report

__all__ = [
    "RECORD_KINDS",
    "REJECTION_SHARE",
    "SpooledClick",
    "SpooledConversion",
    "SpooledEvent",
    "SpooledRejection",
    "SpooledReport",
    "validated_report",
    "validated_server_report",
]

#: where a spooled browser conversion may come from, and a spooled server report
WEB_SOURCES = (Source.PIXEL, Source.LEGACY_PIXEL)
SERVER_SOURCES = (Source.API, Source.IN_PROCESS, Source.CSV_UPLOAD)
_REJECTION_SOURCES = frozenset({*(s.value for s in Source), "click"})

#: A spooled rejection may use at most 1/REJECTION_SHARE of the spool.
REJECTION_SHARE = 16


class SpooledEvent(abc.ABC):
    """One kind of spool record: the inputs of one ledger call."""

    #: the record's ``kind``, its key in :data:`RECORD_KINDS`
    kind: ClassVar[str]
    #: the record may take at most ``max_bytes // share`` of the spool
    share: ClassVar[int] = 1

    @property
    def erasable(self) -> tuple[int, str | None] | None:
        """The advertiser and reference id whose key seals the record's personal data."""
        return None

    @abc.abstractmethod
    def fields(self) -> dict[str, Any]:
        """The record's fields, as JSON values (its ``id``, ``kind`` and ``at`` aside)."""

    @classmethod
    @abc.abstractmethod
    def decode(cls, event: dict[str, Any], limits: Limits) -> SpooledEvent:
        """The event a spool record holds, validated.

        :raises ValueError, TypeError, KeyError: for a record that breaks a rule.
        """

    @abc.abstractmethod
    def apply(self, ledger: Ledger) -> None:
        """Redo the ledger call (a replay passes :func:`~pixel_wsgi.ledger.ledger.replaying`).

        :raises ~pixel_wsgi.errors.EventAlreadyApplied: when it was applied before.
        """


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


def _decode_source(value: Any, allowed: tuple[Source, ...]) -> Source:
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
    if report.as_json() != data:
        raise ValueError("the spooled report is not what its fields parse to")
    return report


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
    if parsed.as_json() != data:
        raise ValueError("the spooled server report is not what its fields parse to")
    return parsed


def _encode_visit(visit: VisitClaim | None) -> list[int] | None:
    return None if visit is None else [visit.visit_id, visit.link_id]


def _decode_visit(data: Any) -> VisitClaim | None:
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
class SpooledClick(SpooledEvent):
    """A spooled click: its link, the negative visit id its cookie carries, and what
    the visit stores (the truncated network, the bounded ``User-Agent``, the sub ids
    and click ids of its query with the click's time)."""

    kind: ClassVar[str] = "visit"

    link_id: int
    visit_id: int
    ip_prefix: str | None
    user_agent: str | None
    click: ClickContext | None = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "link_id": self.link_id,
            "visit_id": self.visit_id,
            "ip_prefix": self.ip_prefix,
            "user_agent": self.user_agent,
        }
        if self.click is not None:  # a spool written before clicks kept one reads alike
            fields["click"] = click_context_json(self.click)
        return fields

    @classmethod
    def decode(cls, event: dict[str, Any], limits: Limits) -> SpooledClick:
        ip_prefix = decode_text(event["ip_prefix"], "ip_prefix", optional=True)
        # What the click stores is already truncated: truncating it again changes nothing.
        if ip_prefix is not None and truncated_ip(ip_prefix) != ip_prefix:
            raise ValueError("ip_prefix is not a truncated network address")
        return cls(
            link_id=decode_id(event["link_id"], "link_id"),
            visit_id=decode_id(event["visit_id"], "visit_id", negative=True),
            ip_prefix=ip_prefix,
            user_agent=decode_text(event["user_agent"], "user_agent", optional=True),
            click=validated_click_context(event.get("click")),
        )

    def apply(self, ledger: Ledger) -> None:
        link = ledger.storage.link(self.link_id)
        if link is None:  # deleted since: say so in the log, once
            ledger.reject(
                advertiser_id=None,
                source="click",
                reason=Reason.UNKNOWN_LINK,
                detail=f"spooled click on link {self.link_id}, which no longer exists",
            )
            return
        ledger.restore_visit(
            link,
            self.visit_id,
            ip_prefix=self.ip_prefix,
            user_agent=self.user_agent,
            click=self.click,
        )


@dataclass(frozen=True, slots=True)
class SpooledRejection(SpooledEvent):
    """The arguments of :meth:`~pixel_wsgi.ledger.ledger.Ledger.reject` a spooled one carries."""

    kind: ClassVar[str] = "rejection"
    share: ClassVar[int] = REJECTION_SHARE

    advertiser_id: int | None
    source: str
    reason: Reason
    detail: str
    params: str
    visit_id: int | None
    reference_id: str | None

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason.value}

    @classmethod
    def decode(cls, event: dict[str, Any], limits: Limits) -> SpooledRejection:
        advertiser_id = event["advertiser_id"]
        visit_id = event["visit_id"]
        source = decode_text(event["source"], "source")
        if source not in _REJECTION_SOURCES:
            raise ValueError(f"unknown source {source!r}")
        return cls(
            advertiser_id=(
                None if advertiser_id is None else decode_id(advertiser_id, "advertiser_id")
            ),
            source=source,
            reason=Reason(event["reason"]),
            detail=str(decode_text(event["detail"], "detail")),
            params=str(decode_text(event["params"], "params")),
            visit_id=None if visit_id is None else _visit_id(visit_id),
            reference_id=decode_text(event["reference_id"], "reference_id", optional=True),
        )

    def apply(self, ledger: Ledger) -> None:
        ledger.reject(
            advertiser_id=self.advertiser_id,
            source=self.source,
            reason=self.reason,
            detail=self.detail,
            params=self.params,
            visit_id=self.visit_id,
            reference_id=self.reference_id,
        )


@dataclass(frozen=True, slots=True)
class SpooledConversion(SpooledEvent):
    """A browser-reported conversion: the arguments of
    :meth:`~pixel_wsgi.ledger.ledger.Ledger.record_web_conversion`.

    ``check_signed_requirement``: the hit is unsigned and the pixel could not read
    whether its advertiser requires signed pixels; the replay decides it, as the
    pixel would have.

    ``conversion``: the request's context, unless its advertiser was known to keep
    none; sealed in the spool like personal data (:meth:`Spool.erase` destroys it
    too), and kept by the replay only if the advertiser keeps contexts then.
    """

    kind: ClassVar[str] = "web_conversion"

    advertiser_id: int
    report: SaleReport
    source: Source
    visit: VisitClaim | None
    cookie_problem: Reason | None
    params: str
    once_key: str | None
    check_signed_requirement: bool = False
    conversion: ConversionContext | None = None

    @property
    def erasable(self) -> tuple[int, str | None]:
        return self.advertiser_id, self.report.parent_reference_id or self.report.reference_id

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "advertiser_id": self.advertiser_id,
            "report": self.report.as_json(),
            "source": self.source.value,
            "visit": _encode_visit(self.visit),
            "cookie_problem": None if self.cookie_problem is None else self.cookie_problem.value,
            "params": self.params,
            "check_signed_requirement": self.check_signed_requirement,
            "once_key": self.once_key,
        }
        if self.conversion is not None:  # left out, not null: the spool seals the member
            fields["conversion_context"] = conversion_context_json(self.conversion)
        return fields

    @classmethod
    def decode(cls, event: dict[str, Any], limits: Limits) -> SpooledConversion:
        source = _decode_source(event["source"], WEB_SOURCES)
        problem = event["cookie_problem"]
        check_signed = event.get("check_signed_requirement", False)
        if not isinstance(check_signed, bool):
            raise TypeError("check_signed_requirement must be true or false")
        return cls(
            advertiser_id=decode_id(event["advertiser_id"], "advertiser_id"),
            report=validated_report(event["report"], source=source, limits=limits),
            source=source,
            visit=_decode_visit(event["visit"]),
            cookie_problem=None if problem is None else Reason(problem),
            params=str(decode_text(event["params"], "params")),
            once_key=decode_text(event.get("once_key"), "once_key", optional=True),
            check_signed_requirement=check_signed,
            # An erased one reads {}: none.
            conversion=validated_conversion_context(event.get("conversion_context")),
        )

    def apply(self, ledger: Ledger) -> None:
        refusal = (
            ledger.catalog.unsigned_refusal(self.advertiser_id, self.source is Source.LEGACY_PIXEL)
            if self.check_signed_requirement
            else None
        )
        if refusal is not None:
            ledger.reject(
                advertiser_id=self.advertiser_id,
                source=self.source,
                reason=refusal[0],
                detail=refusal[1],
                params=self.params,
                visit_id=None if self.visit is None else self.visit.visit_id,
                reference_id=self.report.parent_reference_id or self.report.reference_id,
            )
            return
        ledger.record_web_conversion(
            advertiser_id=self.advertiser_id,
            report=self.report,
            source=self.source,
            visit=self.visit,
            cookie_problem=self.cookie_problem,
            params=self.params,
            once_key=self.once_key,
            conversion=None if self.conversion is None else self._conversion,
        )

    def _conversion(self) -> ConversionContext | None:
        return self.conversion


@dataclass(frozen=True, slots=True)
class SpooledReport(SpooledEvent):
    """A server-side report: the arguments of :meth:`~pixel_wsgi.ledger.ledger.Ledger.report`."""

    kind: ClassVar[str] = "report"

    advertiser_id: int
    server_report: ServerReport
    source: Source
    visit: VisitClaim | None
    params: str

    @property
    def erasable(self) -> tuple[int, str | None]:
        report = self.server_report.report
        return self.advertiser_id, report.parent_reference_id or report.reference_id

    def fields(self) -> dict[str, Any]:
        return {
            "advertiser_id": self.advertiser_id,
            "server_report": self.server_report.as_json(),
            "source": self.source.value,
            "visit": _encode_visit(self.visit),
            "params": self.params,
        }

    @classmethod
    def decode(cls, event: dict[str, Any], limits: Limits) -> SpooledReport:
        return cls(
            advertiser_id=decode_id(event["advertiser_id"], "advertiser_id"),
            server_report=validated_server_report(event["server_report"], limits=limits),
            source=_decode_source(event["source"], SERVER_SOURCES),
            visit=_decode_visit(event["visit"]),
            params=str(decode_text(event["params"], "params")),
        )

    def apply(self, ledger: Ledger) -> None:
        # A refused report is in the rejection log now, as it would have been then.
        with contextlib.suppress(ReportRefused):
            ledger.report(
                self.advertiser_id,
                self.server_report,
                source=self.source,
                visit=self.visit,
                params=self.params,
            )


#: Every kind of spool record, by its ``kind``.
RECORD_KINDS: dict[str, type[SpooledEvent]] = {
    kind.kind: kind for kind in (SpooledClick, SpooledRejection, SpooledConversion, SpooledReport)
}
