"""The outage spool keeps only what can still count, and never more than its cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool, SpoolFull, Tally

from .conftest import FakeClock, World, pixel_url, reasons
from .spool_helpers import locked_shop, write_locked

NOT_SPOOLED = "events that cannot count were not spooled"


def messages(caplog: pytest.LogCaptureFixture, text: str, level: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if text in r.getMessage() and r.levelname == level
    ]


def test_junk_during_an_outage_is_counted_not_spooled(
    world: World, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        for n in range(25):
            shop.get(f"/pixels/conversion/x{n}.gif")  # no advertiser id at all
            shop.get(pixel_url(9999, f"sale_amount=1&reference_id=u-{n}"))  # no such advertiser
            shop.get(pixel_url(world.advertiser_id, f"sale_amount=%ZZ{n}"))  # does not parse
            # No attribution cookie: it could never count either.
            shop.get(pixel_url(world.advertiser_id, f"sale_amount=1&reference_id=n-{n}"))
        # What can count is still spooled: a click, and a conversion that carries it.
        shop.get(f"/pixels/click/{world.percent_link_id}")
        shop.get(pixel_url(world.advertiser_id, "sale_amount=5&reference_id=real"))
    spool = Spool(spool_dir)
    assert 0 < spool.pending() < 2000
    # One line for the lot (the first, then at most one a minute), with counts by reason.
    [line] = messages(caplog, NOT_SPOOLED, "WARNING")
    assert "1 since the last such line" in line
    summary = replay(spool, world.storage)
    assert (summary.applied, summary.quarantined, summary.stopped) == (2, 0, None)
    assert summary.kinds == {"visit": 1, "web_conversion": 1}
    assert [c.reference_id for c in world.storage.conversions()] == ["real"]


def test_the_junk_tally_logs_counts_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    tally = Tally("junk", interval=60, monotonic=lambda: now[0])
    for reason in ("unknown_advertiser", "invalid_query", "unknown_advertiser"):
        tally.add(reason)
    now[0] = 61
    tally.add("no_attribution")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "junk: 1 since the last such line (unknown_advertiser 1); at most one line per 60 s",
        "junk: 3 since the last such line (invalid_query 1, unknown_advertiser 1,"
        " no_attribution 1); at most one line per 60 s",
    ]
    assert tally.total == 4


def test_fraud_evidence_is_spooled_within_its_share(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir, spool_max_bytes=16 * 2000)
    with write_locked(world.storage.path):
        for _ in range(30):  # a tracking link loaded as an image: cookie stuffing
            shop.get(f"/pixels/click/{world.fixed_link_id}", headers={"Sec-Fetch-Dest": "image"})
    pending = Spool(spool_dir).pending()
    assert 0 < pending <= 2000  # a 16th of the spool
    replay(Spool(spool_dir), world.storage)
    stored = reasons(world.storage)
    assert 0 < len(stored) < 30 and set(stored) == {"cookie_stuffing"}


def test_a_full_spool_says_so_once_and_in_the_health_check(
    world: World, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir, spool_max_bytes=3000)
    with write_locked(world.storage.path):
        for _ in range(30):
            click = shop.get(f"/pixels/click/{world.percent_link_id}")
            assert (click.status_int, click.headers["Location"]) == (302, "/landing?from=blog")
        health = shop.get("/pixels/health", status=503)
    assert 0 < Spool(spool_dir).pending() <= 3000
    [critical] = messages(caplog, "is full (", "CRITICAL")
    assert str(spool_dir) in critical and "LOST" in critical
    # The clicks lost after it are counted, not logged one by one.
    [lost] = messages(caplog, "LOST events", "CRITICAL")
    assert "1 since the last such line (visit: the spool is full 1)" in lost
    assert (health.json["status"], health.json["spool"]) == ("degraded", "full")
    assert shop.get("/pixels/health", status=503).json["spool"] == "full"

    summary = replay(Spool(spool_dir), world.storage)
    assert summary.stopped is None and 0 < summary.applied < 30
    assert shop.get("/pixels/health").json == {"status": "ok"}
    caplog.clear()
    with write_locked(world.storage.path):  # the next outage spools again
        shop.get(f"/pixels/click/{world.percent_link_id}")
    assert Spool(spool_dir).pending() > 0
    assert messages(caplog, "is full (", "CRITICAL") == []


def test_the_cap_refuses_a_record_that_does_not_fit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=200)
    spool.append("visit", note="x" * 50)
    with pytest.raises(SpoolFull, match="full"):
        spool.append("visit", note="x" * 100)
    assert spool.status() == (spool.pending(), "full")
    with pytest.raises(SpoolFull, match="budget"):
        spool.append("rejection", share=16)
