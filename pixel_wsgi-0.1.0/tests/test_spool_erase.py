"""Personal data in the outage spool is sealed, and ``pixel-wsgi erase`` reaches it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pixel_wsgi.cli import cli
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .conftest import FakeClock, World
from .spool_helpers import locked_shop, spooled_visit, write_locked

EMAIL = b"buyer@example.com"
NAME = b"Ann Buyer"


def spool_bytes(spool_dir: Path) -> bytes:
    """Everything written under the spool directory, keys aside."""
    return b"".join(
        path.read_bytes()
        for path in sorted(spool_dir.rglob("*"))
        if path.is_file() and path.parent.name != "keys"
    )


def personal_data_by_reference(world: World) -> dict[str | None, dict[str, str]]:
    return {
        row.reference_id: world.storage.personal_data(row.transaction_id)
        for row in world.storage.transactions()
    }


def test_erase_reaches_the_spooled_personal_data(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_visit(
        world,
        clock,
        spool_dir,
        "sale_amount=50&reference_id=p-1&email_address=buyer@example.com&name=Ann+Buyer",
        "sale_amount=60&reference_id=p-2&email_address=o@example.com",
    )
    # Sealed from the start: no spool file, torn or whole, holds it in clear.
    [path] = Spool(spool_dir).files()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + lines[1][: len(lines[1]) // 2])  # a torn copy
    assert EMAIL not in spool_bytes(spool_dir) and NAME not in spool_bytes(spool_dir)

    url = f"sqlite:///{world.storage.path}"
    erase = ["--storage", url, "erase", "--advertiser", str(world.advertiser_id)]
    result = CliRunner().invoke(
        cli, [*erase, "--reference-id", "p-1", "--spool-dir", str(spool_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["spool_key_destroyed"] is True

    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.quarantined, summary.stopped) == (3, 1, None)
    assert personal_data_by_reference(world) == {
        "p-1": {},  # erased before it was ever stored
        "p-2": {"email_address": "o@example.com"},  # another conversion's: kept
    }
    assert EMAIL not in spool_bytes(spool_dir)
    # Drained: the keys are gone too, so the quarantined torn copy can never be read.
    assert sorted(p.name for p in (spool_dir / "keys").iterdir()) == ["lock"]


def test_erase_says_when_the_spool_held_nothing_of_it(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spooled_visit(world, clock, spool_dir, "sale_amount=5&reference_id=q&name=Bo")
    url = f"sqlite:///{world.storage.path}"
    erase = ["--storage", url, "erase", "--advertiser", str(world.advertiser_id)]
    other = CliRunner().invoke(cli, [*erase, "--reference-id", "zz", "--spool-dir", str(spool_dir)])
    assert other.output == "Erased personal data from 0 rows.\n"
    mine = CliRunner().invoke(cli, [*erase, "--reference-id", "q", "--spool-dir", str(spool_dir)])
    assert mine.output == (
        "Erased personal data from 0 rows.\n"
        f"Destroyed the key to its personal data in the outage spool {spool_dir}.\n"
    )
    replay(Spool(spool_dir), world.storage)
    assert personal_data_by_reference(world) == {"q": {}}


def test_a_server_report_spooled_with_personal_data_is_sealed_too(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        shop.app.report(
            advertiser_id=world.advertiser_id,
            reference_id="api-1",
            sale_amount="20",
            campaign_id=world.percent_campaign_id,
            publisher_id=world.publisher_id,
            personal_data={"email_address": EMAIL.decode()},
        )
    assert EMAIL not in spool_bytes(spool_dir)
    assert replay(Spool(spool_dir), world.storage).applied == 1
    assert personal_data_by_reference(world) == {"api-1": {"email_address": EMAIL.decode()}}
