"""Delivery inside the application's own processes: ``deliver_in_background=True``.

For a small site that runs no ``pixel-wsgi deliver`` service: each process of the
application runs one daemon thread with a :class:`~.worker.Worker`, which queues,
claims, sends and settles exactly as the command does (so any number of processes,
and a ``deliver`` service beside them, never send a row twice).

The thread starts with the process's first request, not at import or construction: a
server that loads the application and then forks its workers (gunicorn ``--preload``)
must not fork a running thread, which the children would not have. A child of a fork
starts its own thread on its first request. The thread is stopped at interpreter exit
(``atexit``), or by :meth:`BackgroundDelivery.close`; either lets the request in flight
finish for a few seconds, then leaves it: a row whose answer was not read is sent again
later with the same idempotency key, which the platforms count once.

Nothing the thread meets reaches the application: every exception is logged (logger
``pixel_wsgi.delivery``) and the thread goes on after a pause.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime

from ..background import STOP_TIMEOUT, ProcessThread
from ..clock import utc_now
from ..storage import Storage
from .model import HttpRequest, HttpResponse
from .secrets import SecretBox
from .worker import Worker

__all__ = ["DEFAULT_IDLE", "FAILURE_PAUSE", "STOP_TIMEOUT", "BackgroundDelivery"]

logger = logging.getLogger("pixel_wsgi.delivery")

#: Seconds a thread rests after a pass that found nothing to do: how soon a new
#: conversion leaves, at the cost of a few reads a second per process.
DEFAULT_IDLE = 1.0
#: Seconds a thread rests after an unexpected failure before it tries again.
FAILURE_PAUSE = 10.0


class BackgroundDelivery(ProcessThread):
    """One delivery thread per process for one store.

    :param storage: the store whose targets it delivers (the middleware's own).
    :param box: opens the targets' credentials (``SecretBox(settings.secret_keys)``).
    :param clock: the current time (aware), as the worker sees it.
    :param send: sends one request (tests); :func:`pixel_wsgi.delivery.http.send` by
        default.
    :param idle: seconds between passes that found nothing to do.
    :param failure_pause: seconds of rest after an unexpected failure.
    :param after_fork: called in the child of a fork, which has no thread yet (the
        middleware arms its first-request check again).

    ::

        delivery = BackgroundDelivery(storage, SecretBox(settings.secret_keys))
        delivery.start()  # idempotent: at most one thread per process
        ...
        delivery.close()  # for good: start() does nothing afterwards
    """

    name = "pixel-wsgi-delivery"
    unfinished = (
        "the delivery thread did not stop within %s seconds; the row it was"
        " sending is sent again later, with the same idempotency key"
    )

    def __init__(
        self,
        storage: Storage,
        box: SecretBox,
        *,
        clock: Callable[[], datetime] = utc_now,
        send: Callable[[HttpRequest], HttpResponse] | None = None,
        idle: float = DEFAULT_IDLE,
        failure_pause: float = FAILURE_PAUSE,
        after_fork: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(after_fork=after_fork)
        self.storage = storage
        self.box = box
        self.clock = clock
        self.send = send
        self.idle = idle
        self.failure_pause = failure_pause

    def start(self) -> None:
        """Start this process's thread unless it runs already, or :meth:`close` was called
        (see :meth:`~pixel_wsgi.background.ProcessThread.start`)."""
        was_running = self.running
        super().start()
        if not was_running and self.running:
            logger.info("pixel-wsgi delivers in the background in process %d", os.getpid())

    def _run(self, stop: threading.Event) -> None:
        worker = Worker(self.storage, self.box, clock=self.clock, send=self.send, stop=stop)
        try:
            while not stop.is_set():
                try:
                    worker.run(idle=self.idle)
                except Exception:
                    # A bug, a driver error the store did not map, a target's code
                    # failing: never the host's problem, and never the end of delivery.
                    logger.exception(
                        "background delivery failed; trying again in %s seconds",
                        self.failure_pause,
                    )
                    stop.wait(self.failure_pause)
        finally:
            try:
                # This thread's own connection (SQLite keeps one per thread).
                self.storage.close()
            except Exception:
                logger.exception("background delivery could not close its store connection")
