"""``pixel-wsgi target``, ``deliver``, ``deliveries``, ``retry`` and ``skip``: the real
commands against a SQLite file, delivering over loopback to local servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.cli.delivery import target_add, target_set
from pixel_wsgi.delivery.outbox import new_webhook_secret
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.models import TargetKind, TargetStatus

from .cli_helpers import Run, as_json, failed, ok
from .conftest import SECRET, World, host_app
from .delivery_servers import RecordingServer, Reply, TunePostbackServer, WebhookReceiver

KEY_ENV = "PIXEL_WSGI_SECRET_KEY"
#: A template of a publisher's postback: the row's id, amount and kind.
POSTBACK_QUERY = (
    "/aff_lsr?transaction_id={transaction_id}&amount={sale_amount}&type={transaction_type}"
)

META_TOKEN = "EAABmetaAccessToken0123456789"
GOOGLE_SECRET = "GOCSPX-clientSecret0123456789"
GOOGLE_REFRESH = "1//refreshToken0123456789abcdef"
GA4_SECRET = "ga4ApiSecret0123456789"
INVOCA_TOKEN = "invocaApiToken0123456789"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The middleware's secret_key, as the CLI reads it."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def shop(world: World) -> TestApp:
    """The host app with the middleware, on the real clock (the worker's deadlines)."""
    return TestApp(PixelMiddleware(host_app, world.storage, secret_key=SECRET))


def report(shop: TestApp, auth: dict[str, str], **fields: str) -> int:
    """POST a report to the Conversion Reporting API; the ledger row id it wrote."""
    response = shop.post("/pixels/api/conversions", fields, headers=auth)
    transaction_id: int = response.json["transaction"]["transaction_id"]
    return transaction_id


def sale(shop: TestApp, auth: dict[str, str], world: World, reference_id: str) -> int:
    return report(
        shop,
        auth,
        reference_id=reference_id,
        sale_amount="100.00",
        advertiser_campaign_id=str(world.percent_campaign_id),
        affiliate_id=str(world.publisher_id),
    )


def add(run: Run, *args: str) -> dict[str, Any]:
    """``target add --advertiser 1 ARGS --json``: what it printed."""
    document: dict[str, Any] = as_json(run("target", "add", "--advertiser", "1", *args, "--json"))
    return document


def add_postback(run: Run, server: RecordingServer, world: World, *more: str) -> int:
    url = server.url + POSTBACK_QUERY
    args = ("--kind", "postback", "--publisher", str(world.publisher_id), "--url", url, *more)
    target_id: int = add(run, *args)["id"]
    return target_id


def statuses(storage: SQLiteStorage, target_id: int) -> dict[int, str]:
    return {d.transaction_id: d.status.value for d in storage.deliveries(target_id)}


# -- target add and list -----------------------------------------------------------------

KIND_ARGS = {
    "postback": (
        ("--publisher", "1", "--url", "http://127.0.0.1:9/aff_lsr?t={transaction_id}"),
        {},
    ),
    "webhook": (("--url", "http://127.0.0.1:9/hooks"), {}),
    "meta_capi": (
        (
            "--pixel-id",
            "1234567890",
            "--access-token",
            META_TOKEN,
            "--test-event-code",
            "TEST123",
            "--endpoint",
            "http://127.0.0.1:9",
        ),
        {"access_token": "EAAB…"},
    ),
    "google_ads": (
        (
            "--customer-id",
            "123-456-7890",
            "--conversion-action",
            "555",
            "--client-id",
            "client.apps.googleusercontent.com",
            "--client-secret",
            GOOGLE_SECRET,
            "--refresh-token",
            GOOGLE_REFRESH,
            "--login-customer-id",
            "9876543210",
            "--validate-only",
            "--endpoint",
            "http://127.0.0.1:9",
            "--token-endpoint",
            "http://127.0.0.1:9",
        ),
        {"client_secret": "GOCS…", "refresh_token": "1//r…"},
    ),
    "ga4": (
        (
            "--measurement-id",
            "G-ABC123",
            "--api-secret",
            GA4_SECRET,
            "--validate",
            "--endpoint",
            "http://127.0.0.1:9",
        ),
        {"api_secret": "ga4A…"},
    ),
    "invoca_signal": (
        (
            "--api-token",
            INVOCA_TOKEN,
            "--signal-name",
            "Sale",
            "--call-id-field",
            "invoca_call_id",
            "--endpoint",
            "http://127.0.0.1:9",
        ),
        {"api_token": "invo…"},
    ),
}
SETTINGS = {
    "postback": {"url": "http://127.0.0.1:9/aff_lsr?t={transaction_id}"},
    "webhook": {"url": "http://127.0.0.1:9/hooks"},
    "meta_capi": {
        "pixel_id": "1234567890",
        "test_event_code": "TEST123",
        "endpoint": "http://127.0.0.1:9",
    },
    "google_ads": {
        "customer_id": "123-456-7890",
        "conversion_action": "555",
        "client_id": "client.apps.googleusercontent.com",
        "login_customer_id": "9876543210",
        "validate_only": "1",
        "endpoint": "http://127.0.0.1:9",
        "token_endpoint": "http://127.0.0.1:9",
    },
    "ga4": {"measurement_id": "G-ABC123", "validate": "1", "endpoint": "http://127.0.0.1:9"},
    "invoca_signal": {
        "signal_name": "Sale",
        "call_id_field": "invoca_call_id",
        "endpoint": "http://127.0.0.1:9",
    },
}
CREDENTIALS = (META_TOKEN, GOOGLE_SECRET, GOOGLE_REFRESH, GA4_SECRET, INVOCA_TOKEN)


@pytest.mark.parametrize("kind", list(KIND_ARGS))
def test_add_each_kind(run: Run, world: World, db_path: Path, kind: str) -> None:
    args, masked = KIND_ARGS[kind]
    document = add(run, "--kind", kind, *args)
    assert document["id"] == 1
    assert document["kind"] == kind
    assert document["settings"] == SETTINGS[kind]
    assert document["publisher_id"] == (1 if kind == "postback" else None)
    # Only a webhook's secret is printed: the others were typed by the operator.
    assert ("secret" in document) == (kind == "webhook")
    for credential in CREDENTIALS:
        assert credential not in json.dumps(document)

    [listed] = as_json(run("target", "list", "--json"))
    assert (listed["id"], listed["kind"], listed["status"], listed["backlog"]) == (
        1,
        kind,
        "active",
        0,
    )
    assert listed["settings"] == SETTINGS[kind]
    if kind == "webhook":
        masked = {"secret": "whsec_…"}
    assert listed["secrets"] == masked
    text = ok(run("target", "list"))
    assert text.splitlines()[1].split()[:6] == [
        "1",
        "1",
        kind,
        "1" if kind == "postback" else "-",
        "active",
        "0",
    ]
    # Never in what the CLI prints after add, nor in the database file.
    stored = db_path.read_bytes()
    for credential in (*CREDENTIALS, document.get("secret", "whsec_none")):
        assert credential not in text
        assert credential not in json.dumps(listed)
        assert credential.encode() not in stored


def test_a_webhook_secret_is_printed_once(
    run: Run, world: World, db_path: Path, shop: TestApp, auth: dict[str, str]
) -> None:
    said = ok(
        run(
            "target",
            "add",
            "--advertiser",
            "1",
            "--kind",
            "webhook",
            "--url",
            "http://127.0.0.1:9/a",
        )
    )
    prefix = (
        "Created target 1 (webhook) for advertiser 1: it gets the ledger rows made from now"
        " on. Signing secret (shown only now): "
    )
    assert said.startswith(prefix)
    secret = said[len(prefix) :].strip()
    StandardWebhook(secret)  # a valid Standard Webhooks secret
    given = new_webhook_secret()
    document = add(run, "--kind", "webhook", "--url", "http://127.0.0.1:9/b", "--secret", given)
    assert (document["id"], document["kind"], document["secret"]) == (2, "webhook", given)
    sale(shop, auth, world, "order-1")

    printed = [
        ok(run("target", "list")),
        ok(run("target", "list", "--json")),
        ok(run("target", "pause", "1", "--json")),
        ok(run("target", "resume", "1")),
        ok(run("target", "set", "1", "--url", "http://127.0.0.1:9/moved", "--json")),
        ok(run("deliver", "--dry-run")),
        ok(run("deliver", "--dry-run", "--json")),
        ok(run("deliver", "--json")),  # port 9 refuses: both rows wait
        ok(run("deliveries", "--json")),
    ]
    assert "webhook-signature: [redacted]" in printed[5]
    attempts = [*world.storage.delivery_attempts(1), *world.storage.delivery_attempts(2)]
    assert len(attempts) == 2
    printed += [f"{attempt.request}\n{attempt.response}" for attempt in attempts]
    for output in printed:
        assert secret not in output
        assert given not in output
    assert secret.encode() not in db_path.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--kind", "webhook", "--url", "http://127.0.0.1:9/h", "--pixel-id", "1"),
            "--pixel-id is not an option of a webhook target: it is for meta_capi targets",
            id="webhook-pixel-id",
        ),
        pytest.param(
            ("--kind", "meta_capi", "--pixel-id", "1", "--access-token", "t", "--url", "http://x"),
            "--url is not an option of a meta_capi target: it is for postback and webhook targets",
            id="meta-url",
        ),
        pytest.param(
            (*KIND_ARGS["postback"][0], "--kind", "postback", "--endpoint", "http://127.0.0.1:9"),
            "--endpoint is not an option of a postback target: it is for meta_capi and"
            " google_ads and ga4 and invoca_signal targets",
            id="postback-endpoint",
        ),
        pytest.param(
            ("--kind", "ga4", "--measurement-id", "G-A", "--api-secret", "s", "--validate-only"),
            "--validate-only is not an option of a ga4 target: it is for google_ads targets",
            id="ga4-validate-only",
        ),
        pytest.param(
            (*KIND_ARGS["google_ads"][0], "--kind", "google_ads", "--no-validate"),
            "--no-validate is not an option of a google_ads target: it is for ga4 targets",
            id="google-no-validate",
        ),
        pytest.param(
            (*KIND_ARGS["invoca_signal"][0], "--kind", "invoca_signal", "--secret", "whsec_x"),
            "--secret is not an option of a invoca_signal target: it is for webhook targets",
            id="invoca-secret",
        ),
        pytest.param(
            ("--kind", "webhook", "--url", "http://127.0.0.1:9/h", "--publisher", "1"),
            "--publisher is not an option of a webhook target: it is for postback targets",
            id="webhook-publisher",
        ),
        pytest.param(
            ("--kind", "postback", "--url", "http://127.0.0.1:9/p"),
            "a postback target needs --publisher: the publisher it pays",
            id="postback-no-publisher",
        ),
        pytest.param(
            ("--kind", "meta_capi", "--pixel-id", "1"),
            "a meta_capi target needs --access-token",
            id="meta-no-token",
        ),
        pytest.param(
            ("--kind", "google_ads", "--customer-id", "1234567890"),
            "a google_ads target needs --client-id and --client-secret and --conversion-action"
            " and --refresh-token",
            id="google-missing",
        ),
        pytest.param(("--kind", "webhook"), "a webhook target needs --url", id="webhook-no-url"),
    ],
)
def test_options_of_another_kind_or_missing_are_refused(
    run: Run, world: World, args: tuple[str, ...], message: str
) -> None:
    stderr = failed(run("target", "add", "--advertiser", "1", *args), 2)
    assert stderr.endswith(f"Error: {message}\n")
    assert world.storage.targets() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--kind", "meta_capi", "--pixel-id", "pixel-1", "--access-token", META_TOKEN),
            "a Meta pixel id is its digits (Events Manager), got 'pixel-1'",
            id="meta-pixel-id",
        ),
        pytest.param(
            ("--kind", "ga4", "--measurement-id", "UA-1", "--api-secret", GA4_SECRET),
            "a GA4 measurement id is G- and capitals or digits (G-XXXXXXXXXX), got 'UA-1'",
            id="ga4-measurement-id",
        ),
        pytest.param(
            ("--kind", "webhook", "--url", "ftp://127.0.0.1/h"),
            "url of a webhook target must be an http(s) URL with a host, got 'ftp://127.0.0.1/h'",
            id="webhook-url",
        ),
        pytest.param(
            ("--kind", "webhook", "--url", "http://127.0.0.1:9/h", "--secret", "hunter2"),
            "must start with whsec_",
            id="webhook-secret",
        ),
        pytest.param(
            ("--kind", "postback", "--publisher", "1", "--url", "http://127.0.0.1:9/?x={nope}"),
            "the url of a postback target has an unknown macro {nope}",
            id="postback-macro",
        ),
        pytest.param(
            ("--kind", "ga4", "--measurement-id", "G-A1", "--api-secret", "s", "--endpoint", "x"),
            "an endpoint is a URL like http://127.0.0.1:8000, got 'x'",
            id="bad-endpoint",
        ),
    ],
)
def test_bad_values_are_refused_naming_them(
    run: Run, world: World, args: tuple[str, ...], message: str
) -> None:
    stderr = failed(run("target", "add", "--advertiser", "1", *args), 1)
    assert stderr.startswith("Error: ")
    assert message in stderr
    assert world.storage.targets() == []


def test_unknown_advertiser_publisher_and_target(run: Run, world: World) -> None:
    args = KIND_ARGS["webhook"][0]
    stderr = failed(run("target", "add", "--advertiser", "9", "--kind", "webhook", *args), 1)
    assert stderr == "Error: no advertiser with id 9\n"
    postback = ("--kind", "postback", "--publisher", "9", "--url", "http://127.0.0.1:9/p")
    assert failed(run("target", "add", "--advertiser", "1", *postback), 1) == (
        "Error: no publisher with id 9\n"
    )
    assert world.storage.targets() == []
    for command in (
        ("target", "set", "4", "--url", "http://127.0.0.1:9/p"),
        ("target", "pause", "4"),
        ("target", "resume", "4"),
        ("target", "remove", "4"),
        ("deliver", "--target", "4"),
        ("deliver", "--target", "4", "--dry-run"),
        ("deliveries", "--target", "4"),
        ("retry", "--target", "4"),
        ("skip", "--target", "4"),
    ):
        assert failed(run(*command), 1) == "Error: no target with id 4\n", command


def test_without_the_secret_key(run: Run, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    stderr = failed(
        run("target", "add", "--advertiser", "1", "--kind", "webhook", *KIND_ARGS["webhook"][0]), 1
    )
    assert stderr.startswith(
        f"Error: set {KEY_ENV} to the middleware's secret_key: targets' credentials are sealed"
        " with it"
    )
    assert failed(run("deliver"), 1) == stderr
    monkeypatch.setenv(KEY_ENV, SECRET)
    add(run, "--kind", "meta_capi", *KIND_ARGS["meta_capi"][0])
    # Listing needs no key: credentials are then only ***.
    monkeypatch.delenv(KEY_ENV)
    [listed] = as_json(run("target", "list", "--json"))
    assert listed["secrets"] == {"access_token": "***"}
    # Another key opens nothing: still ***, and deliver says why.
    monkeypatch.setenv(KEY_ENV, "another-key-0123456789abcdef")
    [listed] = as_json(run("target", "list", "--json"))
    assert listed["secrets"] == {"access_token": "***"}


# -- deliver --------------------------------------------------------------------------


@pytest.fixture
def publisher_server() -> Iterator[TunePostbackServer]:
    with TunePostbackServer() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver([]) as server:
        yield server


def test_deliver_sends_to_a_postback_and_a_webhook(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
    receiver: WebhookReceiver,
) -> None:
    postback = add_postback(run, publisher_server, world)
    added = add(run, "--kind", "webhook", "--url", receiver.url + "/hooks")
    receiver.verifiers.append(StandardWebhook(added["secret"]))
    first = sale(shop, auth, world, "order-1")
    correction = report(shop, auth, reference_id="order-1", sale_amount="80.00")
    reversal = report(shop, auth, reference_id="order-1", reversal_reason="cancelled")

    assert ok(run("deliver")) == "Sent 6 requests; rows: 6 delivered. 0 rows pending.\n"
    assert [r.query for r in publisher_server.received] == [
        {"transaction_id": str(first), "amount": "100.00", "type": "conversion"},
        {"transaction_id": str(correction), "amount": "80.00", "type": "correction"},
        {"transaction_id": str(reversal), "amount": "0.00", "type": "reversal"},
    ]
    assert receiver.refusals == []
    assert [(p["type"], p["data"]["transaction_id"]) for p in receiver.payloads()] == [
        ("conversion.created", first),
        ("conversion.corrected", correction),
        ("conversion.reversed", reversal),
    ]
    for target_id in (postback, added["id"]):
        assert set(statuses(world.storage, target_id).values()) == {"delivered"}
    # Nothing is due any more: a second run sends nothing.
    assert as_json(run("deliver", "--json")) == {
        "requests": 0,
        "rows": {},
        "pending": 0,
        "waiting_targets": [],
        "auth_failed_targets": [],
    }
    assert len(publisher_server.received) == 3
    [listed_postback, listed_webhook] = as_json(run("target", "list", "--json"))
    assert listed_postback["deliveries"] == {"delivered": 3}
    assert listed_webhook["backlog"] == 0


def test_deliver_one_target(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
    receiver: WebhookReceiver,
) -> None:
    postback = add_postback(run, publisher_server, world)
    webhook = add(run, "--kind", "webhook", "--url", receiver.url)["id"]
    sale(shop, auth, world, "order-1")
    summary = as_json(run("deliver", "--target", str(postback), "--json"))
    assert summary == {
        "requests": 1,
        "rows": {"delivered": 1},
        "pending": 0,
        "waiting_targets": [],
        "auth_failed_targets": [],
    }
    assert len(publisher_server.received) == 1
    assert receiver.received == []
    assert statuses(world.storage, webhook) == {}  # not even queued


def test_dry_run_prints_the_exact_requests_and_changes_nothing(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
    db_path: Path,
) -> None:
    postback = add_postback(run, publisher_server, world)
    form = add_postback(run, publisher_server, world, "--method", "POST")
    first = sale(shop, auth, world, "order-1")
    before = db_path.read_bytes()

    printed = ok(run("deliver", "--dry-run"))
    url = f"{publisher_server.url}/aff_lsr"
    assert printed == (
        f"# target {postback} (postback), ledger rows {first}\n"
        f"GET {url}?transaction_id={first}&amount=100.00&type=conversion\n"
        "\n"
        f"# target {form} (postback), ledger rows {first}\n"
        f"POST {url}\n"
        "content-type: application/x-www-form-urlencoded\n"
        f"transaction_id={first}&amount=100.00&type=conversion\n"
    )
    planned = as_json(run("deliver", "--dry-run", "--json"))
    assert [(p["target_id"], p["kind"], p["transaction_ids"]) for p in planned] == [
        (postback, "postback", [first]),
        (form, "postback", [first]),
    ]
    assert publisher_server.received == []
    assert db_path.read_bytes() == before
    assert statuses(world.storage, postback) == {}

    # What deliver then sends is what the dry run printed.
    ok(run("deliver"))
    get, post = publisher_server.received
    assert f"GET {url}?{get.raw_query}\n" in printed
    assert (post.method, post.headers["content-type"], post.body.decode()) == (
        "POST",
        "application/x-www-form-urlencoded",
        f"transaction_id={first}&amount=100.00&type=conversion",
    )
    assert ok(run("deliver", "--dry-run")) == "Nothing to send now.\n"


def test_dry_run_masks_credentials(
    run: Run, world: World, shop: TestApp, auth: dict[str, str]
) -> None:
    add(run, "--kind", "invoca_signal", *KIND_ARGS["invoca_signal"][0])
    sold = {
        "reference_id": "order-1",
        "sale_amount": "10.00",
        "advertiser_campaign_id": world.percent_campaign_id,
        "affiliate_id": world.publisher_id,
        "custom_data": {"invoca_call_id": "CALL-1"},
    }
    shop.post_json("/pixels/api/conversions", sold, headers=auth)
    printed = ok(run("deliver", "--dry-run"))
    assert printed.startswith("# target 1 (invoca_signal), ledger rows 1\nPOST http://127.0.0.1:9/")
    assert INVOCA_TOKEN not in printed
    assert "[secret]" in printed
    assert '"CALL-1"' in printed


def test_loop_and_dry_run_or_json_do_not_mix(run: Run) -> None:
    for extra in ("--dry-run", "--json"):
        stderr = failed(run("deliver", "--loop", extra), 2)
        assert stderr.endswith(
            "Error: --loop runs until stopped: it takes no --dry-run or --json\n"
        )


# -- deliveries, retry, skip ----------------------------------------------------------


def test_deliveries_retry_and_skip(
    run: Run, world: World, shop: TestApp, auth: dict[str, str]
) -> None:
    with RecordingServer() as server:
        target = add_postback(run, server, world)
        server.script(
            Reply(200, b"success=false; err_msg=Invalid campaign;"),  # dead
            Reply(200, b"success=true;"),
            Reply(503, b"busy", (("Retry-After", "60"),)),  # waits a minute
        )
        dead = sale(shop, auth, world, "order-1")
        delivered = sale(shop, auth, world, "order-2")
        waiting = sale(shop, auth, world, "order-3")
        summary = as_json(run("deliver", "--json"))
        assert summary["requests"] == 3
        assert summary["rows"] == {"delivered": 1, "dead": 1}
        assert summary["pending"] == 1
        assert summary["waiting_targets"] == [target]  # the 503 opened its circuit breaker

        listed = as_json(run("deliveries", "--json"))
        assert [
            (d["target_id"], d["transaction_id"], d["status"], d["attempts"]) for d in listed
        ] == [
            (target, dead, "dead", 1),
            (target, delivered, "delivered", 1),
            (target, waiting, "pending", 1),
        ]
        assert listed[0]["detail"] == "HTTP 200 saying failure: Invalid campaign"
        assert listed[0]["next_attempt_at"] is None
        assert listed[2]["next_attempt_at"] is not None
        lines = ok(run("deliveries")).splitlines()
        assert lines[0].split() == [
            "target",
            "transaction",
            "status",
            "attempts",
            "next_attempt",
            "detail",
        ]
        assert lines[1].split()[:5] == [str(target), str(dead), "dead", "1", "-"]
        assert [
            d["transaction_id"] for d in as_json(run("deliveries", "--status", "dead", "--json"))
        ] == [dead]
        assert as_json(run("deliveries", "--status", "skipped", "--json")) == []
        assert ok(run("deliveries", "--status", "skipped")) == "No deliveries.\n"
        assert [
            d["transaction_id"] for d in as_json(run("deliveries", "--limit", "2", "--json"))
        ] == [dead, delivered]
        limited = run("deliveries", "--limit", "2")
        assert limited.exit_code == 0
        assert len(limited.stdout.splitlines()) == 3
        assert limited.stderr == "(the first 2: --limit N for more)\n"
        assert len(ok(run("deliveries", "--limit", "3")).splitlines()) == 4  # all: no note

        # skip: the pending row is never sent.
        assert ok(run("skip", "--target", str(target))) == f"1 row of target {target} skipped.\n"
        assert statuses(world.storage, target)[waiting] == "skipped"
        assert as_json(run("skip", "--target", str(target), "--json")) == {
            "target_id": target,
            "moved": 0,
        }

        # retry one row, then all: dead and skipped ones are due again now.
        assert as_json(
            run("retry", "--target", str(target), "--transaction", str(dead), "--json")
        ) == {
            "target_id": target,
            "moved": 1,
        }
        assert statuses(world.storage, target) == {
            dead: "pending",
            delivered: "delivered",
            waiting: "skipped",
        }
        assert (
            ok(run("retry", "--target", str(target)))
            == f"1 row of target {target} back to pending, due now.\n"
        )
        ok(run("deliver"))  # the target still waits for its breaker
        assert statuses(world.storage, target)[waiting] == "pending"
        ok(run("target", "resume", str(target)))  # which closes the breaker
        ok(run("deliver"))
        assert set(statuses(world.storage, target).values()) == {"delivered"}
        assert [r.query["transaction_id"] for r in server.received] == [
            str(dead),
            str(delivered),
            str(waiting),
            str(dead),
            str(waiting),
        ]
        assert (
            ok(run("retry", "--target", str(target)))
            == f"0 rows of target {target} back to pending, due now.\n"
        )


# -- pause, resume, remove, set ----------------------------------------------------------


def test_pause_and_resume(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
) -> None:
    target = add_postback(run, publisher_server, world)
    assert ok(run("target", "pause", str(target))) == (
        f"Target {target} (postback) paused: nothing is sent until it is resumed.\n"
    )
    sale(shop, auth, world, "order-1")
    assert ok(run("deliver")) == "Sent 0 requests. 0 rows pending.\n"
    assert publisher_server.received == []
    [listed] = as_json(run("target", "list", "--json"))
    assert listed["status"] == "paused"
    paused = as_json(run("target", "pause", str(target), "--json"))
    assert paused["status"] == "paused"

    resumed = as_json(run("target", "resume", str(target), "--json"))
    assert (resumed["id"], resumed["status"]) == (target, "active")
    ok(run("deliver"))
    assert len(publisher_server.received) == 1


def test_refused_credentials_pause_the_target_until_resumed(
    run: Run, world: World, shop: TestApp, auth: dict[str, str], receiver: WebhookReceiver
) -> None:
    # The receiver does not know the target's secret yet: 401, the target pauses.
    target = add(run, "--kind", "webhook", "--url", receiver.url)
    sale(shop, auth, world, "order-1")
    summary = as_json(run("deliver", "--json"))
    assert summary == {
        "requests": 1,
        "rows": {},
        "pending": 1,
        "waiting_targets": [],
        "auth_failed_targets": [target["id"]],
    }
    [listed] = as_json(run("target", "list", "--json"))
    assert listed["status"] == "auth_failed"
    assert listed["status_detail"]
    assert listed["backlog"] == 1
    _, row = ok(run("target", "list")).splitlines()
    assert row.split()[4:6] == ["auth_failed", "1"]
    again = run("deliver")
    assert (again.exit_code, again.stdout) == (0, "Sent 0 requests. 1 row pending.\n")
    assert again.stderr == (
        f"Warning: target {target['id']} (webhook) is paused, its credentials were refused:"
        f" {listed['status_detail']}. Fix them with `pixel-wsgi target set {target['id']}`,"
        f" then `pixel-wsgi target resume {target['id']}`.\n"
    )
    assert len(receiver.received) == 1

    receiver.verifiers.append(StandardWebhook(target["secret"]))
    assert ok(run("target", "resume", str(target["id"]))) == (
        f"Target {target['id']} (webhook) resumed: its rows are sent again.\n"
    )
    [listed] = as_json(run("target", "list", "--json"))
    assert (listed["status"], listed["status_detail"], listed["retry_at"]) == ("active", None, None)
    ok(run("deliver"))
    assert len(receiver.messages) == 1
    assert statuses(world.storage, target["id"]) == {1: "delivered"}


def test_remove_keeps_the_deliveries(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
) -> None:
    target = add_postback(run, publisher_server, world)
    first = sale(shop, auth, world, "order-1")
    ok(run("deliver"))
    assert ok(run("target", "remove", str(target))) == (
        f"Target {target} (postback) removed: nothing more is sent; its deliveries are kept.\n"
    )
    sale(shop, auth, world, "order-2")
    ok(run("deliver"))
    assert len(publisher_server.received) == 1
    assert as_json(run("target", "list", "--json")) == []
    assert ok(run("target", "list")) == "No targets.\n"
    [listed] = as_json(run("target", "list", "--all", "--json"))
    assert listed["status"] == "removed"
    assert [(d["transaction_id"], d["status"]) for d in as_json(run("deliveries", "--json"))] == [
        (first, "delivered")
    ]
    for command in (
        ("target", "resume", str(target)),
        ("target", "pause", str(target)),
        ("target", "set", str(target), "--method", "POST"),
    ):
        assert failed(run(*command), 1) == (
            f"Error: target {target} was removed (its deliveries are kept); add a new one\n"
        )
    assert world.storage.target(target).status is TargetStatus.REMOVED


def test_set_changes_settings_and_credentials(
    run: Run, world: World, shop: TestApp, auth: dict[str, str]
) -> None:
    with TunePostbackServer() as old, TunePostbackServer() as new:
        target = add_postback(run, old, world)
        changed = as_json(
            run(
                "target",
                "set",
                str(target),
                "--url",
                new.url + POSTBACK_QUERY,
                "--method",
                "post",
                "--json",
            )
        )
        assert changed["settings"] == {"method": "POST", "url": new.url + POSTBACK_QUERY}
        sale(shop, auth, world, "order-1")
        ok(run("deliver"))
    assert old.received == []
    assert [r.method for r in new.received] == ["POST"]

    add(run, "--kind", "meta_capi", *KIND_ARGS["meta_capi"][0])
    new_token = "EAABanotherToken9876543210"
    said = ok(run("target", "set", "2", "--access-token", new_token, "--test-event-code", ""))
    assert said == "Changed target 2 (meta_capi).\n"
    [_, listed] = as_json(run("target", "list", "--json"))
    assert listed["secrets"] == {"access_token": "EAAB…"}
    assert listed["settings"] == {"endpoint": "http://127.0.0.1:9", "pixel_id": "1234567890"}
    assert new_token not in ok(run("target", "list"))

    stderr = failed(run("target", "set", "2", "--url", "http://127.0.0.1:9/x"), 2)
    assert stderr.endswith(
        "Error: --url is not an option of a meta_capi target: it is for postback and webhook"
        " targets\n"
    )
    stderr = failed(run("target", "set", "2"), 2)
    assert stderr.endswith("Error: give an option to change (see pixel-wsgi target set --help)\n")
    stderr = failed(run("target", "set", "2", "--pixel-id", "abc"), 1)
    assert stderr == "Error: a Meta pixel id is its digits (Events Manager), got 'abc'\n"
    stderr = failed(run("target", "set", "2", "--new-secret"), 2)
    assert stderr.endswith(
        "Error: --new-secret is not an option of a meta_capi target: it is for webhook targets\n"
    )


def test_a_webhook_secret_rotates(
    run: Run, world: World, shop: TestApp, auth: dict[str, str], receiver: WebhookReceiver
) -> None:
    target = add(run, "--kind", "webhook", "--url", receiver.url)
    old = target["secret"]
    changed = as_json(run("target", "set", str(target["id"]), "--new-secret", "--json"))
    new = changed["new_secret"]
    assert new.startswith("whsec_") and new != old
    assert changed["secrets"] == {"secret": "whsec_… whsec_…"}  # both sign for now
    assert old not in json.dumps(changed)
    # A receiver that already switched to the new secret verifies.
    receiver.verifiers.append(StandardWebhook(new))
    sale(shop, auth, world, "order-1")
    ok(run("deliver"))
    assert (receiver.refusals, len(receiver.messages)) == ([], 1)
    # Then the old one is dropped.
    said = ok(run("target", "set", str(target["id"]), "--secret", new))
    assert new not in said
    [listed] = as_json(run("target", "list", "--json"))
    assert listed["secrets"] == {"secret": "whsec_…"}


# -- history ------------------------------------------------------------------------


def test_history_from_replays_older_rows(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    publisher_server: TunePostbackServer,
) -> None:
    old = sale(shop, auth, world, "order-1")
    since = (datetime.now(timezone.utc) + timedelta(seconds=1)).replace(microsecond=0)
    time.sleep(max(0.0, (since - datetime.now(timezone.utc)).total_seconds()) + 0.01)
    middle = sale(shop, auth, world, "order-2")
    from_now = add_postback(run, publisher_server, world)
    replayed = add_postback(run, publisher_server, world, "--history-from", "2020-01-01")
    exact = since.strftime("%Y-%m-%dT%H:%M:%S")
    from_then = add_postback(run, publisher_server, world, "--history-from", exact)
    new = sale(shop, auth, world, "order-3")
    ok(run("deliver"))
    assert sorted(statuses(world.storage, from_now)) == [new]
    assert sorted(statuses(world.storage, replayed)) == [old, middle, new]
    assert sorted(statuses(world.storage, from_then)) == [middle, new]

    webhook = ("--advertiser", "1", "--kind", "webhook", "--url", "http://127.0.0.1:9/h")
    said = ok(run("target", "add", *webhook, "--history-from", "2020-01-01"))
    assert "it gets the ledger rows made since 2020-01-01T00:00:00.000000Z." in said
    stderr = failed(run("target", "add", *webhook, "--history-from", "yesterday"), 2)
    assert "Invalid value for '--history-from'" in stderr
    stderr = failed(run("target", "add", *webhook, "--history-from", "2100-01-01"), 2)
    assert "2100-01-01T00:00:00.000000Z is still to come" in stderr


# -- --loop and SIGTERM --------------------------------------------------------------


def _start_loop(db_path: Path, *args: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "pixel_wsgi",
        "--storage",
        f"sqlite:///{db_path}",
        "deliver",
        "--loop",
        *args,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, KEY_ENV: SECRET},
    )


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_loop_finishes_the_request_in_flight_on_sigterm(
    run: Run, world: World, shop: TestApp, auth: dict[str, str], db_path: Path
) -> None:
    with RecordingServer() as server:
        target = add_postback(run, server, world)
        server.script(Reply(200, b"success=true;", delay=2.0))
        first = sale(shop, auth, world, "order-1")
        worker = _start_loop(db_path)
        try:
            _wait_for(lambda: len(server.received) == 1, "the request")
            worker.send_signal(signal.SIGTERM)  # mid-request: the server answers in 2 s
            stdout, stderr = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert worker.returncode == 0, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    assert statuses(world.storage, target) == {first: "delivered"}
    [attempt] = world.storage.delivery_attempts(target)
    assert attempt.outcome == "delivered"
    assert attempt.duration_ms >= 1500


def test_loop_keeps_delivering_until_sigint(
    run: Run,
    world: World,
    shop: TestApp,
    auth: dict[str, str],
    db_path: Path,
    publisher_server: TunePostbackServer,
) -> None:
    target = add_postback(run, publisher_server, world)
    worker = _start_loop(db_path, "--target", str(target))
    try:
        first = sale(shop, auth, world, "order-1")
        _wait_for(lambda: statuses(world.storage, target) == {first: "delivered"}, "the first row")
        second = sale(shop, auth, world, "order-2")
        _wait_for(lambda: statuses(world.storage, target).get(second) == "delivered", "the second")
        worker.send_signal(signal.SIGINT)  # Ctrl-C while idle: a clean stop too
        stdout, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert (worker.returncode, stdout) == (0, "")
    assert "Traceback" not in stderr
    assert list(publisher_server.counted) == [str(first), str(second)]


@pytest.mark.parametrize("kind", list(TargetKind))
def test_every_setting_and_secret_of_every_kind_has_an_option(kind: TargetKind) -> None:
    # Options are named after what the kind stores: --pixel-id is pixel_id.
    kind_type = target_type(kind)
    wanted = kind_type.required_settings | kind_type.optional_settings | kind_type.required_secrets
    for command in (target_add, target_set):
        assert wanted <= {param.name for param in command.params}, command.name
