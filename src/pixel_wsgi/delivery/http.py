"""The worker's HTTP client: one request, a timeout, the answer as it came.

The standard library's :mod:`http.client`, so delivery adds no dependency: a worker sends
a few requests per second per target, and each request must end within its timeout
whatever the server does.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from urllib.parse import urlsplit

from .model import HttpRequest, HttpResponse

__all__ = ["DEFAULT_TIMEOUT", "MAX_RESPONSE_BYTES", "deadline", "send"]

#: Seconds to connect and then between bytes of the answer (Meta recommends 1.5 s; the
#: other platforms answer well within it, Invoca's own timeout is 120 s).
DEFAULT_TIMEOUT = 10.0


def deadline(timeout: float) -> float:
    """The most one :func:`send` with ``timeout`` takes, whatever the server does (it may
    answer a byte at a time): the worker's lease on a row must outlast it."""
    return 3 * timeout


#: What is read of an answer at most: enough for any documented error body.
MAX_RESPONSE_BYTES = 1024 * 1024


def send(request: HttpRequest, *, timeout: float = DEFAULT_TIMEOUT) -> HttpResponse:
    """Send ``request`` and return the answer, whatever its status, within
    :func:`deadline` of ``timeout``.

    :raises OSError: when no answer came: refused, reset, timed out (``TimeoutError``),
        or a TLS failure; also for a request http.client refuses to send.
    """
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"cannot send to {request.url!r}: not an http(s) URL")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    # The timeout bounds each wait; this bounds the whole request (a server dripping
    # its answer): past it the socket is shut, and no answer counts as read. (A name
    # lookup is bounded by the resolver's own timeout.)
    cut = threading.Event()
    watchdog = threading.Timer(deadline(timeout), _cut, (connection, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            request.method,
            target,
            body=request.body or None,
            headers=dict(request.headers),
        )
        answer = connection.getresponse()
        body = answer.read(MAX_RESPONSE_BYTES)
        headers = {name.lower(): value for name, value in answer.getheaders()}
        if cut.is_set():  # what came may be cut short
            raise TimeoutError("cut")
        return HttpResponse(answer.status, headers, body)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if cut.is_set():
            raise TimeoutError(f"no full answer within {deadline(timeout):g} s") from exc
        if isinstance(exc, OSError):
            raise
        # A broken answer, or a header value http.client refuses.
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        watchdog.cancel()
        connection.close()


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
