"""One daemon thread per process, for the work pixel-wsgi does beside the requests:
delivery (``deliver_in_background=True``) and the queued mode's applier
(``ingest="queued"``).

The thread starts on first use (the middleware's first request), never at import or
construction: a server that loads the application and then forks its workers (gunicorn
``--preload``) must not fork a running thread, which the children would not have. A
child of a fork starts its own. The thread is stopped at interpreter exit (``atexit``),
or by :meth:`ProcessThread.close`; either lets the work in hand finish for a few
seconds, then leaves it.
"""

from __future__ import annotations

import abc
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["STOP_TIMEOUT", "ProcessThread"]

logger = logging.getLogger("pixel_wsgi")

#: Seconds :meth:`ProcessThread.close` waits for the work in hand.
STOP_TIMEOUT = 5.0

#: Every ProcessThread of this process, for the fork and exit hooks; held weakly, so
#: that a middleware thrown away takes its threads with it.
_instances: weakref.WeakSet[ProcessThread] = weakref.WeakSet()


class ProcessThread(abc.ABC):
    """A daemon thread per process, started by :meth:`start`, for good stopped by
    :meth:`close`.

    Subclasses give the thread's :attr:`name` and its body, :meth:`_run`, which returns
    once ``stop`` is set.

    :param after_fork: called in the child of a fork, which has no thread yet (the
        middleware arms its first-request check again).
    """

    #: the thread's name, as debuggers and ``py-spy`` show it
    name = "pixel-wsgi"
    #: what :meth:`close` logs when the thread outlives its timeout
    unfinished = "the thread did not stop within %s seconds"

    def __init__(self, *, after_fork: Callable[[], object] | None = None) -> None:
        self.after_fork = after_fork
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid = 0
        self._closed = False
        _instances.add(self)

    @abc.abstractmethod
    def _run(self, stop: threading.Event) -> None:
        """The thread's body: work until ``stop`` is set; nothing may escape it."""

    @property
    def running(self) -> bool:
        """Whether this process's thread is alive."""
        thread = self._thread
        return self._pid == os.getpid() and thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start this process's thread unless it runs already, or :meth:`close` was called.

        Safe from any number of threads at once. In the child of a fork the parent's
        thread does not exist: a new one is started, with a new stop event.
        """
        if self.running or self._closed:
            return
        with self._lock:
            if self.running or self._closed:
                return
            stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
            thread.start()
            self._thread, self._stop, self._pid = thread, stop, os.getpid()

    def close(self, timeout: float | None = STOP_TIMEOUT) -> None:
        """Stop the thread for good: the work in hand may finish within ``timeout``
        seconds (None: wait as long as it takes). Later :meth:`start` calls do nothing."""
        thread = self._signal()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(self.unfinished, timeout)

    def _signal(self) -> threading.Thread | None:
        """Ask the thread to stop, for good; this process's thread, if it has one."""
        with self._lock:
            self._closed = True
            self._stop.set()
            return self._thread if self._pid == os.getpid() else None

    def _retire(self) -> None:
        """Called by the thread that ends by itself (not stopped), before it says so:
        from now on this process has no thread, and :meth:`start` starts a new one."""
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def _forked(self) -> None:
        """In the child of a fork: the parent's thread, lock and stop event are not ours."""
        self._lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._pid = 0
        if self.after_fork is not None and not self._closed:
            self.after_fork()


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        try:
            instance._forked()
        except Exception:  # a fork hook must not break the child
            logger.exception("pixel-wsgi could not prepare its thread in the forked process")


def _close_all() -> None:
    """At interpreter exit: stop every thread of this process, letting work finish."""
    instances = list(_instances)
    for instance in instances:  # every thread stops at once, then each is waited for
        instance._signal()
    for instance in instances:
        instance.close()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
