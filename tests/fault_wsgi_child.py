"""The application side of ``tests/test_faults_permissions.py``, as another user.

Run as ``python fault_wsgi_child.py '<json config>'``. It builds the middleware on the
SQLite file under test and calls it directly (no server): a tracking-link click, the
conversion pixel with the cookie the click set, a Conversion Reporting API ``POST``
and the health check. It prints one JSON document on stdout; the middleware's log
goes to stderr.

Started as root with ``"uid"``/``"gid"`` in the config, it drops to that user before
it opens the database. It starts as root because the interpreter may live where
other users cannot read it (``/root/.pyenv``): it first loads everything and runs
each route once on a scratch store of its own, so that no module is imported
lazily after the drop, from a file the user could not read.

The config: ``db``, ``spool``, ``secret``, ``advertiser_id``, ``campaign_id``,
``publisher_id``, ``link_id``, ``credential`` (an API secret), and optionally
``uid``, ``gid``, and ``earlier_visit`` (``[visit_id, link_id]`` of a click made
before: the pixel carries its cookie when this click sets none).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.test import EnvironBuilder, run_wsgi_app

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage
from pixel_wsgi.api.auth import issue_credential

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

WEB_REFERENCE = "web-1"
API_REFERENCE = "api-1"


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host page"]


def call(
    app: WSGIApplication,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One request straight into the WSGI callable: status, headers, body."""
    builder = EnvironBuilder(
        path=path,
        method=method,
        headers=None if headers is None else list(headers.items()),
        data=None if form is None else urlencode(form),
        content_type=None if form is None else "application/x-www-form-urlencoded",
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    try:
        app_iter, status, response_headers = run_wsgi_app(app, builder.get_environ())
        body = b"".join(app_iter)
    finally:
        builder.close()
    return {
        "status": int(status.split()[0]),
        "headers": [[name, value] for name, value in response_headers.items()],
        "body": base64.b64encode(body).decode("ascii"),
    }


def header(response: dict[str, Any], name: str) -> str | None:
    for key, value in response["headers"]:
        if key.lower() == name.lower():
            return str(value)
    return None


def visit_round(middleware: PixelMiddleware, config: dict[str, Any]) -> dict[str, Any]:
    """Click, pixel with the click's cookie, API report, health: what each answered."""
    advertiser_id = int(config["advertiser_id"])
    click = call(middleware, f"/pixels/click/{config['link_id']}")
    set_cookie = header(click, "Set-Cookie")
    cookie = None if set_cookie is None else set_cookie.split(";", 1)[0]
    visit_id = None
    if cookie is not None:
        value = middleware.cookies.read(cookie, advertiser_id)
        assert value is not None
        visit_id = middleware.cookies.verify(value).visit_id
    elif config.get("earlier_visit"):
        earlier_visit, link_id = config["earlier_visit"]
        name = middleware.cookies.cookie_name(advertiser_id)
        cookie = f"{name}={middleware.cookies.sign(earlier_visit, link_id)}"
    pixel = call(
        middleware,
        f"/pixels/conversion/{advertiser_id}.gif?sale_amount=50.00&reference_id={WEB_REFERENCE}",
        headers={} if cookie is None else {"Cookie": cookie},
    )
    api = call(
        middleware,
        "/pixels/api/conversions",
        method="POST",
        headers={"Authorization": f"Bearer {config['credential']}"},
        form={
            "reference_id": API_REFERENCE,
            "sale_amount": "80.00",
            "advertiser_campaign_id": str(config["campaign_id"]),
            "affiliate_id": str(config["publisher_id"]),
        },
    )
    health = call(middleware, "/pixels/health")
    return {"click": click, "visit_id": visit_id, "pixel": pixel, "api": api, "health": health}


def warm_up() -> None:
    """Run every route, stored and spooled, on a scratch store of our own."""
    with tempfile.TemporaryDirectory(prefix="pixel-wsgi-warm-up-") as scratch:
        storage = SQLiteStorage(Path(scratch) / "warm.db", busy_timeout=0.05)
        storage.migrate()
        advertiser = storage.add_advertiser("Warm-up")
        publisher = storage.add_publisher("Warm-up")
        campaign = storage.add_campaign(
            advertiser.id, "Warm-up", PayoutRule(PayoutKind.PERCENT, Decimal("10"))
        )
        link = storage.add_link(campaign.id, publisher.id, "/landing")
        config = {
            "advertiser_id": advertiser.id,
            "campaign_id": campaign.id,
            "publisher_id": publisher.id,
            "link_id": link.id,
            "credential": issue_credential(storage, advertiser.id).secret,
        }
        middleware = PixelMiddleware(
            host_app,
            storage,
            secret_key="warm-up-secret-0123456789",
            spool_dir=Path(scratch) / "spool",
        )
        visit_round(middleware, config)
        # And once more with the write lock held elsewhere: the spool's paths.
        holder = sqlite3.connect(storage.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            visit_round(middleware, config)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        storage.close()


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    handler: logging.StreamHandler[Any] = logging.StreamHandler(
        io.StringIO()
    )  # the warm-up's log is not wanted
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    warm_up()
    handler.setStream(sys.stderr)
    if config.get("uid") is not None:
        os.setgroups([])
        os.setgid(int(config["gid"]))
        os.setuid(int(config["uid"]))
    storage = SQLiteStorage(config["db"], busy_timeout=0.2)
    middleware = PixelMiddleware(
        host_app, storage, secret_key=config["secret"], spool_dir=config["spool"]
    )
    result = visit_round(middleware, config)
    result["euid"] = os.geteuid()
    result["spool_files"] = sorted(
        path.name for path in Path(config["spool"]).iterdir() if path.is_file()
    )
    storage.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
