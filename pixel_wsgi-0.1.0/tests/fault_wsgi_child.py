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

The config: ``db``, ``spool`` (a directory, or ``"auto"``), ``secret``,
``advertiser_id``, ``campaign_id``, ``publisher_id``, ``link_id``, ``credential``
(an API secret), and optionally ``uid``, ``gid``, and ``earlier_visit``
(``[visit_id, link_id]`` of a click made before: the pixel carries its cookie when
this click sets none).
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
from pathlib import Path
from typing import Any

from werkzeug.datastructures import Headers

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.endpoints.api.auth import issue_credential

# Run as a script: the project's root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wsgi_calls import attribution, call, host_app, seed_campaign

WEB_REFERENCE = "web-1"
API_REFERENCE = "api-1"


def as_json(status: str, headers: Headers, body: bytes) -> dict[str, Any]:
    """An answer of :func:`~tests.wsgi_calls.call` as JSON can carry it."""
    return {
        "status": int(status.split()[0]),
        "headers": [[name, value] for name, value in headers.items()],
        "body": base64.b64encode(body).decode("ascii"),
    }


def answer(app: PixelMiddleware, path: str, **request: Any) -> dict[str, Any]:
    return as_json(*call(app, path, **request))


def visit_round(middleware: PixelMiddleware, config: dict[str, Any]) -> dict[str, Any]:
    """Click, pixel with the click's cookie, API report, health: what each answered."""
    advertiser_id = int(config["advertiser_id"])
    click = call(middleware, f"/pixels/click/{config['link_id']}")
    attributed = attribution(middleware, click[1], advertiser_id)
    cookie, visit_id = attributed or (None, None)
    if attributed is None and config.get("earlier_visit"):
        earlier_visit, link_id = config["earlier_visit"]
        name = middleware.cookies.cookie_name(advertiser_id)
        cookie = f"{name}={middleware.cookies.sign(earlier_visit, link_id)}"
    pixel = answer(
        middleware,
        f"/pixels/conversion/{advertiser_id}.gif?sale_amount=50.00&reference_id={WEB_REFERENCE}",
        headers={} if cookie is None else {"Cookie": cookie},
    )
    api = answer(
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
    health = answer(middleware, "/pixels/health")
    return {
        "host": answer(middleware, "/"),
        "click": as_json(*click),
        "visit_id": visit_id,
        "pixel": pixel,
        "api": api,
        "health": health,
    }


def warm_up() -> None:
    """Run every route, stored and spooled, on a scratch store of our own."""
    with tempfile.TemporaryDirectory(prefix="pixel-wsgi-warm-up-") as scratch:
        storage = SQLiteStorage(Path(scratch) / "warm.db", busy_timeout=0.05)
        seeded = seed_campaign(storage)
        config = {
            "advertiser_id": seeded.advertiser_id,
            "campaign_id": seeded.campaign_id,
            "publisher_id": seeded.publisher_id,
            "link_id": seeded.link.id,
            "credential": issue_credential(storage, seeded.advertiser_id).secret,
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
    spool = None if middleware.spool is None else middleware.spool.directory
    result["spool_files"] = (
        [] if spool is None else sorted(path.name for path in spool.iterdir() if path.is_file())
    )
    storage.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
