"""The outage spool: events the store could not take, kept durably on local disk.

When a write to the store fails (locked past the busy timeout, disk full, read-only,
PostgreSQL down), the event is appended here before the visitor gets an answer, and
``pixel-wsgi replay`` later applies it to the store exactly once.

Format: one file per process, ``<pid>.spool``, in the spool directory, created ``0600``.
Each record is one line, ``<crc32 as 8 hex digits> <JSON>\\n``, written with a single
``write()`` under an exclusive ``flock`` and followed by ``fsync``: when :meth:`Spool.append`
returns, the record survives a crash of the process or of the machine. Records carry no
full IP address (only the truncated prefix a visit stores anyway).

Replay takes a file away from its writer by renaming it to ``<pid>.<n>.replaying``; a
writer that opened the old name checks, once it holds the lock, that the name still
points at its file, and otherwise opens the new one, so no record is ever appended to
a file that replay has finished. A line whose checksum fails (a torn last write, or a
damaged disk block) is moved to ``quarantine/`` with the file and line it came from,
never dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, StorageError

__all__ = ["Spool", "SpoolError", "SpooledRecord"]

_LIVE_SUFFIX = ".spool"
_REPLAY_SUFFIX = ".replaying"
_QUARANTINE = "quarantine"
_REPLAY_LOCK = "replay.lock"


class SpoolError(StorageError):
    """The spool could not take an event either: it is lost unless the caller retries."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record read back from a spool file (line numbers start at 1)."""

    path: Path
    line: int
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["id"])


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


class Spool:
    """An append-only, fsync'd local spool in ``directory`` (created ``0700`` if missing).

    :raises ConfigurationError: when the directory cannot be created.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.directory / _QUARANTINE).mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the spool directory {directory}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # -- writing -------------------------------------------------------------------

    def append(self, kind: str, **fields: Any) -> str:
        """Durably append one event; return its id (replay applies each id once).

        :raises SpoolError: when the record could not be made durable.
        """
        event_id = uuid.uuid4().hex
        record = _encode({"id": event_id, "kind": kind, **fields})
        path = self.directory / f"{os.getpid()}{_LIVE_SUFFIX}"
        try:
            for _ in range(10):
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    try:
                        current = os.stat(path)
                    except FileNotFoundError:
                        continue  # replay took the file: write to a new one
                    if current.st_ino != os.fstat(fd).st_ino:
                        continue
                    if os.write(fd, record) != len(record):
                        raise OSError("short write")
                    os.fsync(fd)
                    return event_id
                finally:
                    os.close(fd)  # also releases the lock
            raise OSError("the spool file kept moving")
        except OSError as exc:
            raise SpoolError(f"cannot write to the spool {path}: {exc}") from exc

    # -- reading -------------------------------------------------------------------

    @contextlib.contextmanager
    def replaying(self) -> Iterator[None]:
        """Hold the spool's replay lock: one replay at a time.

        :raises SpoolError: when another replay holds it.
        """
        fd = os.open(self.directory / _REPLAY_LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpoolError(f"another replay of {self.directory} is running") from None
            yield
        finally:
            os.close(fd)

    def files(self) -> list[Path]:
        """Files holding records: live ones and ones a replay had taken, oldest first."""
        found = [
            path
            for path in self.directory.iterdir()
            if path.is_file() and path.name.endswith((_LIVE_SUFFIX, _REPLAY_SUFFIX))
        ]
        return sorted(found, key=lambda path: (path.stat().st_mtime, path.name))

    def pending(self) -> int:
        """Bytes waiting for replay (0 when the spool is drained)."""
        total = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):  # replay just finished it
                total += path.stat().st_size
        return total

    def take(self, path: Path) -> Path:
        """Rename a live file so that no writer appends to it any more; wait for one
        that is appending now to finish."""
        if path.name.endswith(_REPLAY_SUFFIX):
            return path
        stem = path.name[: -len(_LIVE_SUFFIX)]
        target = path.with_name(f"{stem}.{uuid.uuid4().hex[:8]}{_REPLAY_SUFFIX}")
        os.rename(path, target)
        fd = os.open(target, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a writer that still holds it finishes first
        finally:
            os.close(fd)
        return target

    def records(self, path: Path) -> Iterator[SpooledRecord]:
        """The good records of a taken file; bad lines go to quarantine as they are met."""
        with open(path, "rb") as file:
            for number, line in enumerate(file, start=1):
                event = _decode(line)
                if event is None:
                    self.quarantine(path, number, line)
                    continue
                yield SpooledRecord(path, number, event)

    def quarantine(self, path: Path, line_number: int, line: bytes) -> Path:
        """Keep a damaged line, with where it came from, in ``quarantine/``."""
        target = self.directory / _QUARANTINE / f"{path.name}.line{line_number}"
        with open(target, "wb") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        return target

    def quarantined(self) -> list[Path]:
        return sorted((self.directory / _QUARANTINE).iterdir())

    def finish(self, path: Path) -> None:
        """Delete a taken file once every record in it is applied."""
        os.unlink(path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
