"""Tests for pixel_wsgi.params.values: the small parsers every way in shares."""

from __future__ import annotations

from datetime import date

import pytest

from pixel_wsgi.errors import ParamError
from pixel_wsgi.models import Reason
from pixel_wsgi.params.values import (
    Query,
    one_value,
    parse_day,
    parse_positive_id,
    parse_whole_number,
    shown_name,
    single,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1", 1, id="one"),
        pytest.param("42", 42, id="plain"),
        pytest.param("9" * 18, int("9" * 18), id="eighteen-digits"),
        pytest.param("1" + "0" * 18, None, id="nineteen-digits"),
        pytest.param("0", None, id="zero"),
        pytest.param("007", None, id="leading-zero"),
        pytest.param("", None, id="empty"),
        pytest.param("-1", None, id="negative"),
        pytest.param("+1", None, id="plus"),
        pytest.param(" 1", None, id="space"),
        pytest.param("1.0", None, id="decimal"),
        pytest.param("١٢", None, id="arabic-indic-digits"),
        pytest.param("\uff11", None, id="full-width-digit"),
        pytest.param("1\n", None, id="trailing-newline"),
    ],
)
def test_parse_positive_id(text: str, expected: int | None) -> None:
    assert parse_positive_id(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0", 0, id="zero"),
        pytest.param("010", 10, id="leading-zero"),
        pytest.param("9" * 18, int("9" * 18), id="eighteen-digits"),
        pytest.param("9" * 19, None, id="nineteen-digits"),
        pytest.param("", None, id="empty"),
        pytest.param("-1", None, id="negative"),
        pytest.param("٣", None, id="arabic-indic-digit"),
    ],
)
def test_parse_whole_number(text: str, expected: int | None) -> None:
    assert parse_whole_number(text) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"a": []}, None, id="no-values"),
        pytest.param({"a": [""]}, "", id="blank-kept"),
        pytest.param({"a": ["x"]}, "x", id="one"),
    ],
)
def test_single(args: Query, expected: str | None) -> None:
    assert single(args, "a") == expected


@pytest.mark.parametrize(
    "values", [pytest.param(["x", "y"], id="two"), pytest.param(["x", "x"], id="two-equal")]
)
def test_single_refuses_a_repeated_parameter(values: list[str]) -> None:
    with pytest.raises(ParamError) as caught:
        single({"a": values}, "a")
    assert caught.value.reason is Reason.DUPLICATE_PARAMETER
    assert caught.value.detail == "a may be given only once"
    assert caught.value.field == "a"
    with pytest.raises(ParamError):
        one_value("a", values)


def test_one_value_names_an_odd_parameter_safely() -> None:
    with pytest.raises(ParamError) as caught:
        one_value("a\x00b", ["1", "2"])
    assert caught.value.field == "a\\x00b"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("sale_amount", "sale_amount", id="plain"),
        pytest.param("a\nb", "a\\nb", id="control"),
        pytest.param("k" * 65, "k" * 64 + "...", id="long"),
    ],
)
def test_shown_name(key: str, expected: str) -> None:
    assert shown_name(key) == expected


def test_parse_day() -> None:
    assert parse_day("2026-11-25", "from") == date(2026, 11, 25)
    assert parse_day("0001-01-01", "from") == date(1, 1, 1)


_SHAPE = "to must be a date like 2026-11-25 (YYYY-MM-DD)"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("garbage", _SHAPE, id="shape"),
        pytest.param("2026-1-25", _SHAPE, id="short"),
        pytest.param("20261125", _SHAPE, id="basic"),
        pytest.param("\uff12026-11-25", _SHAPE, id="wide"),
        pytest.param("2026-02-30", "to is not a real date", id="no-such-day"),
        pytest.param("2026-13-01", "to is not a real date", id="no-such-month"),
    ],
)
def test_parse_day_refuses(text: str, detail: str) -> None:
    with pytest.raises(ParamError) as caught:
        parse_day(text, "to")
    assert caught.value.reason is Reason.INVALID_FIELD
    assert caught.value.detail == detail
    assert caught.value.field == "to"
