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
from pathlib import Path
from typing import Any

from pixel_wsgi import PixelMiddleware, SQLiteStorage

# Run as a script: the project's root is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wsgi_calls import attribution, call, host_app


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
    status, headers, _ = call(middleware, f"/pixels/click/{config['link_id']}")
    attributed = attribution(middleware, headers, advertiser_id)
    if not status.startswith("302") or attributed is None:
        raise SystemExit(f"the click answered {status} without a cookie")
    cookie, visit_id = attributed
    say(f"ready {visit_id}")
    prefix = config["prefix"]
    for n in itertools.count():
        reference_id = f"{prefix}-{n}"
        status, _, _ = call(
            middleware,
            f"/pixels/conversion/{advertiser_id}.gif?sale_amount=1.00&reference_id={reference_id}",
            headers={"Cookie": cookie},
        )
        if status.startswith("200"):
            say(f"ack {reference_id}")


if __name__ == "__main__":
    main()
