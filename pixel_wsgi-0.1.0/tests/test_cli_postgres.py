"""The ``pixel-wsgi`` command line and the middleware end to end, on PostgreSQL.

The same commands as ``tests/test_cli.py`` runs on SQLite, against a fresh
database of the session's throwaway cluster (``tests/postgres_server.py``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, PostgresStorage, storage_from_url
from pixel_wsgi.cli import STORAGE_ENV, cli

from .cli_helpers import Run, as_json, cli_runner, ok
from .conftest import SECRET, host_app

# The session's cluster and its fixtures (not imported: pytest loads the plugin).
pytest_plugins = ["tests.postgres_server"]


@pytest.fixture
def run(postgres_url: str) -> Run:
    return cli_runner(postgres_url)


@pytest.fixture
def browser(run: Run, postgres_url: str) -> Iterator[TestApp]:
    """A visitor of the host site, after the CLI set up campaign 1 and link 1."""
    assert ok(run("migrate")) == "Storage schema is up to date.\n"
    assert ok(run("advertiser", "add", "Acme")) == "Created advertiser 1 (Acme)\n"
    ok(run("publisher", "add", "Deals Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring sale", "--payout-percent", "10"))
    ok(run("link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing"))
    middleware = PixelMiddleware(host_app, postgres_url, secret_key=SECRET)
    assert isinstance(middleware.storage, PostgresStorage)
    yield TestApp(middleware)
    middleware.storage.close()


def test_set_up_and_list(run: Run) -> None:
    assert as_json(run("migrate", "--json")) == {"migrated": True}
    ok(run("migrate"))  # again: nothing to do
    advertiser = as_json(run("advertiser", "add", "Acme ☕", "--json"))
    assert (advertiser["id"], advertiser["name"]) == (1, "Acme ☕")
    assert as_json(run("publisher", "add", "Deals Blog", "--json"))["id"] == 1
    campaign = as_json(
        run(
            "campaign",
            "add",
            "--advertiser",
            "1",
            "Renewals",
            "--payout",
            "4.50",
            "--currency",
            "eur",
            "--reason-code",
            "renewal",
            "--json",
        )
    )
    assert campaign["payout"] == {
        "kind": "fixed",
        "value": "4.50",
        "currency": "EUR",
        "reason_codes": ["renewal"],
    }
    link = as_json(
        run("link", "add", "--campaign", "1", "--publisher", "1", "--to", "/renew", "--json")
    )
    assert (link["id"], link["advertiser_id"], link["path"]) == (1, 1, "/pixels/click/1")

    assert [a["name"] for a in as_json(run("advertiser", "list", "--json"))] == ["Acme ☕"]
    assert [p["name"] for p in as_json(run("publisher", "list", "--json"))] == ["Deals Blog"]
    [listed] = as_json(run("campaign", "list", "--advertiser", "1", "--json"))
    assert listed["pays"] == "4.50 EUR per conversion (only for reason_code renewal)"
    assert [row["destination"] for row in as_json(run("link", "list", "--json"))] == ["/renew"]
    assert "Acme ☕" in ok(run("advertiser", "list"))
    assert ok(run("link", "list", "--advertiser", "2")) == "No links.\n"


def test_unknown_references_are_one_error_line(run: Run) -> None:
    result = run("campaign", "add", "--advertiser", "7", "Nope", "--payout", "1")
    assert result.exit_code == 1
    assert result.stderr == "Error: no advertiser with id 7\n"
    result = run("erase", "--advertiser", "7", "--reference-id", "x")
    assert result.exit_code == 1


def test_storage_comes_from_the_environment(postgres_url: str) -> None:
    runner = CliRunner(env={STORAGE_ENV: postgres_url})
    result = runner.invoke(cli, ["advertiser", "add", "From env"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store = storage_from_url(postgres_url)
    try:
        assert [a.name for a in store.advertisers()] == ["From env"]
    finally:
        store.close()


def test_an_unreachable_server_is_one_error_line() -> None:
    from .servers import free_port

    url = f"postgresql://pixel:hunter2@127.0.0.1:{free_port()}/nowhere?connect_timeout=1&pool_timeout=0.5"
    result = CliRunner().invoke(cli, ["--storage", url, "migrate"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot migrate the schema")
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_click_pixel_conversion_correction_and_reports(run: Run, browser: TestApp) -> None:
    click = browser.get("/pixels/click/1")
    assert click.status_int == 302
    assert click.headers["Location"].endswith("/landing")
    pixel = browser.get(
        "/pixels/conversion/1.gif?sale_amount=80.00&reference_id=order-1"
        "&sku_list[]=TEA&quantity_list[]=2&reason_code=sale&email_address=ann%40example.com"
    )
    assert (pixel.status_int, pixel.content_type) == (200, "image/gif")
    # A reload adds nothing; a correction from the same visit appends a row.
    browser.get("/pixels/conversion/1.gif?sale_amount=80.00&reference_id=order-1")
    browser.get("/pixels/conversion/1.gif?sale_amount=50.00&parent_reference_id=order-1")

    rows = as_json(run("transactions", "--json"))
    assert [
        (r["transaction_id"], r["corrects_transaction_id"], r["sale_amount"], r["payout"])
        for r in rows
    ] == [(1, None, "80.00", "8.00"), (2, 1, "50.00", "5.00")]
    assert rows[0]["sku_list"] == ["TEA"] and rows[0]["quantity_list"] == [2]
    assert as_json(run("transactions", "--json", "--after", "1")) == rows[1:]
    assert as_json(run("transactions", "--json", "--limit", "1")) == rows[:1]
    [current] = as_json(run("conversions", "--json", "--advertiser", "1"))
    assert (current["transaction_id"], current["sale_amount"], current["payout"]) == (
        2,
        "50.00",
        "5.00",
    )
    assert "50.00 USD" in ok(run("conversions"))

    [duplicate] = as_json(run("rejections", "--json"))
    assert (duplicate["reason"], duplicate["reference_id"]) == ("duplicate_reference_id", "order-1")
    assert "duplicate_reference_id" in ok(run("rejections", "--advertiser", "1"))

    assert ok(run("erase", "--advertiser", "1", "--reference-id", "order-1")) == (
        "Erased personal data from 1 row.\n"
    )
    assert as_json(run("transactions", "--json")) == rows  # the ledger rows stay

    health = browser.get("/pixels/health")
    assert health.json == {"status": "ok"}


def test_a_visitor_without_a_cookie_is_rejected(run: Run, browser: TestApp) -> None:
    stranger = TestApp(browser.app)
    stranger.get("/pixels/conversion/1.gif?sale_amount=10.00&reference_id=order-9")
    stranger.get("/pixels/click/77", status=404)
    newest, oldest = as_json(run("rejections", "--json"))
    assert (oldest["reason"], oldest["reference_id"]) == ("no_attribution", "order-9")
    assert (newest["reason"], newest["source"]) == ("unknown_link", "click")
    assert ok(run("transactions")) == "No transactions.\n"


def test_credentials(run: Run, browser: TestApp) -> None:
    issued = as_json(run("credential", "add", "--advertiser", "1", "--label", "shop", "--json"))
    assert (issued["id"], issued["username"], issued["revoked_at"]) == (1, "1", None)
    [listed] = as_json(run("credential", "list", "--json"))
    assert listed["label"] == "shop" and "secret" not in listed
    # The Transactions API answers with it.
    auth = {"Authorization": f"Bearer {issued['secret']}"}
    browser.get("/pixels/click/1")
    browser.get("/pixels/conversion/1.gif?sale_amount=12.00&reference_id=order-1")
    answer = browser.get("/pixels/api/transactions.json", headers=auth)
    assert [(row["reference_id"], row["sale_amount"]) for row in answer.json] == [
        ("order-1", "12.00")
    ]
    assert ok(run("credential", "revoke", "1")) == "Credential 1 revoked.\n"
    assert as_json(run("credential", "revoke", "1", "--json"))["already_revoked"] is True
    browser.get("/pixels/api/transactions.json", headers=auth, status=401)


def test_import_and_export(run: Run, browser: TestApp, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "reference_id,campaign_id,publisher_id,sale_amount\ni1,1,1,10.00\ni2,1,1,20.50\n",
        encoding="utf-8",
    )
    summary = as_json(run("import", str(source), "--advertiser", "1", "--json"))
    assert (summary["created"], summary["failed"]) == (2, 0)
    exported = tmp_path / "ledger.csv"
    assert ok(run("export", "--advertiser", "1", "--output", str(exported))) == ""
    with exported.open(encoding="utf-8", newline="") as lines:
        rows = list(csv.DictReader(lines))
    assert [(r["reference_id"], r["sale_amount"], r["payout"]) for r in rows] == [
        ("i1", "10.00", "1.00"),
        ("i2", "20.50", "2.05"),
    ]
    # Read back into the same store: every row is recognised, nothing changes.
    again = as_json(run("import", str(exported), "--advertiser", "1", "--json"))
    assert (again["unchanged"], again["created"]) == (2, 0)
    as_list = json.loads(ok(run("export", "--advertiser", "1", "--format", "json")))
    assert [row["transaction_id"] for row in as_list] == [1, 2]


def test_the_dashboard_reads_postgresql(browser: TestApp, postgres_url: str) -> None:
    from pixel_wsgi.dashboard import Dashboard

    browser.get("/pixels/click/1")
    browser.get("/pixels/conversion/1.gif?sale_amount=30.00&reference_id=order-7")
    dashboard = Dashboard(postgres_url, authenticate=lambda environ: True)
    try:
        dash = TestApp(dashboard)
        assert dash.get("/", status=302).headers["Location"].endswith("/advertisers/1")
        for path in ("", "/conversions", "/conversions/1", "/rejections"):
            assert dash.get(f"/advertisers/1{path}").status_int == 200
        assert "order-7" in dash.get("/advertisers/1/conversions").text
    finally:
        dashboard.storage.close()
