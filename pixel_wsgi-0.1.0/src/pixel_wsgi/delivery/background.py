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

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import datetime

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
#: Seconds :meth:`BackgroundDelivery.close` waits for the request in flight.
STOP_TIMEOUT = 5.0

#: Every BackgroundDelivery of this process, for the fork and exit hooks; held weakly,
#: so that a middleware thrown away takes its delivery with it.
_instances: weakref.WeakSet[BackgroundDelivery] = weakref.WeakSet()


class BackgroundDelivery:
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
        self.storage = storage
        self.box = box
        self.clock = clock
        self.send = send
        self.idle = idle
        self.failure_pause = failure_pause
        self.after_fork = after_fork
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = 0
        self._closed = False
        _instances.add(self)

    @property
    def running(self) -> bool:
        """Whether this process's thread is alive."""
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start this process's thread unless it runs already, or :meth:`close` was called.

        Safe from any number of threads at once. In the child of a fork the parent's
        thread does not exist: a new one is started (a new worker, a new stop event).
        """
        if self.running or self._closed:
            return
        with self._lock:
            if self.running or self._closed:
                return
            stop = threading.Event()
            worker = Worker(self.storage, self.box, clock=self.clock, send=self.send, stop=stop)
            thread = threading.Thread(
                target=self._run, args=(worker, stop), name="pixel-wsgi-delivery", daemon=True
            )
            thread.start()
            self._thread, self._stop, self._pid = thread, stop, os.getpid()
        logger.info("pixel-wsgi delivers in the background in process %d", self._pid)

    def close(self, timeout: float | None = STOP_TIMEOUT) -> None:
        """Stop the thread for good: the request in flight may finish within ``timeout``
        seconds (None: wait as long as it takes). Later :meth:`start` calls do nothing."""
        thread = self._signal()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(
                    "the delivery thread did not stop within %s seconds; the row it was"
                    " sending is sent again later, with the same idempotency key",
                    timeout,
                )

    def _signal(self) -> threading.Thread | None:
        """Ask the thread to stop, for good; this process's thread, if it has one."""
        with self._lock:
            self._closed = True
            self._stop.set()
            return self._thread if self._pid == os.getpid() else None

    def _run(self, worker: Worker, stop: threading.Event) -> None:
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

    def _forked(self) -> None:
        """In the child of a fork: the parent's thread, lock and stop event are not ours."""
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._pid = 0
        if self.after_fork is not None and not self._closed:
            self.after_fork()


def _after_fork_in_child() -> None:
    for delivery in list(_instances):
        try:
            delivery._forked()
        except Exception:  # a fork hook must not break the child
            logger.exception("background delivery could not prepare the forked process")


def _close_all() -> None:
    """At interpreter exit: stop every thread of this process, letting requests finish."""
    deliveries = list(_instances)
    for delivery in deliveries:  # every thread stops at once, then each is waited for
        delivery._signal()
    for delivery in deliveries:
        delivery.close()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
