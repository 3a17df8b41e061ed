"""``/pixels/health``: 200 when the store answers and the spool is empty (or, in the
queued mode, its oldest event is recent), else 503.

With delivery targets, the answer also says where each stands (``delivery``): a target
that is behind or whose credentials were refused does not make the check fail (the store
is fine, and the pixel keeps recording), but a monitor can alert on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..clock import Clock, parse_utc, seconds_since, utc_now
from ..models import TargetHealth, TargetStatus
from .responses import json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..outage.spool import Spool
    from ..storage import Storage

__all__ = ["HealthCheck", "target_health"]

logger = logging.getLogger("pixel_wsgi")

#: The most of a paused target's detail (the platform's answer) the check repeats.
_DETAIL_CHARS = 300


def target_health(health: TargetHealth, now: datetime) -> dict[str, object]:
    """One target as the health check reports it::

        {"kind": "webhook", "status": "active", "backlog": 3,
         "oldest_undelivered_seconds": 42}

    ``backlog`` counts the rows queued and not settled; ``oldest_undelivered_seconds``
    is the age of the oldest ledger row not delivered yet, queued or not (null when
    none), which grows while no worker runs. A target paused by refused credentials
    (``auth_failed``) or by an operator (``paused``) adds its ``detail``; one behind its
    open circuit breaker, when it is tried again (``retry_at``). Never a secret: the
    worker masks the target's credentials out of the detail it stores.
    """
    report: dict[str, object] = {
        "kind": health.kind.value,
        "status": health.status.value,
        "backlog": health.pending,
        "oldest_undelivered_seconds": seconds_since(health.oldest_undelivered_at, now),
    }
    if health.status is not TargetStatus.ACTIVE and health.status_detail:
        report["detail"] = health.status_detail[:_DETAIL_CHARS]
    if health.resume_at is not None and health.status is TargetStatus.ACTIVE:
        report["retry_at"] = health.resume_at
    return report


#: How old the oldest queued event may be before the appliers count as behind.
QUEUE_LAG_LIMIT = timedelta(seconds=10)


class HealthCheck:
    """Answers a load balancer's or a monitor's health check.

    Degraded (503, with what is wrong) while the store does not answer, while
    the outage spool holds events a replay has not applied, or while there is no
    usable spool although one was asked for.

    When the store has delivery targets, the answer has a ``delivery`` field: each
    target by id, as :func:`target_health` describes it. It costs one more read of
    the store, and never changes the status code::

        {"status": "ok", "delivery": {"3": {"kind": "meta_capi", "status": "auth_failed",
         "backlog": 12, "oldest_undelivered_seconds": 3600,
         "detail": "HTTP 401: Invalid OAuth access token"}}}

    :param storage: the store to check.
    :param spool: the outage spool, or None.
    :param spool_problem: why there is no spool although one was asked for, if so.
    :param clock: the current UTC time, for the ages of undelivered rows.
    :param queued: the spool is the queued mode's log (``ingest="queued"``): events
        waiting in it are degraded only once the oldest is :data:`QUEUE_LAG_LIMIT` old.
    """

    def __init__(
        self,
        storage: Storage,
        spool: Spool | None,
        spool_problem: str | None = None,
        *,
        clock: Clock = utc_now,
        queued: bool = False,
    ) -> None:
        self.storage = storage
        self.spool = spool
        self.spool_problem = spool_problem
        self.clock = clock
        self.queued = queued

    def _queue_keeps_up(self) -> bool:
        """Whether the oldest queued event is younger than :data:`QUEUE_LAG_LIMIT`."""
        assert self.spool is not None
        try:
            oldest = self.spool.oldest_pending_at()
        except Exception:
            return False
        if oldest is None:
            return True
        try:
            age = self.clock() - parse_utc(oldest)
        except ValueError:
            return False
        return age < QUEUE_LAG_LIMIT

    def _delivery(self) -> dict[str, object] | None:
        """Each target's report by id; None without targets (or when they cannot be read)."""
        try:
            targets = self.storage.delivery_health()
        except Exception as exc:
            # A store without the delivery tables yet, or one failing between the two
            # reads: the store's own status says what matters.
            logger.error("pixel-wsgi cannot read the delivery targets' health: %s", exc)
            return None
        if not targets:
            return None
        now = self.clock()
        return {str(target.target_id): target_health(target, now) for target in targets}

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, rest: str = ""
    ) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        spooled, spool = (0, "ok") if self.spool is None else self.spool.status()
        try:
            self.storage.check()
        except Exception as exc:
            logger.error("pixel-wsgi store unhealthy: %s", exc)
            store = "unavailable"
        else:
            store = "ok"
        delivery = self._delivery() if store == "ok" else None
        problem = self.spool_problem or (None if spool == "ok" else spool)
        if spooled and self.queued and store == "ok" and not problem:
            # The queued mode's log always holds the newest events: only a backlog
            # older than QUEUE_LAG_LIMIT says the appliers are not keeping up.
            spooled = 0 if self._queue_keeps_up() else spooled
        if store != "ok" or spooled or problem:
            # Degraded until the store answers and a replay has drained the spool.
            body: dict[str, object] = {"status": "degraded", "store": store}
            if problem:  # "full": events are being lost; "unusable"/"unavailable": see the log
                body["spool"] = problem
            body["spooled_bytes"] = spooled
            if delivery is not None:
                body["delivery"] = delivery
            return json_response(start_response, "503 Service Unavailable", body, head=head)
        body = {"status": "ok"}
        if delivery is not None:
            body["delivery"] = delivery
        return json_response(start_response, "200 OK", body, head=head)
