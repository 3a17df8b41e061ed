"""``pixel-wsgi replay``: apply what the outage spool holds to the store, exactly once.

Each spooled event is redone through the ledger with its original time, inside a
write that also claims the event's id (:meth:`~pixel_wsgi.storage.LedgerWriter.claim_event`),
so an event is applied once however often a replay runs, crashes or races another
replay. A replayed click stores its visit under the id its cookie already carries
(idempotent too). A file is deleted only once every record in it is applied; when the
store fails again the replay stops and the rest waits for the next run.

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

from ..errors import EventAlreadyApplied, NotFoundError, RecordRefused, StorageError
from ..ledger.ledger import Ledger, replaying
from ..params.sale import DEFAULT_LIMITS, Limits
from ..storage.base import Storage
from .records import RECORD_KINDS, decode_text
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


def _apply(ledger: Ledger, event: dict[str, Any], limits: Limits) -> bool:
    """Apply one validated event; False when it had been applied before.

    :raises ValueError, TypeError, KeyError: for a record that breaks a rule.
    """
    event_id = str(decode_text(event["id"], "id"))
    kind = RECORD_KINDS.get(event["kind"])
    if kind is None:
        raise ValueError(f"unknown spooled event kind {event['kind']!r}")
    try:
        kind.decode(event, limits).apply(replaying(ledger, event_id))
    except EventAlreadyApplied:
        return False
    return True


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
    """Apply ``records`` in one transaction; count them once it has committed."""
    if not records:
        return
    done = ReplaySummary()
    with ledger.storage.batch():
        for record in records:
            try:
                event = spool.unsealed(record.event)
                clock.now = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))
                applied = _apply(ledger, event, limits)
            except (KeyError, TypeError, ValueError, RecordRefused, NotFoundError) as exc:
                # A record that breaks a rule, or that the store cannot hold: keep it
                # aside with the reason, never drop it, and go on.
                _quarantine(spool, record, exc)
                continue
            if applied:
                done.applied += 1
                kind = str(record.event["kind"])
                done.kinds[kind] = done.kinds.get(kind, 0) + 1
            else:
                done.already_applied += 1
    summary.applied += done.applied
    summary.already_applied += done.already_applied
    for kind, count in done.kinds.items():
        summary.kinds[kind] = summary.kinds.get(kind, 0) + count


def _quarantine(spool: Spool, record: SpooledRecord, exc: Exception) -> None:
    reason = f"a field is missing: {exc}" if isinstance(exc, KeyError) else f"{exc}"
    logger.error("spooled event %s quarantined: %s", record.event.get("id"), reason)
    spool.quarantine(record.path, record.line, record.raw, reason)
