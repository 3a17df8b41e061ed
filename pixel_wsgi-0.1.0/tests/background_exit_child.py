"""A process that exits while its delivery thread waits for an answer.

Run as ``python background_exit_child.py STORAGE_URL SECRET_KEY TARGET_ID``: it builds
the middleware with ``deliver_in_background=True``, serves one request (which starts the
thread), waits until the thread has claimed a row of the target and sent it (the
receiver answers slowly), and returns from the script. At interpreter exit the thread
must be asked to stop and given the time to read the answer and settle the row.

Exit codes: 0 after returning normally, 3 when no row was claimed in time.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from wsgiref.util import setup_testing_defaults

from pixel_wsgi import PixelMiddleware, storage_from_url


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    url, secret, target_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    middleware = PixelMiddleware(
        lambda environ, start_response: [], url, secret_key=secret, deliver_in_background=True
    )
    environ: dict[str, object] = {"PATH_INFO": "/pixels/health", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    list(middleware(environ, lambda status, headers, exc_info=None: lambda data: None))
    store = storage_from_url(url)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            if any(d.lease_until is not None for d in store.deliveries(target_id)):
                # Claimed: the request goes out at once (the receiver takes 1.5 s to answer).
                time.sleep(0.5)
                print("in flight", flush=True)
                return 0  # the interpreter exits with the request in flight
            time.sleep(0.01)
        return 3
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
