"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` in a temporary directory.

One cluster per test session (``postgres_cluster``), one fresh database per test
(``postgres_url``). The server listens on a free port of 127.0.0.1 and on a unix
socket in the same temporary directory, with ``fsync=off``: its data is thrown away,
so durability would only cost time. It is stopped with ``pg_ctl stop -m immediate``
when the session ends, however it ends.

PostgreSQL refuses to run as root. As root (CI runs as root) the cluster belongs
to the unprivileged ``postgres`` user that Debian's package creates (``nobody``
otherwise) and its programs run as that user; otherwise they run as we are.

Test modules load these fixtures with ``pytest_plugins = ["tests.postgres_server"]``,
so that every module shares the one session cluster. Without ``initdb``/``pg_ctl``
(on ``PATH`` or in Debian's ``/usr/lib/postgresql/<version>/bin``) the tests that
need a server skip, and in CI a skip is a failure (``tests/conftest.py``).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

#: How long the server may take to start or stop.
START_TIMEOUT = 60

#: Settings for a server whose data nobody keeps.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}

SUPERUSER = "pixel"


def find_bin_dir() -> Path | None:
    """The directory that holds ``initdb`` and ``pg_ctl``, or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    # Debian and Ubuntu keep them off PATH, one directory per major version.
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
    candidates.sort(key=lambda p: int(Path(p).parent.parent.name.split(".")[0]), reverse=True)
    for pg_ctl in candidates:
        bin_dir = Path(pg_ctl).parent
        if (bin_dir / "initdb").exists():
            return bin_dir
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unprivileged_user(
    missing: Callable[[str], NoReturn] = pytest.skip,
) -> pwd.struct_passwd | None:
    """The unprivileged user to run a server or an application as when we are root, else None.

    :param missing: what to do when we are root and there is no such user
        (``pytest.skip`` or ``pytest.fail``).
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    missing("running as root and neither a 'postgres' nor a 'nobody' user exists")


def temp_dir_for(user: pwd.struct_passwd | None, prefix: str) -> Path:
    """A new temporary directory where ``user`` (None: we) can reach it.

    The system's temporary directory, unless some directory above it keeps other
    users out (``/root/tmp``, say): then ``/tmp``.
    """
    base = Path(tempfile.gettempdir())
    reachable = all(part.stat().st_mode & stat.S_IXOTH for part in [base, *base.parents])
    if user is not None and not reachable:
        base = Path("/tmp")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@dataclass
class Cluster:
    """A running throwaway cluster."""

    bin_dir: Path
    root: Path
    port: int
    user: pwd.struct_passwd | None
    _names: Iterator[int] = field(default_factory=itertools.count)
    _stopped: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs as the cluster's user."""
        command = [str(self.bin_dir / args[0]), *args[1:]]
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "PGTZ": "UTC"}
        if self.user is not None:
            env["HOME"] = str(self.root)
        return subprocess.run(
            command,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **extra,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self.run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-At",
            "-c",
            sql,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def new_database(self, template: str = "template0") -> str:
        """A new database, a copy of ``template`` (empty by default); its URL."""
        name = f"pixel_test_{next(self._names)}"
        # FILE_COPY (PostgreSQL 15+) copies the template's files instead of
        # WAL-logging every block: twice as fast for these small databases.
        strategy = " STRATEGY FILE_COPY" if self.version >= 15 else ""
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}{strategy}")
        return self.url(name)

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser in the ``postgres`` database."""
        # Over TCP with psycopg when it is there: faster than starting psql.
        try:
            import psycopg
        except ImportError:
            self.psql(sql)
        else:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.encode())

    @property
    def version(self) -> int:
        """The server's major version."""
        return int((self.data / "PG_VERSION").read_text().strip().split(".")[0])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """Create and start a cluster; skip the test when PostgreSQL is not installed."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql)"
        )
    user = unprivileged_user()
    root = temp_dir_for(user, "pixel-wsgi-pg-")
    try:
        (root / "socket").mkdir()
        if user is not None:
            for path in (root, root / "socket"):
                os.chown(path, user.pw_uid, user.pw_gid)
        cluster = Cluster(bin_dir, root, 0, user)
        init = cluster.run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        # A free port can be taken between our check and the server's bind: retry.
        for _ in range(5):
            cluster.port = free_port()
            settings = {
                **_SETTINGS,
                "port": str(cluster.port),
                "unix_socket_directories": f"'{cluster.socket_dir}'",
            }
            conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
            (cluster.data / "postgresql.auto.conf").write_text(conf)
            started = cluster.run(
                "pg_ctl",
                "start",
                "-D",
                str(cluster.data),
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT),
            )
            if started.returncode == 0:
                break
        else:
            log = (root / "server.log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{started.stderr}\n{log}")
    except BaseException:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate"],
            capture_output=True,
            check=False,
            user=None if user is None else user.pw_uid,
        )
        shutil.rmtree(root, ignore_errors=True)
        raise
    # The session fixture stops it; this is the net for an interpreter that exits
    # without running fixture finalizers.
    atexit.register(cluster.stop)
    return cluster


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A cluster of its own (:func:`start_cluster`), stopped and removed on the way out."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the whole test session."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of a new, empty database in the session's cluster."""
    return postgres_cluster.new_database()
