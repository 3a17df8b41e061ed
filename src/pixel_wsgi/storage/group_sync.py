"""Group commit for SQLite: one ``fdatasync`` of the write-ahead log for many writers.

With ``PRAGMA synchronous=FULL``, SQLite syncs the ``-wal`` file inside every commit,
while the writer still holds the write lock: writers queue behind each other's
``fdatasync`` (some 200 µs on this project's disks), one at a time. A store that
wants the same durability at a fraction of the cost runs its connections at
``synchronous=NORMAL`` and, after each commit, once it has let go of the lock, asks
its :class:`GroupSync` to make everything written so far durable. A writer who asks
while no sync is under way runs one, a *round*: ``fdatasync`` of the file, while the
next writers commit. Those who ask meanwhile wait for the next round, which the end
of this one hands to one of them (and only them: the others sleep on). One sync then
covers every writer that committed during the previous one.

Why a sync of the ``-wal`` file after the commit is what ``FULL`` does (SQLite's
documentation, ``pragma.html#pragma_synchronous`` and ``wal.html``, and ``strace``
of SQLite 3.40 in both modes):

- In WAL mode, ``NORMAL`` and ``FULL`` differ by one operation: ``FULL`` syncs the
  ``-wal`` file after each commit's frames are written. Everything else is the
  same in both: the ``-wal`` file is synced before each checkpoint, the database
  file after each completed checkpoint, and the ``-wal`` header (with, for a new
  file, its directory) when the log starts over after a checkpoint. A sync of the
  file after the commit, from any descriptor of it, flushes the same frames.
- The log is append-only between two restarts and its frames are checksummed in a
  chain: what a sync covers is every frame written before it, whoever wrote it.
- SQLite writes over the start of the log (a restart) only after a checkpoint that
  copied every frame into the database file and synced that file; it deletes the
  ``-wal`` file only when the last connection closes, after such a checkpoint. A
  ``-wal`` file that is gone, or that is another file than the one this process
  has open (another inode), therefore held nothing that is not durable already in
  the database file: a round then syncs the new file, or nothing.

This holds while every connection that checkpoints the file syncs (no
``synchronous=OFF`` anywhere), as for ``FULL`` itself, and where SQLite assumes
"powersafe overwrite" (its default on unix): without it, ``FULL`` would also pad
each commit's last frame to a sector boundary, which ``NORMAL`` does not.

Two differences from ``FULL`` remain. A commit is visible to other connections
from the moment it is made, a sync's time (a fraction of a millisecond) before it
is durable; ``FULL`` makes it visible after its sync. And a sync that fails cannot
undo the commit: the writer gets :class:`~pixel_wsgi.errors.StorageError` for a
write that may well be in the file, merely not known to be durable.

A failed sync also condemns what follows it: the kernel may have dropped the frames
it could not write, and a later sync that succeeds would not bring them back, while
the checksum chain makes every frame after a lost one unreadable at recovery. After
a failure, rounds therefore fail without syncing until the log is another one: a new
``-wal`` file, or the same file started over (its header's checkpoint sequence and
salts change), which SQLite does only once a checkpoint has copied the log into the
database file and synced that file. That memory is this object's, in this process:
another process, or a process started anew, knows only what its own syncs report.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from pathlib import Path

from ..errors import StorageError

__all__ = ["GroupRounds", "GroupSync", "flush"]

# The WAL header's checkpoint sequence number and its two salts (bytes 12 to 24):
# they change every time SQLite starts the log over.
_GENERATION = slice(12, 24)

# Every GroupSync of the process, for the fork hook at the end.
_INSTANCES: weakref.WeakSet[GroupRounds] = weakref.WeakSet()


class _Round:
    """The writers one ``fdatasync`` covers: those who asked before it started.

    Its waiters sleep on a condition of their own, so that the end of a round wakes
    its writers only, and the hand-over of the next round one writer of it alone.
    """

    __slots__ = ("_ended", "failure", "handed", "over")

    def __init__(self, lock: threading.Lock) -> None:
        self._ended = threading.Condition(lock)  # the GroupSync's lock
        self.over = False
        self.failure: str | None = None
        # The round is for one of its writers to run (the last round has ended).
        self.handed = False

    def wait(self) -> None:
        """Sleep (the lock held) until the round is over or is handed to this writer."""
        try:
            while not (self.over or self.handed):
                self._ended.wait()
        except BaseException:
            if self.handed and not self.over:
                self._ended.notify()  # it may have been handed to this writer: pass it on
            raise

    def end(self, failure: str | None) -> None:
        """Over (the lock held): wake its writers."""
        self.over = True
        self.failure = failure
        self._ended.notify_all()

    def hand(self) -> None:
        """For one of its writers to run (the lock held); a writer who asks first
        takes it as well."""
        self.handed = True
        self._ended.notify()


class GroupRounds:
    """Many threads, one flush: the leader-and-rounds part of group commit, for any
    file a subclass makes durable in :meth:`_round` (the ``-wal`` file here, the
    queued mode's log in :mod:`pixel_wsgi.outage.spool`).

    :meth:`sync` returns once a round that started after the call has ended; the
    first caller of a round runs it while the next callers gather for the following
    one. Thread-safe, and fork-safe: a forked child starts with no round under way.
    """

    def __init__(self) -> None:
        self._start()
        _INSTANCES.add(self)

    def _start(self) -> None:
        """This process's state: nothing asked."""
        self._lock = threading.Lock()
        # The round the writers who ask now join: its sync has not started.
        self._open: _Round | None = None
        # A round's sync is under way, or handed to a waiter of the open round.
        self._running = False

    def sync(self) -> None:
        """Return once everything written before this call is durable.

        :raises ~pixel_wsgi.errors.StorageError: when it could not be made durable.
        """
        with self._lock:
            round_ = self._open
            if round_ is None:
                round_ = self._open = _Round(self._lock)
            if self._running:
                round_.wait()
                if round_.over:
                    if round_.failure is not None:
                        raise StorageError(round_.failure)
                    return
                round_.handed = False  # this thread runs it
            self._running = True
            self._open = None  # whoever asks from now on waits for the next round
        self._run(round_)

    def _run(self, round_: _Round) -> None:
        """Sync for ``round_``, then hand the next round to one of its writers."""
        failure = None
        try:
            self._round()
        except BaseException as exc:
            failure = str(exc) if isinstance(exc, StorageError) else None
            failure = failure or f"the sync was interrupted ({exc!r})"
            raise
        finally:
            with self._lock:
                following = self._open
                if following is None:
                    self._running = False
                else:
                    # Woken first: the next sync starts while these writers wake.
                    following.hand()
                round_.end(failure)

    def _round(self) -> None:
        """Make durable what was written so far (one thread at a time runs it).

        :raises ~pixel_wsgi.errors.StorageError: when it could not.
        """
        raise NotImplementedError

    def _forget_parent(self) -> None:
        """In a forked child: the parent's rounds and locks are not ours."""
        self._start()


class GroupSync(GroupRounds):
    """Makes the commits written to one SQLite ``-wal`` file durable, many writers
    to an ``fdatasync`` (see the module docs).

    Thread-safe, and fork-safe: a forked child starts with no round under way and
    its own descriptor of the file. Writers of other processes have their own
    rounds; every round covers whatever any process wrote before it.

    :param path: the ``-wal`` file, ``<database>-wal``; it need not exist yet, and
        is never created.

    Each writer calls :meth:`sync` after its ``COMMIT`` returned, outside any lock
    the next writer needs::

        group_sync = GroupSync(Path("pixel.db-wal"))
        connection.execute("COMMIT")   # at synchronous=NORMAL
        group_sync.sync()              # durable from here on, or StorageError
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: ``fdatasync`` calls this process made (the tests', the benchmark's counts)
        self.syncs = 0
        super().__init__()

    def _start(self) -> None:
        """This process's state: nothing asked, nothing open."""
        super()._start()
        # Owned by the thread that runs a round, one at a time:
        self._fd: int | None = None
        self._inode: int | None = None
        # Why this file may not be vouched for, and its generation then (None: unread).
        self._condemned: str | None = None
        self._condemned_generation: bytes | None = None

    def _round(self) -> None:
        """One ``fdatasync`` of the file as it is now (only the leader runs it)."""
        try:
            # A new file never has the number of the one SQLite deleted: the
            # descriptor held here keeps that one allocated.
            if self._fd is None or os.stat(self.path).st_ino != self._inode:
                self._reopen()
        except FileNotFoundError:
            return  # no log: all of it is in the database file, synced (module docs)
        except OSError as exc:
            raise StorageError(f"cannot make {self.path} durable: {exc}") from exc
        assert self._fd is not None
        if self._condemned is not None:
            generation = self._generation()
            if generation is None or generation == self._condemned_generation:
                raise StorageError(self._condemned)
            self._condemned = None  # started over: the lost frames are behind it
        try:
            self.syncs += 1
            flush(self._fd)
        except OSError as exc:
            self._condemned = (
                f"{self.path} could not be synced ({exc}): writes are not durable until"
                " SQLite has checkpointed that log and started it over"
            )
            self._condemned_generation = self._generation()
            raise StorageError(f"cannot make a write durable: {self._condemned}") from exc

    def _reopen(self) -> None:
        """Open the file at ``path`` now (raises FileNotFoundError when there is none)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            inode = os.fstat(fd).st_ino
        except BaseException:
            os.close(fd)
            raise
        self._close()
        self._fd = fd
        self._inode = inode
        self._condemned = None  # another file: the failed one was checkpointed and deleted

    def _generation(self) -> bytes | None:
        """The open file's header fields that change when SQLite starts it over."""
        assert self._fd is not None
        try:
            header = os.pread(self._fd, _GENERATION.stop, 0)
        except OSError:
            return None
        return header[_GENERATION] if len(header) == _GENERATION.stop else None

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            self._inode = None

    def _forget_parent(self) -> None:
        self._close()  # the child's copy of the parent's descriptor
        super()._forget_parent()

    def __del__(self) -> None:
        self._close()


def flush(fd: int) -> None:
    """``fdatasync(fd)`` (``fsync`` where there is none, macOS)."""
    # Looked up at each call: the tests replace os.fdatasync. (macOS has only fsync.)
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def _after_fork_in_child() -> None:
    # Run by the one thread a child starts with, before any other can ask for a sync:
    # a check of the pid at each call could let two threads of the child both reset.
    for group_sync in list(_INSTANCES):
        group_sync._forget_parent()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
