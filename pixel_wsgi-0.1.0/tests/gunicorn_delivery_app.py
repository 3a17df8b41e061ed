"""The WSGI module that ``tests/test_delivery_background.py`` serves with a real gunicorn.

As :mod:`tests.gunicorn_app`, with ``deliver_in_background=True``: each worker process
delivers from its own thread. Loaded with ``--preload``, the middleware is built once
in gunicorn's master, before it forks the workers, as many deployments do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pixel_wsgi import PixelMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

STORAGE_ENV = "PIXEL_WSGI_TEST_STORAGE"


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = b"host page\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# The key from $PIXEL_WSGI_SECRET_KEY, as a deployment gives it.
middleware = PixelMiddleware(host_app, os.environ[STORAGE_ENV], deliver_in_background=True)


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    pid = str(os.getpid())

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("X-Test-Worker-Pid", pid)], exc_info)

    return middleware(environ, start)
