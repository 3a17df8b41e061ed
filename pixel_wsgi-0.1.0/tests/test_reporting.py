"""In-process reports: ``environ["pixel_wsgi"].report(...)`` and ``middleware.report(...)``."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from webtest import TestApp

from pixel_wsgi import ConfigurationError, PixelMiddleware
from pixel_wsgi.endpoints.api.refusals import refusal_status
from pixel_wsgi.errors import ReportRefused
from pixel_wsgi.ledger.server_reports import ReportStatus
from pixel_wsgi.params.server_report import ReportInvalid

from .conftest import SECRET, FakeClock, World, host_app, reasons

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A host app whose POST /orders creates an order and reports it in the same request."""
    if environ["PATH_INFO"] != "/orders":
        return host_app(environ, start_response)
    result = environ["pixel_wsgi"].report(reference_id="order-7", sale_amount=Decimal("120.00"))
    body = f"{result.status.value} {result.transaction.payout}".encode()
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [body]


@pytest.fixture
def shop_app(world: World, clock: FakeClock) -> TestApp:
    middleware = PixelMiddleware(
        shop, world.storage, secret_key=SECRET, clock=clock, advertiser_id=world.advertiser_id
    )
    return TestApp(middleware)


def test_a_view_reports_the_order_it_creates_credited_to_the_visitors_click(
    shop_app: TestApp, world: World
) -> None:
    shop_app.get(f"/pixels/click/{world.percent_link_id}")
    assert shop_app.post("/orders").text == "created 12.00"
    [conversion] = world.storage.conversions()
    assert (conversion.campaign_id, conversion.publisher_id, conversion.source) == (
        world.percent_campaign_id,
        world.publisher_id,
        "in_process",
    )
    assert conversion.visit_id is not None
    # The pixel on the thank-you page then carries the same reference_id: one conversion.
    shop_app.get(f"/pixels/conversion/{world.advertiser_id}.gif?reference_id=order-7")
    assert len(list(world.storage.transactions())) == 1
    assert reasons(world.storage) == ["duplicate_reference_id"]


def test_without_attribution_the_report_is_refused_and_logged(
    shop_app: TestApp, world: World
) -> None:
    with pytest.raises(ReportRefused) as refused:  # the host's own view decides what to do
        shop_app.post("/orders")
    reason = refused.value.reason
    # The refusal carries its reason; the API answers it with the status of its table.
    assert (reason.value, refusal_status(reason)) == ("no_attribution", 422)
    assert reasons(world.storage) == ["no_attribution"]


def test_the_pass_through_environ_carries_a_reporter_unless_told_not_to(world: World) -> None:
    seen: list[Any] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ.get("pixel_wsgi"))
        return host_app(environ, start_response)

    TestApp(PixelMiddleware(app, world.storage, secret_key=SECRET)).get("/")
    # A path that only looks like ours goes to the host app too, with its reporter.
    TestApp(PixelMiddleware(app, world.storage, secret_key=SECRET)).get("/pixels/conversion/1.png")
    TestApp(PixelMiddleware(app, world.storage, secret_key=SECRET, environ_key=None)).get("/")
    assert seen[0] is not None and seen[1] is not None and seen[2] is None


def test_a_background_job_reports_through_the_middleware(world: World) -> None:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    created = middleware.report(
        advertiser_id=world.advertiser_id,
        reference_id="phone-1",
        sale_amount="40",
        campaign_id=world.fixed_campaign_id,
        publisher_id=world.publisher_id,
        reason_code="renewal",
        sku_list=["a", "b"],
        quantity_list=[1, 3],
        custom_data={"channel": "phone"},
        personal_data={"email_address": "c@example.com"},
    )
    assert created.status is ReportStatus.CREATED
    assert (created.transaction.payout, created.transaction.quantity_list) == (
        Decimal("4.50"),
        (1, 3),
    )
    assert world.storage.personal_data(created.transaction.transaction_id) == {
        "email_address": "c@example.com"
    }
    again = middleware.report(advertiser_id=world.advertiser_id, reference_id="phone-1")
    assert again.status is ReportStatus.UNCHANGED
    reversed_ = middleware.report(
        advertiser_id=world.advertiser_id, reference_id="phone-1", reversal_reason="refund"
    )
    assert (reversed_.status, reversed_.transaction.payout) == (ReportStatus.CORRECTED, Decimal(0))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param({"sale_amount": 10.5}, TypeError, id="float-amount"),
        pytest.param({"sale_amount": True}, TypeError, id="bool-amount"),
        pytest.param({"sale_amount": "1,000"}, ReportInvalid, id="bad-amount"),
        pytest.param({"reference_id": None}, ReportInvalid, id="no-reference"),
        pytest.param({"campaign_id": 999, "publisher_id": 1}, ReportRefused, id="unknown-campaign"),
    ],
)
def test_bad_calls_raise_clear_errors(
    world: World, fields: dict[str, Any], error: type[Exception]
) -> None:
    middleware = PixelMiddleware(
        host_app, world.storage, secret_key=SECRET, advertiser_id=world.advertiser_id
    )
    with pytest.raises(error):
        middleware.report(**{"reference_id": "x-1", **fields})
    assert list(world.storage.transactions()) == []


def test_an_advertiser_must_be_named(world: World) -> None:
    middleware = PixelMiddleware(host_app, world.storage, secret_key=SECRET)
    with pytest.raises(ConfigurationError, match="advertiser_id"):
        middleware.report(reference_id="x")
