"""The WSGI module that ``tests/test_api_gunicorn.py`` serves with a real gunicorn.

Each worker imports it and builds its own :class:`~pixel_wsgi.PixelMiddleware` on the
store named by ``PIXEL_WSGI_TEST_STORAGE``, as a deployment would. For the test only,
every answer says which worker process gave it (``X-Test-Worker-Pid``), so the test can
tell that both workers served requests.
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


middleware = PixelMiddleware(
    host_app, os.environ[STORAGE_ENV], secret_key="gunicorn-test-secret-0123456789"
)


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    pid = str(os.getpid())

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, ("X-Test-Worker-Pid", pid)], exc_info)

    return middleware(environ, start)
