"""The SQLite writers' turn: a lock every writer of one file takes before SQLite's.

SQLite lets one writer in at a time; the others wait in its busy handler, which
sleeps 1 ms, then 2, 5, 10 ms and more between two looks at the lock, while a pixel's
write holds it for some 30 to 70 µs. Under gunicorn's workers nearly every contended
write therefore slept a millisecond or more (measured: 0.60 of a bare GIF app's
requests per second with two sync workers). The gate lines the writers of one file up
in front of SQLite's lock instead: a thread lock among the threads of a process, then
``flock()`` on a file beside the database (``<name>-gate``) among processes, tried
again at steps of :data:`FIRST_STEP` to :data:`LAST_STEP` seconds, so a writer goes in
within a fraction of a millisecond of the last one leaving.

The gate is for processes that serve one request at a time (gunicorn's sync
workers): in a threaded one, the thread holding it waits for the GIL after each SQLite
call while holding it, and every writer of every process waits behind it (measured
under gunicorn gthread: 2,200 pixel hits a second through the gate against 2,900
without). So the gate is closed until :meth:`~pixel_wsgi.storage.Storage.serve_threads`
opens it, which the middleware does from the first request of a process whose server
is not threaded; elsewhere (threads, the command line tool, a script) SQLite's own lock
is held only inside SQLite's C code, where the GIL is released, and no gate file is
made.

The gate's file is its own, never the database: SQLite holds POSIX record locks on the
database and its ``-shm`` file, and a process that closes *any* descriptor of a file
loses every POSIX lock it holds on it, SQLite's included (a test caught exactly this
when the gate locked the database file itself). ``flock()`` locks are apart from POSIX
ones, and a descriptor of the gate file is closed freely.

The gate is only a queue in front of SQLite's lock, never a replacement: a writer that
does not take it (another program, the command line tool of an older version) is still
serialised by SQLite. A writer that cannot take it in ``timeout`` seconds (the holder
hangs), or that cannot open the gate's file (a directory it may not write, a file
another user made unreadable), goes on without it, to SQLite's busy handler as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FIRST_STEP", "LAST_STEP", "WriteGate"]

#: Seconds between the first two tries of a busy gate; each further wait doubles, up to:
FIRST_STEP = 0.00002
LAST_STEP = 0.0005


class WriteGate:
    """The gate of the SQLite file ``database`` for this process; see the module docs.

    :param timeout: seconds a writer waits for its turn before going on without it.
    """

    def __init__(self, database: Path, timeout: float) -> None:
        #: the file whose ``flock()`` is the turn (created readable by all, on first use)
        self.path = database.with_name(f"{database.name}-gate")
        self.timeout = timeout
        #: whether writers take turns here (False: straight to SQLite's lock)
        self.enabled = False
        self._pid: int | None = None
        self._fd: int | None = None
        self._threads = threading.Lock()

    def _opened(self) -> int | None:
        """This process's descriptor of the file, or None when it cannot be opened.

        A forked child opens its own and closes the one it inherited: a shared
        descriptor would share the parent's lock. (Two threads of a process opening it
        at once is harmless: the second descriptor is closed again.)
        """
        pid = os.getpid()
        if self._pid != pid:
            inherited = self._fd
            self._threads = threading.Lock()  # a parent's may be held: not ours
            self._fd = None
            self._pid = pid
            if inherited is not None:
                with contextlib.suppress(OSError):
                    os.close(inherited)
            flags = os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError:
                return None
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # not a file this code made
                os.close(fd)
                return None
            if self._fd is None:
                self._fd = fd
            elif self._fd != fd:
                os.close(fd)
        return self._fd

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the gate for one write (see the module docs)."""
        fd = self._opened() if self.enabled else None
        if fd is None:
            yield
            return
        threads = self._threads
        if not threads.acquire(timeout=self.timeout):
            yield
            return
        try:
            locked = _lock(fd, self.timeout)
            try:
                yield
            finally:
                if locked:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            threads.release()

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _lock(fd: int, timeout: float) -> bool:
    """``flock(fd, LOCK_EX)`` within ``timeout`` seconds; whether it was taken."""
    step = FIRST_STEP
    deadline = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # a file system without flock(): SQLite's lock alone
            return False
        now = time.monotonic()
        if deadline is None:
            deadline = now + timeout
        elif now >= deadline:
            return False
        time.sleep(step)
        step = min(step * 2, LAST_STEP)
