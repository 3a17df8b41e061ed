"""The writer that ``tests/test_faults_kill.py`` kills with ``SIGKILL``, again and again.

Run as ``python fault_kill_writer.py '<json config>'``. It clicks the tracking link
once for an attribution cookie and prints ``ready <visit id>``, then serves
conversion-pixel hits as fast as it can, calling the middleware directly, each with a
new ``reference_id`` (``<prefix>-<n>``). It prints ``ack <reference_id>`` only once
the WSGI call has returned ``200``: what the browser would have seen. Each line is
one ``write()`` to the pipe, so a kill never leaves half an ack.

The config: ``db``, ``spool``, ``secret``, ``advertiser_id``, ``link_id``, ``prefix``,
``busy_timeout``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.test import EnvironBuilder, run_wsgi_app

from pixel_wsgi import PixelMiddleware, SQLiteStorage

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host page"]


def call(app: WSGIApplication, path: str, cookie: str | None = None) -> tuple[str, Any]:
    builder = EnvironBuilder(
        path=path,
        headers=[] if cookie is None else [("Cookie", cookie)],
        environ_base={"REMOTE_ADDR": "192.0.2.20"},
    )
    try:
        app_iter, status, headers = run_wsgi_app(app, builder.get_environ())
        b"".join(app_iter)
    finally:
        builder.close()
    return status, headers


def say(line: str) -> None:
    os.write(1, f"{line}\n".encode())


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    advertiser_id = int(config["advertiser_id"])
    middleware = PixelMiddleware(
        host_app,
        SQLiteStorage(config["db"], busy_timeout=float(config["busy_timeout"])),
        secret_key=config["secret"],
        spool_dir=config["spool"],
        migrate=False,  # the test migrated; a held write lock must not slow the start
    )
    status, headers = call(middleware, f"/pixels/click/{config['link_id']}")
    set_cookie = headers.get("Set-Cookie")
    if not status.startswith("302") or set_cookie is None:
        raise SystemExit(f"the click answered {status} without a cookie")
    cookie = set_cookie.split(";", 1)[0]
    value = middleware.cookies.read(cookie, advertiser_id)
    assert value is not None
    say(f"ready {middleware.cookies.verify(value).visit_id}")
    prefix = config["prefix"]
    for n in itertools.count():
        reference_id = f"{prefix}-{n}"
        status, _ = call(
            middleware,
            f"/pixels/conversion/{advertiser_id}.gif?sale_amount=1.00&reference_id={reference_id}",
            cookie,
        )
        if status.startswith("200"):
            say(f"ack {reference_id}")


if __name__ == "__main__":
    main()
