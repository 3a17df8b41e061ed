"""A spool directory someone else could plant files in is refused, and nothing in a
spool directory is ever followed: no symbolic link, no FIFO, no other user's file."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pixel_wsgi.cli import cli
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool, SpoolError

from .conftest import FakeClock, World, pixel_url
from .spool_helpers import locked_shop, write_locked

# The run-as helpers, loaded as a plugin like the other modules that drop privileges.
pytest_plugins = ["tests.postgres_server"]

SECRET_LINE = b"root:topsecret:19000:0:99999:7:::\n"
REPLAY_TIMEOUT = 30


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    return path


def test_a_spool_directory_others_can_write_is_refused(
    world: World, clock: FakeClock, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    os.chmod(spool_dir, 0o777)
    spool = Spool(spool_dir)
    with pytest.raises(SpoolError, match="writable by group or others") as refused:
        spool.append("visit")
    assert str(spool_dir) in str(refused.value) and "0777" in str(refused.value)
    assert list(spool_dir.iterdir()) == []
    stopped = replay(spool, world.storage).stopped
    assert stopped is not None and "refusing the spool directory" in stopped
    url = f"sqlite:///{world.storage.path}"
    result = CliRunner().invoke(cli, ["--storage", url, "replay", "--spool-dir", str(spool_dir)])
    assert result.exit_code == 1
    assert f"Error: refusing the spool directory {spool_dir}" in result.output

    # The host application starts and its visitors get their answers; the health
    # check says what is wrong.
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        for _ in range(3):
            click = shop.get(f"/pixels/click/{world.percent_link_id}")
        gif = shop.get(pixel_url(world.advertiser_id, "sale_amount=5&reference_id=r"))
        health = shop.get("/pixels/health", status=503)
    assert click.status_int == 302 and gif.content_type == "image/gif"
    assert health.json["spool"] == "unusable"
    [lost] = [r.getMessage() for r in caplog.records if "LOST events" in r.getMessage()]
    assert "writable by group or others" in lost  # one line, not one per click
    assert list(spool_dir.iterdir()) == []


@pytest.fixture
def foreign_dir() -> Iterator[tuple[Path, int, int]]:
    """A spool directory of root's, and the unprivileged user who will try to use it."""
    from .postgres_server import temp_dir_for, unprivileged_user  # the plugin, imported by now

    if os.geteuid() != 0:
        pytest.skip("needs root, to run a child as another user")
    user = unprivileged_user()
    assert user is not None
    root = temp_dir_for(user, "pixel-wsgi-spool-")
    os.chmod(root, 0o755)
    try:
        spool = root / "spool"
        spool.mkdir(mode=0o755)  # readable by all, writable by root alone
        yield spool, user.pw_uid, user.pw_gid
    finally:
        shutil.rmtree(root)


def test_a_spool_directory_of_another_user_is_refused(
    foreign_dir: tuple[Path, int, int],
) -> None:
    spool_dir, uid, gid = foreign_dir
    (spool_dir / "1.spool").write_bytes(b"planted\n")
    # Started as root (the interpreter may live where others cannot go), then dropped.
    code = (
        "import os, sys; from pixel_wsgi.outage.spool import Spool; os.setgid(int(sys.argv[3]));"
        " os.setuid(int(sys.argv[2])); print(Spool(sys.argv[1]).files())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(spool_dir), str(uid), str(gid)],
        capture_output=True,
        text=True,
        timeout=REPLAY_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert f"SpoolError: refusing the spool directory {spool_dir}" in result.stderr
    assert f"not to the user running this (uid {uid})" in result.stderr


def test_planted_symbolic_links_are_never_followed(
    world: World, spool_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_bytes(SECRET_LINE)
    secret.chmod(0o600)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    # A spool file that is a link to a secret, read and quarantined by a root replay;
    (spool_dir / "2.spool").symlink_to(secret)
    # a taken file with a damaged line, whose quarantine name is a link elsewhere;
    (spool_dir / "1.abcd1234.replaying").write_bytes(b"damaged\n")
    (spool_dir / "quarantine").mkdir(mode=0o700)
    (spool_dir / "quarantine" / "1.abcd1234.replaying.line1").symlink_to(victim)
    # and this process's own spool file, a link to a file elsewhere.
    (spool_dir / f"{os.getpid()}.spool").symlink_to(victim)

    spool = Spool(spool_dir)
    with pytest.raises(SpoolError, match="cannot write to the spool"):
        spool.append("visit")
    summary = replay(spool, world.storage)
    assert summary.stopped is None
    assert victim.read_bytes() == b"precious\n"
    assert secret.read_bytes() == SECRET_LINE
    kept = [p for p in (spool_dir / "quarantine").iterdir() if not p.is_symlink()]
    [damaged] = kept
    assert damaged.read_bytes().endswith(b"damaged\n")
    assert stat.S_IMODE(damaged.stat().st_mode) == 0o600
    for path in spool_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"topsecret" not in path.read_bytes(), path
    assert spool.files() == []  # the links are not records


def test_a_fifo_in_the_spool_never_hangs_the_replay(world: World, spool_dir: Path) -> None:
    os.mkfifo(spool_dir / "3.spool")  # ignored: not a regular file
    os.mkfifo(spool_dir / "replay.lock")  # would block an open for writing for ever
    command = [sys.executable, "-m", "pixel_wsgi", "--storage", f"sqlite:///{world.storage.path}"]
    try:
        result = subprocess.run(
            [*command, "replay", "--spool-dir", str(spool_dir)],
            capture_output=True,
            text=True,
            timeout=REPLAY_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("pixel-wsgi replay hung on a FIFO in the spool")
    assert result.returncode == 1
    assert f"cannot open {spool_dir / 'replay.lock'}" in result.stdout
    os.unlink(spool_dir / "replay.lock")
    assert Spool(spool_dir).files() == []
    assert replay(Spool(spool_dir), world.storage).stopped is None
