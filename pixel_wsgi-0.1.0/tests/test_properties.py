"""Property tests: whatever a browser sends, the outcome is a GIF and a recorded reason."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixel_wsgi import ParamError, PixelMiddleware
from pixel_wsgi.endpoints.gif import TRANSPARENT_GIF
from pixel_wsgi.params.sale import parse_legacy_params, parse_query, parse_sale_params

from .conftest import World

KEYS = st.sampled_from(
    [
        "sale_amount",
        "sale_currency",
        "reason_code",
        "sku_list[]",
        "sku_list",
        "quantity_list[]",
        "reference_id",
        "parent_reference_id",
        "email_address",
        "cell_phone_number",
        "opt_in_SMS",
        "amount",
        "currency",
        "external_data",
        "coupon",
    ]
)
# Query strings as PEP 3333 hands them over: any byte, as a latin-1 character.
RAW_QUERIES = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.lists(st.tuples(KEYS, st.text(max_size=20)), max_size=12).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
)


@given(RAW_QUERIES)
@settings(max_examples=400, deadline=None)
def test_parsing_raises_nothing_but_param_error(query: str) -> None:
    try:
        args = parse_query(query)
        report = parse_sale_params(args)
        parse_legacy_params(args)
    except ParamError:
        return
    if report.sale_amount is not None:
        assert report.sale_amount.as_tuple().exponent == -2
        assert report.sale_amount >= 0


@given(st.lists(st.tuples(KEYS, st.text(max_size=30)), max_size=10))
@settings(max_examples=300, deadline=None)
def test_structured_parameters_raise_nothing_but_param_error(
    pairs: list[tuple[str, str]],
) -> None:
    try:
        args: dict[str, list[str]] = {}
        for key, value in pairs:
            args.setdefault(key, []).append(value)
        parse_sale_params(args)
    except ParamError as exc:
        assert exc.reason.value
        assert exc.detail


def _call(middleware: PixelMiddleware, environ: dict[str, Any]) -> tuple[str, bytes]:
    seen: list[str] = []

    def start_response(status: str, headers: Iterable[tuple[str, str]], exc: Any = None) -> Any:
        seen.append(status)

    body = b"".join(middleware(environ, start_response))  # type: ignore[arg-type]
    return seen[0], body


@given(
    advertiser=st.one_of(st.integers(min_value=-5, max_value=5).map(str), st.text(max_size=8)),
    query=RAW_QUERIES,
    cookie=st.one_of(st.none(), st.binary(max_size=120).map(lambda b: b.decode("latin-1"))),
)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_pixel_always_answers_the_gif_and_records_every_report(
    middleware: PixelMiddleware, world: World, advertiser: str, query: str, cookie: str | None
) -> None:
    before = len(list(world.storage.rejections())) + len(list(world.storage.transactions()))
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/pixels/conversion/{advertiser}.gif",
        "QUERY_STRING": query,
        "wsgi.url_scheme": "http",
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    if "/" in advertiser:
        return  # another path: not ours, passes through
    assert _call(middleware, environ) == ("200 OK", TRANSPARENT_GIF)
    after = len(list(world.storage.rejections())) + len(list(world.storage.transactions()))
    assert after == before + 1  # accepted or rejected with a reason: never silently lost
