"""The JSON every target writes: exact decimals, whatever the payload holds."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixel_wsgi.delivery.targets.payloads import _json_text, json_body

MARKER = "\ue00024.50\ue001"

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.sampled_from([MARKER, "\ue000", "\ue001"])
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_the_fast_writer_writes_what_the_exact_one_does(value: Any) -> None:
    body = json_body(value)
    assert body == _json_text(value).encode("utf-8")
    json.loads(body)  # valid JSON


def test_decimals_keep_their_digits_and_a_marker_in_text_stays_text() -> None:
    body = json_body({"value": Decimal("24.50"), "note": MARKER, "n": [Decimal("-0.10")]})
    assert body == b'{"value":24.50,"note":"\\ue00024.50\\ue001","n":[-0.10]}'


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), object()])
def test_what_is_not_json_is_refused(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        json_body({"x": bad})
