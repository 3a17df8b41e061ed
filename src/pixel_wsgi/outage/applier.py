"""The queued mode's applier: the log (:mod:`.queued`) applied to the store, a batch
per transaction, exactly once (:func:`.replay.replay`).

:class:`QueueApplier` is a thread per process of the application (started with its
first request, its own again in each forked worker); :func:`apply_until_stopped` is
the same loop for ``pixel-wsgi replay --loop``, a service beside the application. Any
number of them may run at once: one applies while the others find the log's replay
lock taken and wait for their next turn; every event is claimed in the transaction
that applies it, so none is applied twice.

While the store fails, the log simply grows (within the spool's cap) and the applier
tries again every :data:`FAILURE_PAUSE` seconds, logging at most a line a minute.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from ..background import ProcessThread
from ..params.sale import DEFAULT_LIMITS, Limits
from ..storage import Storage
from .replay import DEFAULT_BATCH, ReplaySummary, replay
from .spool import Spool, Tally

__all__ = [
    "DEFAULT_INTERVAL",
    "FAILURE_PAUSE",
    "QueueApplier",
    "apply_queued_events",
    "apply_until_stopped",
]

logger = logging.getLogger("pixel_wsgi")

#: Seconds between two passes over the log: how soon an event is in the ledger.
DEFAULT_INTERVAL = 0.2
#: Seconds of rest after a pass the store failed in.
FAILURE_PAUSE = 1.0

_STORE_FAILED = Tally("pixel-wsgi applier: the store failed; the queued events wait in the log")

#: Every applier of this process, for :func:`apply_queued_events`.
_appliers: weakref.WeakSet[QueueApplier] = weakref.WeakSet()


def apply_until_stopped(
    spool: Spool,
    storage: Storage,
    stop: threading.Event,
    *,
    limits: Limits = DEFAULT_LIMITS,
    interval: float = DEFAULT_INTERVAL,
    batch_size: int = DEFAULT_BATCH,
    applied: Callable[[ReplaySummary], object] | None = None,
) -> None:
    """Apply the log every ``interval`` seconds until ``stop`` is set, then once more
    (what arrived meanwhile, if the store takes it). Nothing escapes: failures are
    logged and the loop goes on.

    :param applied: called with each pass's summary (tests, the CLI's output).
    """
    while True:
        stopping = stop.is_set()
        pause = interval
        try:
            summary = replay(spool, storage, limits=limits, batch_size=batch_size)
        except Exception:  # a bug of ours: logged, and the log waits for the next pass
            logger.exception("pixel-wsgi applier failed; trying again")
            pause = FAILURE_PAUSE
        else:
            if summary.stopped and not _another_replay(summary):
                _STORE_FAILED.add(summary.stopped)
                pause = FAILURE_PAUSE
            if applied is not None:
                applied(summary)
        if stopping:
            return
        stop.wait(pause)


def apply_queued_events(timeout: float = 5.0) -> bool:
    """Apply what every queued-mode middleware of this process has logged, now (see
    :meth:`QueueApplier.apply_now`); whether every log emptied in time. The pytest
    plugin's assertions call it, so that a test reads what its requests recorded."""
    return all([applier.apply_now(timeout) for applier in list(_appliers)])


def _another_replay(summary: ReplaySummary) -> bool:
    """Whether a pass stopped only because another applier holds the log's lock."""
    return bool(summary.stopped) and "another replay" in (summary.stopped or "")


class QueueApplier(ProcessThread):
    """The applier thread of one process (``ingest="queued"``); see the module docs.

    :param spool: the log the middleware's pixel and clicks append to.
    :param storage: the store it applies them to.
    :param limits: what events are validated with (the middleware's ``limits``).
    :param interval: seconds between passes.
    :param after_fork: called in the child of a fork (the middleware arms its
        first-request check again).
    """

    name = "pixel-wsgi-applier"
    unfinished = "the applier did not stop within %s seconds; the log keeps what it was applying"

    def __init__(
        self,
        spool: Spool,
        storage: Storage,
        *,
        limits: Limits = DEFAULT_LIMITS,
        interval: float = DEFAULT_INTERVAL,
        batch_size: int = DEFAULT_BATCH,
        after_fork: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(after_fork=after_fork)
        self.spool = spool
        self.storage = storage
        self.limits = limits
        self.interval = interval
        self.batch_size = batch_size
        _appliers.add(self)

    def apply_now(self, timeout: float = 5.0) -> bool:
        """Apply the log in this thread until it is empty, waiting while another
        applier holds it (this process's thread mid-pass); whether it emptied within
        ``timeout`` seconds. What a test calls before reading the store."""
        deadline = time.monotonic() + timeout
        while True:
            summary = replay(self.spool, self.storage, limits=self.limits)
            if not summary.stopped and self.spool.pending() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def _run(self, stop: threading.Event) -> None:
        try:
            apply_until_stopped(
                self.spool,
                self.storage,
                stop,
                limits=self.limits,
                interval=self.interval,
                batch_size=self.batch_size,
            )
        finally:
            try:
                self.storage.close()  # this thread's own connection
            except Exception:
                logger.exception("pixel-wsgi applier could not close its store connection")
