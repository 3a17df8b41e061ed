"""The outage spool: events the store could not take, kept durably on local disk.

When a write to the store fails (locked past the busy timeout, disk full, read-only,
PostgreSQL down), an event that can still count is appended here before the visitor
gets an answer, and ``pixel-wsgi replay`` later applies it to the store exactly once.

Format: one file per process, ``<pid>.spool``, in the spool directory, created ``0600``.
Each record is one line, ``<crc32 as 8 hex digits> <JSON>\\n``, written with a single
``write()`` under an exclusive ``flock`` and followed by ``fsync``: when :meth:`Spool.append`
returns, the record survives a crash of the process or of the machine. Records carry no
full IP address (only the truncated prefix a visit stores anyway).

Replay takes a file away from its writer by renaming it to ``<pid>.<n>.replaying``; a
writer that opened the old name checks, once it holds the lock, that the name still
points at its file, and otherwise opens the new one, so no record is ever appended to
a file that replay has finished. A line whose checksum fails (a torn last write, or a
damaged disk block) is moved to ``quarantine/`` with the file and line it came from and
the reason on its first line, never dropped.

**Bounded.** The files together hold at most ``max_bytes`` (256 MiB by default); a
record that would pass it is refused (:class:`SpoolFull`), with one ``CRITICAL`` log
line when that starts, and :meth:`Spool.status` says ``"full"``.

**Not to be planted.** The directory must belong to the user running the code (root
may use another user's spool: replaying the application user's spool is the usual
operator task) and must not be writable by group or others; otherwise every method
refuses it with a :class:`SpoolError` naming the path and the fault. Inside it nothing
is followed: every file is opened relative to the checked directory with
``O_NOFOLLOW``, only regular files of the spool's owner with one link count, opens
never block (a FIFO is refused, not read), and quarantine files are created ``0600``
with ``O_EXCL``.

**Personal data is sealed.** The remarketing fields of a report and the request context
of a conversion (any ``personal_data`` or ``conversion_context`` object of an event
appended with ``erasable=(advertiser_id, reference_id)``) are encrypted with a key kept
in ``keys/``, one key per conversion (advertiser and reference id). :meth:`Spool.erase`
destroys that key: every spooled copy of that conversion's personal data, pending,
quarantined or torn, becomes unreadable noise, and the replay stores the conversion
without it. The cipher is HMAC-SHA256 in counter mode with a random nonce per record,
authenticated by an HMAC tag (encrypt then MAC, standard library only). Keys are deleted
when a replay has drained the spool.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, SpoolError, SpoolFull, StorageError
from ..storage.group_sync import GroupRounds, flush

__all__ = ["DEFAULT_MAX_BYTES", "Spool", "SpoolError", "SpoolFull", "SpooledRecord", "Tally"]

logger = logging.getLogger("pixel_wsgi")

#: The default cap on the bytes the spool's files hold together.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

_LIVE_SUFFIX = ".spool"
_REPLAY_SUFFIX = ".replaying"
_QUARANTINE = "quarantine"
_KEYS = "keys"
_REPLAY_LOCK = "replay.lock"
_KEYS_LOCK = "lock"
# The members sealed: a report's remarketing fields and a conversion's request context.
_PERSONAL = frozenset(("personal_data", "conversion_context"))
# One of them holding an object that is not empty, in an encoded record: JSON escapes
# every quote inside a string, so a bare ``"name":`` is always a member's key, never a
# value's text.
_PERSONAL_MEMBER = re.compile(rb'"(?:personal_data|conversion_context)":\{(?!\})')
_SEALED = "sealed"
_KEY_BYTES = 32
_NONCE_BYTES = 16
_TAG_BYTES = 16
_SEAL_VERSION = "v1."
#: a longer line is not a record this code wrote: quarantined in part, never read whole
_MAX_LINE = 1024 * 1024
# Never follow a link, never wait on a FIFO, never leak into a child process.
_SAFE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record read back from a spool file (line numbers start at 1).

    ``raw`` is the line as written (checksum included), for the quarantine.
    """

    path: Path
    line: int
    event: dict[str, Any]
    raw: bytes = b""

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


class Tally:
    """Counts events by key and logs the counts, at most once per ``interval`` seconds.

    The first event is logged at once; later ones are summed into the next line.
    Thread-safe.
    """

    def __init__(
        self,
        message: str,
        *,
        level: int = logging.WARNING,
        interval: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.message = message
        self.level = level
        self.interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._next = 0.0
        self.total = 0

    def add(self, key: str) -> None:
        with self._lock:
            self.total += 1
            self._counts[key] += 1
            now = self._monotonic()
            if now < self._next:
                return
            counts, self._counts = self._counts, collections.Counter()
            self._next = now + self.interval
        shown = ", ".join(f"{name} {count}" for name, count in counts.most_common())
        logger.log(
            self.level,
            "%s: %d since the last such line (%s); at most one line per %g s",
            self.message,
            sum(counts.values()),
            shown,
            self.interval,
        )


def _encode(event: dict[str, Any]) -> bytes:
    text = json.dumps(event, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    data = text.encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(data), data)


def _decode(line: bytes) -> dict[str, Any] | None:
    """The event of a well-formed line, or None (torn or damaged)."""
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" ":
        return None
    data = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(data):
            return None
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("id"), str) else None


# -- sealing personal data ------------------------------------------------------------


def _key_name(advertiser_id: int, reference_id: str | None) -> str:
    """The file name of a conversion's key (a digest: reference ids stay out of names)."""
    text = f"{advertiser_id}\n{reference_id or ''}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"pixel-wsgi spool " + purpose, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, size: int) -> bytes:
    enc = _subkey(key, b"encrypt")
    blocks = (
        hmac.new(enc, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        for counter in range((size + 31) // 32)
    )
    return b"".join(blocks)[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return mixed.to_bytes(len(data), "big")


def _tag(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    mac = _subkey(key, b"authenticate")
    return hmac.new(mac, nonce + ciphertext, hashlib.sha256).digest()[:_TAG_BYTES]


def _seal(key: bytes, personal: dict[str, Any]) -> str:
    plaintext = json.dumps(personal, ensure_ascii=True, sort_keys=True).encode("ascii")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = _xor(plaintext, _keystream(key, nonce, len(plaintext)))
    packed = nonce + ciphertext + _tag(key, nonce, ciphertext)
    return _SEAL_VERSION + base64.urlsafe_b64encode(packed).decode("ascii")


def _unseal(key: bytes, token: str) -> dict[str, Any] | None:
    """The sealed object, or None when ``key`` is not the one it was sealed with."""
    if not token.startswith(_SEAL_VERSION):
        raise ValueError("sealed personal data of an unknown format")
    packed = base64.urlsafe_b64decode(token[len(_SEAL_VERSION) :])
    if len(packed) < _NONCE_BYTES + _TAG_BYTES:
        raise ValueError("sealed personal data is too short")
    nonce, ciphertext, tag = (
        packed[:_NONCE_BYTES],
        packed[_NONCE_BYTES:-_TAG_BYTES],
        packed[-_TAG_BYTES:],
    )
    if not hmac.compare_digest(tag, _tag(key, nonce, ciphertext)):
        return None
    value = json.loads(_xor(ciphertext, _keystream(key, nonce, len(ciphertext))))
    if not isinstance(value, dict):
        raise ValueError("sealed personal data is not an object")
    return value


def _map_personal(value: Any, change: Callable[[Any], Any]) -> Any:
    """``value`` with every ``personal_data`` (or ``conversion_context``) member that is
    an object replaced by ``change(member)``; a member of another type so named (a
    ``custom_data`` field, say) is no personal data, and stays."""
    if isinstance(value, dict):
        return {
            key: change(item)
            if key in _PERSONAL and isinstance(item, dict)
            else _map_personal(item, change)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_map_personal(item, change) for item in value]
    return value


# -- the safety of the directory -------------------------------------------------------


def _owner_problem(st: os.stat_result, allowed: tuple[int, ...]) -> str | None:
    if st.st_uid not in allowed:
        return f"it belongs to uid {st.st_uid}, not to the user running this (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
            " chmod go-w it"
        )
    return None


def _reason_line(reason: str) -> bytes:
    """``reason`` as one printable ASCII line."""
    text = reason.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:2000].encode()


_HARD_LINKS = "it has other names (hard links)"
#: Seconds between two reads of the bytes waiting (the cap) by the quick append path.
_PENDING_REFRESH = 0.5


@dataclass(slots=True)
class _QuickFile:
    """A process's live spool file kept open by the quick append path."""

    pid: int
    name: str
    dir_fd: int
    file_fd: int
    inode: int
    #: the bytes waiting, as last read, plus what this path appended since
    pending: int = 0
    pending_read_at: float = float("-inf")
    #: appended to since the last sync of :meth:`Spool.sync_appended`
    dirty: bool = False

    def close(self) -> None:
        for fd in (self.file_fd, self.dir_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Spool:
    """An append-only, fsync'd local spool in ``directory`` (created ``0700`` if missing).

    :param max_bytes: the most its files hold together (:data:`DEFAULT_MAX_BYTES`).
    :raises ConfigurationError: when the directory cannot be created, or
        ``max_bytes`` is not a positive integer.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the spool directory {directory}: {exc}"
            ) from exc
        #: the size of the last record refused for the cap (0: not full)
        self._refused_size = 0
        self._warned: set[str] = set()
        self._unusable = ""
        self._skipped = Tally(
            "pixel-wsgi store unavailable: events that cannot count were not spooled"
        )
        self._lost = Tally(
            "pixel-wsgi LOST events: the store failed and the spool did not take them",
            level=logging.CRITICAL,
        )
        #: this process's open file for :meth:`append` ``(durable=False)``
        self._quick: _QuickFile | None = None
        self._quick_lock = threading.Lock()
        #: the queued mode's ``queued-durable``: quick appends are made durable by
        #: :meth:`sync_appended` (the full path then fsyncs each record itself)
        self.sync_appends = False
        self._appends_sync = _AppendsSync(self)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # -- the directory ---------------------------------------------------------------

    @contextlib.contextmanager
    def _opened(self) -> Iterator[tuple[int, int]]:
        """The checked directory, open: its fd and its owner's uid.

        :raises SpoolError: when it cannot be opened or is not safe to use.
        """
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SpoolError(f"cannot open the spool directory {self.directory}: {exc}") from exc
        try:
            st = os.fstat(fd)
            euid = os.geteuid()
            # Root may replay the application user's spool; nobody else's.
            problem = _owner_problem(st, (euid, st.st_uid) if euid == 0 else (euid,))
            if problem is not None:
                raise SpoolError(f"refusing the spool directory {self.directory}: {problem}")
            try:
                yield fd, st.st_uid
            except OSError as exc:  # whatever the operation, one kind of error
                raise SpoolError(f"the spool {self.directory} failed: {exc}") from exc
        finally:
            os.close(fd)

    def check(self) -> None:
        """Raise :class:`SpoolError` unless the directory is safe to use."""
        with self._opened():
            pass

    def _subdir(self, fd: int, owner: int, name: str, *, create: bool = True) -> int | None:
        """Open ``name`` inside the spool (made ``0700`` if missing); None if absent."""
        if create:
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise SpoolError(f"cannot create {self.directory / name}: {exc}") from exc
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _SAFE, dir_fd=fd)
        except FileNotFoundError:
            if create:
                raise
            return None
        except OSError as exc:
            raise SpoolError(f"refusing {self.directory / name}: {exc}") from exc
        problem = _owner_problem(os.fstat(sub), (owner, os.geteuid()))
        if problem is not None:
            os.close(sub)
            raise SpoolError(f"refusing {self.directory / name}: {problem}")
        return sub

    def _open(
        self,
        fd: int,
        owner: int,
        name: str,
        flags: int,
        verb: str = "open",
        *,
        links_ok: bool = False,
    ) -> int:
        """Open a regular file of the spool, never following a link nor blocking.

        :param links_ok: let a file with other names through (the writer checks again
            under its lock: a rename by replay may show two names for an instant).
        """
        try:
            file_fd = os.open(name, flags | _SAFE, 0o600, dir_fd=fd)
        except OSError as exc:
            raise SpoolError(f"cannot {verb} {self.directory / name}: {exc}") from exc
        st = os.fstat(file_fd)
        why = self._file_problem(st, owner, links_ok=links_ok)
        if why is not None:
            os.close(file_fd)
            raise SpoolError(f"refusing {self.directory / name}: {why}")
        return file_fd

    @staticmethod
    def _file_problem(st: os.stat_result, owner: int, *, links_ok: bool = False) -> str | None:
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_uid not in (owner, os.geteuid()):
            return f"it belongs to uid {st.st_uid}, not to the spool's owner"
        if st.st_nlink != 1 and not links_ok:
            return _HARD_LINKS
        return None

    def _spool_files(self, fd: int, owner: int) -> list[tuple[str, os.stat_result]]:
        """The record files, with their status; anything else that looks like one is
        ignored (logged once)."""
        found = []
        for name in os.listdir(fd):
            if not name.endswith((_LIVE_SUFFIX, _REPLAY_SUFFIX)):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # replay just finished it
            why = self._file_problem(st, owner)
            if why is None:
                found.append((name, st))
            elif name not in self._warned:
                self._warned.add(name)
                logger.error("pixel-wsgi ignores %s in its spool: %s", self.directory / name, why)
        return found

    # -- writing -------------------------------------------------------------------

    def append(
        self,
        kind: str,
        *,
        erasable: tuple[int, str | None] | None = None,
        share: int = 1,
        durable: bool = True,
        **fields: Any,
    ) -> str:
        """Durably append one event; return its id (replay applies each id once).

        :param erasable: the advertiser and reference id of the conversion the event's
            ``personal_data`` objects belong to: they are sealed with its key, which
            :meth:`erase` destroys. An event with personal data needs it.
        :param share: refuse the record if the spool would then hold more than
            ``max_bytes // share`` (a smaller budget for less valuable records).
        :param durable: ``fsync`` the record before returning: it then survives a crash
            of the machine. With False (the queued mode) it is written with one
            ``write()`` to a file this process keeps open: it survives a crash of the
            process, not of the machine (SQLite's ``synchronous=NORMAL`` class), at a
            few microseconds instead of a disk flush.
        :raises SpoolFull: when the record does not fit under the cap.
        :raises SpoolError: when the record could not be made durable.
        """
        event_id = uuid.uuid4().hex
        event = {"id": event_id, "kind": kind, **fields}
        name = f"{os.getpid()}{_LIVE_SUFFIX}"
        limit = self.max_bytes // share
        record = None if durable else _encode(event)
        if (
            record is None
            or _PERSONAL_MEMBER.search(record)
            or not self._append_quick(name, record, limit)
        ):
            self._append(name, event, erasable, limit, durable=durable)
        self._refused_size = 0
        return event_id

    def _append_quick(self, name: str, record: bytes, limit: int) -> bool:
        """Append the encoded ``record`` through this process's open file; False to leave it to the
        full path (the cap may be near, the file moved too often, it cannot be opened).

        The hand-over with replay is :meth:`_write`'s: under the file's lock, the name
        must still be this file's, else the file is opened anew.
        """
        with self._quick_lock:
            try:
                for _ in range(3):
                    quick = self._quick
                    if quick is None or quick.pid != os.getpid() or quick.name != name:
                        quick = self._quick = self._open_quick(name, quick)
                    now = time.monotonic()
                    if now >= quick.pending_read_at + _PENDING_REFRESH:
                        quick.pending = self.pending()
                        quick.pending_read_at = now
                    if quick.pending + len(record) > limit:
                        return False  # the full path decides, exactly, and says why
                    fcntl.flock(quick.file_fd, fcntl.LOCK_EX)
                    try:
                        try:
                            current = os.stat(name, dir_fd=quick.dir_fd, follow_symlinks=False)
                        except FileNotFoundError:
                            current = None
                        if current is None or current.st_ino != quick.inode:
                            self._quick = None  # replay took it: a new file
                            self._close_quick(quick)
                            continue
                        if current.st_nlink != 1:
                            return False
                        if os.write(quick.file_fd, record) != len(record):
                            raise OSError("short write")
                    finally:
                        if self._quick is quick:
                            fcntl.flock(quick.file_fd, fcntl.LOCK_UN)
                    quick.pending += len(record)
                    quick.dirty = True
                    return True
            except (OSError, SpoolError):
                if self._quick is not None:
                    self._close_quick(self._quick)
                    self._quick = None
                return False
        return False

    def _close_quick(self, quick: _QuickFile) -> None:
        """Close this process's quick file; with :attr:`sync_appends`, what it took
        since the last sync is synced first (its waiters' round syncs the next file)."""
        if self.sync_appends and quick.dirty:
            try:
                flush(quick.file_fd)
            except OSError as exc:
                logger.critical(
                    "pixel-wsgi could not sync the queue's log %s (%s): its newest events"
                    " survive a crash of the process, not a power loss",
                    self.directory,
                    exc,
                )
        quick.close()

    def sync_appended(self) -> None:
        """Return once every quick append (``durable=False``) this process made before
        the call is on disk: one ``fdatasync`` for the threads that ask together (group
        commit, :class:`~pixel_wsgi.storage.group_sync.GroupRounds`).

        :raises SpoolError: when the sync failed (the events are in the log, and
            survive a crash of the process; only a power loss may drop them).
        """
        try:
            self._appends_sync.sync()
        except StorageError as exc:
            raise SpoolError(str(exc)) from exc

    def _sync_quick_file(self) -> None:
        """One round of :meth:`sync_appended`: the quick file as it is now."""
        with self._quick_lock:
            quick = self._quick
            if quick is None or quick.pid != os.getpid() or not quick.dirty:
                return
            fd = os.dup(quick.file_fd)  # stays open if another thread replaces the file
            quick.dirty = False
        try:
            flush(fd)
        except OSError as exc:
            raise StorageError(f"cannot sync the queue's log {self.directory}: {exc}") from exc
        finally:
            os.close(fd)

    def _open_quick(self, name: str, previous: _QuickFile | None) -> _QuickFile:
        """This process's live file, open for appending, in the checked directory."""
        if previous is not None and previous.pid == os.getpid():
            self._close_quick(previous)  # a parent's, after a fork, is the parent's
        with self._opened() as (fd, owner):
            dir_fd = os.dup(fd)
            try:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
                file_fd = self._open(fd, owner, name, flags, "write to the spool")
            except BaseException:
                os.close(dir_fd)
                raise
        return _QuickFile(os.getpid(), name, dir_fd, file_fd, os.fstat(file_fd).st_ino)

    def _append(
        self,
        name: str,
        event: dict[str, Any],
        erasable: tuple[int, str | None] | None,
        limit: int,
        *,
        durable: bool = True,
    ) -> None:
        with self._opened() as (fd, owner), contextlib.ExitStack() as stack:
            if _has_personal(event):
                if erasable is None:
                    raise ValueError("an event with personal data needs erasable=")
                event = self._sealed(fd, owner, stack, event, erasable)
            record = _encode(event)
            self._check_room(fd, owner, len(record), limit)
            self._write(fd, owner, name, record, durable=durable)

    def _check_room(self, fd: int, owner: int, size: int, limit: int) -> None:
        pending = sum(st.st_size for _, st in self._spool_files(fd, owner))
        if pending + size <= limit:
            return
        if limit < self.max_bytes:
            raise SpoolFull(f"the spool's budget for such records ({limit} bytes) is used")
        if not self._refused_size:
            logger.critical(
                "pixel-wsgi spool %s is full (%d of %d bytes): new events are LOST until"
                " `pixel-wsgi replay` drains it (the store must work again first)",
                self.directory,
                pending,
                self.max_bytes,
            )
        self._refused_size = size
        raise SpoolFull(f"the spool {self.directory} is full ({self.max_bytes} bytes)")

    def _write(self, fd: int, owner: int, name: str, record: bytes, *, durable: bool) -> None:
        for attempt in range(10):
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            file_fd = self._open(fd, owner, name, flags, "write to the spool", links_ok=True)
            try:
                fcntl.flock(file_fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # replay took the file: write to a new one
                if current.st_ino != os.fstat(file_fd).st_ino:
                    continue
                if os.fstat(file_fd).st_nlink != 1:
                    # Replay's rename can show two names for an instant on some file
                    # systems; a name that stays is someone's hard link: refused.
                    if attempt == 9:
                        raise SpoolError(f"refusing {self.directory / name}: {_HARD_LINKS}")
                    time.sleep(0.001 * (attempt + 1))
                    continue
                if os.write(file_fd, record) != len(record):
                    raise OSError("short write")
                if durable or self.sync_appends:
                    os.fsync(file_fd)
                return
            finally:
                os.close(file_fd)  # also releases the lock
        raise OSError("the spool file kept moving")

    def skip(self, reason: str) -> None:
        """Count an event that is not worth spooling (it could not count anyway);
        the counts are logged, at most once a minute."""
        self._skipped.add(reason)

    def lost(self, reason: str) -> None:
        """Count an event neither the store nor the spool took (a ``CRITICAL`` line at
        most once a minute, with the counts by ``reason``)."""
        self._lost.add(reason)

    def status(self) -> tuple[int, str]:
        """Bytes waiting for replay, and ``"ok"``, ``"full"`` or ``"unusable"``."""
        try:
            pending = self.pending()
        except SpoolError as exc:
            if str(exc) != self._unusable:  # once per fault, not per health check
                self._unusable = str(exc)
                logger.error("pixel-wsgi spool unusable: %s", exc)
            return 0, "unusable"
        self._unusable = ""
        if self._refused_size and pending + self._refused_size <= self.max_bytes:
            self._refused_size = 0  # drained since
        return pending, "full" if self._refused_size or pending >= self.max_bytes else "ok"

    # -- personal data ---------------------------------------------------------------

    @contextlib.contextmanager
    def _keys(self, fd: int, owner: int, operation: int, *, create: bool) -> Iterator[int | None]:
        """The ``keys/`` directory, open, under its lock (None when there is none).

        Writers hold it shared from reading a key to writing the record sealed with
        it; :meth:`erase` and :meth:`forget_keys` hold it exclusive.
        """
        keys = self._subdir(fd, owner, _KEYS, create=create)
        if keys is None:
            yield None
            return
        try:
            # Readable by all (it is empty): a root replay that made it must not lock
            # the application's user out.
            lock = os.open(_KEYS_LOCK, os.O_RDONLY | os.O_CREAT | _SAFE, 0o644, dir_fd=keys)
            try:
                fcntl.flock(lock, operation)
                yield keys
            finally:
                os.close(lock)
        finally:
            os.close(keys)

    def _key(self, keys: int, owner: int, key_name: str, *, create: bool) -> bytes | None:
        """A conversion's key; a new one with ``create``, else None when there is none."""
        try:
            key_fd = os.open(key_name, os.O_RDONLY | _SAFE, dir_fd=keys)
        except FileNotFoundError:
            if not create:
                return None
            try:
                return self._new_key(keys, key_name)
            except FileExistsError:  # another writer made it first: use theirs
                return self._key(keys, owner, key_name, create=False)
        try:
            st = os.fstat(key_fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid not in (owner, os.geteuid()):
                raise SpoolError(f"refusing the spool key {key_name}: not a key file")
            key = os.read(key_fd, _KEY_BYTES + 1)
        finally:
            os.close(key_fd)
        if len(key) != _KEY_BYTES:
            raise SpoolError(f"the spool key {key_name} is damaged")
        return key

    @staticmethod
    def _new_key(keys: int, key_name: str) -> bytes:
        key = secrets.token_bytes(_KEY_BYTES)
        temp = f".{key_name}.{uuid.uuid4().hex[:8]}"
        temp_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE, 0o600, dir_fd=keys)
        try:
            os.write(temp_fd, key)
            os.fsync(temp_fd)
        finally:
            os.close(temp_fd)
        try:
            # link() never replaces: of two writers making a key, both use the first.
            os.link(temp, key_name, src_dir_fd=keys, dst_dir_fd=keys, follow_symlinks=False)
        finally:
            os.unlink(temp, dir_fd=keys)
        os.fsync(keys)
        return key

    def _sealed(
        self,
        fd: int,
        owner: int,
        stack: contextlib.ExitStack,
        event: dict[str, Any],
        erasable: tuple[int, str | None],
    ) -> dict[str, Any]:
        """``event`` with its personal data sealed, and the name of the key."""
        keys = stack.enter_context(self._keys(fd, owner, fcntl.LOCK_SH, create=True))
        key_name = _key_name(*erasable)
        key = None if keys is None else self._key(keys, owner, key_name, create=True)
        if key is None:  # made by another writer and erased at once: not worth a retry
            raise SpoolError(f"the spool key {key_name} vanished as it was made")
        sealed = _map_personal(event, lambda personal: {_SEALED: _seal(key, personal)})
        return {**sealed, "key": key_name}

    def unsealed(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` with its personal data opened; ``{}`` where its key was erased.

        :raises ValueError: for sealed data that is not what :meth:`append` writes.
        """
        key_name = event.get("key")
        if key_name is None:
            return event
        if not isinstance(key_name, str) or len(key_name) != 64 or not key_name.isalnum():
            raise ValueError("the record names no valid key")
        with (
            self._opened() as (fd, owner),
            self._keys(fd, owner, fcntl.LOCK_SH, create=False) as keys,
        ):
            key = None if keys is None else self._key(keys, owner, key_name, create=False)

        def open_sealed(value: Any) -> Any:
            if not isinstance(value, dict) or set(value) != {_SEALED}:
                raise ValueError("personal data is not sealed")
            token = value[_SEALED]
            if not isinstance(token, str):
                raise ValueError("sealed personal data is not text")
            opened = None if key is None else _unseal(key, token)
            return {} if opened is None else opened  # erased

        return {k: v for k, v in _map_personal(event, open_sealed).items() if k != "key"}

    def erase(self, advertiser_id: int, reference_id: str) -> bool:
        """Destroy the key that seals this conversion's spooled personal data.

        Every spooled copy of it (pending, quarantined, damaged) becomes unreadable,
        and a replay stores the conversion without it. True if there was a key.
        """
        key_name = _key_name(advertiser_id, reference_id)
        with (
            self._opened() as (fd, owner),
            self._keys(fd, owner, fcntl.LOCK_EX, create=False) as keys,
        ):
            if keys is None:
                return False
            try:
                os.unlink(key_name, dir_fd=keys)
            except FileNotFoundError:
                return False
            os.fsync(keys)
            return True

    def forget_keys(self) -> int:
        """Delete every key once no record waits for replay; the number deleted."""
        with (
            self._opened() as (fd, owner),
            self._keys(fd, owner, fcntl.LOCK_EX, create=False) as keys,
        ):
            # Under the exclusive lock no writer is between sealing and writing.
            if keys is None or self._spool_files(fd, owner):
                return 0
            names = [name for name in os.listdir(keys) if name != _KEYS_LOCK]
            for name in names:
                os.unlink(name, dir_fd=keys)
            os.fsync(keys)
        return len(names)

    # -- reading -------------------------------------------------------------------

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Hold the spool's replay lock: one replay at a time.

        :raises SpoolError: when another replay holds it, or the directory is unsafe.
        """
        with self._opened() as (fd, owner):
            lock = self._open(fd, owner, _REPLAY_LOCK, os.O_WRONLY | os.O_CREAT)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolError(f"another replay of {self.directory} is running") from None
            yield
        finally:
            os.close(lock)

    def files(self) -> list[Path]:
        """Files holding records: live ones and ones a replay had taken, oldest first."""
        with self._opened() as (fd, owner):
            found = self._spool_files(fd, owner)
        found.sort(key=lambda item: (item[1].st_mtime, item[0]))
        return [self.directory / name for name, _ in found]

    def pending(self) -> int:
        """Bytes waiting for replay (0 when the spool is drained)."""
        with self._opened() as (fd, owner):
            return sum(st.st_size for _, st in self._spool_files(fd, owner))

    def oldest_pending_at(self) -> str | None:
        """When the oldest event still waiting was written (its ``at``, UTC ISO text),
        read from the first line of each file; None when nothing waits."""
        oldest: str | None = None
        for path in self.files():
            with contextlib.suppress(OSError), open(path, "rb") as file:
                event = _decode(file.readline(_MAX_LINE))
                at = None if event is None else event.get("at")
                if isinstance(at, str) and (oldest is None or at < oldest):
                    oldest = at
        return oldest

    def take(self, path: Path) -> Path:
        """Rename a live file so that no writer appends to it any more; wait for one
        that is appending now to finish."""
        if path.name.endswith(_REPLAY_SUFFIX):
            return path
        stem = path.name[: -len(_LIVE_SUFFIX)]
        target = f"{stem}.{uuid.uuid4().hex[:8]}{_REPLAY_SUFFIX}"
        with self._opened() as (fd, owner):
            try:
                os.rename(path.name, target, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError as exc:
                raise SpoolError(f"cannot take {path} for replay: {exc}") from exc
            file_fd = self._open(fd, owner, target, os.O_RDONLY)
        try:
            fcntl.flock(file_fd, fcntl.LOCK_EX)  # a writer that still holds it finishes first
        finally:
            os.close(file_fd)
        return self.directory / target

    def records(self, path: Path) -> Iterator[SpooledRecord]:
        """The good records of a taken file; bad lines go to quarantine as they are met."""
        with self._opened() as (fd, owner):
            file_fd = self._open(fd, owner, path.name, os.O_RDONLY)
        with os.fdopen(file_fd, "rb") as file:
            number = 0
            while line := file.readline(_MAX_LINE):
                number += 1
                if len(line) == _MAX_LINE and not line.endswith(b"\n"):
                    while (rest := file.readline(_MAX_LINE)) and not rest.endswith(b"\n"):
                        pass
                    self.quarantine(path, number, line, f"a line longer than {_MAX_LINE} bytes")
                    continue
                event = _decode(line)
                if event is None:
                    self.quarantine(path, number, line)
                    continue
                yield SpooledRecord(path, number, event, line)

    def quarantine(
        self,
        path: Path,
        line_number: int,
        line: bytes,
        reason: str = "the checksum does not match (a torn or damaged line)",
    ) -> Path:
        """Keep a line that cannot be applied in ``quarantine/``: the file is named
        after where it came from; its first line is ``# <reason>``, then the line."""
        with self._opened() as (fd, owner):
            folder = self._subdir(fd, owner, _QUARANTINE)
            assert folder is not None
            try:
                name = f"{path.name}.line{line_number}"
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE
                try:
                    out = os.open(name, flags, 0o600, dir_fd=folder)
                except FileExistsError:  # quarantined before, by a replay that died
                    name = f"{name}.{uuid.uuid4().hex[:8]}"
                    out = os.open(name, flags, 0o600, dir_fd=folder)
                try:
                    data = b"# " + _reason_line(reason) + b"\n" + line
                    if os.write(out, data) != len(data):
                        raise OSError("short write")
                    os.fsync(out)
                finally:
                    os.close(out)
                os.fsync(folder)
            except OSError as exc:
                raise SpoolError(f"cannot quarantine line {line_number} of {path}: {exc}") from exc
            finally:
                os.close(folder)
        return self.directory / _QUARANTINE / name

    def quarantined(self) -> list[Path]:
        """The quarantine's files, by name."""
        with self._opened() as (fd, owner):
            folder = self._subdir(fd, owner, _QUARANTINE, create=False)
            if folder is None:
                return []
            try:
                names = [
                    name
                    for name in os.listdir(folder)
                    if stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
                ]
            finally:
                os.close(folder)
        return [self.directory / _QUARANTINE / name for name in sorted(names)]

    def finish(self, path: Path) -> None:
        """Delete a taken file once every record in it is applied."""
        with self._opened() as (fd, _):
            os.unlink(path.name, dir_fd=fd)
            os.fsync(fd)


def _has_personal(event: dict[str, Any]) -> bool:
    found: list[Any] = []
    _map_personal(event, found.append)
    return any(found)


class _AppendsSync(GroupRounds):
    """The rounds of :meth:`Spool.sync_appended`."""

    def __init__(self, spool: Spool) -> None:
        self._spool = weakref.ref(spool)
        super().__init__()

    def _round(self) -> None:
        spool = self._spool()
        if spool is not None:
            spool._sync_quick_file()
