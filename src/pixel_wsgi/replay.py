"""``pixel-wsgi replay``: apply what the outage spool holds to the store, exactly once.

Each spooled event is redone through the ledger with its original time, inside a
write that also claims the event's id (:meth:`~pixel_wsgi.storage.LedgerWriter.claim_event`),
so an event is applied once however often a replay runs, crashes or races another
replay. A replayed click stores its visit under the id its cookie already carries
(idempotent too). A file is deleted only once every record in it is applied; when the
store fails again the replay stops and the rest waits for the next run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import StorageError
from .events import decode_report, decode_server_report, decode_visit
from .ledger import EventAlreadyApplied, Ledger, ReportRefused
from .models import Reason, Source
from .spool import Spool, SpooledRecord
from .storage.base import Storage

__all__ = ["ReplaySummary", "replay"]

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


def _apply(ledger: Ledger, record: SpooledRecord) -> bool:
    """Apply one event; False when it had been applied before."""
    event = record.event
    kind = event["kind"]
    event_id = record.event_id
    if kind == "visit":
        link = ledger.storage.link(int(event["link_id"]))
        if link is None:  # deleted since: say so in the log, once
            outcome = ledger.reject(
                advertiser_id=None,
                source="click",
                reason=Reason.UNKNOWN_LINK,
                detail=f"spooled click on link {event['link_id']}, which no longer exists",
                event_id=event_id,
            )
            return outcome.reason is not None
        ledger.record_visit(
            link,
            ip_prefix=event["ip_prefix"],
            user_agent=event["user_agent"],
            visit_id=int(event["visit_id"]),
        )
        return True
    if kind == "rejection":
        outcome = ledger.reject(
            advertiser_id=event["advertiser_id"],
            source=event["source"],
            reason=Reason(event["reason"]),
            detail=event["detail"],
            params=event["params"],
            visit_id=event["visit_id"],
            reference_id=event["reference_id"],
            event_id=event_id,
        )
        return outcome.reason is not None
    if kind == "web_conversion":
        problem = event["cookie_problem"]
        outcome = ledger.record_web_conversion(
            advertiser_id=int(event["advertiser_id"]),
            report=decode_report(event["report"]),
            source=Source(event["source"]),
            visit=decode_visit(event["visit"]),
            cookie_problem=None if problem is None else Reason(problem),
            params=event["params"],
            event_id=event_id,
            check_signed_requirement=bool(event.get("check_signed_requirement", False)),
            once_key=event.get("once_key"),
        )
        return outcome.accepted or outcome.reason is not None
    if kind == "report":
        try:
            ledger.report(
                int(event["advertiser_id"]),
                decode_server_report(event["server_report"]),
                source=Source(event["source"]),
                visit=decode_visit(event["visit"]),
                params=event["params"],
                event_id=event_id,
            )
        except EventAlreadyApplied:
            return False
        except ReportRefused:
            pass  # in the rejection log now, as it would have been then
        return True
    raise ValueError(f"unknown spooled event kind {kind!r}")


def replay(spool: Spool, storage: Storage) -> ReplaySummary:
    """Apply every spooled event to ``storage``; see the module docs."""
    clock = _EventClock()
    ledger = Ledger(storage, clock=clock)  # no spool: a failure stops the replay
    summary = ReplaySummary()
    quarantined_before = len(spool.quarantined())
    try:
        with spool.replaying():
            _replay_files(spool, ledger, clock, summary)
    except StorageError as exc:  # the store failed again (or another replay runs)
        summary.stopped = str(exc)
    summary.quarantined = len(spool.quarantined()) - quarantined_before
    return summary


def _replay_files(spool: Spool, ledger: Ledger, clock: _EventClock, summary: ReplaySummary) -> None:
    for path in spool.files():
        taken = spool.take(path)
        for record in spool.records(taken):
            clock.now = datetime.fromisoformat(record.event["at"].replace("Z", "+00:00"))
            try:
                applied = _apply(ledger, record)
            except (KeyError, TypeError, ValueError) as exc:
                # A record this version cannot read: keep it aside, never drop it.
                logger.error("spooled event %s unreadable: %s", record.event_id, exc)
                line = json.dumps(record.event, sort_keys=True).encode() + b"\n"
                spool.quarantine(taken, record.line, line)
                continue
            if applied:
                summary.applied += 1
                kind = str(record.event["kind"])
                summary.kinds[kind] = summary.kinds.get(kind, 0) + 1
            else:
                summary.already_applied += 1
        spool.finish(taken)
        summary.files_done += 1
