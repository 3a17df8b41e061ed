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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..errors import NotFoundError, RecordRefused, StorageError
from ..ledger.rules import EventAlreadyApplied, Ledger, ReportRefused
from ..models import Reason
from ..params.sale import DEFAULT_LIMITS, Limits
from ..storage.base import Storage
from .records import (
    SERVER_SOURCES,
    WEB_SOURCES,
    decode_click,
    decode_id,
    decode_rejection,
    decode_source,
    decode_text,
    decode_visit,
    validated_report,
    validated_server_report,
)
from .spool import Spool, SpooledRecord

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


def _apply(ledger: Ledger, event: dict[str, Any], limits: Limits) -> bool:
    """Apply one validated event; False when it had been applied before.

    :raises ValueError, TypeError, KeyError: for a record that breaks a rule.
    """
    kind = event["kind"]
    event_id = str(decode_text(event["id"], "id"))
    if kind == "visit":
        click = decode_click(event)
        link = ledger.storage.link(click.link_id)
        if link is None:  # deleted since: say so in the log, once
            outcome = ledger.reject(
                advertiser_id=None,
                source="click",
                reason=Reason.UNKNOWN_LINK,
                detail=f"spooled click on link {click.link_id}, which no longer exists",
                event_id=event_id,
            )
            return outcome.reason is not None
        ledger.record_visit(
            link, ip_prefix=click.ip_prefix, user_agent=click.user_agent, visit_id=click.visit_id
        )
        return True
    if kind == "rejection":
        outcome = ledger.reject(**asdict(decode_rejection(event)), event_id=event_id)
        return outcome.reason is not None
    if kind == "web_conversion":
        source = decode_source(event["source"], WEB_SOURCES)
        problem = event["cookie_problem"]
        check_signed = event.get("check_signed_requirement", False)
        if not isinstance(check_signed, bool):
            raise TypeError("check_signed_requirement must be true or false")
        outcome = ledger.record_web_conversion(
            advertiser_id=decode_id(event["advertiser_id"], "advertiser_id"),
            report=validated_report(event["report"], source=source, limits=limits),
            source=source,
            visit=decode_visit(event["visit"]),
            cookie_problem=None if problem is None else Reason(problem),
            params=str(decode_text(event["params"], "params")),
            event_id=event_id,
            check_signed_requirement=check_signed,
            once_key=decode_text(event.get("once_key"), "once_key", optional=True),
        )
        return outcome.accepted or outcome.reason is not None
    if kind == "report":
        try:
            ledger.report(
                decode_id(event["advertiser_id"], "advertiser_id"),
                validated_server_report(event["server_report"], limits=limits),
                source=decode_source(event["source"], SERVER_SOURCES),
                visit=decode_visit(event["visit"]),
                params=str(decode_text(event["params"], "params")),
                event_id=event_id,
            )
        except EventAlreadyApplied:
            return False
        except ReportRefused:
            pass  # in the rejection log now, as it would have been then
        return True
    raise ValueError(f"unknown spooled event kind {kind!r}")


def replay(spool: Spool, storage: Storage, *, limits: Limits = DEFAULT_LIMITS) -> ReplaySummary:
    """Apply every spooled event to ``storage``; see the module docs.

    :param limits: the size caps reports are validated with: the middleware's own
        ``limits`` when it was given larger ones than the defaults.
    """
    clock = _EventClock()
    ledger = Ledger(storage, clock=clock)  # no spool: a failure stops the replay
    summary = ReplaySummary()
    try:
        quarantined_before = len(spool.quarantined())
        with spool.replaying():
            _replay_files(spool, ledger, clock, summary, limits)
        spool.forget_keys()
    except StorageError as exc:  # the store failed again (or another replay runs)
        summary.stopped = str(exc)
        return summary
    summary.quarantined = len(spool.quarantined()) - quarantined_before
    return summary


def _replay_files(
    spool: Spool, ledger: Ledger, clock: _EventClock, summary: ReplaySummary, limits: Limits
) -> None:
    for path in spool.files():
        taken = spool.take(path)
        for record in spool.records(taken):
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
                summary.applied += 1
                kind = str(record.event["kind"])
                summary.kinds[kind] = summary.kinds.get(kind, 0) + 1
            else:
                summary.already_applied += 1
        spool.finish(taken)
        summary.files_done += 1


def _quarantine(spool: Spool, record: SpooledRecord, exc: Exception) -> None:
    reason = f"a field is missing: {exc}" if isinstance(exc, KeyError) else f"{exc}"
    logger.error("spooled event %s quarantined: %s", record.event.get("id"), reason)
    spool.quarantine(record.path, record.line, record.raw, reason)
