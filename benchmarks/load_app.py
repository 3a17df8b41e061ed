"""The WSGI module that ``benchmarks/load.py`` serves with gunicorn (``load_app:build()``).

Every worker calls :func:`build`, which makes its application from environment
variables, as a deployment would:

- ``PIXEL_LOAD_MODE``: ``bare`` (a plain WSGI app answering every request with the
  43-byte GIF and the pixel's own headers: the server's floor), ``pixel``
  (:class:`~pixel_wsgi.PixelMiddleware` around a trivial host app, the default
  synchronous mode) or ``queued`` (the same with ``ingest="queued"``: the pixel
  appends to the log in the spool directory, an applier thread per worker applies it);
- ``PIXEL_LOAD_STORAGE``: the store's URL (``pixel`` and ``queued``);
- ``PIXEL_LOAD_SECRET``: the attribution cookies' key (``pixel`` and ``queued``);
- ``PIXEL_LOAD_SPOOL``: the spool's directory, passed to the middleware when its
  constructor takes one (see :func:`spool_option`): the outage spool of ``pixel``,
  the log of ``queued`` (which needs it);
- ``PIXEL_LOAD_READY_DIR``: where each worker drops a ``<pid>.ready`` file once its
  application is built, so the load script knows every worker has booted.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.endpoints.gif import GIF_HEADERS, TRANSPARENT_GIF

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MODES = ("bare", "pixel", "queued")

MODE_ENV = "PIXEL_LOAD_MODE"
STORAGE_ENV = "PIXEL_LOAD_STORAGE"
SECRET_ENV = "PIXEL_LOAD_SECRET"
SPOOL_ENV = "PIXEL_LOAD_SPOOL"
READY_ENV = "PIXEL_LOAD_READY_DIR"

#: The names an outage-spool option of ``PixelMiddleware`` may have.
SPOOL_PARAMETERS = ("spool_dir", "spool")


def spool_option() -> str | None:
    """The name of ``PixelMiddleware``'s spool-directory parameter, or None if it has none."""
    parameters = inspect.signature(PixelMiddleware.__init__).parameters
    return next((name for name in SPOOL_PARAMETERS if name in parameters), None)


def queued_supported() -> bool:
    """Whether ``PixelMiddleware`` takes ``ingest=`` and a spool directory (the queued mode)."""
    parameters = inspect.signature(PixelMiddleware.__init__).parameters
    return "ingest" in parameters and spool_option() is not None


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The floor: every request gets the pixel's GIF and headers, nothing else happens."""
    start_response("200 OK", list(GIF_HEADERS))
    return [TRANSPARENT_GIF]


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The advertiser's site behind the middleware (the load never reaches it)."""
    body = b"host page\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def build() -> WSGIApplication:
    """This worker's application, as the environment says; then it reports ready."""
    app = _application()
    ready_dir = os.environ.get(READY_ENV)
    if ready_dir:
        (Path(ready_dir) / f"{os.getpid()}.ready").touch()
    return app


def _application() -> WSGIApplication:
    mode = os.environ.get(MODE_ENV, "")
    if mode == "bare":
        return bare_app
    if mode not in MODES:
        raise RuntimeError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {mode!r}")
    options: dict[str, Any] = {}
    spool_dir = os.environ.get(SPOOL_ENV)
    name = spool_option()
    if spool_dir and name is not None:
        options[name] = Path(spool_dir)
    if mode == "queued":
        if not (spool_dir and queued_supported()):
            raise RuntimeError(f"the queued mode needs {SPOOL_ENV} and PixelMiddleware(ingest=)")
        options["ingest"] = "queued"
    return PixelMiddleware(
        host_app, os.environ[STORAGE_ENV], secret_key=os.environ[SECRET_ENV], **options
    )
