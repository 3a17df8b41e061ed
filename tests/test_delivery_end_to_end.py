"""Delivery end to end, as a user drives it: six targets added with the real
``pixel-wsgi target add`` command lines, a visitor who clicks a tracking link and buys,
the advertiser's server correcting and then reversing the sale through the Conversion
Reporting API, and ``pixel-wsgi deliver`` run as cron runs it, against six local
platform servers at once (a publisher's TUNE postback endpoint, a Standard Webhooks
receiver, Meta's Conversions API, Google's OAuth token endpoint with the Google Ads
API, GA4's Measurement Protocol, Invoca's Signal API). Every server checks what it gets
as its platform documents; the test asserts exactly what each one received.

Google Ads takes a click only once it is 6 hours old and ``deliver`` runs on the real
clock, so the shop's clock (click, pixel, API reports) runs 7 hours behind it: well
within GA4's 72 hours and Meta's 7 days. The conversion's context (cookies, User-Agent,
page) outlives its delivery for GA4's refunds, 30 days; a worker pass on a moved clock
shows it forgotten then.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.settings import secret_keys

from .cli_helpers import Run, as_json, cli_runner, set_up
from .conftest import SECRET, FakeClock, basic_authorization, host_app
from .delivery_servers import TunePostbackServer, WebhookReceiver
from .google_invoca_servers import (
    GoogleAdsServer,
    InvocaServer,
    OAuthServer,
    google_ads_server,
    invoca_server,
    oauth_server,
)
from .meta_ga4_servers import Ga4Server, MetaServer

KEY_ENV = "PIXEL_WSGI_SECRET_KEY"
DELIVER = ("deliver", "--json")

# What the visitor's browser carries.
SUB1 = "spring post/1"  # a space and a slash: percent-encoded in the postback
SUB2 = "Top 10"  # given as aff_sub2, TUNE's name for sub2
GCLID = "Cj0KCQiA-ZWvBhD_ARIsAKbmM4yR2dUk3n7fQlFvU0Ja5vS-xY4RkzL9_wcB"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE"
FBP = "fb.1.1764071000000.1122334455"
GA_COOKIE = "GA1.2.1234567890.1764071000"
GA_CLIENT_ID = "1234567890.1764071000"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
THANKS = "https://shop.example/checkout/thanks?order=ORDER-E2E-1&email=mary%40example.com"
PAGE = "https://shop.example/checkout/thanks"  # the Referer without its query
EMAIL = "Mary.Smith@Example.com"  # lower-cased before hashing
ORDER = "ORDER-E2E-1"
CALL = "0B3C5D7E-0000F00D"  # the Invoca call's transaction id, in a custom field

# The platforms' accounts and credentials.
PIXEL_ID = "1234567890"
META_TOKEN = "EAABmetaAccessToken0123456789"
TEST_EVENT_CODE = "TEST4242"
CUSTOMER = "123-456-7890"
MANAGER = "9876543210"
CLIENT_ID = "1234-abc.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-clientSecret0123456789"
REFRESH_TOKEN = "1//refreshToken0123456789abcdef"
MEASUREMENT_ID = "G-E2E12345"
GA4_SECRET = "ga4ApiSecret0123456789"
INVOCA_TOKEN = "invocaApiToken0123456789"
POSTBACK_QUERY = (
    "/aff_lsr?transaction_id={transaction_id}&adv_sub={reference_id}&amount={sale_amount}"
    "&currency={sale_currency}&payout={payout}&offer_id={campaign_id}&aff_id={publisher_id}"
    "&aff_sub={sub1}&aff_sub2={sub2}&aff_sub3={sub3}&type={transaction_type}"
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Platforms:
    """The six local servers (seven with Google's token endpoint), all running."""

    postback: TunePostbackServer
    webhook: WebhookReceiver
    meta: MetaServer
    oauth: OAuthServer
    google: GoogleAdsServer
    ga4: Ga4Server
    invoca: InvocaServer

    def counts(self) -> dict[str, int]:
        """How many requests each server has received."""
        return {
            name: len(getattr(self, name).received)
            for name in ("postback", "webhook", "meta", "oauth", "google", "ga4", "invoca")
        }


@pytest.fixture
def platforms() -> Iterator[Platforms]:
    with ExitStack() as stack:
        meta = MetaServer(PIXEL_ID, META_TOKEN)
        ga4 = Ga4Server(MEASUREMENT_ID, GA4_SECRET)
        stack.enter_context(meta.running())
        stack.enter_context(ga4.running())
        oauth = stack.enter_context(oauth_server(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN))
        yield Platforms(
            postback=stack.enter_context(TunePostbackServer()),
            webhook=stack.enter_context(WebhookReceiver([])),
            meta=meta,
            oauth=oauth,
            google=stack.enter_context(
                google_ads_server(oauth, CUSTOMER.replace("-", ""), login_customer_id=MANAGER)
            ),
            ga4=ga4,
            invoca=stack.enter_context(invoca_server(INVOCA_TOKEN, {CALL})),
        )


def add_targets(run: Run, servers: Platforms) -> dict[str, dict[str, Any]]:
    """The six targets of advertiser 1, with the issue's command lines, by kind."""
    command_lines = {
        "postback": (
            "--kind", "postback", "--publisher", "1",
            "--url", servers.postback.url + POSTBACK_QUERY,
        ),
        "webhook": ("--kind", "webhook", "--url", servers.webhook.url + "/hooks/pixel"),
        "meta_capi": (
            "--kind", "meta_capi", "--pixel-id", PIXEL_ID, "--access-token", META_TOKEN,
            "--test-event-code", TEST_EVENT_CODE, "--endpoint", servers.meta.base_url,
        ),
        "google_ads": (
            "--kind", "google_ads", "--customer-id", CUSTOMER, "--conversion-action", "555",
            "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
            "--refresh-token", REFRESH_TOKEN, "--login-customer-id", MANAGER,
            "--endpoint", servers.google.base, "--token-endpoint", servers.oauth.base,
        ),
        "ga4": (
            "--kind", "ga4", "--measurement-id", MEASUREMENT_ID, "--api-secret", GA4_SECRET,
            "--endpoint", servers.ga4.base_url,
        ),
        "invoca_signal": (
            "--kind", "invoca_signal", "--api-token", INVOCA_TOKEN, "--signal-name", "Sale",
            "--call-id-field", "invoca_call_id", "--endpoint", servers.invoca.base,
        ),
    }  # fmt: skip
    added = {}
    for kind, args in command_lines.items():
        document = as_json(run("target", "add", "--advertiser", "1", *args, "--json"))
        assert document["kind"] == kind
        added[kind] = document
    return added


def deliver(db_path: Path) -> dict[str, Any]:
    """``pixel-wsgi deliver --json``, the real command in its own process, as cron runs
    it: it exits 0; what it printed."""
    finished = subprocess.run(
        [sys.executable, "-m", "pixel_wsgi", "--storage", f"sqlite:///{db_path}", *DELIVER],
        capture_output=True,
        text=True,
        env={**os.environ, KEY_ENV: SECRET},
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    summary: dict[str, Any] = json.loads(finished.stdout)
    return summary


def google_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")


CLICKED = (datetime.now(timezone.utc) - timedelta(hours=7)).replace(microsecond=0)
SOLD = CLICKED + timedelta(minutes=3)
CORRECTED = SOLD + timedelta(hours=1)
REVERSED = SOLD + timedelta(hours=2)


@dataclass
class Shop:
    """The advertiser's side: its store, the CLI on it, its web shop (on a clock 7 hours
    behind the real one) and its server's API credential."""

    db_path: Path
    run: Run
    storage: SQLiteStorage
    clock: FakeClock
    app: TestApp
    api_auth: dict[str, str]
    #: the targets' ids, by kind
    ids: dict[str, int]

    def visit(self) -> None:
        """A visitor clicks the tracking link (sub ids, click ids), then buys: the
        conversion pixel, with the trackers' cookies, a User-Agent and a Referer."""
        self.clock.now = CLICKED
        landing = self.app.get(
            f"/pixels/click/1?sub1={quote(SUB1)}&aff_sub2={quote(SUB2)}"
            f"&gclid={GCLID}&fbclid={FBCLID}&utm_source=blog",
            extra_environ={"REMOTE_ADDR": "198.51.100.9"},
        )
        assert landing.status_int == 302
        attribution = "; ".join(f"{c.name}={c.value}" for c in self.app.cookiejar)
        self.clock.now = SOLD
        query = (
            f"sale_amount=120.00&sale_currency=USD&reference_id={ORDER}"
            "&sku_list[]=SKU-A&sku_list[]=SKU-B&quantity_list[]=2&quantity_list[]=1"
            f"&invoca_call_id={CALL}&email_address={quote(EMAIL)}"
        )
        pixel = self.app.get(
            f"/pixels/conversion/1.gif?{query}",
            headers={
                "Cookie": f"{attribution}; _fbp={FBP}; _ga={GA_COOKIE}",
                "User-Agent": BROWSER,
                "Referer": THANKS,
            },
            extra_environ={"REMOTE_ADDR": "203.0.113.77"},
        )
        assert pixel.content_type == "image/gif"
        assert list(self.storage.rejections()) == []

    def correct_and_reverse(self) -> None:
        """The advertiser's server corrects the sale to 80.00, then reverses it, through
        the Conversion Reporting API."""
        self.clock.now = CORRECTED
        correction = self.app.post(
            "/pixels/api/conversions",
            {"reference_id": ORDER, "sale_amount": "80.00"},
            headers=self.api_auth,
        ).json["transaction"]
        self.clock.now = REVERSED
        reversal = self.app.post(
            "/pixels/api/conversions",
            {"reference_id": ORDER, "reversal_reason": "cancelled"},
            headers=self.api_auth,
        ).json["transaction"]
        assert (correction["transaction_id"], reversal["transaction_id"]) == (2, 3)


@pytest.fixture
def shop(tmp_path: Path, platforms: Platforms, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    """A store made with the CLI: its catalog (advertiser 1, publisher 1, campaign 1 at
    10 percent, link 1), an API credential and the six targets, pointed at
    :func:`platforms`; ``PIXEL_WSGI_SECRET_KEY`` set."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    db_path = tmp_path / "pixel.db"
    run = cli_runner(f"sqlite:///{db_path}")
    migrated = run("migrate")
    assert migrated.exit_code == 0, migrated.output
    set_up(run)
    credential = as_json(run("credential", "add", "--advertiser", "1", "--json"))
    targets = add_targets(run, platforms)
    ids = {kind: document["id"] for kind, document in targets.items()}
    assert list(ids.values()) == [1, 2, 3, 4, 5, 6]
    platforms.webhook.verifiers.append(StandardWebhook(targets["webhook"]["secret"]))
    storage = SQLiteStorage(db_path)
    clock = FakeClock()
    # Made after the targets: the pixel knows at once that Meta and GA4 need contexts.
    app = TestApp(PixelMiddleware(host_app, storage, secret_key=SECRET, clock=clock))
    yield Shop(
        db_path,
        run,
        storage,
        clock,
        app,
        basic_authorization(1, credential["secret"]),
        ids,
    )
    storage.close()


def test_a_sale_its_correction_and_its_reversal_reach_every_platform_exactly(
    shop: Shop, platforms: Platforms
) -> None:
    # -- 1. the store, its catalog, a credential, six targets by the CLI: the fixture --
    run, storage, ids, db_path = shop.run, shop.storage, shop.ids, shop.db_path
    # -- 2. the visitor clicks and buys; 3. the advertiser's server corrects, reverses --
    shop.visit()
    shop.correct_and_reverse()

    rows = {row.transaction_id: row for row in storage.transactions()}
    assert sorted(rows) == [1, 2, 3]
    assert [row.transaction_type.value for row in rows.values()] == [
        "conversion",
        "correction",
        "reversal",
    ]
    assert [row.created_at for row in rows.values()] == [
        moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z") for moment in (SOLD, CORRECTED, REVERSED)
    ]
    assert rows[1].custom_data == {"invoca_call_id": CALL}
    assert [(row.sale_amount, row.payout) for row in rows.values()] == [
        (Decimal("120.00"), Decimal("12.00")),
        (Decimal("80.00"), Decimal("8.00")),
        (Decimal("0.00"), Decimal("0.00")),
    ]
    # Kept with the conversion until delivery needs it no more.
    [context] = storage.delivery_contexts([1]).values()
    assert context.click is not None
    assert context.click.sub_ids == {"sub1": SUB1, "sub2": SUB2}
    assert context.click.click_ids == {"gclid": GCLID, "fbclid": FBCLID}
    clicked_ms = int(CLICKED.timestamp() * 1000)
    assert context.click.clicked_at_ms == clicked_ms
    assert context.conversion is not None
    assert (context.conversion.fbp, context.conversion.ga_client_id) == (FBP, GA_CLIENT_ID)
    assert (context.conversion.user_agent, context.conversion.page_url) == (BROWSER, PAGE)
    assert context.personal == {"email_address": EMAIL}
    assert platforms.counts() == dict.fromkeys(platforms.counts(), 0)  # nothing sent yet

    # -- 4. pixel-wsgi deliver, once (after a dry run, which sends nothing) -----------
    planned = [
        (each["target_id"], each["transaction_ids"])
        for each in as_json(run("deliver", "--dry-run", "--json"))
    ]
    assert platforms.counts() == dict.fromkeys(platforms.counts(), 0)
    summary = deliver(db_path)
    assert summary == {
        # postback 3, webhook 3, Meta 1, Google Ads 3, GA4 2, Invoca 3; the OAuth
        # exchange is not a delivery request
        "requests": 15,
        "rows": {"delivered": 15, "unsupported": 3},
        "pending": 0,
        "waiting_targets": [],
        "auth_failed_targets": [],
    }

    # The dry run showed the very requests deliver then sent (a chain's rows one by one).
    sent = [
        (target_id, list(attempt.transaction_ids))
        for target_id in ids.values()
        for attempt in reversed(storage.delivery_attempts(target_id))
    ]
    assert planned == sent
    assert [attempt.outcome for attempt in storage.delivery_attempts(ids["google_ads"])] == [
        "delivered"
    ] * 3
    # Every Meta and GA4 row settled, yet the cookies, User-Agent and page are kept:
    # GA4 would need the client id for a refund (see the last step).
    contexts = storage.delivery_contexts([1, 2, 3])
    assert [contexts[tid].conversion for tid in (1, 2, 3)] == [context.conversion] * 3

    # -- 5. exactly what each platform received -----------------------------------------
    # The publisher's postback: one GET per row, sub ids from the click, encoded.
    expected_postbacks = [
        {
            "transaction_id": str(transaction_id),
            "adv_sub": ORDER,
            "amount": amount,
            "currency": "USD",
            "payout": payout,
            "offer_id": "1",
            "aff_id": "1",
            "aff_sub": SUB1,
            "aff_sub2": SUB2,
            "aff_sub3": "",
            "type": kind,
        }
        for transaction_id, amount, payout, kind in (
            (1, "120.00", "12.00", "conversion"),
            (2, "80.00", "8.00", "correction"),
            (3, "0.00", "0.00", "reversal"),
        )
    ]
    assert [(r.method, r.path) for r in platforms.postback.received] == [("GET", "/aff_lsr")] * 3
    assert [r.query for r in platforms.postback.received] == expected_postbacks
    assert all(
        "&aff_sub=spring%20post%2F1&aff_sub2=Top%2010&" in r.raw_query
        for r in platforms.postback.received
    )
    assert list(platforms.postback.counted) == ["1", "2", "3"]

    # The webhook: three signed messages, in order, each verified and kept once.
    assert platforms.webhook.refusals == []
    assert [r.headers["webhook-id"] for r in platforms.webhook.received] == [
        "msg_1",
        "msg_2",
        "msg_3",
    ]
    assert [m.deliveries for m in platforms.webhook.messages.values()] == [1, 1, 1]
    assert list(platforms.webhook.payloads()) == [
        {"type": kind, "timestamp": row.created_at, "data": json.loads(json.dumps(row.as_dict()))}
        for kind, row in zip(
            ("conversion.created", "conversion.corrected", "conversion.reversed"),
            rows.values(),
            strict=True,
        )
    ]

    # Meta: one Purchase, deduplicable with the browser's pixel by the order id.
    [meta_request] = platforms.meta.received
    assert meta_request.problems == []
    assert meta_request.query == {"access_token": [META_TOKEN]}
    assert meta_request.json() == {
        "data": [
            {
                "event_name": "Purchase",
                "event_time": int(SOLD.timestamp()),
                "event_id": ORDER,
                "action_source": "website",
                "event_source_url": PAGE,
                "user_data": {
                    "client_user_agent": BROWSER,
                    "fbc": f"fb.1.{clicked_ms}.{FBCLID}",
                    "fbp": FBP,
                    "em": [sha256("mary.smith@example.com")],
                },
                "custom_data": {
                    "value": Decimal("120.00"),
                    "currency": "USD",
                    "order_id": ORDER,
                    "contents": [{"id": "SKU-A", "quantity": 2}, {"id": "SKU-B", "quantity": 1}],
                },
            }
        ],
        "test_event_code": TEST_EVENT_CODE,
    }
    assert list(platforms.meta.events) == [("Purchase", ORDER)]

    # GA4: the purchase, then a refund of it; the correction cannot be expressed.
    assert [r.problems for r in platforms.ga4.received] == [[], []]
    assert [(r.path, r.query) for r in platforms.ga4.received] == [
        ("/mp/collect", {"measurement_id": [MEASUREMENT_ID], "api_secret": [GA4_SECRET]})
    ] * 2
    hashed_email = {"sha256_email_address": [sha256("mary.smith@example.com")]}
    assert [r.json() for r in platforms.ga4.received] == [
        {
            "client_id": GA_CLIENT_ID,
            "timestamp_micros": int(SOLD.timestamp()) * 1_000_000,
            "events": [
                {
                    "name": "purchase",
                    "params": {
                        "transaction_id": ORDER,
                        "value": Decimal("120.00"),
                        "currency": "USD",
                        "items": [
                            {"item_id": "SKU-A", "quantity": 2},
                            {"item_id": "SKU-B", "quantity": 1},
                        ],
                    },
                }
            ],
            "user_data": hashed_email,
            "user_agent": BROWSER,
        },
        {
            "client_id": GA_CLIENT_ID,
            "timestamp_micros": int(REVERSED.timestamp()) * 1_000_000,
            "events": [
                {
                    "name": "refund",
                    "params": {
                        "transaction_id": ORDER,
                        "value": Decimal("120.00"),
                        "currency": "USD",
                    },
                }
            ],
            "user_data": hashed_email,
            "user_agent": BROWSER,
        },
    ]

    # Google: the refresh token exchanged once; the click conversion, then a
    # RESTATEMENT and a RETRACTION of it, with increasing adjustment times.
    [token_request] = platforms.oauth.received
    assert token_request.form() == {
        "grant_type": ["refresh_token"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
        "refresh_token": [REFRESH_TOKEN],
    }
    assert platforms.oauth.issued == ["ya29.local-1"]
    # A row of a chain waits until the one before it has settled: one request each.
    clicks, restatement, retraction = platforms.google.received
    action = "customers/1234567890/conversionActions/555"
    for request in (clicks, restatement, retraction):
        assert request.headers["authorization"] == "Bearer ya29.local-1"
        assert request.headers["login-customer-id"] == MANAGER
    assert clicks.path == "/v26/customers/1234567890:uploadClickConversions"
    assert clicks.json() == {
        "conversions": [
            {
                "gclid": GCLID,
                "conversionAction": action,
                "conversionDateTime": google_time(SOLD),
                "conversionValue": Decimal("120.00"),
                "currencyCode": "USD",
                "orderId": ORDER,
            }
        ],
        "partialFailure": True,
        "validateOnly": False,
    }
    adjusted = "/v26/customers/1234567890:uploadConversionAdjustments"
    assert (restatement.path, retraction.path) == (adjusted, adjusted)
    assert restatement.json() == {
        "conversionAdjustments": [
            {
                "conversionAction": action,
                "orderId": ORDER,
                "adjustmentDateTime": google_time(CORRECTED),
                "adjustmentType": "RESTATEMENT",
                "restatementValue": {"adjustedValue": Decimal("80.00"), "currencyCode": "USD"},
            }
        ],
        "partialFailure": True,
        "validateOnly": False,
    }
    assert retraction.json() == {
        "conversionAdjustments": [
            {
                "conversionAction": action,
                "orderId": ORDER,
                "adjustmentDateTime": google_time(REVERSED),
                "adjustmentType": "RETRACTION",
            }
        ],
        "partialFailure": True,
        "validateOnly": False,
    }
    [held] = platforms.google.conversions.values()
    assert (held.click, held.value, held.retracted) == (("gclid", GCLID), Decimal("80.00"), True)
    assert held.conversion_time < held.adjustments[0] < held.adjustments[1]

    # Invoca: the signal on the call, re-posted with the corrected revenue, then "not
    # met" for the reversal (the target's reading of value=false; forwarding.md §1).
    invoca_signals = [
        {
            "search": {"transaction_id": CALL},
            "signals": [
                {
                    "name": "Sale",
                    "partner_unique_id": ORDER,
                    "occurred_at_time": SOLD.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                    "revenue": revenue,
                    "value": value,
                }
            ],
        }
        for revenue, value in (("120.00", "true"), ("80.00", "true"), ("0.00", "false"))
    ]
    assert [r.json() for r in platforms.invoca.received] == invoca_signals
    assert {r.headers["authorization"] for r in platforms.invoca.received} == {INVOCA_TOKEN}
    assert {r.path for r in platforms.invoca.received} == {"/api/2018-02-01/transactions.json"}
    [signal] = platforms.invoca.signals.values()
    assert (signal.revenue, signal.value) == ("0.00", "false")
    assert signal.corrects_transaction_id == "00000000-00000002"  # updated twice

    # Where each row stands, as `pixel-wsgi deliveries --target ID --json` says.
    def standing(target_id: int) -> list[tuple[int, str]]:
        listed = as_json(run("deliveries", "--target", str(target_id), "--json"))
        return [(d["transaction_id"], d["status"]) for d in listed]

    every_row_delivered = [(1, "delivered"), (2, "delivered"), (3, "delivered")]
    for kind in ("postback", "webhook", "google_ads", "invoca_signal"):
        assert standing(ids[kind]) == every_row_delivered, kind
    assert standing(ids["meta_capi"]) == [(1, "delivered"), (2, "unsupported"), (3, "unsupported")]
    assert standing(ids["ga4"]) == [(1, "delivered"), (2, "unsupported"), (3, "delivered")]
    meta_rows = as_json(run("deliveries", "--target", str(ids["meta_capi"]), "--json"))
    no_way = "Meta's Conversions API has no way to correct or retract an event"
    assert [d["detail"] for d in meta_rows[1:]] == [
        f"{no_way} (this row is a correction)",
        f"{no_way} (this row is a reversal)",
    ]
    ga4_rows = as_json(run("deliveries", "--target", str(ids["ga4"]), "--json"))
    assert ga4_rows[1]["detail"].startswith("GA4 keeps the first purchase of a transaction_id")

    # -- 6. deliver again: nothing more is sent anywhere; every row stays settled -----
    before = platforms.counts()
    assert deliver(db_path) == {
        "requests": 0,
        "rows": {},
        "pending": 0,
        "waiting_targets": [],
        "auth_failed_targets": [],
    }
    assert platforms.counts() == before
    assert {d["status"] for d in as_json(run("deliveries", "--json"))} == {
        "delivered",
        "unsupported",
    }
    assert as_json(run("deliveries", "--status", "pending", "--json")) == []

    # -- 7. the context is forgotten once GA4 keeps it no more: 30 days after the sale --
    # (a worker pass on a clock moved so far; nothing is due, nothing is sent)
    box = SecretBox(secret_keys(SECRET))
    for days, kept in ((29, context.conversion), (31, None)):
        moved = SOLD + timedelta(days=days)
        report = Worker(storage, box, clock=lambda moved=moved: moved).run_once()
        assert (report.requests, report.settled) == (0, {})
        contexts = storage.delivery_contexts([1, 2, 3])
        assert [contexts[tid].conversion for tid in (1, 2, 3)] == [kept] * 3, days
    # The click (sub ids, click ids) and the buyer's personal data stay.
    assert [contexts[tid].click for tid in (1, 2, 3)] == [context.click] * 3
    assert contexts[1].personal == {"email_address": EMAIL}
    assert platforms.counts() == before


def test_a_correction_and_a_reversal_made_after_the_sale_was_delivered(
    shop: Shop, platforms: Platforms
) -> None:
    # As cron runs it: deliver sends the sale before the advertiser's server corrects
    # and reverses it, and the next deliver sends those.
    shop.visit()
    first = deliver(shop.db_path)
    assert (first["requests"], first["rows"], first["pending"]) == (6, {"delivered": 6}, 0)
    shop.correct_and_reverse()
    second = deliver(shop.db_path)
    assert second == {
        # postback 2, webhook 2, Google Ads 2, GA4 1 (the refund), Invoca 2
        "requests": 9,
        "rows": {"delivered": 9, "unsupported": 3},
        "pending": 0,
        "waiting_targets": [],
        "auth_failed_targets": [],
    }

    assert [r.query["type"] for r in platforms.postback.received] == [
        "conversion",
        "correction",
        "reversal",
    ]
    assert [p["type"] for p in platforms.webhook.payloads()] == [
        "conversion.created",
        "conversion.corrected",
        "conversion.reversed",
    ]
    assert len(platforms.meta.received) == 1
    # GA4's refund still finds the visitor's client id: the context was kept for it.
    purchase, refund = platforms.ga4.received
    assert (purchase.problems, refund.problems) == ([], [])
    assert refund.json()["client_id"] == GA_CLIENT_ID
    assert refund.json()["events"] == [
        {
            "name": "refund",
            "params": {"transaction_id": ORDER, "value": Decimal("120.00"), "currency": "USD"},
        }
    ]
    # A new deliver process exchanges the refresh token again.
    assert platforms.oauth.issued == ["ya29.local-1", "ya29.local-2"]
    clicks, restatement, retraction = platforms.google.received
    assert [row["orderId"] for row in clicks.json()["conversions"]] == [ORDER]
    assert [
        (row["adjustmentType"], row["adjustmentDateTime"])
        for request in (restatement, retraction)
        for row in request.json()["conversionAdjustments"]
    ] == [("RESTATEMENT", google_time(CORRECTED)), ("RETRACTION", google_time(REVERSED))]
    [held] = platforms.google.conversions.values()
    assert (held.value, held.retracted) == (Decimal("80.00"), True)
    assert [
        (r.json()["signals"][0]["revenue"], r.json()["signals"][0]["value"])
        for r in platforms.invoca.received
    ] == [("120.00", "true"), ("80.00", "true"), ("0.00", "false")]

    def statuses(kind: str) -> list[str]:
        return [d.status.value for d in shop.storage.deliveries(shop.ids[kind])]

    for kind in ("postback", "webhook", "google_ads", "invoca_signal"):
        assert statuses(kind) == ["delivered"] * 3, kind
    assert statuses("meta_capi") == ["delivered", "unsupported", "unsupported"]
    assert statuses("ga4") == ["delivered", "unsupported", "delivered"]
