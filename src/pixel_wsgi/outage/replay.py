"""``pixel-wsgi replay``: apply what the outage spool holds to the store, exactly once.

Each spooled event is redone through the ledger with its original time, in a
transaction that also claims the event's id
(:meth:`~pixel_wsgi.storage.LedgerWriter.claim_events`, a batch's ids at once), so an
event is applied once however often a replay runs, crashes or races another replay.
A replayed click stores its visit under the id its cookie already carries. A file is
deleted only once every record in it is applied; when the store fails again the
replay stops and the rest waits for the next run.

A record is validated as the request that made it was (see :mod:`pixel_wsgi.outage.records`):
one that breaks a rule, or that the store refuses for its data
(:class:`~pixel_wsgi.errors.RecordRefused`, say text PostgreSQL cannot hold), goes to
the spool's ``quarantine/`` with the reason, and the replay goes on with the next.
Only a store that is unavailable stops it. Once the spool is drained, the keys that
sealed its personal data are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import iso_utc, utc_now
from ..errors import EventAlreadyApplied, NotFoundError, RecordRefused, StorageError
from ..ledger.ledger import Ledger, replaying
from ..params.sale import DEFAULT_LIMITS, Limits
from ..storage.base import Storage
from .records import RECORD_KINDS, SpooledEvent, decode_text
from .spool import Spool, SpooledRecord

__all__ = ["DEFAULT_BATCH", "ReplaySummary", "replay"]

logger = logging.getLogger("pixel_wsgi")


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did."""

    applied: int = 0
    already_applied: int = 0
    quarantined: int = 0
    files_done: int = 0
    #: why the replay stopped early (the store failed again), or None
    stopped: str | None = None
    kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "already_applied": self.already_applied,
            "quarantined": self.quarantined,
            "files_done": self.files_done,
            "stopped": self.stopped,
            "kinds": dict(self.kinds),
        }


class _EventClock:
    """The ledger's clock during a replay: the time the event happened."""

    def __init__(self) -> None:
        self.now = datetime.min

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A record read back as the ledger call it redoes, with the time it happened."""

    record: SpooledRecord
    event_id: str
    at: datetime
    event: SpooledEvent


#: What a record that breaks a rule, or that the store cannot hold, raises.
_RECORD_PROBLEMS = (KeyError, TypeError, ValueError, RecordRefused, NotFoundError)


class _RecordFailed(Exception):
    """A record failed inside a batch without savepoints: redo it with them."""


#: Events applied in one transaction by default: one commit for them all.
DEFAULT_BATCH = 500


def replay(
    spool: Spool,
    storage: Storage,
    *,
    limits: Limits = DEFAULT_LIMITS,
    batch_size: int = DEFAULT_BATCH,
) -> ReplaySummary:
    """Apply every spooled event to ``storage``; see the module docs.

    :param limits: the size caps reports are validated with: the middleware's own
        ``limits`` when it was given larger ones than the defaults.
    :param batch_size: events applied in one transaction (:meth:`Storage.batch`): each
        event is still a write of its own inside it (a record the store refuses is
        undone alone), and all of them commit together, or none (a crash, the store
        failing: the batch is applied again next time, the events claimed by it too).
    """
    clock = _EventClock()
    ledger = Ledger(storage, clock=clock)  # no spool: a failure stops the replay
    summary = ReplaySummary()
    try:
        quarantined_before = len(spool.quarantined())
        with spool.replaying():
            _replay_files(spool, ledger, clock, summary, limits, max(1, batch_size))
        spool.forget_keys()
    except StorageError as exc:  # the store failed again (or another replay runs)
        summary.stopped = str(exc)
        return summary
    summary.quarantined = len(spool.quarantined()) - quarantined_before
    return summary


def _replay_files(
    spool: Spool,
    ledger: Ledger,
    clock: _EventClock,
    summary: ReplaySummary,
    limits: Limits,
    batch_size: int,
) -> None:
    for path in spool.files():
        taken = spool.take(path)
        batch: list[SpooledRecord] = []
        for record in spool.records(taken):
            batch.append(record)
            if len(batch) == batch_size:
                _apply_batch(spool, ledger, clock, summary, limits, batch)
                batch = []
        _apply_batch(spool, ledger, clock, summary, limits, batch)
        spool.finish(taken)
        summary.files_done += 1


def _apply_batch(
    spool: Spool,
    ledger: Ledger,
    clock: _EventClock,
    summary: ReplaySummary,
    limits: Limits,
    records: list[SpooledRecord],
) -> None:
    """Apply ``records`` in one transaction; count them once it has committed.

    The events are claimed together and applied without savepoints (the fast way);
    when one of them fails, the transaction is undone and the batch is applied again
    one savepoint and one claim per event, so that the failing one is undone alone
    and quarantined."""
    decoded = _decode_records(spool, records, limits)
    if not decoded:
        return
    try:
        done = _apply_claimed(ledger, clock, decoded)
    except _RecordFailed:
        done = _apply_one_by_one(spool, ledger, clock, decoded)
    summary.applied += done.applied
    summary.already_applied += done.already_applied
    for kind, count in done.kinds.items():
        summary.kinds[kind] = summary.kinds.get(kind, 0) + count


def _decode_records(spool: Spool, records: list[SpooledRecord], limits: Limits) -> list[_Decoded]:
    """The records as events, validated as their requests were; one that breaks a
    rule is quarantined with the reason (never dropped) and left out."""
    decoded: list[_Decoded] = []
    for record in records:
        try:
            event = spool.unsealed(record.event)
            kind = RECORD_KINDS.get(event["kind"])
            if kind is None:
                raise ValueError(f"unknown spooled event kind {event['kind']!r}")
            decoded.append(
                _Decoded(
                    record,
                    str(decode_text(event["id"], "id")),
                    datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00")),
                    kind.decode(event, limits),
                )
            )
        except _RECORD_PROBLEMS as exc:
            _quarantine(spool, record, exc)
    return decoded


def _apply_claimed(ledger: Ledger, clock: _EventClock, decoded: list[_Decoded]) -> ReplaySummary:
    """Claim every event of the batch at once, then apply the new ones, all without
    savepoints: :class:`_RecordFailed` (the transaction undone) if one fails."""
    done = ReplaySummary()
    with ledger.storage.batch(savepoints=False):
        with ledger.storage.writer() as writer:
            fresh = writer.claim_events([item.event_id for item in decoded], iso_utc(utc_now()))
        for item in decoded:
            if item.event_id not in fresh:
                done.already_applied += 1
                continue
            fresh.discard(item.event_id)  # the same event twice in a file: applied once
            clock.now = item.at
            try:
                item.event.apply(ledger)
            except _RECORD_PROBLEMS as exc:
                raise _RecordFailed from exc
            _count(done, item)
    return done


def _apply_one_by_one(
    spool: Spool, ledger: Ledger, clock: _EventClock, decoded: list[_Decoded]
) -> ReplaySummary:
    """The batch with a savepoint and a claim per event: one that fails is undone
    alone and quarantined, and the others go on."""
    done = ReplaySummary()
    with ledger.storage.batch():
        for item in decoded:
            clock.now = item.at
            try:
                item.event.apply(replaying(ledger, item.event_id))
            except EventAlreadyApplied:
                done.already_applied += 1
                continue
            except _RECORD_PROBLEMS as exc:
                _quarantine(spool, item.record, exc)
                continue
            _count(done, item)
    return done


def _count(done: ReplaySummary, item: _Decoded) -> None:
    done.applied += 1
    done.kinds[item.event.kind] = done.kinds.get(item.event.kind, 0) + 1


def _quarantine(spool: Spool, record: SpooledRecord, exc: Exception) -> None:
    reason = f"a field is missing: {exc}" if isinstance(exc, KeyError) else f"{exc}"
    logger.error("spooled event %s quarantined: %s", record.event.get("id"), reason)
    spool.quarantine(record.path, record.line, record.raw, reason)
