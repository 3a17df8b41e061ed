"""The worker's HTTP client: one request, a timeout, the answer as it came.

The standard library's :mod:`http.client`, so delivery adds no dependency: a worker sends
a few requests per second per target, and each request must end within its timeout
whatever the server does.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from .model import HttpRequest, HttpResponse

__all__ = ["DEFAULT_TIMEOUT", "MAX_RESPONSE_BYTES", "send"]

#: Seconds to connect and then between bytes of the answer (Meta recommends 1.5 s; the
#: other platforms answer well within it, Invoca's own timeout is 120 s).
DEFAULT_TIMEOUT = 10.0
#: What is read of an answer at most: enough for any documented error body.
MAX_RESPONSE_BYTES = 1024 * 1024


def send(request: HttpRequest, *, timeout: float = DEFAULT_TIMEOUT) -> HttpResponse:
    """Send ``request`` and return the answer, whatever its status.

    :raises OSError: when no answer came: refused, reset, timed out (``TimeoutError``),
        or a TLS failure.
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
        return HttpResponse(answer.status, headers, body)
    except http.client.HTTPException as exc:  # a broken answer; OSError passes as it is
        raise OSError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
