"""Signed webhooks: real ledger rows POSTed over loopback to a Standard Webhooks receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from webtest import TestApp

from pixel_wsgi.clock import utc_now
from pixel_wsgi.delivery.model import (
    DeliveryItem,
    HttpRequest,
    OutcomeKind,
    Target,
    TargetKind,
    TargetStatus,
)
from pixel_wsgi.delivery.targets import target_type
from pixel_wsgi.delivery.targets.webhook import Webhook, sign
from pixel_wsgi.errors import ConfigurationError

from .conftest import World
from .delivery_servers import (
    RecordingServer,
    Reply,
    WebhookReceiver,
    deliver,
    ledger_items,
    transaction,
)

#: Secrets as ``target add`` makes them: ``whsec_`` + base64 of random bytes (fixed here).
OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW = "whsec_" + base64.b64encode(bytes(range(100, 124))).decode()
OTHER = "whsec_" + base64.b64encode(b"\xff" * 64).decode()


def webhook(url: str, secret: str = OLD) -> Webhook:
    """A webhook target as ``target add`` makes it: settings checked first."""
    settings, secrets = {"url": url}, {"secret": secret}
    kind = target_type(TargetKind.WEBHOOK)
    kind.check_settings(settings, secrets)
    made = kind(
        Target(1, 1, TargetKind.WEBHOOK, None, settings, secrets, TargetStatus.ACTIVE, None, "")
    )
    assert isinstance(made, Webhook)
    return made


def report(app: TestApp, auth: dict[str, str], fields: dict[str, str]) -> None:
    app.post("/pixels/api/conversions", fields, headers=auth)


def conversions(app: TestApp, auth: dict[str, str], world: World) -> list[DeliveryItem]:
    """A conversion, its correction and its reversal, through the real API and ledger."""
    report(
        app,
        auth,
        {
            "reference_id": "order-1",
            "sale_amount": "24.50",
            "sale_currency": "EUR",
            "advertiser_campaign_id": str(world.percent_campaign_id),
            "affiliate_id": str(world.publisher_id),
            "sku_list": "café",
        },
    )
    report(app, auth, {"reference_id": "order-1", "sale_amount": "20.00"})
    report(app, auth, {"reference_id": "order-1", "reversal_reason": "order cancelled"})
    return ledger_items(world.storage)


def verify_by_hand(secret: str, headers: dict[str, str], body: bytes, now: int) -> bool:
    """What a receiver without the library does: recompute, compare, check the clock."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    listed = [entry.split(",", 1) for entry in headers["webhook-signature"].split(" ")]
    fresh = abs(now - int(headers["webhook-timestamp"])) <= 300
    return fresh and any(
        version == "v1" and hmac.compare_digest(value, expected) for version, value in listed
    )


# -- what the receiver gets -------------------------------------------------------------


def test_each_row_arrives_signed_and_verifies(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    items = conversions(app, auth, world)
    now = utc_now()
    with WebhookReceiver([OLD]) as receiver:
        target = webhook(receiver.url + "/hooks/pixel")
        outcomes = [deliver(target, each, now)[1] for each in items]
    assert [(o.kind, o.detail) for o in outcomes] == [(OutcomeKind.DELIVERED, "HTTP 204")] * 3
    assert receiver.refusals == []
    rows = [each.row for each in items]
    assert [json.loads(r.body) for r in receiver.received] == [
        {"type": kind, "timestamp": row.created_at, "data": row.as_dict()}
        for kind, row in zip(
            ["conversion.created", "conversion.corrected", "conversion.reversed"], rows, strict=True
        )
    ]
    assert list(receiver.payloads()) == [json.loads(r.body) for r in receiver.received]
    first = receiver.received[0]
    assert (first.method, first.path, first.raw_query) == ("POST", "/hooks/pixel", "")
    data = json.loads(first.body)["data"]
    assert (data["sale_amount"], data["payout"], data["sku_list"]) == ("24.50", "2.45", ["café"])
    assert "café".encode() in first.body  # UTF-8 as it is, not \u escapes
    timestamp = str(int(now.timestamp()))
    for row, received in zip(rows, receiver.received, strict=True):
        headers = received.headers
        assert {name: headers[name] for name in headers if name.startswith("webhook-")} == {
            "webhook-id": f"msg_{row.transaction_id}",
            "webhook-timestamp": timestamp,
            "webhook-signature": headers["webhook-signature"],
        }
        assert headers["content-type"] == "application/json"
        assert headers["content-length"] == str(len(received.body))
        assert headers["webhook-signature"].startswith("v1,")
        assert verify_by_hand(OLD, headers, received.body, int(now.timestamp()))
        assert not verify_by_hand(OTHER, headers, received.body, int(now.timestamp()))
        assert not verify_by_hand(OLD, headers, received.body + b" ", int(now.timestamp()))


def test_sign_matches_the_specifications_example() -> None:
    # The example of the Standard Webhooks / Svix documentation ("verifying manually").
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign([key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("ours", "theirs", "kind"),
    [
        pytest.param(f"{NEW} {OLD}", [OLD], OutcomeKind.DELIVERED, id="receiver-still-on-old"),
        pytest.param(f"{NEW} {OLD}", [NEW], OutcomeKind.DELIVERED, id="receiver-moved-to-new"),
        pytest.param(NEW, [OLD], OutcomeKind.AUTH, id="old-dropped-too-soon"),
        pytest.param(f"{NEW} {OLD}", [OTHER], OutcomeKind.AUTH, id="neither"),
    ],
)
def test_rotation_signs_with_every_secret(ours: str, theirs: list[str], kind: OutcomeKind) -> None:
    row = ledger_row()
    with WebhookReceiver(theirs) as receiver:
        _, outcome = deliver(webhook(receiver.url, ours), row, utc_now())
    assert outcome.kind is kind
    [received] = receiver.received
    entries = received.headers["webhook-signature"].split(" ")
    assert len(entries) == len(ours.split())
    assert all(entry.startswith("v1,") for entry in entries)
    for secret, entry in zip(ours.split(), entries, strict=True):
        # Each entry is one secret's signature, in the order the secrets are listed.
        one = {**received.headers, "webhook-signature": entry}
        assert StandardWebhook(secret).verify(received.body, one) == json.loads(received.body)
    if kind is OutcomeKind.AUTH:
        assert receiver.refusals == ["No matching signature found"]


def ledger_row(transaction_id: int = 5) -> DeliveryItem:
    """A row as the ledger stores it, for what needs no store."""
    row = transaction(transaction_id=transaction_id, original_transaction_id=transaction_id)
    return DeliveryItem(row, row)


@pytest.mark.parametrize(
    ("age", "verifies"),
    [
        pytest.param(timedelta(0), True, id="now"),
        pytest.param(timedelta(minutes=4, seconds=50), True, id="inside-5-minutes"),
        pytest.param(timedelta(minutes=5, seconds=10), False, id="outside-5-minutes"),
        pytest.param(-timedelta(minutes=5, seconds=10), False, id="from-the-future"),
    ],
)
def test_the_timestamp_is_the_attempts_and_receivers_bound_it(
    age: timedelta, verifies: bool
) -> None:
    now = utc_now()
    [request] = webhook("http://127.0.0.1:9/", OLD).requests([ledger_row()], now - age)
    headers = dict(request.headers)
    assert headers["webhook-timestamp"] == str(int((now - age).timestamp()))
    assert verify_by_hand(OLD, headers, request.body, int(now.timestamp())) is verifies
    library = StandardWebhook(OLD)
    if verifies:
        library.verify(request.body, headers)
    else:
        with pytest.raises(WebhookVerificationError, match="Message timestamp too"):
            library.verify(request.body, headers)


def test_a_retry_keeps_the_id_so_the_receiver_counts_one(
    app: TestApp, auth: dict[str, str], world: World
) -> None:
    [conversion, *_] = conversions(app, auth, world)
    first_try = utc_now() - timedelta(seconds=30)
    with WebhookReceiver([OLD]) as receiver:
        target = webhook(receiver.url + "/hooks", OLD)
        # The receiver takes the first attempt in, but answers after our timeout.
        receiver.script(Reply(None, delay=3.0))
        _, lost = deliver(target, conversion, first_try, timeout=0.3)
        _, retried = deliver(target, replace(conversion, attempts=1), utc_now())
    assert (lost.kind, retried.kind) == (OutcomeKind.RETRY, OutcomeKind.DELIVERED)
    assert lost.detail == "no answer: TimeoutError: timed out"
    first, second = receiver.received
    assert (
        first.headers["webhook-id"]
        == second.headers["webhook-id"]
        == (f"msg_{conversion.row.transaction_id}")
    )
    assert first.body == second.body
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    [message] = receiver.messages.values()
    assert message.deliveries == 2


def test_the_same_row_always_makes_the_same_request() -> None:
    target = webhook("https://hooks.example/in", f"{NEW} {OLD}")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    once, again = (target.requests([ledger_row()], now)[0] for _ in range(2))
    assert once == again
    [a, b] = target.requests([ledger_row(5), ledger_row(6)], now)
    assert (a.transaction_ids, b.transaction_ids) == ((5,), (6,))
    assert dict(a.headers)["webhook-id"] == "msg_5"
    assert dict(b.headers)["webhook-id"] == "msg_6"


# -- what the receiver's answer means ---------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "detail", "retry_after"),
    [
        pytest.param(Reply(200, b"ok"), OutcomeKind.DELIVERED, "HTTP 200", None, id="200"),
        pytest.param(Reply(202), OutcomeKind.DELIVERED, "HTTP 202", None, id="202"),
        pytest.param(Reply(204), OutcomeKind.DELIVERED, "HTTP 204", None, id="204"),
        pytest.param(
            Reply(410, b"endpoint removed"),
            OutcomeKind.PERMANENT,
            "HTTP 410 Gone: stop sending: endpoint removed",
            None,
            id="410-stop",
        ),
        pytest.param(Reply(401), OutcomeKind.AUTH, "HTTP 401", None, id="401"),
        pytest.param(Reply(403), OutcomeKind.AUTH, "HTTP 403", None, id="403"),
        pytest.param(Reply(400, b"bad"), OutcomeKind.PERMANENT, "HTTP 400: bad", None, id="400"),
        pytest.param(Reply(404), OutcomeKind.PERMANENT, "HTTP 404", None, id="404"),
        pytest.param(Reply(413), OutcomeKind.PERMANENT, "HTTP 413", None, id="413"),
        pytest.param(Reply(422), OutcomeKind.PERMANENT, "HTTP 422", None, id="422"),
        pytest.param(Reply(409), OutcomeKind.RETRY, "HTTP 409", None, id="409-other-4xx"),
        pytest.param(Reply(408), OutcomeKind.RETRY, "HTTP 408", None, id="408"),
        pytest.param(
            Reply(429, b"", (("Retry-After", "17"),)),
            OutcomeKind.RETRY,
            "HTTP 429",
            17.0,
            id="429-retry-after",
        ),
        pytest.param(
            Reply(503, b"", (("Retry-After", "soon"),)),
            OutcomeKind.RETRY,
            "HTTP 503",
            None,
            id="503-unreadable-retry-after",
        ),
        pytest.param(Reply(500, b"boom"), OutcomeKind.RETRY, "HTTP 500: boom", None, id="500"),
        pytest.param(
            Reply(301, b"", (("Location", "https://elsewhere.example/"),)),
            OutcomeKind.RETRY,
            "HTTP 301",
            None,
            id="301-not-followed",
        ),
        pytest.param(Reply(307), OutcomeKind.RETRY, "HTTP 307", None, id="307-not-followed"),
    ],
)
def test_answers(reply: Reply, kind: OutcomeKind, detail: str, retry_after: float | None) -> None:
    with RecordingServer() as server:
        server.script(reply)
        _, outcome = deliver(webhook(server.url + "/in"), ledger_row(), utc_now())
    assert (outcome.kind, outcome.detail, outcome.retry_after) == (kind, detail, retry_after)
    assert [r.path for r in server.received] == ["/in"]


def test_no_receiver_is_retried() -> None:
    with RecordingServer() as server:
        url = server.url
    _, outcome = deliver(webhook(url), ledger_row(), utc_now())
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.detail.startswith("no answer: ConnectionRefusedError")


# -- settings and the attempt log -------------------------------------------------------


def secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(b"k" * size).decode()


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        pytest.param(
            {"url": "https://h.example/"}, {}, "a webhook target needs secret", id="no-secret"
        ),
        pytest.param({}, {"secret": OLD}, "a webhook target needs url", id="no-url"),
        pytest.param(
            {"url": "ftp://h.example/"},
            {"secret": OLD},
            "url of a webhook target must be an http(s) URL with a host, got 'ftp://h.example/'",
            id="not-http",
        ),
        pytest.param(
            {"url": "https://h.example/", "method": "PUT"},
            {"secret": OLD},
            "a webhook target takes no method",
            id="unknown-setting",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            "the secret of a webhook target must start with whsec_",
            id="no-prefix",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": f"{OLD} c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            "secret 2 of 2 of a webhook target must start with whsec_",
            id="second-no-prefix",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": "whsec_****"},
            "the secret of a webhook target must be whsec_ followed by base64",
            id="not-base64",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": secret_of(23)},
            "the secret of a webhook target must hold 24 to 64 bytes, it holds 23",
            id="too-short",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": f"{OLD} {secret_of(65)}"},
            "secret 2 of 2 of a webhook target must hold 24 to 64 bytes, it holds 65",
            id="rotated-too-long",
        ),
        pytest.param(
            {"url": "https://h.example/"},
            {"secret": "  "},
            "secret of a webhook target must not be empty",
            id="blank",
        ),
    ],
)
def test_check_settings_refuses(
    settings: dict[str, str], secrets: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Webhook.check_settings(settings, secrets)
    assert message in str(refused.value)
    for secret in secrets.values():
        if secret.strip():
            assert secret.split()[-1] not in str(refused.value)  # never quoted


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(secret_of(24), id="24-bytes"),
        pytest.param(secret_of(64), id="64-bytes"),
        pytest.param(f"{NEW} {OLD} {OTHER}", id="three-while-rotating"),
    ],
)
def test_check_settings_accepts(secret: str) -> None:
    Webhook.check_settings({"url": "http://127.0.0.1:8000/hooks"}, {"secret": secret})


def test_the_attempt_log_has_neither_secret_nor_signature() -> None:
    target = webhook("https://hooks.example/in", f"{NEW} {OLD}")
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    [request] = target.requests([ledger_row()], now)
    logged = target.redacted(request)
    signature = dict(request.headers)["webhook-signature"]
    assert logged == (
        "POST https://hooks.example/in\n"
        "content-type: application/json\n"
        "webhook-id: msg_5\n"
        f"webhook-timestamp: {int(now.timestamp())}\n"
        "webhook-signature: [redacted]\n" + request.body.decode()
    )
    for hidden in (NEW, OLD, NEW[6:], OLD[6:], signature, *signature.split()):
        assert hidden not in logged
    # A body that happened to quote a secret is masked too.
    leaky = HttpRequest("POST", request.url, request.headers, OLD.encode(), (5,))
    assert OLD not in target.redacted(leaky)


def test_the_kind_is_registered() -> None:
    assert target_type(TargetKind.WEBHOOK) is Webhook
    assert Webhook.batch_limit == 1
