"""What the ``pixel-wsgi`` group hands its commands: the store, opened on first use."""

from __future__ import annotations

import click

from ..errors import ConfigurationError
from ..storage import SQLiteStorage, Storage, storage_from_url

#: The store used when neither ``--storage`` nor ``PIXEL_WSGI_STORAGE`` is given.
DEFAULT_STORAGE = "sqlite:///pixel-wsgi.db"
#: The environment variable read for ``--storage``.
STORAGE_ENV = "PIXEL_WSGI_STORAGE"


class State:
    """What the group hands its commands: the storage URL, opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._storage: Storage | None = None

    def storage(self, *, migrate: bool = True) -> Storage:
        """The store for a command that writes: created (SQLite) and migrated."""
        if self._storage is None:
            storage = storage_from_url(self.url)
            if isinstance(storage, SQLiteStorage):
                verb = "using" if storage.path.exists() else "creating"
                _say_which_file(storage, verb)
            if migrate:
                storage.migrate()
            self._storage = storage
        return self._storage

    def reader(self) -> Storage:
        """The store for a command that only reads: never created, never written.

        A SQLite file is opened read-only, so one that this user may not write works.
        """
        if self._storage is None:
            storage = storage_from_url(self.url)
            if isinstance(storage, SQLiteStorage):
                storage = _read_only_sqlite(storage)
            self._storage = storage
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def _say_which_file(storage: SQLiteStorage, verb: str) -> None:
    """A relative path depends on the current directory: name the file it resolved to."""
    if not storage.path.is_absolute():
        click.echo(f"pixel-wsgi: {verb} {storage.path.absolute()}", err=True)


def _read_only_sqlite(storage: SQLiteStorage) -> SQLiteStorage:
    _say_which_file(storage, "using")
    path = storage.path.absolute()
    if not path.is_file():
        raise ConfigurationError(
            f"no database at {path} (commands that only read never create one): give"
            f" --storage sqlite:///<path> or set {STORAGE_ENV}, or create it with"
            " `pixel-wsgi migrate`"
        )
    reader = SQLiteStorage(
        path,
        busy_timeout=storage.busy_timeout,
        synchronous=storage.synchronous,
        max_rejections=storage.max_rejections,
        read_only=True,
    )
    pending = reader.pending_migrations()
    if pending:
        reader.close()
        raise ConfigurationError(
            f"the database {path} lacks the schema migrations {', '.join(pending)}: run"
            " `pixel-wsgi migrate` as a user who may write it"
        )
    return reader
