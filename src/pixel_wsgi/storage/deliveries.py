"""The delivery outbox's statements, written once for both SQL backends.

Three tables (migration ``0007_delivery_outbox``): ``delivery_targets`` (settings,
sealed credentials, the cursor over ledger ids, the circuit breaker), ``deliveries``
(one row per ledger row and target: pending until settled, leased while a worker
sends it) and ``delivery_attempts`` (every request, redacted). The dialects inherit
:class:`SQLDeliveryStorage`; PostgreSQL adds ``FOR UPDATE ... SKIP LOCKED`` to the
claim (:attr:`SQLDeliveryStorage.skip_locked`), so concurrent workers pass over each
other's rows instead of waiting, and SQLite's claim runs in its one-writer transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ..clock import iso_utc, utc_now
from ..errors import NotFoundError
from ..models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Settlement,
    StoredTarget,
    TargetHealth,
    TargetKind,
    TargetStatus,
    Transaction,
)
from .rows import TRANSACTION_COLUMNS, filters, transaction_from_row
from .sql import Row, SQLStorage, id_chunks

__all__ = ["SQLDeliveryStorage"]

_TARGET_COLUMNS = (
    "id, advertiser_id, kind, publisher_id, settings, sealed_secrets, status,"
    " status_detail, ledger_cursor, failures, resume_at, created_at, updated_at"
)
_SELECT_TARGETS = f"SELECT {_TARGET_COLUMNS} FROM delivery_targets"
_DELIVERY_COLUMNS = (
    "d.target_id, d.transaction_id, d.original_transaction_id, d.status, d.attempts,"
    " d.next_attempt_at, d.detail, d.created_at, d.updated_at, d.lease_until"
)
# Due rows of an active target, oldest first: their time has come, nobody holds them,
# and no earlier row of their chain is pending for the target (a correction waits for
# its original; a conversion, the first of its chain, skips that look-up).
# Each comes with where its original stands with the same target, and for a
# correction the newest later row of its chain the target already has (a correction
# retried after a newer one arrived would undo it).
_DUE = (
    f"SELECT {_DELIVERY_COLUMNS}, o.status,"
    " CASE WHEN d.original_transaction_id <> d.transaction_id THEN"
    " (SELECT MAX(l.transaction_id) FROM deliveries l WHERE l.target_id = d.target_id"
    " AND l.original_transaction_id = d.original_transaction_id"
    " AND l.transaction_id > d.transaction_id AND l.status IN ('delivered', 'duplicate'))"
    " END"
    " FROM deliveries d"
    " LEFT JOIN deliveries o ON o.target_id = d.target_id"
    " AND o.transaction_id = d.original_transaction_id"
    " AND d.original_transaction_id <> d.transaction_id"
    " WHERE d.target_id = ? AND d.status = 'pending' AND d.next_attempt_at <= ?"
    " AND (d.lease_until IS NULL OR d.lease_until <= ?)"
    " AND EXISTS (SELECT 1 FROM delivery_targets t WHERE t.id = d.target_id"
    " AND t.status = 'active')"
    " AND (d.original_transaction_id = d.transaction_id"
    " OR NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.target_id = d.target_id"
    " AND e.original_transaction_id = d.original_transaction_id"
    " AND e.transaction_id < d.transaction_id AND e.status = 'pending'))"
    " ORDER BY d.transaction_id LIMIT ?"
)
# Whether any row might be due (the partial index of pending rows): before a claim.
_ANY_DUE = (
    "SELECT 1 FROM deliveries WHERE target_id = ? AND status = 'pending'"
    " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) LIMIT 1"
)
_SETTLE = (
    "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, detail = ?,"
    " updated_at = ?, lease_token = NULL, lease_until = NULL"
    " WHERE target_id = ? AND lease_token = ? AND transaction_id IN ({ids})"
)
#: Deliveries per INSERT when queueing (6 parameters each: far under both backends'
#: limits on parameters).
_ROWS_PER_INSERT = 500
# Every target with its backlog: the pending count (the partial index of pending rows),
# when its oldest pending row was made, and when the first ledger row after its cursor
# (not queued yet: no worker has looked at it) was made. One statement for every target,
# so that the health check costs one round trip however many targets there are.
_HEALTH = (
    "SELECT t.id, t.advertiser_id, t.kind, t.status, t.status_detail, t.failures,"
    " t.resume_at,"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.target_id = t.id AND d.status = 'pending'),"
    " (SELECT x.created_at FROM deliveries d JOIN transactions x ON x.id = d.transaction_id"
    " WHERE d.target_id = t.id AND d.status = 'pending' ORDER BY d.transaction_id LIMIT 1),"
    " (SELECT x.created_at FROM transactions x WHERE x.advertiser_id = t.advertiser_id"
    " AND x.id > t.ledger_cursor ORDER BY x.id LIMIT 1)"
    " FROM delivery_targets t"
)
_ATTEMPT_COLUMNS = (
    "target_id, transaction_ids, attempted_at, outcome, detail, request, response, duration_ms"
)


def _target_from_row(row: Row) -> StoredTarget:
    settings = json.loads(row[4])
    return StoredTarget(
        id=row[0],
        advertiser_id=row[1],
        kind=TargetKind(row[2]),
        publisher_id=row[3],
        settings=settings,
        sealed_secrets=row[5],
        status=TargetStatus(row[6]),
        status_detail=row[7],
        cursor=row[8],
        failures=row[9],
        resume_at=row[10],
        created_at=row[11],
        updated_at=row[12],
    )


def _delivery_from_row(row: Row) -> Delivery:
    return Delivery(
        target_id=row[0],
        transaction_id=row[1],
        original_transaction_id=row[2],
        status=DeliveryStatus(row[3]),
        attempts=row[4],
        next_attempt_at=row[5],
        detail=row[6],
        created_at=row[7],
        updated_at=row[8],
        lease_until=row[9],
        original_status=DeliveryStatus(row[10]) if len(row) > 10 and row[10] else None,
        superseded_by=row[11] if len(row) > 11 else None,
    )


def _attempt_from_row(row: Row) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=row[0],
        target_id=row[1],
        transaction_ids=tuple(int(part) for part in row[2].split(",") if part),
        attempted_at=row[3],
        outcome=row[4],
        detail=row[5],
        request=row[6],
        response=row[7],
        duration_ms=row[8],
    )


def _placeholders(ids: Sequence[object]) -> str:
    return ", ".join("?" * len(ids))


class SQLDeliveryStorage(SQLStorage):
    """:class:`~.sql.SQLStorage` with the delivery outbox: what both dialects subclass."""

    #: Appended to the claim's SELECT: PostgreSQL locks the rows it claims and skips
    #: those another worker is claiming; SQLite's write transaction is already alone.
    skip_locked: ClassVar[str] = ""

    # -- targets -----------------------------------------------------------------

    def add_target(
        self,
        advertiser_id: int,
        kind: TargetKind,
        *,
        publisher_id: int | None,
        settings: Mapping[str, str],
        sealed_secrets: str,
        start_after: int,
    ) -> StoredTarget:
        if self.advertiser(advertiser_id) is None:
            raise NotFoundError(f"no advertiser {advertiser_id}")
        if publisher_id is not None and self.publisher(publisher_id) is None:
            raise NotFoundError(f"no publisher {publisher_id}")
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a delivery target",
            "INSERT INTO delivery_targets (advertiser_id, kind, publisher_id, settings,"
            " sealed_secrets, status, ledger_cursor, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            (
                advertiser_id,
                kind.value,
                publisher_id,
                json.dumps(dict(settings), sort_keys=True),
                sealed_secrets,
                max(start_after, 0),
                now,
                now,
            ),
        )
        return self._existing_target(new_id)

    def target(self, target_id: int) -> StoredTarget | None:
        row = self._one("read a delivery target", f"{_SELECT_TARGETS} WHERE id = ?", (target_id,))
        return None if row is None else _target_from_row(row)

    def _existing_target(self, target_id: int) -> StoredTarget:
        found = self.target(target_id)
        if found is None:
            raise NotFoundError(f"no delivery target {target_id}")
        return found

    def targets(
        self, *, advertiser_id: int | None = None, removed: bool = False
    ) -> list[StoredTarget]:
        conditions, params = filters(
            ("advertiser_id = ?", advertiser_id),
            ("status <> ?", None if removed else TargetStatus.REMOVED.value),
            prefix=" WHERE ",
        )
        rows = self._read(
            "list delivery targets", f"{_SELECT_TARGETS}{conditions} ORDER BY id", params
        )
        return [_target_from_row(row) for row in rows]

    def _update_target(
        self, operation: str, target_id: int, assignments: str, values: tuple[Any, ...]
    ) -> None:
        with self._transaction(operation) as execute:
            cursor = execute(
                f"UPDATE delivery_targets SET {assignments}, updated_at = ? WHERE id = ?",
                (*values, iso_utc(utc_now()), target_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no delivery target {target_id}")

    def set_target(
        self, target_id: int, settings: Mapping[str, str], sealed_secrets: str
    ) -> StoredTarget:
        self._update_target(
            "change a delivery target",
            target_id,
            "settings = ?, sealed_secrets = ?",
            (json.dumps(dict(settings), sort_keys=True), sealed_secrets),
        )
        return self._existing_target(target_id)

    def set_target_status(
        self, target_id: int, status: TargetStatus, detail: str | None
    ) -> StoredTarget:
        self._update_target(
            "change a delivery target's status",
            target_id,
            "status = ?, status_detail = ?, failures = 0, resume_at = NULL",
            (status.value, detail),
        )
        return self._existing_target(target_id)

    def set_target_breaker(self, target_id: int, failures: int, resume_at: str | None) -> None:
        self._update_target(
            "record a delivery target's failures",
            target_id,
            "failures = ?, resume_at = ?",
            (failures, resume_at),
        )

    # -- the outbox --------------------------------------------------------------

    def last_transaction_id(self, *, before: str | None = None) -> int:
        # Newest first along the primary key: with ``before``, only the rows made since
        # are read before the answer (ledger ids follow commit order).
        condition, params = filters(("created_at < ?", before), prefix=" WHERE ")
        row = self._one(
            "read the newest ledger id",
            f"SELECT id FROM transactions{condition} ORDER BY id DESC LIMIT 1",
            params,
        )
        return 0 if row is None else int(row[0])

    def queue_deliveries(
        self,
        target_id: int,
        cursor: int,
        new_cursor: int,
        rows: Sequence[tuple[int, int]],
        now: str,
    ) -> bool:
        with self._transaction("queue deliveries") as execute:
            moved = execute(
                "UPDATE delivery_targets SET ledger_cursor = ? WHERE id = ? AND ledger_cursor = ?",
                (new_cursor, target_id, cursor),
            )
            if moved.rowcount == 0:
                return False
            # Several rows per INSERT: one statement per row cost most of a pass.
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                chunk = rows[start : start + _ROWS_PER_INSERT]
                execute(
                    "INSERT INTO deliveries (target_id, transaction_id, original_transaction_id,"
                    " status, next_attempt_at, created_at, updated_at) VALUES "
                    + ", ".join(["(?, ?, ?, 'pending', ?, ?, ?)"] * len(chunk))
                    + " ON CONFLICT (target_id, transaction_id) DO NOTHING",
                    tuple(
                        value
                        for transaction_id, original_id in chunk
                        for value in (target_id, transaction_id, original_id, now, now, now)
                    ),
                )
        return True

    def claim_deliveries(
        self, target_id: int, *, now: str, lease_until: str, token: str, limit: int
    ) -> list[Delivery]:
        # A worker with nothing to do asks every second or so (one per process with
        # deliver_in_background): a plain read first, so that an idle pass takes no
        # write lock, which SQLite's pixel writes would wait behind.
        if self._one("look for due deliveries", _ANY_DUE, (target_id, now, now)) is None:
            return []
        with self._transaction("claim deliveries") as execute:
            rows = execute(f"{_DUE}{self.skip_locked}", (target_id, now, now, limit)).fetchall()
            for chunk, placeholders in id_chunks([row[1] for row in rows]):
                execute(
                    "UPDATE deliveries SET lease_token = ?, lease_until = ?"
                    f" WHERE target_id = ? AND transaction_id IN ({placeholders})",
                    (token, lease_until, target_id, *chunk),
                )
        return [_delivery_from_row((*row[:9], lease_until, *row[10:])) for row in rows]

    def delivery_origins(self, target_id: int, transaction_ids: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for chunk, placeholders in id_chunks(transaction_ids):
            rows = self._read(
                "read where deliveries were placed",
                "SELECT transaction_id, original_transaction_id FROM deliveries"
                f" WHERE target_id = ? AND transaction_id IN ({placeholders})",
                (target_id, *chunk),
            )
            found.update((row[0], row[1]) for row in rows)
        return found

    def renew_lease(self, target_id: int, token: str, *, lease_until: str) -> set[int]:
        with self._transaction("renew a delivery lease") as execute:
            execute(
                "UPDATE deliveries SET lease_until = ? WHERE target_id = ? AND lease_token = ?",
                (lease_until, target_id, token),
            )
            held = execute(
                "SELECT transaction_id FROM deliveries WHERE target_id = ? AND lease_token = ?",
                (target_id, token),
            ).fetchall()
        return {row[0] for row in held}

    def due_deliveries(self, target_id: int, *, now: str, limit: int) -> list[Delivery]:
        rows = self._read("read due deliveries", _DUE, (target_id, now, now, limit))
        return [_delivery_from_row(row) for row in rows]

    def settle_deliveries(
        self,
        target_id: int,
        token: str,
        settlements: Sequence[Settlement],
        attempts: Sequence[DeliveryAttempt],
    ) -> int:
        settled = 0
        now = iso_utc(utc_now())
        with self._transaction("settle deliveries") as execute:
            # Rows settled alike (a batch's) in one UPDATE per chunk of ids.
            alike: dict[tuple[str, int, str, str | None], list[int]] = {}
            for item in settlements:
                key = (item.status.value, item.attempts, item.next_attempt_at, item.detail)
                alike.setdefault(key, []).append(item.transaction_id)
            for (status, tries, next_attempt_at, detail), ids in alike.items():
                for chunk, placeholders in id_chunks(ids):
                    settled += execute(
                        _SETTLE.format(ids=placeholders),
                        (status, tries, next_attempt_at, detail, now, target_id, token, *chunk),
                    ).rowcount
            for attempt in attempts:
                execute(
                    f"INSERT INTO delivery_attempts ({_ATTEMPT_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        attempt.target_id,
                        ",".join(map(str, attempt.transaction_ids)),
                        attempt.attempted_at,
                        attempt.outcome,
                        attempt.detail,
                        attempt.request,
                        attempt.response,
                        attempt.duration_ms,
                    ),
                )
        return settled

    def deliveries(
        self, target_id: int, *, status: DeliveryStatus | None = None, limit: int | None = None
    ) -> Iterator[Delivery]:
        conditions, params = filters(("d.status = ?", None if status is None else status.value))
        return self._paged(
            "list deliveries",
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.transaction_id > ?"
            f" AND d.target_id = ?{conditions} ORDER BY d.transaction_id LIMIT ?",
            (target_id, *params),
            start=0,
            limit=limit,
            key=1,
            convert=_delivery_from_row,
        )

    def move_deliveries(
        self,
        target_id: int,
        *,
        from_statuses: Sequence[DeliveryStatus],
        to_status: DeliveryStatus,
        now: str,
        detail: str | None,
        transaction_ids: Sequence[int] | None = None,
    ) -> int:
        if not from_statuses or transaction_ids == []:
            return 0
        # Back to pending is queued again: the give-up clock (GIVE_UP_AFTER, counted
        # from created_at) starts over.
        requeued = ", created_at = ?" if to_status is DeliveryStatus.PENDING else ""
        sql = (
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, detail = ?, updated_at = ?"
            f"{requeued} WHERE target_id = ? AND status IN ({_placeholders(from_statuses)})"
            " AND (lease_until IS NULL OR lease_until <= ?)"
        )
        params: tuple[Any, ...] = (
            to_status.value,
            now,
            detail,
            now,
            *((now,) if requeued else ()),
            target_id,
            *(status.value for status in from_statuses),
            now,
        )
        if transaction_ids is not None:
            sql += f" AND transaction_id IN ({_placeholders(transaction_ids)})"
            params += tuple(transaction_ids)
        with self._transaction("move deliveries") as execute:
            return int(execute(sql, params).rowcount)

    # -- what the dashboard, the CLI and health read ----------------------------------

    def delivery_attempts(
        self, target_id: int, *, limit: int = 20, exclude_outcomes: Sequence[str] = ()
    ) -> list[DeliveryAttempt]:
        excluded = (
            f" AND outcome NOT IN ({_placeholders(exclude_outcomes)})" if exclude_outcomes else ""
        )
        rows = self._read(
            "read delivery attempts",
            f"SELECT id, {_ATTEMPT_COLUMNS} FROM delivery_attempts WHERE target_id = ?"
            f"{excluded} ORDER BY id DESC LIMIT ?",
            (target_id, *exclude_outcomes, limit),
        )
        return [_attempt_from_row(row) for row in rows]

    def delivery_health(
        self, *, advertiser_id: int | None = None, removed: bool = False
    ) -> list[TargetHealth]:
        conditions, params = filters(
            ("t.advertiser_id = ?", advertiser_id),
            ("t.status <> ?", None if removed else TargetStatus.REMOVED.value),
            prefix=" WHERE ",
        )
        rows = self._read(
            "read the delivery targets' health", f"{_HEALTH}{conditions} ORDER BY t.id", params
        )
        return [
            TargetHealth(
                target_id=row[0],
                advertiser_id=row[1],
                kind=TargetKind(row[2]),
                status=TargetStatus(row[3]),
                status_detail=row[4],
                failures=row[5],
                resume_at=row[6],
                pending=int(row[7]),
                oldest_pending_at=None if row[8] is None else str(row[8]),
                oldest_unqueued_at=None if row[9] is None else str(row[9]),
            )
            for row in rows
        ]

    def delivery_counts(self, target_id: int) -> dict[DeliveryStatus, int]:
        rows = self._read(
            "count deliveries",
            "SELECT status, COUNT(*) FROM deliveries WHERE target_id = ? GROUP BY status",
            (target_id,),
        )
        return {DeliveryStatus(status): int(count) for status, count in rows}

    def oldest_pending(self, target_id: int) -> str | None:
        row = self._one(
            "read the oldest pending delivery",
            "SELECT t.created_at FROM deliveries d JOIN transactions t ON t.id = d.transaction_id"
            " WHERE d.target_id = ? AND d.status = 'pending' ORDER BY d.transaction_id LIMIT 1",
            (target_id,),
        )
        return None if row is None else str(row[0])

    def attempt_outcomes_by_day(self, target_id: int, since: str) -> list[tuple[str, str, int]]:
        rows = self._read(
            "count delivery attempts by day",
            "SELECT SUBSTR(attempted_at, 1, 10) AS day, outcome, COUNT(*)"
            " FROM delivery_attempts WHERE target_id = ? AND attempted_at >= ?"
            " GROUP BY SUBSTR(attempted_at, 1, 10), outcome ORDER BY 1, 2",
            (target_id, since),
        )
        return [(str(day), str(outcome), int(count)) for day, outcome, count in rows]

    def transactions_by_id(self, transaction_ids: Sequence[int]) -> dict[int, Transaction]:
        found: dict[int, Transaction] = {}
        for chunk, placeholders in id_chunks(transaction_ids):
            rows = self._read(
                "read ledger rows",
                f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id IN ({placeholders})",
                chunk,
            )
            for row in map(transaction_from_row, rows):
                found[row.transaction_id] = row
        return found

    def settled_through(self, target_id: int) -> int:
        row = self._one(
            "read how far a target has settled",
            "SELECT t.ledger_cursor, (SELECT MIN(d.transaction_id) FROM deliveries d"
            " WHERE d.target_id = t.id AND d.status = 'pending')"
            " FROM delivery_targets t WHERE t.id = ?",
            (target_id,),
        )
        if row is None:
            raise NotFoundError(f"no delivery target {target_id}")
        cursor, first_pending = int(row[0]), row[1]
        return cursor if first_pending is None else min(cursor, int(first_pending) - 1)
