"""The ``pixel-wsgi`` command line, driven with click's CliRunner against a SQLite file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from webtest import TestApp

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage, __version__
from pixel_wsgi.cli import cli

from .cli_helpers import Run, as_json, created_at, failed, ok, set_up
from .conftest import SECRET, host_app


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


# -- migrate and the storage option --------------------------------------------------


def test_migrate_creates_the_schema_and_can_run_again(run: Run, db_path: Path) -> None:
    assert ok(run("migrate")) == "Storage schema is up to date.\n"
    assert db_path.exists()
    assert as_json(run("migrate", "--json")) == {"migrated": True}


def test_storage_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    result = CliRunner().invoke(cli, ["advertiser", "add", "Acme"], env={"PIXEL_WSGI_STORAGE": url})
    assert ok(result) == "Created advertiser 1 (Acme)\n"
    storage = SQLiteStorage(tmp_path / "env.db")
    assert [a.name for a in storage.advertisers()] == ["Acme"]
    storage.close()


def test_a_fresh_file_works_without_migrate(run: Run) -> None:
    # A command that writes creates and migrates the file; one that only reads never
    # creates one (tests/test_cli_storage_files.py).
    assert ok(run("advertiser", "add", "Acme")) == "Created advertiser 1 (Acme)\n"
    assert ok(run("conversions")) == "No conversions.\n"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(
            "foo://x",
            "Error: no storage backend for 'foo://x'"
            " (known schemes: postgres, postgresql, sqlite)\n",
            id="unknown-scheme",
        ),
        pytest.param(
            "sqlite://host/x.db",
            "Error: SQLite URLs look like sqlite:///relative.db or sqlite:////abs/path.db,"
            " got 'sqlite://host/x.db'\n",
            id="malformed-sqlite",
        ),
    ],
)
def test_a_bad_storage_url_is_one_error_line(url: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["--storage", url, "advertiser", "list"])
    assert failed(result, 1) == message


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], prog_name="pixel-wsgi")
    assert ok(result) == f"pixel-wsgi, version {__version__}\n"


# -- advertisers and publishers ----------------------------------------------------


@pytest.mark.parametrize("kind", ["advertiser", "publisher"])
def test_add_prints_the_new_id(run: Run, storage: SQLiteStorage, kind: str) -> None:
    assert ok(run(kind, "add", "Acme")) == f"Created {kind} 1 (Acme)\n"
    document = as_json(run(kind, "add", "  Beta Corp ", "--json"))
    assert created_at(document) == {"id": 2, "name": "Beta Corp"}
    found = storage.advertiser(2) if kind == "advertiser" else storage.publisher(2)
    assert found is not None
    assert (found.name, found.created_at) == ("Beta Corp", document["created_at"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("", "must not be empty", id="empty"),
        pytest.param("   ", "must not be empty", id="blank"),
        pytest.param("Acme\x00", "must not contain control characters", id="nul"),
        pytest.param("x" * 201, "must be at most 200 characters", id="too-long"),
    ],
)
def test_bad_names_are_refused(run: Run, storage: SQLiteStorage, name: str, message: str) -> None:
    stderr = failed(run("advertiser", "add", name), 2)
    assert f"Error: Invalid value for 'NAME': {message}" in stderr
    assert storage.advertisers() == []


def test_advertiser_list(run: Run) -> None:
    ok(run("migrate"))
    assert ok(run("advertiser", "list")) == "No advertisers.\n"
    ok(run("advertiser", "add", "Acme"))
    ok(run("advertiser", "add", "Beta"))
    lines = ok(run("advertiser", "list")).splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["id", "name", "require_signed_pixels"],
        ["1", "Acme", "False"],
        ["2", "Beta", "False"],
    ]
    assert lines[1].index("Acme") == lines[0].index("name")  # columns line up
    assert [created_at(a) for a in as_json(run("advertiser", "list", "--json"))] == [
        {"id": 1, "name": "Acme", "require_signed_pixels": False},
        {"id": 2, "name": "Beta", "require_signed_pixels": False},
    ]


# -- campaigns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "rule", "payout_json"),
    [
        pytest.param(
            ("--payout", "5"),
            PayoutRule(PayoutKind.FIXED, Decimal("5.00"), "USD"),
            {"kind": "fixed", "value": "5.00", "currency": "USD", "reason_codes": []},
            id="fixed-default-currency",
        ),
        pytest.param(
            ("--payout", "12.5", "--currency", "eur"),
            PayoutRule(PayoutKind.FIXED, Decimal("12.50"), "EUR"),
            {"kind": "fixed", "value": "12.50", "currency": "EUR", "reason_codes": []},
            id="fixed-euro",
        ),
        pytest.param(
            ("--payout", "4.50", "--reason-code", "renewal", "--reason-code", "upgrade"),
            PayoutRule(PayoutKind.FIXED, Decimal("4.50"), "USD", ("renewal", "upgrade")),
            {
                "kind": "fixed",
                "value": "4.50",
                "currency": "USD",
                "reason_codes": ["renewal", "upgrade"],
            },
            id="fixed-reason-codes",
        ),
        pytest.param(
            ("--payout-percent", "10"),
            PayoutRule(PayoutKind.PERCENT, Decimal("10")),
            {"kind": "percent", "value": "10", "currency": None, "reason_codes": []},
            id="percent",
        ),
        pytest.param(
            ("--payout-percent", "7.1255"),
            PayoutRule(PayoutKind.PERCENT, Decimal("7.1255")),
            {"kind": "percent", "value": "7.1255", "currency": None, "reason_codes": []},
            id="percent-four-places",
        ),
        pytest.param(
            ("--payout-percent", "100"),
            PayoutRule(PayoutKind.PERCENT, Decimal("100")),
            {"kind": "percent", "value": "100", "currency": None, "reason_codes": []},
            id="percent-all",
        ),
    ],
)
def test_campaign_add(
    run: Run,
    storage: SQLiteStorage,
    options: tuple[str, ...],
    rule: PayoutRule,
    payout_json: dict[str, Any],
) -> None:
    ok(run("advertiser", "add", "Acme"))
    document = as_json(run("campaign", "add", "--advertiser", "1", "Spring", *options, "--json"))
    assert created_at(document) == {
        "id": 1,
        "advertiser_id": 1,
        "name": "Spring",
        "payout": payout_json,
    }
    campaign = storage.campaign(1)
    assert campaign is not None
    assert campaign.payout == rule
    assert isinstance(campaign.payout.value, Decimal)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            ("--payout", "5"),
            "Created campaign 1 (Spring) for advertiser 1: pays 5.00 USD per conversion\n",
            id="fixed",
        ),
        pytest.param(
            ("--payout-percent", "12.5", "--reason-code", "sale"),
            "Created campaign 1 (Spring) for advertiser 1: pays 12.5% of sale_amount"
            " (only for reason_code sale)\n",
            id="percent",
        ),
    ],
)
def test_campaign_add_plain(run: Run, options: tuple[str, ...], message: str) -> None:
    ok(run("advertiser", "add", "Acme"))
    assert ok(run("campaign", "add", "--advertiser", "1", "Spring", *options)) == message


@pytest.mark.parametrize(
    ("options", "exit_code", "message"),
    [
        pytest.param(
            ("--payout", "5", "--payout-percent", "10"),
            2,
            "Error: give exactly one of --payout or --payout-percent",
            id="both",
        ),
        pytest.param(
            (), 2, "Error: give exactly one of --payout or --payout-percent", id="neither"
        ),
        pytest.param(
            ("--payout", "1e3"),
            2,
            "Error: Invalid value for '--payout': the amount must be ASCII digits",
            id="exponent",
        ),
        pytest.param(
            ("--payout", "-1"),
            2,
            "Error: Invalid value for '--payout': the amount must not be negative",
            id="negative",
        ),
        pytest.param(("--payout", "1.234"), 2, "Invalid value for '--payout'", id="three-places"),
        pytest.param(("--payout", "nan"), 2, "Invalid value for '--payout'", id="nan"),
        pytest.param(("--payout", "1,000"), 2, "Invalid value for '--payout'", id="separator"),
        pytest.param(("--payout", "$5"), 2, "Invalid value for '--payout'", id="currency-sign"),
        pytest.param(
            ("--payout-percent", "150"),
            2,
            "Error: Invalid value for '--payout-percent': must be more than 0 and at most 100,"
            " got '150'",
            id="percent-over-100",
        ),
        pytest.param(
            ("--payout-percent", "0"),
            2,
            "Error: Invalid value for '--payout-percent': must be more than 0",
            id="percent-zero",
        ),
        pytest.param(
            ("--payout-percent", "10.12345"),
            2,
            "Error: Invalid value for '--payout-percent': must be a decimal percentage",
            id="percent-five-places",
        ),
        pytest.param(
            ("--payout-percent", "1e1"),
            2,
            "Error: Invalid value for '--payout-percent': must be a decimal percentage",
            id="percent-exponent",
        ),
        pytest.param(
            ("--payout", "5", "--currency", "XYZ"),
            2,
            "Error: Invalid value for '--currency': must be an ISO 4217 currency code like USD,"
            " got 'XYZ'",
            id="bad-currency",
        ),
        pytest.param(
            ("--payout-percent", "10", "--currency", "EUR"),
            2,
            "Error: --currency applies to --payout only",
            id="currency-with-percent",
        ),
        pytest.param(
            ("--payout", "5", "--reason-code", " "),
            2,
            "Error: Invalid value for '--reason-code': must be non-empty text, got ' '",
            id="blank-reason-code",
        ),
    ],
)
def test_campaign_add_refuses_bad_input(
    run: Run, storage: SQLiteStorage, options: tuple[str, ...], exit_code: int, message: str
) -> None:
    ok(run("advertiser", "add", "Acme"))
    stderr = failed(run("campaign", "add", "--advertiser", "1", "Spring", *options), exit_code)
    assert message in stderr
    assert storage.campaign(1) is None


def test_campaign_for_an_unknown_advertiser(run: Run, storage: SQLiteStorage) -> None:
    stderr = failed(run("campaign", "add", "--advertiser", "99", "Spring", "--payout", "5"), 1)
    assert stderr == "Error: no advertiser with id 99\n"
    assert storage.campaign(1) is None


# -- links -----------------------------------------------------------------------


def test_link_add(run: Run, storage: SQLiteStorage) -> None:
    ok(run("advertiser", "add", "Acme"))
    ok(run("publisher", "add", "Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring", "--payout", "5"))
    plain = run("link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing?x=1")
    assert ok(plain) == "Created link 1: /pixels/click/1 -> /landing?x=1\n"
    absolute = run(
        "link",
        "add",
        "--json",
        "--campaign",
        "1",
        "--publisher",
        "1",
        "--to",
        "https://shop.example/spring",
    )
    assert absolute.exit_code == 0, absolute.output
    # Another host needs the middleware's allowed_redirect_hosts (issue 9): said on stderr.
    assert absolute.stderr.count("\n") == 1
    assert "allowed_redirect_hosts=['shop.example']" in absolute.stderr
    document = json.loads(absolute.stdout)
    assert created_at(document) == {
        "id": 2,
        "campaign_id": 1,
        "publisher_id": 1,
        "advertiser_id": 1,
        "destination": "https://shop.example/spring",
        "path": "/pixels/click/2",
    }
    link = storage.link(2)
    assert link is not None
    assert link.destination == "https://shop.example/spring"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(("--to", "//evil.example"), "'//evil.example'", id="scheme-relative"),
        pytest.param(
            ("--to", "javascript:alert(1)"), "'javascript:alert(1)'", id="javascript-scheme"
        ),
        pytest.param(("--to", "/\\evil.example"), "'/\\\\evil.example'", id="backslash"),
        pytest.param(("--to", "https://user:pw@shop.example/"), "credentials", id="credentials"),
        pytest.param(("--to", ""), "non-empty", id="empty"),
        pytest.param(
            ("--to", "https://partner.example\uff0fevil.example/"),
            "invalid characters under NFKC normalization",
            id="fullwidth-solidus",
        ),
        pytest.param(
            ("--to", "http://partner.example:99999/"), "Port out of range", id="port-too-big"
        ),
        pytest.param(("--to", "http://partner.example:0/"), "port", id="port-zero"),
        pytest.param(("--to", "https://shop.example:x/"), "Port", id="port-not-a-number"),
        pytest.param(("--to", "https://" + "a" * 64 + ".example/"), "label", id="label-too-long"),
        pytest.param(
            ("--to", "/landing", "--campaign", "9"), "Error: no campaign with id 9", id="campaign"
        ),
        pytest.param(
            ("--to", "/landing", "--publisher", "9"),
            "Error: no publisher with id 9",
            id="publisher",
        ),
    ],
)
def test_link_add_refuses_bad_input(
    run: Run, storage: SQLiteStorage, options: tuple[str, ...], message: str
) -> None:
    ok(run("advertiser", "add", "Acme"))
    ok(run("publisher", "add", "Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring", "--payout", "5"))
    # The last --campaign/--publisher given wins, so a case can override these.
    stderr = failed(run("link", "add", "--campaign", "1", "--publisher", "1", *options), 1)
    assert stderr.startswith("Error: ")
    assert stderr.count("\n") == 1
    assert message in stderr
    assert storage.link(1) is None


def test_link_add_to_a_path_warns_of_nothing(run: Run, storage: SQLiteStorage) -> None:
    ok(run("advertiser", "add", "Acme"))
    ok(run("publisher", "add", "Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring", "--payout", "5"))
    # ok() checks that stderr is empty.
    ok(run("link", "add", "--campaign", "1", "--publisher", "1", "--to", "/landing"))


# -- reading the ledger after real traffic ----------------------------------------------


@pytest.fixture
def browser(run: Run, db_url: str) -> TestApp:
    """A visitor of the host site, after the CLI set up campaign 1 and link 1."""
    set_up(run)
    return TestApp(PixelMiddleware(host_app, db_url, secret_key=SECRET))


def test_empty_ledger(run: Run) -> None:
    ok(run("migrate"))
    assert ok(run("transactions")) == "No transactions.\n"
    assert ok(run("conversions")) == "No conversions.\n"
    assert ok(run("rejections")) == "No rejections.\n"
    for command in ("transactions", "conversions", "rejections"):
        assert as_json(run(command, "--json")) == []


def test_a_conversion_shows_in_transactions_and_conversions(run: Run, browser: TestApp) -> None:
    assert browser.get("/pixels/click/1").status_int == 302
    browser.get(
        "/pixels/conversion/1.gif?sale_amount=80.00&reference_id=order-1"
        "&sku_list[]=TEA&quantity_list[]=2&reason_code=sale"
    )
    expected = {
        "transaction_id": 1,
        "transaction_type": "conversion",
        "advertiser_id": 1,
        "campaign_id": 1,
        "publisher_id": 1,
        "visit_id": 1,
        "source": "pixel",
        "reference_id": "order-1",
        "corrects_transaction_id": None,
        "original_transaction_id": 1,
        "sale_amount": "80.00",
        "sale_currency": "USD",
        "reason_code": "sale",
        "sku_list": ["TEA"],
        "quantity_list": [2],
        "external_data": None,
        "custom_data": {},
        "payout": "8.00",
        "payout_currency": "USD",
        "reversal_reason": None,
        "contested": False,
    }
    assert [created_at(row) for row in as_json(run("transactions", "--json"))] == [expected]
    assert [created_at(row) for row in as_json(run("conversions", "--json"))] == [expected]
    assert as_json(run("transactions", "--json", "--advertiser", "2")) == []
    assert as_json(run("transactions", "--json", "--after", "1")) == []

    header, row = ok(run("transactions")).splitlines()
    assert header.split() == [
        "id",
        "conversion",
        "corrects",
        "advertiser",
        "campaign",
        "publisher",
        "source",
        "reference_id",
        "reason_code",
        "created_at",
        "sale",
        "payout",
    ]
    cells = row.split()
    assert cells[:9] == ["1", "1", "-", "1", "1", "1", "pixel", "order-1", "sale"]
    assert cells[10:] == ["80.00", "USD", "8.00", "USD"]
    assert row.endswith("8.00 USD")
    assert header.endswith("payout")
    assert len(row) == len(header)  # the right-aligned money columns line up


def test_a_correction_shows_its_current_values(run: Run, browser: TestApp) -> None:
    browser.get("/pixels/click/1")
    browser.get("/pixels/conversion/1.gif?sale_amount=80.00&reference_id=order-1")
    browser.get("/pixels/conversion/1.gif?sale_amount=50.00&parent_reference_id=order-1")

    rows = as_json(run("transactions", "--json"))
    assert [
        (r["transaction_id"], r["corrects_transaction_id"], r["sale_amount"], r["payout"])
        for r in rows
    ] == [(1, None, "80.00", "8.00"), (2, 1, "50.00", "5.00")]
    [current] = as_json(run("conversions", "--json"))
    assert (
        current["transaction_id"],
        current["original_transaction_id"],
        current["reference_id"],
        current["sale_amount"],
        current["payout"],
    ) == (2, 1, "order-1", "50.00", "5.00")


def test_rejections(run: Run, browser: TestApp, db_url: str) -> None:
    stranger = TestApp(PixelMiddleware(host_app, db_url, secret_key=SECRET))
    stranger.get("/pixels/conversion/1.gif?sale_amount=10.00&reference_id=order-9")
    stranger.get("/pixels/click/77", status=404)

    newest, oldest = as_json(run("rejections", "--json"))
    assert (oldest["advertiser_id"], oldest["source"], oldest["reason"]) == (
        1,
        "pixel",
        "no_attribution",
    )
    assert oldest["reference_id"] == "order-9"
    assert (newest["advertiser_id"], newest["source"], newest["reason"]) == (
        None,
        "click",
        "unknown_link",
    )
    assert [r["reason"] for r in as_json(run("rejections", "--json", "--limit", "1"))] == [
        "unknown_link"
    ]
    assert [r["id"] for r in as_json(run("rejections", "--json", "--advertiser", "1"))] == [1]

    header, first, second = ok(run("rejections")).splitlines()
    assert header.split() == [
        "id",
        "advertiser",
        "source",
        "reason",
        "reference_id",
        "created_at",
        "detail",
    ]
    assert second.split()[:5] == ["1", "1", "pixel", "no_attribution", "order-9"]
    assert first.split()[:5] == ["2", "-", "click", "unknown_link", "-"]


def test_erase(run: Run, browser: TestApp, storage: SQLiteStorage) -> None:
    browser.get("/pixels/click/1")
    browser.get(
        "/pixels/conversion/1.gif?sale_amount=20.00&reference_id=order-1"
        "&email_address=ann%40example.com"
    )
    assert storage.personal_data(1) == {"email_address": "ann@example.com"}

    assert ok(run("erase", "--advertiser", "1", "--reference-id", "order-1")) == (
        "Erased personal data from 1 row.\n"
    )
    assert storage.personal_data(1) == {}
    assert as_json(run("erase", "--advertiser", "1", "--reference-id", "order-1", "--json")) == {
        "advertiser_id": 1,
        "reference_id": "order-1",
        "erased": 0,
    }
    # The ledger row itself stays.
    assert [r["reference_id"] for r in as_json(run("conversions", "--json"))] == ["order-1"]


def test_erase_for_an_unknown_advertiser(run: Run) -> None:
    stderr = failed(run("erase", "--advertiser", "5", "--reference-id", "x"), 1)
    assert stderr == "Error: no advertiser with id 5\n"


# -- the demo command and the console script ----------------------------------------------


def test_demo_command_runs_the_demo(run: Run, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int]] = []

    def fake_run_demo(storage_url: str, *, host: str, port: int) -> None:
        calls.append((storage_url, host, port))

    monkeypatch.setattr("pixel_wsgi.demo.run_demo", fake_run_demo)
    ok(run("demo", "--port", "8123", "--host", "0.0.0.0"))
    ok(run("demo"))
    assert calls == [(db_url, "0.0.0.0", 8123), (db_url, "127.0.0.1", 8000)]


def test_demo_command_without_flask(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)  # import flask -> ImportError
    stderr = failed(run("demo"), 1)
    assert stderr == "Error: the demo needs Flask: pip install 'pixel-wsgi[demo]'\n"


def console_script() -> str:
    beside_python = Path(sys.executable).parent / "pixel-wsgi"
    found = str(beside_python) if beside_python.exists() else shutil.which("pixel-wsgi")
    assert found is not None, "the pixel-wsgi console script is not installed"
    return found


def test_the_console_script_is_installed(tmp_path: Path) -> None:
    script = console_script()
    done = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: pixel-wsgi [OPTIONS] COMMAND [ARGS]...")

    url = f"sqlite:///{tmp_path / 'script.db'}"
    done = subprocess.run(
        [script, "--storage", url, "advertiser", "add", "Acme", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert created_at(json.loads(done.stdout)) == {"id": 1, "name": "Acme"}

    done = subprocess.run(
        [script, "--storage", url, "campaign", "add", "--advertiser", "2", "X", "--payout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "Error: no advertiser with id 2\n",
    )


def test_publisher_campaign_and_link_lists(run: Run) -> None:
    ok(run("migrate"))
    assert ok(run("publisher", "list")) == "No publishers.\n"
    assert ok(run("campaign", "list")) == "No campaigns.\n"
    assert ok(run("link", "list")) == "No links.\n"
    ok(run("advertiser", "add", "Acme"))
    ok(run("advertiser", "add", "Beta"))
    ok(run("publisher", "add", "Blog"))
    ok(run("campaign", "add", "--advertiser", "1", "Spring", "--payout-percent", "10"))
    ok(run("campaign", "add", "--advertiser", "2", "Fixed", "--payout", "2.50"))
    ok(run("link", "add", "--campaign", "2", "--publisher", "1", "--to", "/beta"))

    assert [p["name"] for p in as_json(run("publisher", "list", "--json"))] == ["Blog"]
    campaigns = as_json(run("campaign", "list", "--json"))
    assert [(c["id"], c["daily_cap"], c["pays"]) for c in campaigns] == [
        (1, None, "10% of sale_amount"),
        (2, None, "2.50 USD per conversion"),
    ]
    assert ok(run("campaign", "list")).splitlines()[0].split() == [
        "id",
        "advertiser_id",
        "name",
        "daily_cap",
        "pays",
    ]
    assert [c["id"] for c in as_json(run("campaign", "list", "--advertiser", "2", "--json"))] == [2]
    [link] = as_json(run("link", "list", "--json"))
    assert (link["path"], link["destination"], link["advertiser_id"]) == (
        "/pixels/click/1",
        "/beta",
        2,
    )
    assert as_json(run("link", "list", "--advertiser", "1", "--json")) == []
    header, row = ok(run("link", "list")).splitlines()
    assert header.split() == ["id", "path", "campaign_id", "publisher_id", "destination"]
    assert row.split() == ["1", "/pixels/click/1", "2", "1", "/beta"]
