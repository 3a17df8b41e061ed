"""When the store fails: visitors get normal answers, events wait in the spool, replay once."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from webtest import TestApp

from pixel_wsgi import PixelMiddleware, SQLiteStorage, StorageError
from pixel_wsgi.cli import cli
from pixel_wsgi.endpoints.api.auth import issue_credential
from pixel_wsgi.models import TransactionDraft
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool
from pixel_wsgi.storage import LedgerWriter

from .conftest import SECRET, FakeClock, World, host_app, pixel_url, reasons
from .spool_helpers import write_locked


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def shop(world: World, clock: FakeClock, spool_dir: Path) -> TestApp:
    """The middleware with a busy timeout short enough for tests to hit it."""
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.1)
    middleware = PixelMiddleware(
        host_app, storage, secret_key=SECRET, clock=clock, spool_dir=spool_dir
    )
    return TestApp(middleware)


def cookie_visit(app: TestApp) -> int:
    """The visit id the attribution cookie names (its payload is ``<visit>-<link>``)."""
    [value] = [c.value for c in app.cookiejar]
    assert value is not None
    return int(value.strip('"').split(".")[0].rsplit("-", 1)[0])


def test_a_locked_store_spools_everything_and_replay_applies_it_once(
    shop: TestApp, world: World, spool_dir: Path
) -> None:
    secret = issue_credential(world.storage, world.advertiser_id).secret
    with write_locked(world.storage.path):
        click = shop.get(f"/pixels/click/{world.percent_link_id}")
        assert (click.status_int, click.headers["Location"]) == (302, "/landing?from=blog")
        visit_id = cookie_visit(shop)
        assert visit_id < 0  # a spooled visit: the cookie carries it
        gif = shop.get(pixel_url(world.advertiser_id, "sale_amount=50&reference_id=o-1"))
        assert gif.content_type == "image/gif"
        shop.get(pixel_url(world.advertiser_id, "sale_amount=x"))  # could never count: counted
        # Fraud evidence about a real advertiser is spooled (within a share of the spool).
        stuffed = shop.get(
            f"/pixels/click/{world.fixed_link_id}", headers={"Sec-Fetch-Dest": "image"}
        )
        assert stuffed.status_int == 302
        api = shop.post(
            "/pixels/api/conversions",
            {"parent_reference_id": "o-1", "sale_amount": "40.00"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert api.status_int == 202
        health = shop.get("/pixels/health", status=503)
        assert health.json["store"] == "ok"  # reads work; the spool is what is pending
        assert health.json["spooled_bytes"] > 0
    assert list(world.storage.transactions()) == []
    assert shop.get("/pixels/health", status=503).json["status"] == "degraded"

    summary = replay(Spool(spool_dir), world.storage)
    assert (summary.applied, summary.already_applied, summary.stopped) == (4, 0, None)
    assert summary.kinds == {"visit": 1, "web_conversion": 1, "rejection": 1, "report": 1}
    rows = list(world.storage.transactions())
    assert [(r.transaction_type.value, r.sale_amount, r.visit_id) for r in rows] == [
        ("conversion", Decimal("50.00"), visit_id),
        ("correction", Decimal("40.00"), visit_id),
    ]
    assert rows[0].campaign_id == world.percent_campaign_id
    assert reasons(world.storage) == ["cookie_stuffing"]
    assert shop.get("/pixels/health").json == {"status": "ok"}

    # Running it again adds nothing, whatever it finds.
    again = replay(Spool(spool_dir), world.storage)
    assert (again.applied, again.files_done) == (0, 0)
    assert list(world.storage.transactions()) == rows


class FailsAfter(SQLiteStorage):
    """A store whose ledger writes (a batch's claims, each event's write) fail after
    ``n`` of them: a replay dies half-way."""

    def __init__(self, path: Path, n: int) -> None:
        super().__init__(path)
        self.left = n

    def _one_more(self) -> None:
        if self.left == 0:
            raise StorageError("the store went away again")
        self.left -= 1

    def writer(self) -> AbstractContextManager[LedgerWriter]:
        self._one_more()
        return super().writer()

    def append_transaction(self, draft: TransactionDraft) -> int | None:
        self._one_more()
        return super().append_transaction(draft)


def test_a_replay_that_died_half_way_applies_the_rest_only(
    shop: TestApp, world: World, spool_dir: Path
) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
        for n in range(3):
            shop.get(pixel_url(world.advertiser_id, f"sale_amount=1&reference_id=r-{n}"))
    # One event a transaction (its claim, then its write): the visit and the first two
    # conversions stay applied.
    first = replay(Spool(spool_dir), FailsAfter(world.storage.path, 5), batch_size=1)
    assert (first.applied, first.stopped) == (3, "the store went away again")  # visit + 2
    assert len(list(world.storage.transactions())) == 2
    [leftover] = Spool(spool_dir).files()
    assert leftover.name.endswith(".replaying")  # kept until every record is in
    rest = replay(Spool(spool_dir), world.storage)
    # The visit and the two conversions were claimed: only the last one is applied.
    assert (rest.applied, rest.already_applied, rest.stopped) == (1, 3, None)
    assert sorted(c.reference_id or "" for c in world.storage.conversions()) == [
        "r-0",
        "r-1",
        "r-2",
    ]
    assert len(list(world.storage.transactions())) == 3
    assert Spool(spool_dir).files() == []


def test_a_batch_the_store_fails_in_is_applied_whole_next_time(
    shop: TestApp, world: World, spool_dir: Path
) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
        for n in range(3):
            shop.get(pixel_url(world.advertiser_id, f"sale_amount=1&reference_id=r-{n}"))
    first = replay(Spool(spool_dir), FailsAfter(world.storage.path, 2))
    # The batch's transaction is undone whole: nothing applied, nothing counted.
    assert (first.applied, first.stopped) == (0, "the store went away again")
    assert list(world.storage.transactions()) == []
    rest = replay(Spool(spool_dir), world.storage)
    assert (rest.applied, rest.already_applied, rest.stopped) == (4, 0, None)
    assert len(list(world.storage.transactions())) == 3
    assert Spool(spool_dir).files() == []


def test_a_conversion_before_the_replay_credits_the_spooled_click(
    shop: TestApp, world: World, spool_dir: Path
) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.fixed_link_id}")
    visit_id = cookie_visit(shop)
    # The store is back, the spool not yet replayed: the signed cookie is proof.
    shop.get(pixel_url(world.advertiser_id, "reason_code=renewal&reference_id=early"))
    [conversion] = world.storage.conversions()
    assert (conversion.visit_id, conversion.campaign_id, conversion.payout) == (
        visit_id,
        world.fixed_campaign_id,
        Decimal("4.50"),
    )
    summary = replay(Spool(spool_dir), world.storage)
    assert summary.applied == 1  # the visit: already stored, kept as it is
    assert len(list(world.storage.transactions())) == 1


class FullDisk(SQLiteStorage):
    """The database may not grow by a single page: SQLite's real "database or disk is full"."""

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn


def test_a_full_disk_spools(world: World, spool_dir: Path) -> None:
    # Fill every free page first, so that the next row needs a new one.
    conn = sqlite3.connect(world.storage.path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("VACUUM")
    conn.close()
    full = FullDisk(world.storage.path)
    app = TestApp(PixelMiddleware(host_app, full, secret_key=SECRET, spool_dir=spool_dir))
    app.get(f"/pixels/click/{world.percent_link_id}")
    padding = "x" * 200
    for n in range(20):  # enough rows to need a page the file may not have
        app.get(
            pixel_url(world.advertiser_id, f"sale_amount=1&reference_id=full-{n}&note={padding}")
        )
    probe = full._connect()  # the limit is SQLite's own "database or disk is full"
    try:
        with pytest.raises(sqlite3.OperationalError, match="full"):
            probe.execute("CREATE TABLE filler (x)")
            probe.executemany("INSERT INTO filler VALUES (?)", [("y" * 4000,)] * 10)
    finally:
        probe.close()
    stored = {c.reference_id for c in world.storage.conversions()}
    assert Spool(spool_dir).pending() > 0
    summary = replay(Spool(spool_dir), world.storage)
    assert summary.stopped is None
    everything = {c.reference_id for c in world.storage.conversions()}
    assert everything == {f"full-{n}" for n in range(20)}
    assert len(stored) < 20  # some of them did need the spool


def test_an_error_on_the_second_statement_leaves_no_half_written_conversion(
    world: World, spool_dir: Path, clock: FakeClock
) -> None:
    app = TestApp(
        PixelMiddleware(
            host_app, world.storage, secret_key=SECRET, clock=clock, spool_dir=spool_dir
        )
    )
    app.get(f"/pixels/click/{world.percent_link_id}")
    conn = sqlite3.connect(world.storage.path)
    conn.execute(
        "CREATE TRIGGER injected BEFORE INSERT ON personal_data"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    conn.commit()
    app.get(pixel_url(world.advertiser_id, "sale_amount=9&reference_id=p-1&email_address=a@b.co"))
    # The conversion row and its personal data are one write: neither is there.
    assert list(world.storage.transactions()) == []
    assert conn.execute("SELECT COUNT(*) FROM personal_data").fetchone() == (0,)
    conn.execute("DROP TRIGGER injected")
    conn.commit()
    conn.close()
    assert replay(Spool(spool_dir), world.storage).applied == 1
    [row] = world.storage.transactions()
    assert world.storage.personal_data(row.transaction_id) == {"email_address": "a@b.co"}


def test_replay_stops_when_the_store_fails_again_and_resumes_later(
    shop: TestApp, world: World, spool_dir: Path
) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
        shop.get(pixel_url(world.advertiser_id, "sale_amount=5&reference_id=s-1"))
    busy = SQLiteStorage(world.storage.path, busy_timeout=0.1)
    with write_locked(world.storage.path):
        stopped = replay(Spool(spool_dir), busy)
    assert stopped.stopped is not None and "locked" in stopped.stopped
    assert list(world.storage.transactions()) == []
    resumed = replay(Spool(spool_dir), world.storage)
    assert (resumed.applied, resumed.stopped) == (2, None)
    assert [c.reference_id for c in world.storage.conversions()] == ["s-1"]


def test_the_replay_command(shop: TestApp, world: World, db_path: Path) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
    runner = CliRunner()
    url = f"sqlite:///{db_path}"
    spool = str(db_path.parent / "spool")
    result = runner.invoke(cli, ["--storage", url, "replay", "--spool-dir", spool])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Applied 1 spooled events (0 had been applied before)")
    again = runner.invoke(cli, ["--storage", url, "replay", "--spool-dir", spool, "--json"])
    assert '"applied": 0' in again.output
    missing = runner.invoke(cli, ["--storage", url, "replay"])  # the default: beside the db
    assert missing.exit_code == 1
    assert "no spool at" in missing.output


def test_without_a_spool_a_failed_click_still_redirects(world: World) -> None:
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.1)
    app = TestApp(PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=None))
    with write_locked(world.storage.path):
        click = app.get(f"/pixels/click/{world.percent_link_id}")
        gif = app.get(pixel_url(world.advertiser_id, "sale_amount=1&reference_id=z"))
    assert click.status_int == 302 and "Set-Cookie" not in click.headers
    assert gif.content_type == "image/gif"


def test_a_store_that_is_not_writable_at_start_is_logged_loudly(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = SQLiteStorage(world.storage.path, busy_timeout=0.1)
    with write_locked(world.storage.path):
        PixelMiddleware(host_app, storage, secret_key=SECRET, spool_dir=tmp_path / "s")
    [record] = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert "cannot write to its store" in record.getMessage()
    assert str(tmp_path / "s") in record.getMessage()


def test_one_replay_at_a_time(shop: TestApp, world: World, spool_dir: Path) -> None:
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
    spool = Spool(spool_dir)
    with spool.replaying():
        busy = replay(Spool(spool_dir), world.storage)
    assert busy.applied == 0 and busy.stopped is not None
    assert "another replay" in busy.stopped
    assert replay(spool, world.storage).applied == 1
