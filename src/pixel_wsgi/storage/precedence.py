"""Server precedence and contested claims: writer primitives with one SQL for both dialects.

The statements are written with ``?`` placeholders; a backend's writer runs them
through :meth:`SharedWriterSQL._execute`, which PostgreSQL's translates to ``%s``.
"""

from __future__ import annotations

import abc
from typing import Any

from ..models import ReferenceClaim

__all__ = ["CONTESTED_REFERENCES", "SharedWriterSQL", "dialect", "idempotency_settlement"]

#: The advertiser's undecided contested reference ids (a read outside the writer).
CONTESTED_REFERENCES = (
    "SELECT DISTINCT reference_id FROM reference_claims WHERE advertiser_id = ?"
    " AND resolution IS NULL"
)


def idempotency_settlement(
    advertiser_id: int, key: str, request_hash: str, status: int | None, body: str
) -> tuple[str, tuple[Any, ...]]:
    """The statement that settles a pending Idempotency-Key claim (status 0).

    With a ``status``, the answer is recorded; with None, the claim is released.
    """
    where = " WHERE advertiser_id = ? AND key = ? AND request_hash = ? AND status = 0"
    if status is None:
        return "DELETE FROM idempotency_keys" + where, (advertiser_id, key, request_hash)
    return (
        "UPDATE idempotency_keys SET status = ?, body = ?" + where,
        (status, body, advertiser_id, key, request_hash),
    )


def dialect(sql: str, placeholder: str) -> str:
    """``sql`` with its ``?`` placeholders as ``placeholder`` (``%s`` for psycopg)."""
    return sql.replace("?", placeholder)


_CLAIM_COLUMNS = (
    "id, advertiser_id, reference_id, visit_id, campaign_id, publisher_id, source, report,"
    " created_at"
)


class SharedWriterSQL(abc.ABC):
    """The :class:`~pixel_wsgi.storage.base.LedgerWriter` primitives whose SQL is dialect-free."""

    @abc.abstractmethod
    def _execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        """Run ``sql`` (``?`` placeholders) in the write; the DB-API cursor."""

    def server_reported(self, advertiser_id: int, reference_id: str) -> bool:
        cursor = self._execute(
            "SELECT 1 FROM server_reports WHERE advertiser_id = ? AND reference_id = ? LIMIT 1",
            (advertiser_id, reference_id),
        )
        return cursor.fetchone() is not None

    def server_report_seen(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str
    ) -> bool:
        cursor = self._execute(
            "SELECT 1 FROM server_reports WHERE advertiser_id = ? AND reference_id = ?"
            " AND source = ? AND report_hash = ?",
            (advertiser_id, reference_id, source, report_hash),
        )
        return cursor.fetchone() is not None

    def note_server_report(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str, at: str
    ) -> None:
        self._execute(
            "INSERT INTO server_reports (advertiser_id, reference_id, source, report_hash,"
            " created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (advertiser_id, reference_id, source, report_hash, at),
        )

    def add_claim(self, claim: ReferenceClaim) -> None:
        self._execute(
            "INSERT INTO reference_claims (advertiser_id, reference_id, visit_id, campaign_id,"
            " publisher_id, source, report, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                claim.advertiser_id,
                claim.reference_id,
                claim.visit_id,
                claim.campaign_id,
                claim.publisher_id,
                claim.source,
                claim.report,
                claim.created_at,
            ),
        )

    def open_claims(self, advertiser_id: int, reference_id: str) -> list[ReferenceClaim]:
        cursor = self._execute(
            f"SELECT {_CLAIM_COLUMNS} FROM reference_claims WHERE advertiser_id = ?"
            " AND reference_id = ? AND resolution IS NULL ORDER BY id",
            (advertiser_id, reference_id),
        )
        return [ReferenceClaim(*row) for row in cursor.fetchall()]

    def resolve_claims(self, claim_ids: list[int], winner_id: int | None, at: str) -> None:
        for claim_id in claim_ids:
            self._execute(
                "UPDATE reference_claims SET resolution = ?, resolved_at = ? WHERE id = ?",
                ("won" if claim_id == winner_id else "lost", at, claim_id),
            )
