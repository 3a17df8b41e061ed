"""Read-only and foreign-owned SQLite files: the application cannot write, the spool can.

Root ignores file permissions, and the suite runs as root here and in CI, so the
application side runs in a child process (``tests/fault_wsgi_child.py``) that drops
to an unprivileged user (``postgres`` or ``nobody``) before it opens the database,
and calls the middleware directly: a click, the pixel with the click's cookie, an API
report, the health check. Without root, the same child runs as ourselves and
``chmod`` stands in for another owner. The operator's replay then runs here, with the
rights to write the store, as ``pixel-wsgi replay`` would.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pixel_wsgi import SQLiteStorage
from pixel_wsgi.cli import cli
from pixel_wsgi.clock import iso_utc, utc_now
from pixel_wsgi.endpoints.api.auth import issue_credential

from .conftest import SECRET
from .wsgi_calls import seed_campaign

# The run-as helpers, loaded as a plugin like the PostgreSQL modules load them: a plain
# import first would keep pytest from rewriting that module (a warning: an error).
pytest_plugins = ["tests.postgres_server"]

CHILD = Path(__file__).with_name("fault_wsgi_child.py")
CHILD_TIMEOUT = 60
GIF_MAGIC = b"GIF89a"
START_UP_CRITICAL = "CRITICAL pixel_wsgi: pixel-wsgi cannot write to its store"
SPOOL_CRITICAL = "CRITICAL pixel_wsgi: pixel-wsgi has no outage spool"


@dataclass
class Layout:
    """Where things are, and who the application runs as (None: as ourselves)."""

    root: Path
    user: pwd.struct_passwd | None

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def db(self) -> Path:
        return self.store_dir / "pixel.db"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def give(self, path: Path) -> None:
        """Make ``path`` the application user's (nothing to do when that is us)."""
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)


@pytest.fixture
def layout() -> Iterator[Layout]:
    """A directory the application user can reach, with ``store/`` and its ``spool/``.

    pytest's ``tmp_path`` lives under a ``0700`` directory of ours, so this one is
    made where every user may pass.
    """
    from .postgres_server import temp_dir_for, unprivileged_user  # the plugin, imported by now

    user = unprivileged_user(missing=pytest.fail)
    root = temp_dir_for(user, "pixel-wsgi-faults-")
    os.chmod(root, 0o755)
    here = Layout(root, user)
    here.store_dir.mkdir(mode=0o755)
    here.spool.mkdir(mode=0o700)
    here.give(here.spool)
    try:
        yield here
    finally:
        # chmod'ed directories must be ours to empty again.
        for path in (here.store_dir, root):
            with_owner_rights(path, 0o755)
        shutil.rmtree(root, ignore_errors=True)


def database_files(db: Path) -> list[Path]:
    """The database file and the WAL files beside it that exist."""
    candidates = [db, *(db.with_name(f"{db.name}{suffix}") for suffix in ("-wal", "-shm"))]
    return [path for path in candidates if path.exists()]


def with_owner_rights(path: Path, mode: int) -> None:
    if path.exists():
        os.chmod(path, mode)


def make_world(layout: Layout) -> dict[str, Any]:
    """An advertiser, a percent campaign, a link and an API credential, created by us."""
    storage = SQLiteStorage(layout.db)
    try:
        seeded = seed_campaign(storage)
        credential = issue_credential(storage, seeded.advertiser_id).secret
    finally:
        storage.close()
    config: dict[str, Any] = {
        "db": str(layout.db),
        "spool": str(layout.spool),
        "secret": SECRET,
        "advertiser_id": seeded.advertiser_id,
        "campaign_id": seeded.campaign_id,
        "publisher_id": seeded.publisher_id,
        "link_id": seeded.link.id,
        "credential": credential,
    }
    if layout.user is not None:
        config.update(uid=layout.user.pw_uid, gid=layout.user.pw_gid)
    return config


@dataclass
class ChildRun:
    """What the application answered, and what it logged."""

    answers: dict[str, Any]
    log: str

    def status(self, name: str) -> int:
        return int(self.answers[name]["status"])

    def header(self, name: str, header: str) -> str | None:
        for key, value in self.answers[name]["headers"]:
            if key.lower() == header.lower():
                return str(value)
        return None

    def body(self, name: str) -> bytes:
        return base64.b64decode(self.answers[name]["body"])

    def json(self, name: str) -> Any:
        return json.loads(self.body(name))


def run_child(script: Path, layout: Layout, config: dict[str, Any]) -> tuple[Any, str]:
    """A child script's JSON answer and its log, after checking whom it ran as."""
    result = subprocess.run(
        [sys.executable, str(script), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stderr}"
    answers = json.loads(result.stdout)
    assert answers["euid"] == (os.geteuid() if layout.user is None else layout.user.pw_uid)
    return answers, result.stderr


def run_application(layout: Layout, config: dict[str, Any]) -> ChildRun:
    return ChildRun(*run_child(CHILD, layout, config))


def replay(layout: Layout) -> dict[str, Any]:
    """``pixel-wsgi replay --json`` as the operator runs it."""
    url = f"sqlite:///{layout.db}"
    result = CliRunner().invoke(
        cli, ["--storage", url, "replay", "--spool-dir", str(layout.spool), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def assert_answered_normally_and_spooled(run: ChildRun) -> int:
    """Click, pixel and API answered as they do when the store works; the visit id."""
    assert run.status("click") == 302
    assert run.header("click", "Location") == "/landing"
    visit_id = run.answers["visit_id"]
    assert visit_id is not None and visit_id < 0  # a spooled click
    assert run.status("pixel") == 200
    assert run.header("pixel", "Content-Type") == "image/gif"
    assert run.body("pixel").startswith(GIF_MAGIC)
    assert run.status("api") == 202
    assert run.json("api")["result"] == "spooled"
    assert run.status("health") == 503
    health = run.json("health")
    assert (health["status"], health["store"]) == ("degraded", "ok")
    assert health["spooled_bytes"] > 0
    assert len(run.answers["spool_files"]) == 1
    return int(visit_id)


def assert_stored_once(layout: Layout, config: dict[str, Any], visit_id: int) -> None:
    """The click, the pixel's conversion and the API report, each exactly once."""
    storage = SQLiteStorage(layout.db)
    try:
        rows = sorted(storage.transactions(), key=lambda row: row.reference_id or "")
        assert [row.reference_id for row in rows] == ["api-1", "web-1"]
        api, web = rows
        campaign_id, publisher_id = config["campaign_id"], config["publisher_id"]
        assert (web.source, web.visit_id, web.campaign_id, web.publisher_id) == (
            "pixel",
            visit_id,
            campaign_id,
            publisher_id,
        )
        assert (web.sale_amount, web.payout) == (Decimal("50.00"), Decimal("5.00"))
        assert (api.source, api.campaign_id, api.publisher_id, api.sale_amount) == (
            "api",
            campaign_id,
            publisher_id,
            Decimal("80.00"),
        )
        assert list(storage.rejections()) == []
    finally:
        storage.close()
    conn = sqlite3.connect(layout.db)
    try:
        visits = conn.execute("SELECT id, link_id FROM visits").fetchall()
    finally:
        conn.close()
    assert visits == [(visit_id, config["link_id"])]


def assert_replayed_exactly_once(layout: Layout, config: dict[str, Any], visit_id: int) -> None:
    first = replay(layout)
    assert (first["applied"], first["already_applied"], first["quarantined"]) == (3, 0, 0)
    assert first["kinds"] == {"visit": 1, "web_conversion": 1, "report": 1}
    assert first["stopped"] is None
    assert_stored_once(layout, config, visit_id)
    again = replay(layout)
    assert (again["applied"], again["files_done"]) == (0, 0)
    assert_stored_once(layout, config, visit_id)


# -- a read-only database file -------------------------------------------------------


@pytest.fixture
def read_only_file(layout: Layout) -> tuple[dict[str, Any], ChildRun]:
    """The database file is someone else's (``pixel-wsgi migrate`` run as root, say),
    in a directory the application may write (so SQLite can make its ``-wal``/``-shm``)."""
    config = make_world(layout)
    layout.give(layout.store_dir)
    if layout.user is None:
        os.chmod(layout.db, 0o444)
    run = run_application(layout, config)
    # The operator fixes it, then replays. SQLite gave the -wal and -shm files it
    # made the database's mode: they need the fix too.
    for path in database_files(layout.db):
        os.chmod(path, 0o644)
    return config, run


def test_a_read_only_database_file_spools_and_replay_applies_it_once(
    layout: Layout, read_only_file: tuple[dict[str, Any], ChildRun]
) -> None:
    config, run = read_only_file
    visit_id = assert_answered_normally_and_spooled(run)
    assert_replayed_exactly_once(layout, config, visit_id)


def test_the_start_up_check_reports_a_read_only_database_file(
    read_only_file: tuple[dict[str, Any], ChildRun],
) -> None:
    _, run = read_only_file
    assert START_UP_CRITICAL in run.log


# -- a database in a directory the application cannot write --------------------------------


def give_away_store(layout: Layout) -> None:
    """The file and its directory are someone else's (``pixel-wsgi migrate`` run as root,
    the usual deployment): SQLite cannot make the ``-shm`` index a WAL file needs."""
    if layout.user is None:
        os.chmod(layout.db, 0o444)
        os.chmod(layout.store_dir, 0o555)


def take_back_store(layout: Layout) -> None:
    os.chmod(layout.store_dir, 0o755)
    for path in database_files(layout.db):
        os.chmod(path, 0o644)


def run_on_a_store_given_away(layout: Layout, config: dict[str, Any]) -> ChildRun:
    give_away_store(layout)
    try:
        return run_application(layout, config)
    finally:
        take_back_store(layout)


@pytest.fixture
def read_only_directory(layout: Layout) -> tuple[dict[str, Any], ChildRun]:
    """The application reads the database read-only; the spool is elsewhere, its own."""
    config = make_world(layout)
    return config, run_on_a_store_given_away(layout, config)


def test_a_database_in_a_read_only_directory_is_read_and_writes_are_spooled(
    layout: Layout, read_only_directory: tuple[dict[str, Any], ChildRun]
) -> None:
    config, run = read_only_directory
    assert START_UP_CRITICAL in run.log
    # The link's destination was read from the read-only file: the click redirects.
    visit_id = assert_answered_normally_and_spooled(run)
    assert run.status("host") == 200
    # Reading it created nothing beside it.
    assert database_files(layout.db) == [layout.db]
    assert_replayed_exactly_once(layout, config, visit_id)


@pytest.fixture
def usual_deployment(layout: Layout) -> tuple[dict[str, Any], ChildRun]:
    """As above, with the spool where it goes by default: beside the database, in the
    directory the application cannot write. The host must start all the same."""
    config = {**make_world(layout), "spool": "auto"}
    return config, run_on_a_store_given_away(layout, config)


def test_an_unwritable_spool_directory_does_not_stop_the_host(
    layout: Layout, usual_deployment: tuple[dict[str, Any], ChildRun]
) -> None:
    _, run = usual_deployment
    assert run.status("host") == 200
    assert run.body("host") == b"host page /"
    # The tracking link still redirects (no visit could be kept, so no cookie).
    assert run.status("click") == 302
    assert run.header("click", "Location") == "/landing"
    assert run.header("click", "Set-Cookie") is None
    assert run.status("pixel") == 200
    assert run.body("pixel").startswith(GIF_MAGIC)
    # Neither the store nor a spool took the report: the client must retry.
    assert run.status("api") == 503
    assert run.header("api", "Retry-After") is not None
    assert run.status("health") == 503
    health = run.json("health")
    assert (health["status"], health["store"]) == ("degraded", "ok")
    assert health["spool"].startswith("unavailable: cannot create the spool directory")
    assert str(layout.db) + ".spool" in health["spool"]
    # Said loudly, once, at start-up.
    assert run.log.count(SPOOL_CRITICAL) == 1
    assert START_UP_CRITICAL in run.log
    assert run.answers["spool_files"] == []
    assert database_files(layout.db) == [layout.db]
    assert not Path(f"{layout.db}.spool").exists()


# -- the CLI's read commands on a database they may not write -------------------------------

CLI_CHILD = Path(__file__).with_name("fault_cli_child.py")
CLI_READ_COMMANDS = [
    ["conversions"],
    ["transactions", "--json"],
    ["rejections"],
    ["advertiser", "list", "--json"],
    ["link", "list"],
    ["credential", "list"],
    ["export", "--advertiser", "1"],
    ["dashboard"],
]


def run_cli_as_operator(layout: Layout, commands: list[list[str]]) -> list[dict[str, Any]]:
    """``pixel-wsgi`` commands as the unprivileged user: each one's outcome."""
    config: dict[str, Any] = {"db": str(layout.db), "commands": commands}
    if layout.user is not None:
        config.update(uid=layout.user.pw_uid, gid=layout.user.pw_gid)
    answers, _ = run_child(CLI_CHILD, layout, config)
    results: list[dict[str, Any]] = answers["results"]
    return results


@pytest.mark.parametrize(
    "writer_open",
    [
        pytest.param(False, id="nobody-has-it-open"),
        pytest.param(True, id="the-application-has-it-open"),
    ],
)
def test_read_commands_work_on_a_database_they_may_not_write(
    layout: Layout, writer_open: bool
) -> None:
    """``immutable`` while no -wal file exists; ``mode=ro`` on a writer's -shm index."""
    make_world(layout)
    holder = None
    if writer_open:
        holder = sqlite3.connect(layout.db, isolation_level=None)
        holder.execute("SELECT COUNT(*) FROM visits").fetchone()
        assert len(database_files(layout.db)) == 3
    give_away_store(layout)
    try:
        names = sorted(path.name for path in layout.store_dir.iterdir())
        before = layout.db.read_bytes()
        results = run_cli_as_operator(layout, CLI_READ_COMMANDS)
        assert sorted(path.name for path in layout.store_dir.iterdir()) == names
        assert layout.db.read_bytes() == before
    finally:
        if holder is not None:
            holder.close()
        take_back_store(layout)
    for result in results:
        assert (result["exit_code"], result["stderr"]) == (0, ""), result
    outputs = {" ".join(result["command"]): result["stdout"] for result in results}
    assert outputs["conversions"] == "No conversions.\n"
    assert json.loads(outputs["transactions --json"]) == []
    assert [a["name"] for a in json.loads(outputs["advertiser list --json"])] == ["Acme"]
    assert "/landing" in outputs["link list"]
    assert outputs["export --advertiser 1"].startswith("transaction_id,")
    assert "served: 200 OK" in outputs["dashboard"]


# -- a database file the application cannot read -----------------------------------------


@pytest.fixture
def unreadable_store(layout: Layout) -> tuple[dict[str, Any], ChildRun]:
    """The file is someone else's and not readable by the application; the visitor
    carries the cookie of a click made before."""
    config = make_world(layout)
    storage = SQLiteStorage(layout.db)
    link = storage.link(config["link_id"])
    assert link is not None
    earlier = storage.record_visit(
        link, ip_prefix=None, user_agent=None, created_at=iso_utc(utc_now())
    )
    storage.close()
    config["earlier_visit"] = [earlier, link.id]
    os.chmod(layout.db, 0o600 if layout.user is not None else 0o200)
    try:
        run = run_application(layout, config)
    finally:
        take_back_store(layout)
    return config, run


def test_a_store_that_cannot_be_read_refuses_the_api_and_says_so(
    unreadable_store: tuple[dict[str, Any], ChildRun],
) -> None:
    _, run = unreadable_store
    assert START_UP_CRITICAL in run.log
    assert run.status("host") == 200
    # Neither the store nor the spool took the report: the client must retry.
    assert run.status("api") == 503
    assert run.header("api", "Retry-After") is not None
    assert run.json("health")["store"] == "unavailable"
    assert run.status("health") == 503
    # Without its row the link's destination is unknown: no redirect is possible.
    assert run.status("click") == 503
    assert run.status("pixel") == 200
    assert run.body("pixel").startswith(GIF_MAGIC)


def test_a_pixel_hit_on_a_store_that_cannot_be_read_is_spooled(
    layout: Layout, unreadable_store: tuple[dict[str, Any], ChildRun]
) -> None:
    config, run = unreadable_store
    assert run.status("pixel") == 200
    assert len(run.answers["spool_files"]) == 1
    summary = replay(layout)
    assert summary["kinds"].get("web_conversion") == 1
    storage = SQLiteStorage(layout.db)
    try:
        [conversion] = storage.conversions()
    finally:
        storage.close()
    assert (conversion.reference_id, conversion.visit_id) == ("web-1", config["earlier_visit"][0])


# -- foreign-owned WAL files ---------------------------------------------------------------


def test_foreign_owned_wal_files_spool_and_replay_applies_it_once(layout: Layout) -> None:
    """The database is the application's, but its ``-wal`` and ``-shm`` are not: another
    user's process (a root cron job, an operator's shell) opened it and holds them."""
    config = make_world(layout)
    for path in (layout.store_dir, layout.db):
        layout.give(path)
    holder = sqlite3.connect(layout.db, isolation_level=None)
    try:
        assert holder.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        holder.execute("SELECT COUNT(*) FROM visits").fetchone()
        wal_files = database_files(layout.db)[1:]
        assert len(wal_files) == 2
        for path in wal_files:
            # As root SQLite hands new WAL files to the database's owner: take them back.
            if layout.user is not None:
                os.chown(path, 0, 0)
            os.chmod(path, 0o644 if layout.user is not None else 0o444)
        run = run_application(layout, config)
        for path in wal_files:
            os.chmod(path, 0o644)
    finally:
        holder.close()
    assert START_UP_CRITICAL in run.log
    visit_id = assert_answered_normally_and_spooled(run)
    assert_replayed_exactly_once(layout, config, visit_id)
