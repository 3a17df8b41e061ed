"""What the rejection log keeps of a refused pixel: its claimed conversion, one message."""

from __future__ import annotations

import pytest
from webtest import TestApp

from .conftest import World, pixel_url


@pytest.mark.parametrize(
    ("query", "reason", "reference_id"),
    [
        pytest.param(
            "sale_amount=1,00&reference_id=c", "invalid_sale_amount", "c", id="issue-9-example"
        ),
        pytest.param(
            "parent_reference_id=P-1&sale_currency=XXX", "invalid_currency", "P-1", id="parent"
        ),
        pytest.param(
            "reference_id=r&reason_code=a%00b", "invalid_text", "r", id="other-text-field"
        ),
        pytest.param("reference_id=a%00b", "invalid_text", None, id="itself-invalid"),
        pytest.param("sale_amount=x&reference_id=%20r", "invalid_sale_amount", None, id="padded"),
        pytest.param("sale_amount=1,00", "invalid_sale_amount", None, id="none-claimed"),
    ],
)
def test_a_refused_pixel_keeps_the_reference_id_it_claims_when_that_is_valid(
    app: TestApp, world: World, query: str, reason: str, reference_id: str | None
) -> None:
    response = app.get(pixel_url(world.advertiser_id, query))
    assert response.content_type == "image/gif"
    [rejection] = world.storage.rejections()
    assert (rejection.reason, rejection.reference_id) == (reason, reference_id)
    field = rejection.detail.split(" ", 1)[0]
    assert not rejection.detail.startswith(f"{field}: {field}")
