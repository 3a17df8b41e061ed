"""The dashboard's delivery pages: the advertiser's targets, and a page per target, over
rows recorded by the real middleware and sent by the real worker to loopback servers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from webtest import TestApp, TestResponse

from pixel_wsgi.dashboard import Dashboard, basic_auth
from pixel_wsgi.dashboard.reports import DateRange, age_text, outcomes_by_day
from pixel_wsgi.delivery.outbox import NewTarget, add_target, new_webhook_secret
from pixel_wsgi.delivery.secrets import SecretBox
from pixel_wsgi.delivery.worker import Worker
from pixel_wsgi.models import TargetKind, TargetStatus
from pixel_wsgi.settings import secret_keys

from .conftest import SECRET, FakeClock, World
from .delivery_servers import RecordingServer, Reply
from .test_dashboard import CSP, PASSWORD, signed_in

BOX = SecretBox(secret_keys(SECRET))


def report(app: TestApp, auth: dict[str, str], world: World, reference_id: str) -> None:
    app.post(
        "/pixels/api/conversions",
        {
            "reference_id": reference_id,
            "sale_amount": "24.50",
            "advertiser_campaign_id": str(world.percent_campaign_id),
            "affiliate_id": str(world.publisher_id),
        },
        headers=auth,
    )


def table_after(page: TestResponse, heading: str) -> list[list[str]]:
    """The cells of the first table after ``<h2>heading</h2>``, tags stripped."""
    rest = page.text.split(f"<h2>{heading}</h2>", 1)[1]
    body = rest.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def card(page: TestResponse, label: str) -> str:
    match = re.search(rf'<div class="card"><span>{label}</span><b>([^<]*)</b>', page.text)
    assert match is not None, page.text
    return match.group(1)


@dataclass
class Delivered:
    """A webhook target that failed once, then delivered; what the dashboard shows of it."""

    world: World
    clock: FakeClock
    dash: TestApp
    target: NewTarget
    platform: RecordingServer

    @property
    def path(self) -> str:
        return f"/advertisers/{self.world.advertiser_id}/targets/{self.target.stored.id}"


@pytest.fixture
def delivered(world: World, app: TestApp, auth: dict[str, str], clock: FakeClock) -> Delivered:
    """Two conversions: the first request gets a 500 (the breaker opens), an hour later
    both are delivered; then a third conversion that no worker has looked at yet."""
    secret = new_webhook_secret()
    with RecordingServer() as platform:
        platform.script(Reply(500, b"upstream <b>down</b>"))
        target = add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.WEBHOOK,
            settings={"url": platform.url + "/hooks?team=<ops>"},
            secrets={"secret": secret},
        )
        report(app, auth, world, "order-1")
        report(app, auth, world, "order-2")
        worker = Worker(world.storage, BOX, clock=clock, timeout=5)
        worker.run_once()
        clock.advance(timedelta(hours=1))
        worker.run_once()
    clock.advance(timedelta(minutes=1))
    report(app, auth, world, "order-3")
    clock.advance(timedelta(hours=2, minutes=5))
    dash = signed_in(Dashboard(world.storage, authenticate=basic_auth(PASSWORD), clock=clock))
    return Delivered(world, clock, dash, target, platform)


def test_the_advertisers_page_lists_its_targets(delivered: Delivered) -> None:
    world = delivered.world
    page = delivered.dash.get(f"/advertisers/{world.advertiser_id}")
    assert table_after(page, "Delivery targets") == [
        [f"#{delivered.target.stored.id}", "webhook", "active", "0", "2 h 5 min"]
    ]
    link = page.click(f"#{delivered.target.stored.id}")
    assert link.request.path == delivered.path
    other = delivered.dash.get(f"/advertisers/{world.other_advertiser_id}")
    assert "No delivery targets." in other.text
    assert f"--advertiser {world.other_advertiser_id} --kind" in other.text


def test_a_targets_page(delivered: Delivered) -> None:
    page = delivered.dash.get(delivered.path)
    target = delivered.target.stored
    assert f"Delivery target {target.id}: webhook" in page.text
    assert card(page, "Status") == "active"
    assert card(page, "Backlog") == "0"
    # order-3 was made 2 h 5 min ago, and no worker has looked at it yet.
    assert card(page, "Oldest undelivered") == "2 h 5 min"
    assert "Circuit breaker" not in page.text
    assert table_after(page, "Settings") == [
        ["kind", "webhook"],
        ["url", f"{delivered.platform.url}/hooks?team=&lt;ops&gt;"],
        ["added (UTC)", target.created_at[:19].replace("T", " ")],
    ]
    assert table_after(page, "Rows by status") == [["0", "2", "0", "0", "0", "0", "0"]]
    days = table_after(page, "Attempts per day")
    assert len(days) == 14
    assert days[0] == ["2026-11-25", "2", "1", "3"]  # delivered, retry, all; today first
    assert days[1:] == [
        [(delivered.clock.now.date() - timedelta(days=n)).isoformat(), "0", "0", "0"]
        for n in range(1, 14)
    ]
    assert '<th scope="col" class="n">delivered</th><th scope="col" class="n">retry</th>' in (
        page.text
    )


def test_the_last_errors_with_their_redacted_requests(delivered: Delivered) -> None:
    page = delivered.dash.get(delivered.path)
    [error] = table_after(page, "Last errors")
    first = delivered.world.storage.delivery_attempts(delivered.target.stored.id)[-1]
    assert error[:4] == [
        first.attempted_at[:19].replace("T", " "),
        "retry",
        str(first.transaction_ids[0]),
        "HTTP 500: upstream &lt;b&gt;down&lt;/b&gt;",
    ]
    assert error[4].startswith(f"POST {delivered.platform.url}/hooks?team=&lt;ops&gt;\n")
    assert "webhook-signature: [redacted]" in error[4]
    assert error[5] == "500\nupstream &lt;b&gt;down&lt;/b&gt;"
    assert "<b>down</b>" not in page.text


def test_no_secret_is_shown(delivered: Delivered) -> None:
    secret = delivered.target.secrets["secret"]
    stored = delivered.world.storage.target(delivered.target.stored.id)
    assert stored is not None
    for path in (f"/advertisers/{delivered.world.advertiser_id}", delivered.path):
        text = delivered.dash.get(path).text
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
        assert stored.sealed_secrets not in text
        assert stored.sealed_secrets[3:40] not in text


def test_the_page_is_locked_down_like_every_page(delivered: Delivered) -> None:
    response = delivered.dash.get(delivered.path)
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in response.text.lower()
    assert not re.search(r"(src|href|action)=\"(?!/)", response.text)
    TestApp(Dashboard(delivered.world.storage, authenticate=basic_auth(PASSWORD))).get(
        delivered.path, status=401
    )


def test_refused_credentials(
    world: World, app: TestApp, auth: dict[str, str], clock: FakeClock
) -> None:
    token = "EAAB-secret-token-123"
    with RecordingServer() as platform:
        platform.script(Reply(401, f"token {token} is not valid".encode()))
        target = add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.WEBHOOK,
            settings={"url": platform.url},
            secrets={"secret": new_webhook_secret()},
        )
        report(app, auth, world, "order-1")
        Worker(world.storage, BOX, clock=clock, timeout=5).run_once()
    dash = signed_in(Dashboard(world.storage, authenticate=basic_auth(PASSWORD), clock=clock))
    page = dash.get(f"/advertisers/{world.advertiser_id}/targets/{target.stored.id}")
    assert card(page, "Status") == "auth_failed"
    assert f"<span>HTTP 401: token {token} is not valid</span>" in page.text
    assert f"pixel-wsgi target resume {target.stored.id}" in page.text
    assert card(page, "Backlog") == "1"
    [error] = table_after(page, "Last errors")
    assert error[1] == "auth"
    overview = dash.get(f"/advertisers/{world.advertiser_id}")
    assert table_after(overview, "Delivery targets")[0][2] == "auth_failed"


def test_a_postback_names_its_publisher_and_a_breaker_shows(
    world: World, app: TestApp, auth: dict[str, str], clock: FakeClock
) -> None:
    hostile = world.storage.add_publisher("<script>alert(1)</script>")
    world.storage.add_link(world.percent_campaign_id, hostile.id, "/landing")
    with RecordingServer() as platform:
        platform.script(Reply(503, b"busy", (("Retry-After", "120"),)))
        target = add_target(
            world.storage,
            BOX,
            world.advertiser_id,
            TargetKind.POSTBACK,
            settings={"url": platform.url + "/aff_lsr?transaction_id={transaction_id}"},
            secrets={},
            publisher_id=hostile.id,
        )
        app.post(
            "/pixels/api/conversions",
            {
                "reference_id": "order-1",
                "sale_amount": "10.00",
                "advertiser_campaign_id": str(world.percent_campaign_id),
                "affiliate_id": str(hostile.id),
            },
            headers=auth,
        )
        Worker(world.storage, BOX, clock=clock, timeout=5).run_once()
    dash = signed_in(Dashboard(world.storage, authenticate=basic_auth(PASSWORD), clock=clock))
    page = dash.get(f"/advertisers/{world.advertiser_id}/targets/{target.stored.id}")
    assert "<script>alert" not in page.text
    assert ["publisher", f"&lt;script&gt;alert(1)&lt;/script&gt; #{hostile.id}"] in table_after(
        page, "Settings"
    )
    assert card(page, "Circuit breaker") == "open"
    assert "1 failed in a row; next try 2026-11-25 12:02:00 UTC" in page.text
    assert card(page, "Backlog") == "1"
    assert card(page, "Oldest undelivered") == "0 s"


def test_a_removed_target_keeps_its_page(delivered: Delivered) -> None:
    world = delivered.world
    world.storage.set_target_status(delivered.target.stored.id, TargetStatus.REMOVED, None)
    page = delivered.dash.get(delivered.path)
    assert card(page, "Status") == "removed"
    assert "No delivery targets." in delivered.dash.get(f"/advertisers/{world.advertiser_id}")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/advertisers/{other}/targets/{target}", id="of-another-advertiser"),
        pytest.param("/advertisers/{advertiser}/targets/999", id="unknown-target"),
        pytest.param("/advertisers/999/targets/{target}", id="unknown-advertiser"),
        pytest.param("/advertisers/{advertiser}/targets/0", id="zero"),
        pytest.param("/advertisers/{advertiser}/targets/{target}.csv", id="csv"),
        pytest.param("/advertisers/{advertiser}/targets", id="no-list-page"),
    ],
)
def test_not_found(delivered: Delivered, path: str) -> None:
    world = delivered.world
    url = path.format(
        advertiser=world.advertiser_id,
        other=world.other_advertiser_id,
        target=delivered.target.stored.id,
    )
    response = delivered.dash.get(url, status=404)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(None, "-", id="none"),
        pytest.param(0, "0 s", id="zero"),
        pytest.param(59, "59 s", id="seconds"),
        pytest.param(60, "1 min", id="a-minute"),
        pytest.param(3599, "59 min", id="minutes"),
        pytest.param(3600 * 3 + 300, "3 h 5 min", id="hours"),
        pytest.param(86400 * 2 + 3600 * 4 + 59, "2 d 4 h", id="days"),
    ],
)
def test_age_text(seconds: int | None, text: str) -> None:
    assert age_text(seconds) == text


def test_outcomes_by_day_fill_the_range() -> None:
    days = DateRange(date(2026, 11, 23), date(2026, 11, 25))
    columns, rows = outcomes_by_day(
        [
            ("2026-11-22", "retry", 9),  # before the range
            ("2026-11-23", "retry", 2),
            ("2026-11-25", "delivered", 5),
            ("2026-11-25", "mixed", 1),
        ],
        days,
    )
    assert columns == ["delivered", "mixed", "retry"]
    assert [(row.day.isoformat(), row.counts, row.total) for row in rows] == [
        ("2026-11-23", (0, 0, 2), 2),
        ("2026-11-24", (0, 0, 0), 0),
        ("2026-11-25", (5, 1, 0), 6),
    ]
