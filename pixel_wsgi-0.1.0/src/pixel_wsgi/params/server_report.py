"""Server-side report fields -> a validated :class:`~pixel_wsgi.models.ServerReport`.

One parser for every server-side way in: the Conversion Reporting API (form-encoded, as
Invoca's clients send, or JSON), the bulk CSV upload and the in-process call. The shared
sale parameters follow exactly the pixel's rules
(:func:`~pixel_wsgi.params.sale.parse_sale_params`),
except that a negative ``sale_amount`` is allowed (a refund). On top of them:

``advertiser_campaign_id``
    the campaign credited with a conversion the pixel never saw (alias ``campaign_id``)
``affiliate_id``
    the publisher credited with it (aliases ``affiliate_id_from_network``, ``publisher_id``)
``reversal_reason``
    voids the conversion that ``reference_id`` or ``parent_reference_id`` names
``web_conversion``
    Invoca's flag that a report is not about a call; accepted when ``1``, never needed

Unlike the pixel, which records the first broken rule, every broken field is reported at
once, so an API client can fix a request in one go.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ParamError, PixelError
from ..models import Reason, ServerReport
from .sale import (
    DEFAULT_LIMITS,
    Limits,
    is_personal_key,
    parse_optional_text,
    parse_sale_fields,
)
from .values import Query, parse_positive_id

__all__ = [
    "FieldError",
    "ReportInvalid",
    "args_from_json",
    "parse_server_report",
]

_CAMPAIGN_KEYS = ("advertiser_campaign_id", "campaign_id")
_PUBLISHER_KEYS = ("affiliate_id", "affiliate_id_from_network", "publisher_id")
_LIST_KEYS = {"sku_list": "sku_list[]", "sku_list[]": "sku_list[]"}
_LIST_KEYS.update({"quantity_list": "quantity_list[]", "quantity_list[]": "quantity_list[]"})
_NAMED_FIELDS = frozenset(
    {
        *_CAMPAIGN_KEYS,
        *_PUBLISHER_KEYS,
        *_LIST_KEYS,
        "sale_amount",
        "sale_currency",
        "reason_code",
        "reference_id",
        "parent_reference_id",
        "reversal_reason",
        "web_conversion",
    }
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: the field at fault (None for the report as a whole), a stable
    :class:`~pixel_wsgi.models.Reason` and a message without submitted values."""

    field: str | None
    reason: Reason
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.reason.value, "message": self.message}


class ReportInvalid(PixelError, ValueError):
    """A server-side report broke one or more field rules (an API ``400``)."""

    def __init__(self, errors: list[FieldError]) -> None:
        # A message that names its field already says which field: no "sale_amount:
        # sale_amount must be ..." in the log.
        super().__init__(
            "; ".join(
                e.message
                if e.field and e.field in e.message
                else f"{e.field or 'report'}: {e.message}"
                for e in errors
            )
        )
        self.errors = errors

    @property
    def reason(self) -> Reason:
        """The first error's reason: what the rejection log records."""
        return self.errors[0].reason


def _single_id(args: Query, keys: tuple[str, ...], errors: list[FieldError]) -> int | None:
    values = [value for key in keys for value in args.get(key, ())]
    if not values:
        return None
    if len(set(values)) > 1:
        errors.append(
            FieldError(keys[0], Reason.DUPLICATE_PARAMETER, f"{keys[0]} may be given only once")
        )
        return None
    text = values[0]
    if not text:
        return None
    number = parse_positive_id(text)
    if number is not None:
        return number
    errors.append(
        FieldError(keys[0], Reason.INVALID_FIELD, f"{keys[0]} must be a positive integer")
    )
    return None


def _reversal_reason(args: Query, limits: Limits, errors: list[FieldError]) -> str | None:
    values = args.get("reversal_reason")
    if not values:
        return None
    # The text rules of reason_code.
    try:
        return parse_optional_text("reversal_reason", values, limits.max_text_length)
    except ParamError as exc:
        errors.append(FieldError("reversal_reason", exc.reason, exc.detail))
        return None


def parse_server_report(
    args: Query,
    *,
    default_currency: str = "USD",
    limits: Limits = DEFAULT_LIMITS,
) -> ServerReport:
    """Validate a server-side report.

    >>> report = parse_server_report({"reference_id": ["A1"], "sale_amount": ["-5"]})
    >>> report.report.sale_amount
    Decimal('-5.00')

    :raises ReportInvalid: naming every broken field.
    """
    errors: list[FieldError] = []
    campaign_id = _single_id(args, _CAMPAIGN_KEYS, errors)
    publisher_id = _single_id(args, _PUBLISHER_KEYS, errors)
    reversal_reason = _reversal_reason(args, limits, errors)
    flags = args.get("web_conversion")
    if flags and flags != ["1"]:
        errors.append(
            FieldError("web_conversion", Reason.INVALID_FIELD, "web_conversion must be 1")
        )
    extra = {*_CAMPAIGN_KEYS, *_PUBLISHER_KEYS, "reversal_reason", "web_conversion"}
    sale_args = {key: values for key, values in args.items() if key not in extra}
    broken: list[ParamError] = []
    report = parse_sale_fields(
        sale_args, broken, default_currency=default_currency, allow_negative=True, limits=limits
    )
    if broken:
        errors.extend(FieldError(exc.field, exc.reason, exc.detail) for exc in broken)
        raise ReportInvalid(errors)
    if report.reference_id is None and report.parent_reference_id is None:
        errors.append(
            FieldError(
                "reference_id",
                Reason.MISSING_FIELD,
                "a server-side report needs reference_id (or parent_reference_id)",
            )
        )
    if errors:
        raise ReportInvalid(errors)
    return ServerReport(
        report=report,
        campaign_id=campaign_id,
        publisher_id=publisher_id,
        reversal_reason=reversal_reason,
    )


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        # JSON true/false only make sense for the opt-in flag.
        if key == "opt_in_SMS":
            return "1" if value else "0"
        raise ReportInvalid([FieldError(key, Reason.INVALID_FIELD, f"{key} must not be a boolean")])
    if isinstance(value, str):
        return value
    if isinstance(value, _JSONNumber):
        return str(value)
    raise ReportInvalid(
        [FieldError(key, Reason.INVALID_FIELD, f"{key} must be a string or a number")]
    )


class _JSONNumber(str):
    """A JSON number kept as its text: amounts never pass through float."""


def loads_exact(text: str | bytes) -> Any:
    """``json.loads`` that keeps numbers as their source text (see :func:`args_from_json`)."""
    return json.loads(
        text, parse_float=_JSONNumber, parse_int=_JSONNumber, parse_constant=_no_constant
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def args_from_json(document: Mapping[str, Any]) -> Query:
    """The fields of one JSON report object as the form fields the parser takes.

    Strings stay strings and numbers stay their source text (parse the body with
    :func:`loads_exact`), so ``10.50`` is the amount ``10.50`` exactly. Arrays are
    accepted for ``sku_list``/``quantity_list``; ``custom_data`` may be an object of
    strings; ``null`` means "not given".

    :raises ReportInvalid: for values of the wrong JSON type.
    """
    args: Query = {}
    errors: list[FieldError] = []
    for key, value in document.items():
        if value is None:
            continue
        try:
            if key in _LIST_KEYS:
                items: Iterable[Any] = value if isinstance(value, list) else [value]
                texts = [_scalar(key, item) for item in items]
                args.setdefault(_LIST_KEYS[key], []).extend(texts)
            elif key == "custom_data" and isinstance(value, dict):
                for name, item in value.items():
                    if name in _NAMED_FIELDS or is_personal_key(name):
                        raise ReportInvalid(
                            [
                                FieldError(
                                    key, Reason.INVALID_FIELD, f"custom_data may not hold {name}"
                                )
                            ]
                        )
                    if item is not None:
                        args.setdefault(name, []).append(_scalar(name, item))
            else:
                args.setdefault(key, []).append(_scalar(key, value))
        except ReportInvalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise ReportInvalid(errors)
    return args
