"""Text PostgreSQL cannot store, end to end on a real server: refused or cleaned at the
door, never spooled (issue 9). On SQLite the same paths are in test_click.py and
test_api_conversions.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, PostgresStorage
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.outage.spool import Spool

from .conftest import SECRET, host_app
from .wsgi_calls import seed_campaign

if TYPE_CHECKING:
    from .postgres_server import Cluster

# The session's cluster and its fixtures (not imported: pytest loads the plugin).
pytest_plugins = ["tests.postgres_server"]


@dataclass
class Shop:
    storage: PostgresStorage
    app: TestApp
    spool: Spool
    advertiser_id: int
    campaign_id: int
    publisher_id: int
    link_id: int
    auth: dict[str, str]


@pytest.fixture
def shop(postgres_cluster: Cluster, tmp_path: Path) -> Iterator[Shop]:
    storage = PostgresStorage(postgres_cluster.new_database())
    seeded = seed_campaign(storage)
    secret = issue_credential(storage, seeded.advertiser_id).secret
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=tmp_path / "s")
    try:
        yield Shop(
            storage=storage,
            app=TestApp(middleware),
            spool=Spool(tmp_path / "s"),
            advertiser_id=seeded.advertiser_id,
            campaign_id=seeded.campaign_id,
            publisher_id=seeded.publisher_id,
            link_id=seeded.link.id,
            auth={"Authorization": f"Bearer {secret}"},
        )
    finally:
        storage.close()


def test_a_click_with_a_nul_in_its_user_agent_is_stored_not_spooled(shop: Shop) -> None:
    response = shop.app.get(
        f"/pixels/click/{shop.link_id}", extra_environ={"HTTP_USER_AGENT": "Dev\x00Server/1.0"}
    )
    assert response.status_int == 302
    assert "Set-Cookie" in response.headers
    assert shop.spool.pending() == 0
    with shop.storage.writer() as writer:
        assert writer.attribution(1) is not None  # the visit is in the store
    assert shop.app.get("/pixels/health").status_int == 200


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"reference_id": "a\ud800"}, id="surrogate"),
        pytest.param({"custom_data": {"\ud800": "x"}}, id="surrogate-key"),
        pytest.param({"note\x00": "x"}, id="nul-key"),
        pytest.param({"reason_code": "a\x00b"}, id="nul-value"),
    ],
)
def test_a_report_with_text_postgresql_cannot_store_is_a_400_not_spooled(
    shop: Shop, fields: dict[str, object]
) -> None:
    report = {
        "reference_id": "order-1",
        "sale_amount": "10.00",
        "advertiser_campaign_id": shop.campaign_id,
        "affiliate_id": shop.publisher_id,
        **fields,
    }
    response = shop.app.post_json("/pixels/api/conversions", report, headers=shop.auth, status="*")
    assert response.status_int == 400, response.text
    assert response.json["error"]["fields"][0]["code"] == "invalid_text"
    assert shop.spool.pending() == 0
    assert [r.reason for r in shop.storage.rejections()] == ["invalid_text"]
    assert list(shop.storage.transactions()) == []
    assert shop.app.get("/pixels/health").status_int == 200


def test_a_transactions_query_with_a_nul_is_a_400(shop: Shop) -> None:
    response = shop.app.get(
        "/pixels/api/transactions.json?reference_id=%00", headers=shop.auth, status="*"
    )
    assert (response.status_int, response.json["error"]["field"]) == (400, "reference_id")
