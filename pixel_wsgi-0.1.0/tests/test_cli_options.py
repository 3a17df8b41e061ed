"""``pixel-wsgi advertiser set`` and ``pixel-wsgi campaign set``."""

from __future__ import annotations

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, SQLiteStorage

from .cli_helpers import Run, as_json, created_at, failed, ok, set_up
from .conftest import SECRET, host_app, reasons


def test_require_and_allow_unsigned_pixels(run: Run, storage: SQLiteStorage) -> None:
    set_up(run)
    assert ok(run("advertiser", "set", "1", "--require-signed-pixels")) == (
        "Advertiser 1 (Acme) accepts only signed pixels."
        " Running servers apply the change within a minute.\n"
    )
    advertiser = storage.advertiser(1)
    assert advertiser is not None and advertiser.require_signed_pixels
    document = as_json(run("advertiser", "set", "1", "--allow-unsigned-pixels", "--json"))
    assert created_at(document) == {"id": 1, "name": "Acme", "require_signed_pixels": False}
    assert ok(run("advertiser", "set", "1", "--allow-unsigned-pixels")).startswith(
        "Advertiser 1 (Acme) accepts unsigned pixels."
    )


def test_the_list_shows_the_requirement(run: Run) -> None:
    set_up(run)
    ok(run("advertiser", "add", "Beta"))
    ok(run("advertiser", "set", "2", "--require-signed-pixels"))
    listed = as_json(run("advertiser", "list", "--json"))
    assert [(a["id"], a["require_signed_pixels"]) for a in listed] == [(1, False), (2, True)]
    header, first, second = ok(run("advertiser", "list")).splitlines()
    assert header.split()[:3] == ["id", "name", "require_signed_pixels"]
    assert (first.split()[2], second.split()[2]) == ("False", "True")


def test_the_requirement_reaches_the_pixel(run: Run, storage: SQLiteStorage) -> None:
    set_up(run)
    ok(run("advertiser", "set", "1", "--require-signed-pixels"))
    app = TestApp(PixelMiddleware(host_app, storage, secret_key=SECRET))
    app.get("/pixels/click/1")
    app.get("/pixels/conversion/1.gif?sale_amount=10&reference_id=r1")
    assert reasons(storage) == ["unsigned_pixel"]


def test_set_a_daily_cap_and_remove_it(run: Run, storage: SQLiteStorage) -> None:
    set_up(run)
    assert ok(run("campaign", "set", "1", "--daily-cap", "5")) == (
        "Campaign 1 (Spring sale) accepts at most 5 conversions per UTC day."
        " Running servers apply the change within a minute.\n"
    )
    campaign = storage.campaign(1)
    assert campaign is not None and campaign.daily_cap == 5
    [listed] = as_json(run("campaign", "list", "--json"))
    assert (listed["daily_cap"], listed["pays"]) == (5, "10% of sale_amount")
    row = ok(run("campaign", "list")).splitlines()[1]
    assert row.split()[:5] == ["1", "1", "Spring", "sale", "5"]
    document = as_json(run("campaign", "set", "1", "--no-daily-cap", "--json"))
    assert created_at(document) == {
        "id": 1,
        "advertiser_id": 1,
        "name": "Spring sale",
        "payout": {"kind": "percent", "value": "10", "currency": None, "reason_codes": []},
        "daily_cap": None,
        "pays": "10% of sale_amount",
    }
    assert ok(run("campaign", "set", "1", "--no-daily-cap")).startswith(
        "Campaign 1 (Spring sale) has no daily cap."
    )
    assert ok(run("campaign", "set", "1", "--daily-cap", "0")).startswith(
        "Campaign 1 (Spring sale) accepts at most 0 conversions per UTC day."
    )


def test_the_cap_reaches_the_pixel(run: Run, storage: SQLiteStorage) -> None:
    set_up(run)
    ok(run("campaign", "set", "1", "--daily-cap", "1"))
    app = TestApp(PixelMiddleware(host_app, storage, secret_key=SECRET))
    app.get("/pixels/click/1")
    app.get("/pixels/conversion/1.gif?reference_id=r1")
    app.get("/pixels/conversion/1.gif?reference_id=r2")
    assert [c.reference_id for c in storage.conversions()] == ["r1"]
    assert reasons(storage) == ["daily_cap_reached"]


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        pytest.param(
            ("advertiser", "set", "1"),
            2,
            "Error: give --require-signed-pixels or --allow-unsigned-pixels",
            id="advertiser-nothing-to-set",
        ),
        pytest.param(
            ("advertiser", "set", "9", "--require-signed-pixels"),
            1,
            "Error: no advertiser with id 9",
            id="unknown-advertiser",
        ),
        pytest.param(
            ("advertiser", "set", "0", "--require-signed-pixels"),
            2,
            "Invalid value for 'ADVERTISER_ID'",
            id="advertiser-id-zero",
        ),
        pytest.param(
            ("campaign", "set", "1"),
            2,
            "Error: give exactly one of --daily-cap N or --no-daily-cap",
            id="campaign-nothing-to-set",
        ),
        pytest.param(
            ("campaign", "set", "1", "--daily-cap", "3", "--no-daily-cap"),
            2,
            "Error: give exactly one of --daily-cap N or --no-daily-cap",
            id="cap-and-no-cap",
        ),
        pytest.param(
            ("campaign", "set", "1", "--daily-cap", "-1"),
            2,
            "Invalid value for '--daily-cap'",
            id="negative-cap",
        ),
        pytest.param(
            ("campaign", "set", "1", "--daily-cap", "many"),
            2,
            "Invalid value for '--daily-cap'",
            id="not-a-number",
        ),
        pytest.param(
            ("campaign", "set", "9", "--daily-cap", "3"),
            1,
            "Error: no campaign with id 9",
            id="unknown-campaign",
        ),
    ],
)
def test_bad_set_commands(
    run: Run, storage: SQLiteStorage, args: tuple[str, ...], exit_code: int, message: str
) -> None:
    set_up(run)
    assert message in failed(run(*args), exit_code)
    advertiser, campaign = storage.advertiser(1), storage.campaign(1)
    assert advertiser is not None and not advertiser.require_signed_pixels
    assert campaign is not None and campaign.daily_cap is None
