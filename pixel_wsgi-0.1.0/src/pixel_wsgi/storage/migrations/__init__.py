"""The schema of each SQL backend, as registries of migrations applied in order.

One format for both dialects (:mod:`.sqlite`, :mod:`.postgres`): a
:class:`Migrations` registry of small named functions, each given a
:data:`Script` runner for its statements; the names applied are recorded in the
``pixel_wsgi_migrations`` table, inside the same transaction as the migrations
themselves, which the caller holds under the dialect's migration lock. Never edit
a migration that has shipped: add one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MIGRATIONS_TABLE", "Migrations", "Script"]

#: The table that records which migrations ran (name, applied_at).
MIGRATIONS_TABLE = "pixel_wsgi_migrations"

#: Runs a script of statements, ``;``-separated, inside the migrating transaction.
Script = Callable[[str], None]
MigrationFunction = Callable[[Script], None]
#: Runs one statement (``?`` placeholders) in the migrating transaction; its cursor.
Execute = Callable[[str, tuple[Any, ...]], Any]


class Migrations:
    """An ordered registry of named migrations; register with the decorator::

    migrations = Migrations()

    @migrations(name="0001_initial")
    def initial(script: Script) -> None:
        script("CREATE TABLE ...")
    """

    def __init__(self) -> None:
        self.registry: list[tuple[str, MigrationFunction]] = []

    def __call__(self, *, name: str) -> Callable[[MigrationFunction], MigrationFunction]:
        def register(function: MigrationFunction) -> MigrationFunction:
            if name in self.names:
                raise ValueError(f"migration {name!r} is registered twice")
            self.registry.append((name, function))
            return function

        return register

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.registry]

    def pending(self, applied: Iterable[str]) -> list[str]:
        """The names of the migrations not in ``applied``, in order."""
        done = set(applied)
        return [name for name in self.names if name not in done]

    def apply(self, execute: Execute, script: Script, applied_at: str) -> list[str]:
        """Apply the pending migrations inside the caller's transaction; their names.

        The caller holds its dialect's migration lock, so nobody else migrates
        meanwhile, and commits (or rolls back everything on an error).
        """
        execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}"
            " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
            (),
        )
        done = [row[0] for row in execute(f"SELECT name FROM {MIGRATIONS_TABLE}", ()).fetchall()]
        ran = []
        for name, migration in self.registry:
            if name in ran or name in done:
                continue
            migration(script)
            execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                (name, applied_at),
            )
            ran.append(name)
        return ran
