"""Replay trusts nothing in the spool: every field is checked by the rules the request
met, and a record that breaks one, or that the store cannot hold, is quarantined with
its reason while the replay goes on."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pixel_wsgi.cli import cli
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .conftest import FakeClock, World
from .spool_helpers import (
    locked_shop,
    quarantine_reasons,
    rewrite_spool,
    spooled_visit,
    write_locked,
)

Change = Callable[[dict[str, Any]], None]


def on_conversion(change: Change) -> Change:
    """Apply ``change`` to the spooled web conversion only."""

    def apply(event: dict[str, Any]) -> None:
        if event["kind"] == "web_conversion":
            change(event)

    return apply


def report_field(name: str, value: Any) -> Change:
    return on_conversion(lambda event: event["report"].update({name: value}))


FORGED = [
    pytest.param(report_field("sale_amount", "NaN"), "invalid_sale_amount", id="nan"),
    pytest.param(report_field("sale_amount", "1E+9"), "invalid_sale_amount", id="exponent"),
    pytest.param(report_field("sale_amount", "-500.00"), "must not be negative", id="negative"),
    pytest.param(report_field("sale_amount", "50"), "not what its fields parse", id="not-exact"),
    pytest.param(report_field("sale_amount", 50), "must be text", id="a-number"),
    pytest.param(report_field("sale_currency", "ZZZ"), "invalid_currency", id="currency"),
    pytest.param(
        report_field("reference_id", "o-1\nX-Injected: 1"), "control character", id="newline"
    ),
    pytest.param(report_field("quantity_list", [0]), "must be positive", id="quantity"),
    pytest.param(
        report_field("custom_data", {"note": "x" * 1000}), "longer than", id="custom-too-long"
    ),
    pytest.param(
        report_field("external_data", "legacy only"), "not what its fields parse", id="external"
    ),
    pytest.param(
        on_conversion(lambda event: event.update(source="api")), "cannot spool", id="source"
    ),
    pytest.param(
        on_conversion(lambda event: event.update(visit=[True, 1])), "must be an integer", id="visit"
    ),
    pytest.param(
        on_conversion(lambda event: event.update(cookie_problem="nonsense")),
        "is not a valid Reason",
        id="cookie-problem",
    ),
    pytest.param(on_conversion(lambda event: event.update(at="yesterday")), "isoformat", id="time"),
    pytest.param(on_conversion(lambda event: event.pop("report")), "missing", id="missing"),
]


@pytest.mark.parametrize(("change", "reason"), FORGED)
def test_a_forged_conversion_is_quarantined_with_its_reason(
    world: World, clock: FakeClock, tmp_path: Path, change: Change, reason: str
) -> None:
    spool_dir = tmp_path / "spool"
    shop = spooled_visit(world, clock, spool_dir, "sale_amount=50&reference_id=o-1")
    rewrite_spool(spool_dir, change)
    summary = replay(Spool(spool_dir), world.storage)
    # The click is applied; the conversion is not, and the replay was not stopped.
    assert (summary.applied, summary.quarantined, summary.stopped) == (1, 1, None)
    assert summary.kinds == {"visit": 1}
    assert list(world.storage.transactions()) == []
    [quarantined] = quarantine_reasons(spool_dir)
    assert quarantined.startswith("# ") and reason in quarantined
    assert Spool(spool_dir).files() == []
    assert shop.get("/pixels/health").json == {"status": "ok"}


def test_the_untouched_records_replay_as_before(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    """The control: a rewrite that changes nothing quarantines nothing."""
    spool_dir = tmp_path / "spool"
    spooled_visit(
        world,
        clock,
        spool_dir,
        "sale_amount=50&reference_id=o-1&note=hi",
        "sale_amount=7&parent_reference_id=o-1",
        f"/tracked_actions/web_sale/{world.advertiser_id}?amount=3&external_data=x",
    )
    rewrite_spool(spool_dir, lambda event: None)
    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined) == (4, 0)
    amounts = [row.sale_amount for row in world.storage.transactions()]
    assert amounts == [Decimal("50.00"), Decimal("7.00"), Decimal("3.00")]


def test_a_forged_server_report_is_quarantined(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        result = shop.app.report(
            advertiser_id=world.advertiser_id,
            reference_id="api-1",
            sale_amount="12.50",
            campaign_id=world.percent_campaign_id,
            publisher_id=world.publisher_id,
        )
        assert result.status.value == "spooled"
        shop.app.report(
            advertiser_id=world.advertiser_id,
            reference_id="api-2",
            sale_amount="20",
            campaign_id=world.percent_campaign_id,
            publisher_id=world.publisher_id,
        )

    def forge(event: dict[str, Any]) -> None:
        report = event["server_report"]
        if report["report"]["reference_id"] == "api-2":
            report["campaign_id"] = "1; DROP TABLE"

    rewrite_spool(spool_dir, forge)
    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined, summary.stopped) == (1, 1, None)
    [row] = world.storage.transactions()
    assert (row.reference_id, row.sale_amount) == ("api-1", Decimal("12.50"))
    [reason] = quarantine_reasons(spool_dir)
    assert "must be an integer" in reason


def test_the_replay_command_names_the_quarantine(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_visit(world, clock, spool_dir, "sale_amount=50&reference_id=o-1")
    rewrite_spool(spool_dir, report_field("sale_amount", "NaN"))
    url = f"sqlite:///{world.storage.path}"
    result = CliRunner().invoke(cli, ["--storage", url, "replay", "--spool-dir", str(spool_dir)])
    assert result.exit_code == 0, result.output
    assert "1 lines quarantined" in result.output
    assert "the reason is on their first line" in result.output
