"""Tests for pixel_wsgi.params.sale: query parsing and the validation of report parameters."""

from __future__ import annotations

import unicodedata
from decimal import Decimal, localcontext
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixel_wsgi.currencies import ISO_4217_CODES
from pixel_wsgi.errors import ConfigurationError, ParamError
from pixel_wsgi.models import Reason, SaleReport
from pixel_wsgi.params.sale import (
    DEFAULT_LIMITS,
    MAX_JSON_DEPTH,
    PERSONAL_FIELDS,
    Limits,
    claimed_reference,
    json_nesting_ok,
    parse_amount,
    parse_legacy_params,
    parse_query,
    parse_sale_fields,
    parse_sale_params,
    printable_text,
    redacted_query,
)
from pixel_wsgi.params.values import Query


def sale(query: str, **kwargs: Any) -> SaleReport:
    return parse_sale_params(parse_query(query), **kwargs)


def legacy(query: str, **kwargs: Any) -> SaleReport:
    return parse_legacy_params(parse_query(query), **kwargs)


def md(*pairs: tuple[str, str]) -> Query:
    """The parsed query of these ``(name, value)`` pairs, as parse_query makes it."""
    args: Query = {}
    for key, value in pairs:
        args.setdefault(key, []).append(value)
    return args


def pairs_of(args: Query) -> list[tuple[str, str]]:
    return [(key, value) for key, values in args.items() for value in values]


def raw(text: str) -> str:
    """``text`` as a WSGI server puts raw UTF-8 bytes into QUERY_STRING (PEP 3333)."""
    return text.encode("utf-8").decode("latin-1")


# --- the seed's example URLs -------------------------------------------------------------

SEED_EXAMPLES = [
    pytest.param("", SaleReport(), id="bare-pixel"),
    pytest.param(
        "sale_amount=10",
        SaleReport(sale_amount=Decimal("10.00"), given=frozenset({"sale_amount"})),
        id="ten-dollar-sale",
    ),
    pytest.param(
        "sale_amount=10&reason_code=renewal&sku_list[]=34657",
        SaleReport(
            sale_amount=Decimal("10.00"),
            reason_code="renewal",
            sku_list=("34657",),
            given=frozenset({"sale_amount", "reason_code", "sku_list"}),
        ),
        id="specific-sales-data",
    ),
    pytest.param(
        "sale_amount=10&sku_list[]=dog&sku_list[]=cat",
        SaleReport(
            sale_amount=Decimal("10.00"),
            sku_list=("dog", "cat"),
            given=frozenset({"sale_amount", "sku_list"}),
        ),
        id="multiple-skus",
    ),
    pytest.param(
        "sale_amount=0&reason_code=new_signup&reference_id=2012994455",
        SaleReport(
            sale_amount=Decimal("0.00"),
            reason_code="new_signup",
            reference_id="2012994455",
            given=frozenset({"sale_amount", "reason_code", "reference_id"}),
        ),
        id="with-reference-id",
    ),
    pytest.param(
        "sale_amount=95.0&reason_code=confirmed_order&parent_reference_id=2012994455",
        SaleReport(
            sale_amount=Decimal("95.00"),
            reason_code="confirmed_order",
            parent_reference_id="2012994455",
            given=frozenset({"sale_amount", "reason_code", "parent_reference_id"}),
        ),
        id="update-earlier-conversion",
    ),
    # The same examples as a browser sends them, with the brackets percent-encoded.
    pytest.param(
        "sale_amount=10&sku_list%5B%5D=dog&sku_list%5B%5D=cat",
        SaleReport(
            sale_amount=Decimal("10.00"),
            sku_list=("dog", "cat"),
            given=frozenset({"sale_amount", "sku_list"}),
        ),
        id="multiple-skus-encoded-brackets",
    ),
]


@pytest.mark.parametrize(("query", "expected"), SEED_EXAMPLES)
def test_seed_examples(query: str, expected: SaleReport) -> None:
    report = sale(query)
    assert report == expected
    if report.sale_amount is not None:
        assert report.sale_amount.as_tuple().exponent == -2


# --- parse_query -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param("a=1", [("a", "1")], id="one"),
        pytest.param("a=1&b=2&a=3", [("a", "1"), ("a", "3"), ("b", "2")], id="repeated-order"),
        pytest.param("a=&b", [("a", ""), ("b", "")], id="blank-values-kept"),
        pytest.param("a=1&&b=2&", [("a", "1"), ("b", "2")], id="empty-segments-skipped"),
        pytest.param("a=x+y%20z", [("a", "x y z")], id="plus-and-percent-space"),
        pytest.param("a=1%262&b=%3D", [("a", "1&2"), ("b", "=")], id="escaped-separators"),
        pytest.param("r=caf%C3%A9", [("r", "café")], id="percent-encoded-utf8"),
        pytest.param(raw("r=café ☕"), [("r", "café ☕")], id="raw-utf8-bytes"),
        pytest.param(raw("café=1"), [("café", "1")], id="raw-utf8-key"),
        pytest.param("a=%F0%9F%98%80", [("a", "\U0001f600")], id="four-byte-utf8"),
        pytest.param("a=1;b=2", [("a", "1;b=2")], id="semicolon-is-not-a-separator"),
    ],
)
def test_parse_query(query: str, expected: list[tuple[str, str]]) -> None:
    args = parse_query(query)
    assert type(args) is dict
    assert sorted(pairs_of(args), key=lambda kv: kv[0]) == sorted(expected, key=lambda kv: kv[0])
    for key in args:
        assert args[key] == [v for k, v in expected if k == key]


def test_parse_query_empty_is_an_empty_dict() -> None:
    args = parse_query("")
    assert args == {}
    assert type(args) is dict


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("a=\xff", id="raw-ff-value"),
        pytest.param("\xff=1", id="raw-ff-key"),
        pytest.param("a=\xc3", id="raw-truncated-sequence"),
        pytest.param("a=\xc0\xaf", id="raw-overlong"),
        pytest.param("a=\xed\xa0\x80", id="raw-surrogate"),
        pytest.param("a=caf\xe9", id="raw-latin1-text"),
        pytest.param("a=%FF", id="percent-ff-value"),
        pytest.param("a=%ff", id="percent-ff-lowercase"),
        pytest.param("%FF=1", id="percent-ff-key"),
        pytest.param("a=%C3", id="percent-truncated-sequence"),
        pytest.param("a=%C0%AF", id="percent-overlong"),
        pytest.param("a=%ED%A0%80", id="percent-surrogate"),
        pytest.param("a=%F4%90%80%80", id="percent-beyond-unicode"),
        pytest.param("a=caf%E9", id="percent-latin1-text"),
        pytest.param("a=\u20ac", id="not-latin1-str-from-a-broken-server"),
    ],
)
def test_parse_query_rejects_invalid_utf8(query: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_query(query)
    assert info.value.reason is Reason.INVALID_QUERY


def test_parse_query_length_cap() -> None:
    at_limit = "a=" + "x" * (DEFAULT_LIMITS.max_query_length - 2)
    assert parse_query(at_limit)["a"] == ["x" * (DEFAULT_LIMITS.max_query_length - 2)]
    with pytest.raises(ParamError) as info:
        parse_query(at_limit + "x")
    assert info.value.reason is Reason.QUERY_TOO_LONG


def test_parse_query_length_counts_bytes_not_characters() -> None:
    # Two UTF-8 bytes per "é": 6 characters of text are 10 QUERY_STRING characters.
    limits = Limits(max_query_length=9)
    with pytest.raises(ParamError) as info:
        parse_query(raw("a=éééé"), limits)
    assert info.value.reason is Reason.QUERY_TOO_LONG
    assert parse_query(raw("a=ééé"), limits)["a"] == ["ééé"]


def test_parse_query_parameter_cap() -> None:
    at_limit = "&".join(f"k{i}=v" for i in range(DEFAULT_LIMITS.max_parameters))
    assert len(parse_query(at_limit)) == DEFAULT_LIMITS.max_parameters
    with pytest.raises(ParamError) as info:
        parse_query(at_limit + "&one=more")
    assert info.value.reason is Reason.TOO_MANY_PARAMETERS


def test_parse_query_custom_limits() -> None:
    limits = Limits(max_parameters=2, max_query_length=20)
    assert parse_query("a=1&b=2", limits) == {"a": ["1"], "b": ["2"]}
    with pytest.raises(ParamError) as info:
        parse_query("a=1&b=2&c=3", limits)
    assert info.value.reason is Reason.TOO_MANY_PARAMETERS
    with pytest.raises(ParamError) as info:
        parse_query("a=" + "x" * 19, limits)
    assert info.value.reason is Reason.QUERY_TOO_LONG


# --- sale_amount -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0", "0.00", id="zero"),
        pytest.param("0.00", "0.00", id="zero-two-places"),
        pytest.param("10", "10.00", id="integer"),
        pytest.param("95.0", "95.00", id="one-place"),
        pytest.param("10.5", "10.50", id="one-place-half"),
        pytest.param("10.55", "10.55", id="two-places"),
        pytest.param("0.01", "0.01", id="one-cent"),
        pytest.param("007.10", "7.10", id="leading-zeros"),
        pytest.param("999999999999.99", "999999999999.99", id="twelve-integer-digits"),
    ],
)
def test_parse_amount_valid(text: str, expected: str) -> None:
    amount = parse_amount(text)
    assert isinstance(amount, Decimal)
    assert amount == Decimal(expected)
    assert str(amount) == expected
    assert amount.as_tuple().exponent == -2


BAD_AMOUNTS = [
    pytest.param("nan", id="nan"),
    pytest.param("NaN", id="NaN"),
    pytest.param("sNaN", id="sNaN"),
    pytest.param("inf", id="inf"),
    pytest.param("Infinity", id="Infinity"),
    pytest.param("-inf", id="minus-inf"),
    pytest.param("1e309", id="exponent-huge"),
    pytest.param("1E2", id="exponent-upper"),
    pytest.param("1e-2", id="exponent-negative"),
    pytest.param("1_000", id="underscore"),
    pytest.param("1,000", id="thousands-comma"),
    pytest.param("1.000,50", id="european-separators"),
    pytest.param("1 000", id="space-separator"),
    pytest.param("10,50", id="decimal-comma"),
    pytest.param("$10", id="dollar-sign"),
    pytest.param("10$", id="trailing-dollar"),
    pytest.param("€10", id="euro-sign"),
    pytest.param("USD10", id="currency-code"),
    pytest.param("10 ", id="trailing-space"),
    pytest.param(" 10", id="leading-space"),
    pytest.param("10\n", id="trailing-newline"),
    pytest.param("+10", id="plus-sign"),
    pytest.param(".5", id="no-integer-part"),
    pytest.param("10.", id="no-decimals-after-point"),
    pytest.param("10.001", id="three-places"),
    pytest.param("10.10.1", id="two-points"),
    pytest.param("0x10", id="hex"),
    pytest.param("\u0661\u0660", id="arabic-indic-digits"),
    pytest.param("\uff11\uff10", id="full-width-digits"),
    pytest.param("\u0967\u0966", id="devanagari-digits"),
    pytest.param("10.\u0665", id="arabic-indic-decimal"),
    pytest.param("-5", id="negative"),
    pytest.param("-0", id="negative-zero"),
    pytest.param("-", id="lone-minus"),
    pytest.param("abc", id="letters"),
    pytest.param("1000000000000", id="thirteen-integer-digits"),
    pytest.param("0000000000001", id="thirteen-digits-with-leading-zeros"),
    pytest.param("9" * 5000, id="five-thousand-digits"),
]


@pytest.mark.parametrize("text", BAD_AMOUNTS)
def test_parse_amount_invalid(text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_amount(text)
    assert info.value.reason is Reason.INVALID_SALE_AMOUNT
    assert info.value.field == "sale_amount"


@pytest.mark.parametrize("text", BAD_AMOUNTS)
def test_sale_amount_invalid_in_query(text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("sale_amount", text)))
    assert info.value.reason is Reason.INVALID_SALE_AMOUNT
    assert info.value.field == "sale_amount"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("-5", "-5.00", id="negative"),
        pytest.param("-10.5", "-10.50", id="negative-one-place"),
        pytest.param("-0", "0.00", id="negative-zero"),
        pytest.param("-0.00", "0.00", id="negative-zero-two-places"),
        pytest.param("5", "5.00", id="positive"),
    ],
)
def test_parse_amount_allow_negative(text: str, expected: str) -> None:
    amount = parse_amount(text, allow_negative=True)
    assert str(amount) == expected
    assert not (amount.is_zero() and amount.is_signed())


@pytest.mark.parametrize("text", ["--5", "-", "+5", "- 5", "-.5", "5-", "\u22125"])
def test_parse_amount_allow_negative_still_strict(text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_amount(text, allow_negative=True)
    assert info.value.reason is Reason.INVALID_SALE_AMOUNT


def test_parse_amount_integer_digit_limit() -> None:
    limits = Limits(max_amount_integer_digits=3)
    assert parse_amount("999.99", limits=limits) == Decimal("999.99")
    with pytest.raises(ParamError) as info:
        parse_amount("1000", limits=limits)
    assert info.value.reason is Reason.INVALID_SALE_AMOUNT


def test_parse_amount_names_the_field() -> None:
    with pytest.raises(ParamError) as info:
        parse_amount("x", field="amount")
    assert info.value.field == "amount"


def test_parse_amount_ignores_the_decimal_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        assert str(parse_amount("123456789012.34")) == "123456789012.34"


def test_blank_sale_amount_is_not_given() -> None:
    report = sale("sale_amount=&reason_code=signup")
    assert report.sale_amount is None
    assert report.reason_code == "signup"
    assert report.given == frozenset({"reason_code"})


def test_sale_params_allow_negative() -> None:
    with pytest.raises(ParamError) as info:
        sale("sale_amount=-5")
    assert info.value.reason is Reason.INVALID_SALE_AMOUNT
    assert sale("sale_amount=-5", allow_negative=True).sale_amount == Decimal("-5.00")


# --- sale_currency -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "default", "expected"),
    [
        pytest.param("", "USD", "USD", id="absent-default"),
        pytest.param("", "EUR", "EUR", id="absent-configured-default"),
        pytest.param("sale_currency=", "GBP", "GBP", id="blank-default"),
        pytest.param("sale_currency=EUR", "USD", "EUR", id="upper"),
        pytest.param("sale_currency=eur", "USD", "EUR", id="lower"),
        pytest.param("sale_currency=jPy", "USD", "JPY", id="mixed-case"),
        pytest.param("sale_currency=CHF", "USD", "CHF", id="chf"),
    ],
)
def test_sale_currency(query: str, default: str, expected: str) -> None:
    assert sale(query, default_currency=default).sale_currency == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("US", id="two-letters"),
        pytest.param("USDD", id="four-letters"),
        pytest.param("XYZ", id="not-iso"),
        pytest.param("XXX", id="no-currency-code"),
        pytest.param("XTS", id="testing-code"),
        pytest.param("HRK", id="withdrawn"),
        pytest.param("U$D", id="symbol"),
        pytest.param("$", id="dollar-sign"),
        pytest.param("840", id="numeric-code"),
        pytest.param(" USD", id="leading-space"),
        pytest.param("USD ", id="trailing-space"),
        pytest.param("\uff35\uff33\uff24", id="full-width"),
        pytest.param("usd\x00", id="nul"),
        pytest.param("\u0395\u03a5\u03a1", id="greek-letters"),
    ],
)
def test_sale_currency_invalid(text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("sale_currency", text)))
    assert info.value.reason is Reason.INVALID_CURRENCY
    assert info.value.field == "sale_currency"


def test_currency_set() -> None:
    assert {"USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "CNY", "INR", "BRL"} <= (
        ISO_4217_CODES
    )
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217_CODES)
    assert "XXX" not in ISO_4217_CODES
    assert "XTS" not in ISO_4217_CODES
    assert 170 <= len(ISO_4217_CODES) <= 190


# --- text rules --------------------------------------------------------------------------

CONTROL_CHARACTERS = [
    pytest.param("\x00", id="nul"),
    pytest.param("\x01", id="soh"),
    pytest.param("\t", id="tab"),
    pytest.param("\n", id="lf"),
    pytest.param("\r", id="cr"),
    pytest.param("\x1b", id="esc"),
    pytest.param("\x1f", id="unit-separator"),
    pytest.param("\x7f", id="del"),
    pytest.param("\x80", id="c1-first"),
    pytest.param("\x85", id="nel"),
    pytest.param("\x9f", id="c1-last"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u2029", id="paragraph-separator"),
]

# No character at all, and no store can encode one as UTF-8: refused like the above.
SURROGATES = [
    pytest.param("\ud800", id="surrogate-high"),
    pytest.param("\udfff", id="surrogate-low"),
    pytest.param("\udc80", id="surrogateescape"),
]


@pytest.mark.parametrize("char", [*CONTROL_CHARACTERS, *SURROGATES])
@pytest.mark.parametrize(
    "key",
    ["reason_code", "reference_id", "parent_reference_id", "sku_list[]", "custom_field", "name"],
)
def test_control_characters_in_values(key: str, char: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key, f"ab{char}cd")))
    assert info.value.reason is Reason.INVALID_TEXT
    assert info.value.field == key


@pytest.mark.parametrize("char", [*CONTROL_CHARACTERS, *SURROGATES])
def test_control_characters_in_keys(char: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((f"my{char}key", "1")))
    assert info.value.reason is Reason.INVALID_TEXT
    # The field names the key without the raw control character.
    assert info.value.field is not None
    assert char not in info.value.field
    assert char not in str(info.value)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("reason_code=a%00b", "reason_code", id="percent-nul-value"),
        pytest.param("reason_code=a\x00b", "reason_code", id="raw-nul-value"),
        pytest.param("reason_code=a%0D%0Ab", "reason_code", id="crlf-value"),
        pytest.param("reason_code=a%C2%85b", "reason_code", id="nel-value"),
        pytest.param("reason_code=a%E2%80%A8b", "reason_code", id="line-separator-value"),
        pytest.param("sku_list[]=a%09b", "sku_list[]", id="tab-in-sku"),
        pytest.param("a%00b=1", "a\\x00b", id="percent-nul-key"),
        pytest.param("a\x00b=1", "a\\x00b", id="raw-nul-key"),
    ],
)
def test_control_characters_through_the_query(query: str, field: str) -> None:
    with pytest.raises(ParamError) as info:
        sale(query)
    assert info.value.reason is Reason.INVALID_TEXT
    assert info.value.field == field


def test_control_character_set_is_exactly_cc_and_line_separators() -> None:
    # Through the public API, over the BMP's first blocks and a few beyond.
    code_points = [*range(0x2100), 0xFEFF, 0xFFFD, 0x1F600, 0x10FFFF]
    for cp in code_points:
        char = chr(cp)
        expected_bad = unicodedata.category(char) == "Cc" or char in "\u2028\u2029"
        if unicodedata.category(char) == "Cs":
            continue
        try:
            parse_sale_params(md(("reason_code", f"x{char}")))
        except ParamError as exc:
            assert expected_bad, f"U+{cp:04X} rejected"
            assert exc.reason is Reason.INVALID_TEXT
        else:
            assert not expected_bad, f"U+{cp:04X} accepted"


def test_unicode_text_is_kept() -> None:
    report = sale("reason_code=caf%C3%A9+%E2%98%95&sku_list[]=%E5%95%86%E5%93%81")
    assert report.reason_code == "café ☕"
    assert report.sku_list == ("商品",)


@pytest.mark.parametrize(
    ("key", "limit"),
    [
        pytest.param("reason_code", DEFAULT_LIMITS.max_text_length, id="reason_code"),
        pytest.param("reference_id", DEFAULT_LIMITS.max_reference_length, id="reference_id"),
        pytest.param(
            "parent_reference_id", DEFAULT_LIMITS.max_reference_length, id="parent_reference_id"
        ),
        pytest.param("sku_list[]", DEFAULT_LIMITS.max_text_length, id="sku"),
        pytest.param("custom", DEFAULT_LIMITS.max_text_length, id="custom-value"),
        pytest.param("name", DEFAULT_LIMITS.max_text_length, id="personal-name"),
        pytest.param("address1", DEFAULT_LIMITS.max_text_length, id="personal-address1"),
    ],
)
def test_value_length_caps(key: str, limit: int) -> None:
    parse_sale_params(md((key, "x" * limit)))
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key, "x" * (limit + 1))))
    assert info.value.reason is Reason.VALUE_TOO_LONG
    assert info.value.field == key


def test_length_is_counted_in_characters() -> None:
    report = parse_sale_params(md(("reason_code", "é" * DEFAULT_LIMITS.max_text_length)))
    assert report.reason_code == "é" * DEFAULT_LIMITS.max_text_length


def test_blank_reason_code_is_none() -> None:
    assert sale("reason_code=").reason_code is None


# --- duplicates --------------------------------------------------------------------------

SINGLE_VALUED = [
    ("sale_amount", "10"),
    ("sale_currency", "USD"),
    ("reason_code", "renewal"),
    ("reference_id", "abc"),
    ("parent_reference_id", "abc"),
    ("email_address", "a@example.com"),
    ("name", "Ann"),
    ("address1", "1 Main St"),
    ("address2", "Apt 2"),
    ("order_city", "Springfield"),
    ("state_or_province", "IL"),
    ("country", "US"),
    ("zip_code", "62701"),
    ("home_phone_number", "+15555550123"),
    ("cell_phone_number", "+15555550124"),
    ("opt_in_SMS", "1"),
    ("utm_source", "newsletter"),
]


@pytest.mark.parametrize(("key", "value"), [pytest.param(k, v, id=k) for k, v in SINGLE_VALUED])
@pytest.mark.parametrize("second", ["same", "different", "blank"])
def test_single_valued_duplicates(key: str, value: str, second: str) -> None:
    other = {"same": value, "different": value + "0", "blank": ""}[second]
    parse_sale_params(md((key, value)))  # once is fine
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key, value), ("reason_code_x", "y"), (key, other)))
    assert info.value.reason is Reason.DUPLICATE_PARAMETER
    assert info.value.field == key


def test_personal_fields_are_all_covered_by_duplicate_tests() -> None:
    assert {k for k, _ in SINGLE_VALUED} >= PERSONAL_FIELDS


def test_duplicate_through_the_query() -> None:
    with pytest.raises(ParamError) as info:
        sale("sale_amount=10&reason_code=x&sale_amount=10")
    assert info.value.reason is Reason.DUPLICATE_PARAMETER
    assert info.value.field == "sale_amount"


# --- sku_list / quantity_list ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "skus", "quantities"),
    [
        pytest.param("sku_list[]=b&sku_list[]=a&sku_list[]=c", ("b", "a", "c"), (), id="order"),
        pytest.param("sku_list=b&sku_list=a", ("b", "a"), (), id="unbracketed"),
        pytest.param("sku_list[]=a&sku_list[]=a", ("a", "a"), (), id="repeated-sku-kept"),
        pytest.param(
            "sku_list[]=a&quantity_list[]=2&sku_list[]=b&quantity_list[]=1",
            ("a", "b"),
            (2, 1),
            id="interleaved-with-quantities",
        ),
        pytest.param(
            "sku_list=a&sku_list=b&quantity_list=3&quantity_list=999999",
            ("a", "b"),
            (3, 999_999),
            id="unbracketed-quantities",
        ),
        pytest.param(
            "sku_list[]=a&quantity_list=5", ("a",), (5,), id="mixed-spellings-across-lists"
        ),
        pytest.param("sku_list[]=a&quantity_list[]=007", ("a",), (7,), id="leading-zeros"),
        pytest.param("sku_list[]=+a+", (" a ",), (), id="spaces-kept-in-sku"),
    ],
)
def test_sku_and_quantity_lists(
    query: str, skus: tuple[str, ...], quantities: tuple[int, ...]
) -> None:
    report = sale(query)
    assert report.sku_list == skus
    assert report.quantity_list == quantities
    assert "sku_list" in report.given
    assert ("quantity_list" in report.given) is bool(quantities)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("sku_list[]=a&sku_list=b", "sku_list[]", id="both-sku-spellings"),
        pytest.param("sku_list=a&sku_list[]=b", "sku_list[]", id="both-sku-spellings-reversed"),
        pytest.param(
            "sku_list[]=a&quantity_list[]=1&quantity_list=1",
            "quantity_list[]",
            id="both-quantity-spellings",
        ),
    ],
)
def test_both_list_spellings_are_ambiguous(query: str, field: str) -> None:
    with pytest.raises(ParamError) as info:
        sale(query)
    assert info.value.reason is Reason.DUPLICATE_PARAMETER
    assert info.value.field == field


@pytest.mark.parametrize("key", ["sku_list[]", "sku_list"])
def test_empty_sku_is_invalid(key: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key, "a"), (key, "")))
    assert info.value.reason is Reason.INVALID_TEXT
    assert info.value.field == key


@pytest.mark.parametrize("key", ["sku_list[]", "sku_list", "quantity_list[]", "quantity_list"])
def test_too_many_items(key: str) -> None:
    limit = DEFAULT_LIMITS.max_items
    ok = md(*[(key, "1")] * limit)
    if key.startswith("quantity"):
        ok["sku_list[]"] = ["s"] * limit
    assert len(parse_sale_params(ok).sku_list) == limit
    too_many = md(*[(key, "1")] * (limit + 1))
    with pytest.raises(ParamError) as info:
        parse_sale_params(too_many)
    assert info.value.reason is Reason.TOO_MANY_ITEMS
    assert info.value.field == key


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param("+1", id="plus"),
        pytest.param("1.0", id="decimal"),
        pytest.param("1.5", id="fraction"),
        pytest.param("1e3", id="exponent"),
        pytest.param("1_000", id="underscore"),
        pytest.param("1,000", id="comma"),
        pytest.param(" 1", id="leading-space"),
        pytest.param("1 ", id="trailing-space"),
        pytest.param("", id="blank"),
        pytest.param("one", id="word"),
        pytest.param("\uff11", id="full-width"),
        pytest.param("\u0661", id="arabic-indic"),
        pytest.param("1000000", id="over-max"),
        pytest.param("9" * 5000, id="five-thousand-digits"),
        pytest.param("nan", id="nan"),
    ],
)
def test_invalid_quantity(text: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("sku_list[]", "a"), ("quantity_list[]", text)))
    assert info.value.reason is Reason.INVALID_QUANTITY
    assert info.value.field == "quantity_list[]"


def test_quantity_cap_is_configurable() -> None:
    limits = Limits(max_quantity=5)
    report = parse_sale_params(md(("sku_list", "a"), ("quantity_list", "5")), limits=limits)
    assert report.quantity_list == (5,)
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("sku_list", "a"), ("quantity_list", "6")), limits=limits)
    assert info.value.reason is Reason.INVALID_QUANTITY


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("sku_list[]=a&sku_list[]=b&quantity_list[]=1", id="fewer-quantities"),
        pytest.param("sku_list[]=a&quantity_list[]=1&quantity_list[]=2", id="more-quantities"),
        pytest.param("quantity_list[]=1", id="quantities-without-skus"),
    ],
)
def test_quantity_mismatch(query: str) -> None:
    with pytest.raises(ParamError) as info:
        sale(query)
    assert info.value.reason is Reason.QUANTITY_MISMATCH


def test_skus_without_quantities_are_fine() -> None:
    report = sale("sku_list[]=a&sku_list[]=b")
    assert report.quantity_list == ()
    assert "quantity_list" not in report.given


# --- reference ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reference_id", "parent_reference_id"),
    [
        pytest.param("reference_id=abc", "abc", None, id="reference"),
        pytest.param("parent_reference_id=abc", None, "abc", id="parent"),
        pytest.param("reference_id=", None, None, id="blank-reference"),
        pytest.param("parent_reference_id=", None, None, id="blank-parent"),
        pytest.param("reference_id=abc&parent_reference_id=abc", "abc", "abc", id="equal-is-fine"),
        pytest.param(
            "reference_id=&parent_reference_id=abc", None, "abc", id="blank-reference-and-parent"
        ),
        pytest.param("reference_id=a+b", "a b", None, id="inner-space-kept"),
    ],
)
def test_reference_ids(
    query: str, reference_id: str | None, parent_reference_id: str | None
) -> None:
    report = sale(query)
    assert report.reference_id == reference_id
    assert report.parent_reference_id == parent_reference_id


@pytest.mark.parametrize("key", ["reference_id", "parent_reference_id"])
@pytest.mark.parametrize("value", [" abc", "abc ", " ", "abc\u00a0", "\u3000abc"])
def test_reference_ids_reject_surrounding_whitespace(key: str, value: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key, value)))
    assert info.value.reason is Reason.INVALID_TEXT
    assert info.value.field == key


def test_conflicting_references() -> None:
    with pytest.raises(ParamError) as info:
        sale("reference_id=abc&parent_reference_id=abd")
    assert info.value.reason is Reason.CONFLICTING_REFERENCE
    assert info.value.field == "parent_reference_id"


# --- personal (remarketing) fields -------------------------------------------------------

VALID_PERSONAL = {
    "email_address": "ann.lee+tag@example.co.uk",
    "name": "Ann Lee",
    "address1": "1 Main St",
    "address2": "Apt 2",
    "order_city": "Zürich",
    "state_or_province": "ZH",
    "country": "CH",
    "zip_code": "8001",
    "home_phone_number": "+41445555555",
    "cell_phone_number": "+15555550123",
    "opt_in_SMS": "1",
}


def test_personal_fields_go_to_personal_data() -> None:
    args = md(("sale_amount", "10"), *VALID_PERSONAL.items(), ("utm", "x"))
    report = parse_sale_params(args)
    assert report.personal_data == VALID_PERSONAL
    assert report.custom_data == {"utm": "x"}
    assert set(VALID_PERSONAL) == PERSONAL_FIELDS
    assert not PERSONAL_FIELDS & set(report.custom_data)
    assert not PERSONAL_FIELDS & report.given


def test_blank_personal_fields_are_omitted() -> None:
    report = parse_sale_params(md(*[(key, "") for key in PERSONAL_FIELDS]))
    assert report.personal_data == {}
    assert report.custom_data == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("opt_in_SMS", "0", id="opt-out"),
        pytest.param("email_address", "a@b", id="minimal-email"),
        pytest.param("email_address", "ü@bücher.example", id="unicode-email"),
        pytest.param("email_address", "a" * 64 + "@" + "b" * 189, id="email-at-254-characters"),
        pytest.param("home_phone_number", "+12", id="shortest-e164"),
        pytest.param("cell_phone_number", "+123456789012345", id="longest-e164"),
    ],
)
def test_valid_personal_edge_cases(key: str, value: str) -> None:
    assert parse_sale_params(md((key, value))).personal_data == {key: value}


BAD_PERSONAL = [
    pytest.param("email_address", "bob", Reason.INVALID_PERSONAL_DATA, id="email-no-at"),
    pytest.param("email_address", "@x.com", Reason.INVALID_PERSONAL_DATA, id="email-no-local"),
    pytest.param("email_address", "bob@", Reason.INVALID_PERSONAL_DATA, id="email-no-domain"),
    pytest.param("email_address", "a@b@c", Reason.INVALID_PERSONAL_DATA, id="email-two-ats"),
    pytest.param(
        "email_address", "bob smith@x.com", Reason.INVALID_PERSONAL_DATA, id="email-space"
    ),
    pytest.param(
        "email_address", "bob@x.com ", Reason.INVALID_PERSONAL_DATA, id="email-trailing-space"
    ),
    pytest.param("email_address", "bob@x\u00a0.com", Reason.INVALID_PERSONAL_DATA, id="email-nbsp"),
    pytest.param(
        "email_address",
        "a" * 64 + "@" + "b" * 190,
        Reason.INVALID_PERSONAL_DATA,
        id="email-255-characters",
    ),
    pytest.param("email_address", "bob@x\x00.com", Reason.INVALID_TEXT, id="email-nul"),
    pytest.param(
        "home_phone_number", "5555550123", Reason.INVALID_PERSONAL_DATA, id="phone-no-plus"
    ),
    pytest.param(
        "home_phone_number", "+05555550123", Reason.INVALID_PERSONAL_DATA, id="phone-leading-0"
    ),
    pytest.param("home_phone_number", "+1", Reason.INVALID_PERSONAL_DATA, id="phone-too-short"),
    pytest.param(
        "cell_phone_number",
        "+1234567890123456",
        Reason.INVALID_PERSONAL_DATA,
        id="phone-16-digits",
    ),
    pytest.param(
        "cell_phone_number", "+1 555 555 0123", Reason.INVALID_PERSONAL_DATA, id="phone-spaces"
    ),
    pytest.param(
        "cell_phone_number", "+1-555-555-0123", Reason.INVALID_PERSONAL_DATA, id="phone-dashes"
    ),
    pytest.param(
        "cell_phone_number", "+1(555)5550123", Reason.INVALID_PERSONAL_DATA, id="phone-parens"
    ),
    pytest.param(
        "cell_phone_number",
        "+\uff11\uff15\uff15\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
        Reason.INVALID_PERSONAL_DATA,
        id="phone-full-width",
    ),
    pytest.param(
        "cell_phone_number",
        "+1555555012\u0663",
        Reason.INVALID_PERSONAL_DATA,
        id="phone-arabic-digit",
    ),
    pytest.param("cell_phone_number", "+1555\n5550", Reason.INVALID_TEXT, id="phone-newline"),
    pytest.param("opt_in_SMS", "yes", Reason.INVALID_PERSONAL_DATA, id="opt-in-yes"),
    pytest.param("opt_in_SMS", "true", Reason.INVALID_PERSONAL_DATA, id="opt-in-true"),
    pytest.param("opt_in_SMS", "2", Reason.INVALID_PERSONAL_DATA, id="opt-in-2"),
    pytest.param("opt_in_SMS", "01", Reason.INVALID_PERSONAL_DATA, id="opt-in-01"),
    pytest.param("opt_in_SMS", " 1", Reason.INVALID_PERSONAL_DATA, id="opt-in-space"),
    pytest.param("name", "Ann\x00Lee", Reason.INVALID_TEXT, id="name-nul"),
    pytest.param("zip_code", "8001\r\n", Reason.INVALID_TEXT, id="zip-crlf"),
    pytest.param("address1", "x" * 256, Reason.VALUE_TOO_LONG, id="address-too-long"),
]


@pytest.mark.parametrize(("key", "value", "reason"), BAD_PERSONAL)
def test_invalid_personal_data(key: str, value: str, reason: Reason) -> None:
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("sale_amount", "1"), (key, value)))
    assert info.value.reason is reason
    assert info.value.field == key
    # The detail is stored in the rejection log: it must not carry the value. (Values of
    # one or two characters, such as "+1", occur in the fixed wording by chance.)
    if len(value) > 2:
        for text in (info.value.detail, str(info.value), repr(info.value.args)):
            assert value not in text


# --- custom data -------------------------------------------------------------------------


def test_custom_data_is_kept_in_first_seen_order() -> None:
    report = sale("zeta=1&sale_amount=5&alpha=2&Sale_Amount=3&empty=&mid=%C3%A9")
    assert list(report.custom_data.items()) == [
        ("zeta", "1"),
        ("alpha", "2"),
        ("Sale_Amount", "3"),  # names are case-sensitive: not the sale amount
        ("empty", ""),
        ("mid", "é"),
    ]
    assert report.sale_amount == Decimal("5.00")


def test_custom_field_cap() -> None:
    limit = DEFAULT_LIMITS.max_custom_fields
    ok = md(*[(f"c{i}", "v") for i in range(limit)], ("sale_amount", "1"))
    assert len(parse_sale_params(ok).custom_data) == limit
    ok["one_more"] = ["v"]
    with pytest.raises(ParamError) as info:
        parse_sale_params(ok)
    assert info.value.reason is Reason.TOO_MANY_CUSTOM_FIELDS
    assert info.value.field == "one_more"


def test_known_and_personal_fields_do_not_count_as_custom() -> None:
    limits = Limits(max_custom_fields=1)
    args = md(("sale_amount", "1"), ("sku_list[]", "a"), ("name", "Ann"), ("only_custom", "x"))
    assert parse_sale_params(args, limits=limits).custom_data == {"only_custom": "x"}


def test_custom_key_length_cap() -> None:
    key = "k" * DEFAULT_LIMITS.max_custom_key_length
    assert parse_sale_params(md((key, "v"))).custom_data == {key: "v"}
    with pytest.raises(ParamError) as info:
        parse_sale_params(md((key + "k", "v")))
    assert info.value.reason is Reason.VALUE_TOO_LONG


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("=", {}, id="lone-equals-ignored"),
        pytest.param("sale_amount=1&=&=", {}, id="repeated-lone-equals-ignored"),
        pytest.param("flag", {"flag": ""}, id="name-without-equals-kept"),
    ],
)
def test_odd_segments(query: str, expected: dict[str, str]) -> None:
    assert sale(query).custom_data == expected


def test_value_without_a_name_is_invalid() -> None:
    with pytest.raises(ParamError) as info:
        sale("=orphan")
    assert info.value.reason is Reason.INVALID_TEXT


def test_empty_list_is_ignored() -> None:
    args: Query = {"sale_amount": []}
    assert parse_sale_params(args) == SaleReport()


# --- legacy pixel ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("", SaleReport(), id="bare"),
        pytest.param(
            "amount=10",
            SaleReport(sale_amount=Decimal("10.00"), given=frozenset({"sale_amount"})),
            id="amount",
        ),
        pytest.param(
            "amount=12.5&currency=gbp&external_data=order+42",
            SaleReport(
                sale_amount=Decimal("12.50"),
                sale_currency="GBP",
                external_data="order 42",
                given=frozenset({"sale_amount", "sale_currency", "external_data"}),
            ),
            id="all-three",
        ),
        pytest.param("amount=&currency=&external_data=", SaleReport(), id="all-blank"),
        pytest.param(
            "amount=1&sale_amount=99&reference_id=r1&parent_reference_id=p1&sku_list[]=a",
            SaleReport(
                sale_amount=Decimal("1.00"),
                custom_data={
                    "sale_amount": "99",
                    "reference_id": "r1",
                    "parent_reference_id": "p1",
                    "sku_list[]": "a",
                },
                given=frozenset({"sale_amount"}),
            ),
            id="new-pixel-names-are-custom-data",
        ),
        pytest.param(
            "amount=1&email_address=a%40b.example&promo=x",
            SaleReport(
                sale_amount=Decimal("1.00"),
                custom_data={"promo": "x"},
                personal_data={"email_address": "a@b.example"},
                given=frozenset({"sale_amount"}),
            ),
            id="personal-data-kept-apart",
        ),
    ],
)
def test_legacy(query: str, expected: SaleReport) -> None:
    report = legacy(query)
    assert report == expected
    assert report.reference_id is None
    assert report.parent_reference_id is None


def test_legacy_default_currency() -> None:
    assert legacy("amount=1", default_currency="EUR").sale_currency == "EUR"


@pytest.mark.parametrize(
    ("query", "reason", "field"),
    [
        pytest.param("amount=nan", Reason.INVALID_SALE_AMOUNT, "amount", id="amount-nan"),
        pytest.param("amount=1e3", Reason.INVALID_SALE_AMOUNT, "amount", id="amount-exponent"),
        pytest.param("amount=-5", Reason.INVALID_SALE_AMOUNT, "amount", id="amount-negative"),
        pytest.param("amount=1,00", Reason.INVALID_SALE_AMOUNT, "amount", id="amount-comma"),
        pytest.param("currency=ZZZ", Reason.INVALID_CURRENCY, "currency", id="currency-unknown"),
        pytest.param("amount=1&amount=1", Reason.DUPLICATE_PARAMETER, "amount", id="dup-amount"),
        pytest.param(
            "currency=USD&currency=EUR", Reason.DUPLICATE_PARAMETER, "currency", id="dup-currency"
        ),
        pytest.param(
            "external_data=a&external_data=a",
            Reason.DUPLICATE_PARAMETER,
            "external_data",
            id="dup-external-data",
        ),
        pytest.param(
            "external_data=a%00b", Reason.INVALID_TEXT, "external_data", id="external-data-nul"
        ),
        pytest.param("x=1&x=2", Reason.DUPLICATE_PARAMETER, "x", id="dup-custom"),
    ],
)
def test_legacy_invalid(query: str, reason: Reason, field: str) -> None:
    with pytest.raises(ParamError) as info:
        legacy(query)
    assert info.value.reason is reason
    assert info.value.field == field


def test_legacy_external_data_length() -> None:
    limit = DEFAULT_LIMITS.max_external_data_length
    assert parse_legacy_params(md(("external_data", "x" * limit))).external_data == "x" * limit
    with pytest.raises(ParamError) as info:
        parse_legacy_params(md(("external_data", "x" * (limit + 1))))
    assert info.value.reason is Reason.VALUE_TOO_LONG
    assert info.value.field == "external_data"


# --- redaction ---------------------------------------------------------------------------


def test_redacted_query_exact() -> None:
    args = parse_query(
        "sale_amount=10&email_address=ann%40example.com&sku_list[]=a&sku_list[]=b%26c"
    )
    assert redacted_query(args) == (
        "sale_amount=10&email_address=[redacted]&sku_list[]=a&sku_list[]=b%26c"
    )


def test_redacted_query_hides_every_personal_value() -> None:
    secrets = {key: f"SECRET-{i}-{key}" for i, key in enumerate(sorted(PERSONAL_FIELDS))}
    args = md(("sale_amount", "10"), *secrets.items(), ("promo", "spring"))
    text = redacted_query(args)
    for secret in secrets.values():
        assert secret not in text
        assert secret.replace("-", "%2D") not in text
    assert text.count("[redacted]") == len(PERSONAL_FIELDS)
    assert "sale_amount=10" in text
    assert "promo=spring" in text


@pytest.mark.parametrize(
    "key", ["EMAIL_ADDRESS", "Email_Address", "email_address[]", " name", "OPT_IN_SMS"]
)
def test_redacted_query_hides_near_miss_personal_keys(key: str) -> None:
    text = redacted_query(md((key, "ann@example.com")))
    assert "ann" not in text
    assert text.endswith("=[redacted]")


@given(st.text(alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=30))
def test_redacted_query_values_are_percent_encoded_like_quote(value: str) -> None:
    # The plain-text shortcut must give exactly what percent-encoding gives.
    expected = quote(value, safe="[]/:,@", errors="backslashreplace")
    assert redacted_query({"note": [value]}) == f"note={expected}"
    assert redacted_query({value: ["1"]}).startswith(f"{expected}=")


@pytest.mark.parametrize(
    "value", ["abc-1.2_3~", "sku[]/a:b,c@d", "", "a b", "a\n", "é", "1+1", "a\ud800"]
)
def test_redacted_query_plain_and_escaped_values(value: str) -> None:
    expected = quote(value, safe="[]/:,@", errors="backslashreplace")
    assert redacted_query({"note": [value]}) == f"note={expected}"


def test_redacted_query_escapes_control_characters() -> None:
    text = redacted_query(md(("reason_code", "a\r\nb\x00"), ("k\ney", "v\u2028")))
    assert text.isprintable()
    assert text == "reason_code=a%0D%0Ab%00&k%0Aey=v%E2%80%A8"


@pytest.mark.parametrize("limit", [0, 1, 10, 25, 2048])
def test_redacted_query_is_truncated(limit: int) -> None:
    args = md(*[(f"key{i}", "v" * 50) for i in range(100)], ("email_address", "ann@example.com"))
    text = redacted_query(args, limit)
    assert len(text) == limit
    assert "ann" not in text
    full = redacted_query(args, 10**6)
    assert full.startswith(text)


def test_redacted_query_empty_and_negative_limit() -> None:
    assert redacted_query({}) == ""
    with pytest.raises(ValueError):
        redacted_query({}, -1)


# --- Limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_query_length": 0}, id="zero"),
        pytest.param({"max_items": -1}, id="negative"),
        pytest.param({"max_parameters": True}, id="bool"),
        pytest.param({"max_text_length": "255"}, id="string"),
        pytest.param({"max_quantity": 1.5}, id="float"),
    ],
)
def test_limits_reject_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Limits(**kwargs)


def test_default_limits() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert DEFAULT_LIMITS.max_query_length == 8192
    assert DEFAULT_LIMITS.max_parameters == 64
    assert DEFAULT_LIMITS.max_amount_integer_digits == 12


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("Email_Address", id="case"),
        pytest.param("email_address[]", id="brackets"),
        pytest.param("NAME", id="upper"),
    ],
)
def test_near_misses_of_personal_names_stay_personal(key: str) -> None:
    report = parse_sale_params(md((key, "Jo Private"), ("coupon", "X")))
    assert report.personal_data == {key: "Jo Private"}
    assert report.custom_data == {"coupon": "X"}


@pytest.mark.parametrize(
    "query",
    [
        "a=1&b=2",
        "a",
        "a=",
        "=",
        "=v",
        "a=b=c",
        "&&a=1&&",
        "a=1&a=2&b",
        "sku_list[]=x&sku_list[]=y",
        "x=1;y=2",
        "&",
        " a = 1 ",
        "a=%41&b=+",
        "a=x+y&b=%2B",
        "sku_list%5B%5D=34657&sku_list%5B%5D=x",
        "a%3Db=c%26d",
        "bad=%zz&half=%4",
        "caf%C3%A9=%E2%82%AC",
    ],
)
def test_parse_query_splits_exactly_like_parse_qsl(query: str) -> None:
    from urllib.parse import parse_qsl

    expected = parse_qsl(query, keep_blank_values=True, errors="strict")
    assert pairs_of(parse_query(query)) == expected


# --- text no store can hold (issue 9) ---------------------------------------------------


@pytest.mark.parametrize("char", SURROGATES)
def test_a_surrogate_is_named_as_such(char: str) -> None:
    # JSON's "\ud800" decodes to a lone surrogate: no store can encode it as UTF-8.
    with pytest.raises(ParamError) as info:
        parse_sale_params(md(("reason_code", f"ab{char}cd")))
    assert info.value.detail == "reason_code contains an unpaired surrogate (not Unicode text)"


def test_a_redacted_query_with_a_surrogate_can_be_stored() -> None:
    shown = redacted_query(md(("a\ud800", "b\udfff")))
    shown.encode("utf-8")
    assert shown == "a%5Cud800=b%5Cudfff"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("sale_amount=1,00&reference_id=c", "c", id="reference"),
        pytest.param("parent_reference_id=p&sale_amount=x", "p", id="parent"),
        pytest.param("parent_reference_id=&reference_id=c", "c", id="blank-parent"),
        pytest.param("reference_id=%20c", None, id="whitespace"),
        pytest.param("reference_id=a%00b", None, id="control"),
        pytest.param("reference_id=a&reference_id=b", None, id="twice"),
        pytest.param("reference_id=" + "r" * 129, None, id="too-long"),
        pytest.param("sale_amount=1", None, id="none"),
    ],
)
def test_claimed_reference_is_kept_only_when_valid(query: str, expected: str | None) -> None:
    assert claimed_reference(parse_query(query)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"a": "1"}', True, id="object"),
        pytest.param('[{"custom_data": {"a": "b"}, "sku_list": ["x"]}]', True, id="batch"),
        pytest.param('{"a": "[[[[[[[[[[[[[[[["}', True, id="brackets-in-a-string"),
        pytest.param('{"a": "\\\\", "b": "\\"[[[[[[[[[[[["}', True, id="escapes"),
        pytest.param("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, True, id="at-the-limit"),
        pytest.param("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), False, id="deeper"),
        pytest.param("[" * 1_000_000, False, id="a-megabyte-of-brackets"),
        pytest.param("[{]", False, id="unbalanced"),
        pytest.param("1", True, id="scalar"),
    ],
)
def test_json_nesting_is_checked_without_recursion(text: str, expected: bool) -> None:
    assert json_nesting_ok(text) is expected
    assert json_nesting_ok(text.encode("utf-8")) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("Mozilla/5.0", "Mozilla/5.0", id="plain"),
        pytest.param("Bot\x00/1.0", "Bot\ufffd/1.0", id="nul"),
        pytest.param("a\r\nb\x85", "a\ufffd\ufffdb\ufffd", id="controls"),
        pytest.param("a\ud800", "a\ufffd", id="surrogate"),
        pytest.param("x" * 600, "x" * 512, id="capped"),
    ],
)
def test_printable_text_cleans_what_cannot_be_stored(header: str, expected: str) -> None:
    assert printable_text(header, 512) == expected


# --- every error at once (the server-side APIs) -----------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("sale_amount=1&reference_id=a", [], id="valid"),
        pytest.param(
            "sale_amount=1e3&sale_currency=XXXX&reason_code=a%00",
            [
                ("sale_amount", Reason.INVALID_SALE_AMOUNT),
                ("sale_currency", Reason.INVALID_CURRENCY),
                ("reason_code", Reason.INVALID_TEXT),
            ],
            id="each-field-named",
        ),
        pytest.param(
            "sku_list[]=&quantity_list[]=1&quantity_list[]=2",
            [("sku_list[]", Reason.INVALID_TEXT)],
            id="a-broken-group-names-its-first-fault-only",
        ),
        pytest.param(
            "sku_list[]=a&quantity_list[]=1&quantity_list[]=2",
            [("quantity_list[]", Reason.QUANTITY_MISMATCH)],
            id="rule-between-fields",
        ),
        pytest.param(
            "reference_id=a&parent_reference_id=b&sale_amount=x",
            [
                ("sale_amount", Reason.INVALID_SALE_AMOUNT),
                ("parent_reference_id", Reason.CONFLICTING_REFERENCE),
            ],
            id="conflicting-references-too",
        ),
        pytest.param(
            "=v&c1=1&c2=2&c3=3",
            [("", Reason.INVALID_TEXT), ("c3", Reason.TOO_MANY_CUSTOM_FIELDS)],
            id="nameless-value-and-custom-cap",
        ),
        pytest.param(
            "c1=1&c2=2&c3=3&c4=4",
            [("c3", Reason.TOO_MANY_CUSTOM_FIELDS)],
            id="custom-cap-counted-once",
        ),
    ],
)
def test_parse_sale_fields_lists_every_error(
    query: str, expected: list[tuple[str, Reason]]
) -> None:
    errors: list[ParamError] = []
    parse_sale_fields(parse_query(query), errors, limits=Limits(max_custom_fields=2))
    assert [(e.field, e.reason) for e in errors] == expected
    if expected:
        with pytest.raises(ParamError) as first:
            parse_sale_params(parse_query(query), limits=Limits(max_custom_fields=2))
        assert (first.value.reason, first.value.detail) == (errors[0].reason, errors[0].detail)
