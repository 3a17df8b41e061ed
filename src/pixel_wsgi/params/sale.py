"""Query string -> validated :class:`~pixel_wsgi.models.SaleReport`: pure functions, no WSGI.

The pixel's ``SALES_PARAMS`` are Invoca's "shared parameters for sales and web
conversions" (``sale_amount``, ``sale_currency``, ``reason_code``, ``sku_list[]``,
``quantity_list[]``, ``reference_id``, ``parent_reference_id`` and the remarketing
fields). The legacy pixel (installations before December 2012) takes ``amount``,
``currency`` and ``external_data``. Any other parameter is kept, bounded, as custom data.

Every broken rule raises :class:`~pixel_wsgi.errors.ParamError` with a stable
:class:`~pixel_wsgi.models.Reason`, a short detail and the parameter at fault. Details
never repeat a submitted value, so they can be logged even when the value was personal
data. Typical use::

    args = parse_query(environ.get("QUERY_STRING", ""))
    report = parse_sale_params(args, default_currency="EUR")
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

from ..currencies import ISO_4217_CODES
from ..errors import ConfigurationError, ParamError
from ..models import Reason, SaleReport
from .values import CONTROL_RE, Query, one_value, shown_name

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_JSON_DEPTH",
    "PERSONAL_FIELDS",
    "Limits",
    "claimed_reference",
    "json_nesting_ok",
    "parse_amount",
    "parse_legacy_params",
    "parse_optional_text",
    "parse_query",
    "parse_sale_fields",
    "parse_sale_params",
    "printable_text",
    "redacted_query",
    "shown_name",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on the size of a report, enforced before anything is stored.

    The defaults are generous for real checkout pages and small enough that a hostile
    query cannot make one report expensive to validate, store or export. Every value must
    be a positive integer; anything else raises
    :class:`~pixel_wsgi.errors.ConfigurationError` at construction.
    """

    #: raw ``QUERY_STRING`` characters (that is, bytes: PEP 3333 decodes it as latin-1)
    max_query_length: int = 8192
    #: ``key=value`` pairs in the query
    max_parameters: int = 64
    #: ``reason_code``, each SKU, the free-text personal fields and custom values
    max_text_length: int = 255
    #: ``reference_id`` and ``parent_reference_id``
    max_reference_length: int = 128
    #: entries of ``sku_list[]`` and of ``quantity_list[]``
    max_items: int = 100
    #: distinct custom (unknown) parameters
    max_custom_fields: int = 20
    #: length of a custom parameter's name
    max_custom_key_length: int = 64
    #: the legacy pixel's ``external_data``
    max_external_data_length: int = 1024
    #: the largest accepted ``quantity_list[]`` entry
    max_quantity: int = 999_999
    #: digits before the decimal point of an amount
    max_amount_integer_digits: int = 12

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; True as a limit is certainly a mistake.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"Limits.{f.name} must be a positive integer, got {value!r}"
                )


DEFAULT_LIMITS = Limits()

#: The remarketing fields. They are personal data: kept apart from the conversion in
#: :attr:`SaleReport.personal_data`, never in custom data, and never logged.
PERSONAL_FIELDS: frozenset[str] = frozenset(
    {
        "email_address",
        "name",
        "address1",
        "address2",
        "order_city",
        "state_or_province",
        "country",
        "zip_code",
        "home_phone_number",
        "cell_phone_number",
        "opt_in_SMS",
    }
)

_SURROGATE_MIN, _SURROGATE_MAX = "\ud800", "\udfff"
# [0-9], never \d: \d also matches Arabic-Indic, full-width and other Unicode digits.
_AMOUNT_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")
_CURRENCY_RE = re.compile(r"[A-Za-z]{3}")
# The length bound keeps int() cheap (and far below CPython's 4300-digit limit).
_QUANTITY_RE = re.compile(r"[0-9]{1,16}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
_EMAIL_MAX_LENGTH = 254  # RFC 5321's limit on a forward path, less the angle brackets

_SKU_KEYS = ("sku_list[]", "sku_list")
_QUANTITY_KEYS = ("quantity_list[]", "quantity_list")
# Fields tied by a rule between them: when collecting every error, a group reports only
# its first fault (a broken SKU list says nothing of its pairing with the quantities).
_ITEMS, _REFERENCES = "items", "references"
_GROUPS = dict.fromkeys((*_SKU_KEYS, *_QUANTITY_KEYS), _ITEMS) | dict.fromkeys(
    ("reference_id", "parent_reference_id"), _REFERENCES
)
_PHONE_FIELDS = frozenset({"home_phone_number", "cell_phone_number"})
_OPT_IN_VALUES = frozenset({"0", "1"})

#: The deepest nesting of arrays and objects a JSON report may have. A report is at
#: most 3 deep (a batch, a report, its ``custom_data``); Python's ``json`` recurses once
#: per level and fails with a RecursionError past about 1000.
MAX_JSON_DEPTH = 10
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))

_REDACTED = "[redacted]"
# Personal fields matched loosely for redaction only: a mistyped case or a stray "[]"
# still makes the key custom data, but its value must not reach the log either.
_PERSONAL_FOLDED = frozenset(name.lower() for name in PERSONAL_FIELDS)
# Kept readable in the log; "&", "=", "%" and "+" stay escaped so the line re-parses.
_LOG_SAFE = "[]/:,@"
# What ``quote(..., safe=_LOG_SAFE)`` returns unchanged: most keys and values, which
# then skip its encoding (the queued pixel logs every hit's query).
_LOG_PLAIN = re.compile(r"[A-Za-z0-9_.~\-\[\]/:,@]*")


def _check_characters(value: str, field: str, what: str | None = None) -> None:
    """Reject text with a control character or a surrogate (``what`` names it: ``field``)."""
    found = CONTROL_RE.search(value)
    if found is not None:
        problem = (
            "an unpaired surrogate (not Unicode text)"
            if _SURROGATE_MIN <= found.group() <= _SURROGATE_MAX
            else "a control character"
        )
        raise ParamError(Reason.INVALID_TEXT, f"{what or field} contains {problem}", field=field)


def _check_text(value: str, field: str, max_length: int) -> None:
    """Reject over-long text and text with control characters or surrogates."""
    # Length first: it is O(1) and bounds the scan that follows.
    if len(value) > max_length:
        raise ParamError(
            Reason.VALUE_TOO_LONG, f"{field} is longer than {max_length} characters", field=field
        )
    _check_characters(value, field)


def parse_query(query_string: str, limits: Limits = DEFAULT_LIMITS) -> Query:
    """Parse a WSGI ``QUERY_STRING`` into a :data:`~pixel_wsgi.params.values.Query`.

    ``query_string`` is the environ value, which PEP 3333 gives as the raw bytes decoded as
    latin-1. The bytes must be UTF-8, and so must every percent-encoded sequence. Blank
    values are kept (``sale_amount=`` gives ``""``), and so is the order of repeated keys.

    :raises ParamError: ``QUERY_TOO_LONG`` over ``limits.max_query_length`` characters,
        ``INVALID_QUERY`` for bytes or percent-escapes that are not UTF-8,
        ``TOO_MANY_PARAMETERS`` for more than ``limits.max_parameters`` fields (counted as
        ``parse_qsl`` does, one more than the number of ``&``).
    """
    if not query_string:
        return {}
    if len(query_string) > limits.max_query_length:
        raise ParamError(
            Reason.QUERY_TOO_LONG,
            f"the query string is longer than {limits.max_query_length} characters",
        )
    # Browsers percent-encode everything outside ASCII, so raw non-ASCII bytes are rare:
    # the common case skips the latin-1 -> bytes -> UTF-8 round trip entirely.
    if not query_string.isascii():
        try:
            query_string = query_string.encode("latin-1").decode("utf-8")
        except UnicodeError as exc:
            raise ParamError(Reason.INVALID_QUERY, "the query string is not UTF-8") from exc
    # Split exactly as urllib.parse.parse_qsl(keep_blank_values=True) does, but
    # unquote only the pieces that need it: most pixel queries have none, and this
    # halves the cost of the hot path's parsing.
    pieces = query_string.split("&")
    if len(pieces) > limits.max_parameters:
        raise ParamError(
            Reason.TOO_MANY_PARAMETERS,
            f"the query has more than {limits.max_parameters} parameters",
        )
    lists: dict[str, list[str]] = {}
    for piece in pieces:
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "%" in name or "+" in name:
            # Names come from a small set ("sku_list%5B%5D" on every hit): memoised.
            name = _unquote_name(name)
        if "%" in value or "+" in value:
            value = _unquote_plus(value)
        if name in lists:
            lists[name].append(value)
        else:
            lists[name] = [value]
    return lists


def _unquote_plus(text: str) -> str:
    try:
        return unquote(text.replace("+", " "), encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise ParamError(Reason.INVALID_QUERY, "a percent-encoded sequence is not UTF-8") from exc


# A failed call raises and is not cached; at most this many distinct names are kept.
_unquote_name = functools.lru_cache(maxsize=256)(_unquote_plus)


def parse_amount(
    text: str,
    *,
    allow_negative: bool = False,
    limits: Limits = DEFAULT_LIMITS,
    field: str = "sale_amount",
) -> Decimal:
    """Parse a money amount exactly, as a :class:`~decimal.Decimal` with 2 places.

    The grammar is ASCII digits with an optional ``.`` and one or two decimals
    (``10``, ``10.5``, ``10.50``), and with ``allow_negative`` one leading ``-``. Nothing
    else: no sign ``+``, exponent, ``nan``/``inf``, ``_`` or ``,`` separators, currency
    signs, surrounding spaces or non-ASCII digits. The text never goes through ``float``,
    and the result does not depend on the thread's decimal context. ``-0`` gives
    ``Decimal("0.00")``. A blank text is not an amount; callers decide what blank means.

    >>> parse_amount("95.0")
    Decimal('95.00')

    :param field: the parameter named in the error.
    :raises ParamError: ``INVALID_SALE_AMOUNT``, also for more than
        ``limits.max_amount_integer_digits`` digits before the point (leading zeros count).
    """
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise ParamError(
            Reason.INVALID_SALE_AMOUNT,
            f"{field} must be ASCII digits with an optional '.' and 1 or 2 decimals",
            field=field,
        )
    sign, integer, fraction = match.group(1), match.group(2), match.group(3) or ""
    if sign and not allow_negative:
        raise ParamError(Reason.INVALID_SALE_AMOUNT, f"{field} must not be negative", field=field)
    if len(integer) > limits.max_amount_integer_digits:
        raise ParamError(
            Reason.INVALID_SALE_AMOUNT,
            f"{field} has more than {limits.max_amount_integer_digits} digits before the point",
            field=field,
        )
    integer = integer.lstrip("0") or "0"
    fraction = fraction.ljust(2, "0")
    if integer == "0" and fraction == "00":
        sign = ""  # no negative zero in the ledger
    # Decimal(str) is exact whatever the context's precision: no quantize() needed.
    return Decimal(f"{sign}{integer}.{fraction}")


def _parse_optional_amount(
    key: str, values: list[str], limits: Limits, allow_negative: bool = False
) -> Decimal | None:
    text = one_value(key, values)
    # Templates commonly render "sale_amount=" when there was no sale. The conversion
    # itself still happened, so a blank must not turn it into a rejection.
    if text == "":
        return None
    return parse_amount(text, allow_negative=allow_negative, limits=limits, field=key)


def _parse_currency(
    key: str, values: list[str], limits: Limits | None = None, allow_negative: bool = False
) -> str | None:
    """The ISO 4217 code, upper-cased; None when blank (the default currency applies)."""
    text = one_value(key, values)
    if text == "":
        return None
    code = text.upper()
    if _CURRENCY_RE.fullmatch(text) is None or code not in ISO_4217_CODES:
        raise ParamError(
            Reason.INVALID_CURRENCY, f"{key} must be an ISO 4217 currency code", field=key
        )
    return code


def parse_optional_text(key: str, values: list[str], max_length: int) -> str | None:
    """A free-text field (``reason_code``, ``reversal_reason``): None when blank.

    :raises ParamError: given twice, longer than ``max_length``, or holding a control
        character or a surrogate.
    """
    text = one_value(key, values)
    if text == "":
        return None
    _check_text(text, key, max_length)
    return text


def _parse_reference(
    key: str, values: list[str], limits: Limits, allow_negative: bool = False
) -> str | None:
    text = parse_optional_text(key, values, limits.max_reference_length)
    # " 42" and "42" would look identical in a report yet never match each other.
    if text is not None and text != text.strip():
        raise ParamError(
            Reason.INVALID_TEXT, f"{key} must not start or end with whitespace", field=key
        )
    return text


def _parse_skus(
    key: str, values: list[str], limits: Limits, allow_negative: bool = False
) -> tuple[str, ...]:
    if len(values) > limits.max_items:
        raise ParamError(
            Reason.TOO_MANY_ITEMS, f"{key} has more than {limits.max_items} entries", field=key
        )
    for sku in values:
        if sku == "":
            raise ParamError(Reason.INVALID_TEXT, f"{key} has an empty entry", field=key)
        _check_text(sku, key, limits.max_text_length)
    return tuple(values)


def _parse_quantities(
    key: str, values: list[str], limits: Limits, allow_negative: bool = False
) -> tuple[int, ...]:
    if len(values) > limits.max_items:
        raise ParamError(
            Reason.TOO_MANY_ITEMS, f"{key} has more than {limits.max_items} entries", field=key
        )
    quantities = []
    for text in values:
        quantity = int(text) if _QUANTITY_RE.fullmatch(text) is not None else 0
        if not 1 <= quantity <= limits.max_quantity:
            raise ParamError(
                Reason.INVALID_QUANTITY,
                f"each {key} entry must be a whole number from 1 to {limits.max_quantity}",
                field=key,
            )
        quantities.append(quantity)
    return tuple(quantities)


def _add_personal(key: str, values: list[str], personal: dict[str, str], limits: Limits) -> None:
    text = one_value(key, values)
    if text == "":
        return  # "opt_in_SMS=" and friends: not given
    # Control characters first, so every text field reports them the same way.
    _check_characters(text, key)
    if key == "email_address":
        if len(text) > _EMAIL_MAX_LENGTH or _EMAIL_RE.fullmatch(text) is None:
            raise ParamError(
                Reason.INVALID_PERSONAL_DATA,
                f"{key} must look like local@domain, at most {_EMAIL_MAX_LENGTH} characters",
                field=key,
            )
    elif key in _PHONE_FIELDS:
        if _E164_RE.fullmatch(text) is None:
            raise ParamError(
                Reason.INVALID_PERSONAL_DATA,
                f"{key} must be an E.164 number such as +14155550100",
                field=key,
            )
    elif key == "opt_in_SMS":
        if text not in _OPT_IN_VALUES:
            raise ParamError(Reason.INVALID_PERSONAL_DATA, f"{key} must be 1 or 0", field=key)
    else:
        _check_text(text, key, limits.max_text_length)
    personal[key] = text


def _add_custom(key: str, values: list[str], custom: dict[str, str], limits: Limits) -> None:
    if key == "":
        # A stray "=" (or "&=&") carries nothing: ignore it. A value without a name
        # cannot be kept, and dropping it silently would hide a broken template.
        if any(values):
            raise ParamError(Reason.INVALID_TEXT, "a parameter has a value but no name")
        return
    field = shown_name(key)
    text = one_value(key, values)
    if len(key) > limits.max_custom_key_length:
        raise ParamError(
            Reason.VALUE_TOO_LONG,
            f"a parameter name is longer than {limits.max_custom_key_length} characters",
            field=field,
        )
    _check_characters(key, field, "a parameter name")
    if len(custom) >= limits.max_custom_fields:
        raise ParamError(
            Reason.TOO_MANY_CUSTOM_FIELDS,
            f"more than {limits.max_custom_fields} custom parameters",
            field=field,
        )
    _check_text(text, field, limits.max_text_length)
    # Blank values are kept: the name alone may be what the template meant to send.
    custom[key] = text


def parse_sale_params(
    args: Query,
    *,
    default_currency: str = "USD",
    allow_negative: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SaleReport:
    """Validate the pixel's ``SALES_PARAMS`` into a :class:`~pixel_wsgi.models.SaleReport`.

    Every parameter is optional. A blank ``sale_amount``, ``reason_code``,
    ``reference_id``, ``parent_reference_id`` or personal field counts as not given; a
    blank ``sale_currency`` means ``default_currency``. Personal (remarketing) fields go
    to ``personal_data``; any other unknown parameter goes to ``custom_data`` in the order
    first seen. Parameter names are case-sensitive.

    ``given`` names the :class:`SaleReport` fields the query carried with a non-blank
    value (``"sku_list"`` for either spelling): a correction replaces only those and keeps
    the rest, so a blank never erases a value reported earlier.

    >>> report = parse_sale_params(parse_query("sale_amount=10&sku_list[]=34657"))
    >>> report.sale_amount, report.sale_currency, report.sku_list
    (Decimal('10.00'), 'USD', ('34657',))

    :param args: the parsed query, usually from :func:`parse_query`.
    :param default_currency: the currency when ``sale_currency`` is absent or blank. It is
        used as given: validate it once, at configuration time.
    :param allow_negative: accept a leading ``-`` on ``sale_amount`` (refunds reported by
        a trusted server-side caller; never on the public pixel).
    :param limits: the size caps.
    :raises ParamError: the first rule broken, in the order the parameters first appear.
    """
    return _parse_sale(args, default_currency, allow_negative, limits, None)


def parse_sale_fields(
    args: Query,
    errors: list[ParamError],
    *,
    default_currency: str = "USD",
    allow_negative: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SaleReport:
    """:func:`parse_sale_params` that lists every broken rule in ``errors`` instead of
    raising the first: the server-side APIs name them all at once.

    Rules between fields (SKUs and quantities, the two references) are checked only when
    their fields are valid, and name only their first fault. The report returned is
    meaningful only when nothing was added to ``errors``.
    """
    return _parse_sale(args, default_currency, allow_negative, limits, errors)


def _collect(errors: list[ParamError], exc: ParamError, key: str) -> None:
    """Add a field's error to ``errors``; over-many custom fields are counted once."""
    if exc.reason is Reason.TOO_MANY_CUSTOM_FIELDS and any(
        e.reason is Reason.TOO_MANY_CUSTOM_FIELDS for e in errors
    ):
        return
    if exc.field is None:
        exc = ParamError(exc.reason, exc.detail, field=shown_name(key))
    errors.append(exc)


def _broken(errors: list[ParamError] | None, exc: ParamError) -> None:
    """A rule between fields broken: raise it, or list it when collecting."""
    if errors is None:
        raise exc
    errors.append(exc)


# Each validator: (key, values, limits, allow_negative) -> the field's value, or None
# when it counts as not given (a blank); the rule it breaks raises ParamError.
_Validator = Callable[[str, list[str], "Limits", bool], Any]


def _reason_code(
    key: str, values: list[str], limits: Limits, allow_negative: bool = False
) -> str | None:
    return parse_optional_text(key, values, limits.max_text_length)


#: Every named sale field: the :class:`SaleReport` field it fills and its validator. One
#: table serves the pixel (the first broken rule is raised) and the server-side APIs
#: (every broken rule is listed); any other name is a personal field or custom data.
_SALE_FIELDS: dict[str, tuple[str, _Validator]] = {
    "sale_amount": ("sale_amount", _parse_optional_amount),
    "sale_currency": ("sale_currency", _parse_currency),
    "reason_code": ("reason_code", _reason_code),
    "reference_id": ("reference_id", _parse_reference),
    "parent_reference_id": ("parent_reference_id", _parse_reference),
    **dict.fromkeys(_SKU_KEYS, ("sku_list", _parse_skus)),
    **dict.fromkeys(_QUANTITY_KEYS, ("quantity_list", _parse_quantities)),
}


def _parse_sale(
    args: Query,
    default_currency: str,
    allow_negative: bool,
    limits: Limits,
    errors: list[ParamError] | None,
) -> SaleReport:
    # One pass over the fields, in the order given. Raising (errors is None): the first
    # broken rule, the pixel's way. Collecting: each field's own, the APIs' way.
    failed: set[str] = set()
    found: dict[str, Any] = {}
    custom: dict[str, str] = {}
    personal: dict[str, str] = {}
    for key, values in args.items():
        if not values:
            continue
        if failed and _GROUPS.get(key, key) in failed:
            continue  # a rule tied to a field already at fault would only repeat it
        try:
            field = _SALE_FIELDS.get(key)
            if field is not None:
                name, validate = field
                if name in found:
                    # Both spellings of a list: the order across them is lost, and so
                    # is the pairing of SKUs with quantities: refuse rather than guess.
                    raise ParamError(
                        Reason.DUPLICATE_PARAMETER,
                        f"give {name}[] or {name}, not both",
                        field=f"{name}[]",
                    )
                value = validate(key, values, limits, allow_negative)
                if value is not None:
                    found[name] = value
            elif is_personal_key(key):
                # A near-miss of a personal field's name (Email_Address) is still personal
                # data: keep it apart from the conversion, where it stays erasable.
                _add_personal(key, values, personal, limits)
            else:
                _add_custom(key, values, custom, limits)
        except ParamError as exc:
            if errors is None:
                raise
            _collect(errors, exc, key)
            failed.add(_GROUPS.get(key, key))

    # Quantities are matched to SKUs by position, so any difference in length leaves some
    # quantity with no SKU or the reverse. SKUs alone are fine (quantity 1 is implied).
    if "quantity_list" in found and _ITEMS not in failed:
        quantities, skus = len(found["quantity_list"]), len(found.get("sku_list", ()))
        if quantities != skus:
            _broken(
                errors,
                ParamError(
                    Reason.QUANTITY_MISMATCH,
                    f"{quantities} quantities for {skus} SKUs",
                    field="quantity_list[]",
                ),
            )
    # A correction is identified by its parent; a report naming two different
    # conversions at once cannot be applied to either.
    if "parent_reference_id" in found and found.get("reference_id") not in (
        None,
        found["parent_reference_id"],
    ):
        _broken(
            errors,
            ParamError(
                Reason.CONFLICTING_REFERENCE,
                "reference_id and parent_reference_id name different conversions",
                field="parent_reference_id",
            ),
        )
    given = frozenset(found)
    found.setdefault("sale_currency", default_currency)
    # The table's names are SaleReport's fields.
    return SaleReport(**found, custom_data=custom, personal_data=personal, given=given)


def parse_legacy_params(
    args: Query,
    *,
    default_currency: str = "USD",
    limits: Limits = DEFAULT_LIMITS,
) -> SaleReport:
    """Validate the legacy pixel's parameters (installations before December 2012).

    ``amount`` follows the ``sale_amount`` grammar (blank: not given, never negative),
    ``currency`` the ``sale_currency`` rule and ``external_data`` is free text (blank: not
    given). Personal fields still go to ``personal_data``, never to custom data; every
    other parameter, including the new pixel's names, is custom data. The reference ids
    are always ``None``: legacy conversions can never be tied to later reports.
    ``given`` uses the report's field names (``sale_amount``, ``sale_currency``,
    ``external_data``).

    :raises ParamError: the first rule broken, as for :func:`parse_sale_params`.
    """
    amount: Decimal | None = None
    currency = default_currency
    external_data: str | None = None
    custom: dict[str, str] = {}
    personal: dict[str, str] = {}
    given: set[str] = set()

    for key, values in args.items():
        if not values:
            continue
        if key == "amount":
            amount = _parse_optional_amount(key, values, limits)
            if amount is not None:
                given.add("sale_amount")
        elif key == "currency":
            currency = _parse_currency(key, values) or default_currency
            if values[0]:
                given.add("sale_currency")
        elif key == "external_data":
            external_data = parse_optional_text(key, values, limits.max_external_data_length)
            if external_data is not None:
                given.add("external_data")
        elif is_personal_key(key):
            # A near-miss of a personal field's name (Email_Address) is still personal
            # data: keep it apart from the conversion, where it stays erasable.
            _add_personal(key, values, personal, limits)
        else:
            _add_custom(key, values, custom, limits)

    return SaleReport(
        sale_amount=amount,
        sale_currency=currency,
        external_data=external_data,
        custom_data=custom,
        personal_data=personal,
        given=frozenset(given),
    )


def claimed_reference(args: Query | None, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The conversion a refused report names, for the rejection log, when that name is valid.

    ``parent_reference_id`` first, then ``reference_id``: the first given once that
    follows its own rules (see :func:`parse_sale_params`), whatever else the report
    broke. None when neither is given or valid.

    >>> claimed_reference(parse_query("sale_amount=1,00&reference_id=c"))
    'c'
    """
    if args is None:
        return None
    for name in ("parent_reference_id", "reference_id"):
        values = args.get(name)
        if values:
            try:
                text = _parse_reference(name, values, limits)
            except ParamError:
                return None
            if text is not None:
                return text
    return None


def json_nesting_ok(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays and objects at most ``max_depth`` deep.

    Checked before ``json.loads``, which recurses once per level: a megabyte of ``[``
    would end in a RecursionError. Without recursion and in C-speed passes (strings
    removed, then innermost ``[]``/``{}`` pairs removed once per level), so a hostile
    body costs at most ``max_depth`` scans. Unbalanced brackets also answer False:
    such text is not JSON anyway.

    >>> json_nesting_ok('[{"a": "[[["}]'), json_nesting_ok("[" * 100 + "]" * 100)
    (True, False)
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    # Escapes go first (left to right, as a parser reads them), so that every '"' left
    # opens or closes a string; then the strings, then everything but brackets.
    data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(data.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not skeleton:
            return True
        shorter = skeleton.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(skeleton):
            return False  # unbalanced: not JSON
        skeleton = shorter
    return not skeleton


def printable_text(text: str, max_length: int) -> str:
    """Text from a request header, made safe to store: what a store cannot hold goes.

    For text that is kept whatever it holds (a click's ``User-Agent``), not refused:
    control characters (NUL included: PostgreSQL refuses it) and surrogates become
    U+FFFD, and the result is cut to ``max_length`` characters.

    >>> printable_text("Bot\x00/1.0", 8)
    'Bot\ufffd/1.0'
    """
    # Cut first: the substitution then scans a bounded string.
    return CONTROL_RE.sub("\ufffd", text[:max_length])


def is_personal_key(key: str) -> bool:
    key = key.strip().lower()
    if key.endswith("[]"):
        key = key[:-2]
    return key in _PERSONAL_FOLDED


def _log_escaped(text: str) -> str:
    """``text`` percent-encoded for the log, but for letters, digits and ``_.~-[]/:,@``.

    >>> _log_escaped("b&c d")
    'b%26c%20d'
    """
    if _LOG_PLAIN.fullmatch(text):
        return text
    # backslashreplace: a surrogate (from JSON) has no UTF-8 to percent-encode.
    return quote(text, safe=_LOG_SAFE, errors="backslashreplace")


def redacted_query(args: Query, limit: int = 2048) -> str:
    """The query as a loggable string, for the rejection log.

    Values of personal fields (matched ignoring case and a trailing ``[]``) become
    ``[redacted]``; every other key and value is percent-encoded, so control characters
    and line breaks cannot reach the log. The result is cut to at most ``limit``
    characters.

    >>> redacted_query({"sale_amount": ["10"], "email_address": ["a@b.example"]})
    'sale_amount=10&email_address=[redacted]'
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit!r}")
    parts: list[str] = []
    size = 0
    for key, values in args.items():
        personal = is_personal_key(key)
        name = _log_escaped(key)
        for value in values:
            shown = _REDACTED if personal else _log_escaped(value)
            part = f"{name}={shown}"
            parts.append(part)
            size += len(part) + 1
            if size > limit:  # enough to fill the limit: skip encoding the rest
                return "&".join(parts)[:limit]
    return "&".join(parts)[:limit]
