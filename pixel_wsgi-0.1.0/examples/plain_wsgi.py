"""pixel-wsgi in front of a plain WSGI callable, served by the standard library.

Create an advertiser, a publisher, a campaign and a link first (see
``pixel-wsgi --help``), then::

    python examples/plain_wsgi.py   # http://127.0.0.1:8000/pixels/click/1

The wrapped app never sees ``/pixels/...`` requests; every other request
reaches it untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from wsgiref.simple_server import make_server

from pixel_wsgi import PixelMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# In a real site these come from the order database.
ORDERS = {
    "A-1001": ("EBOOK-7", 1, Decimal("19.99")),
    "A-1002": ("EBOOK-9", 2, Decimal("50.00")),
}


def make_shop(advertiser_id: int) -> WSGIApplication:
    """The site: a landing page and one thank-you page per order."""

    def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/landing":
            body = "<!doctype html><title>eBooks</title><h1>New eBooks every week</h1>"
        elif path.startswith("/thank-you/") and path[len("/thank-you/") :] in ORDERS:
            order_id = path[len("/thank-you/") :]
            sku, quantity, total = ORDERS[order_id]
            query = urlencode(
                [
                    ("sale_amount", str(total)),
                    ("reference_id", order_id),
                    ("sku_list[]", sku),
                    ("quantity_list[]", str(quantity)),
                ]
            )
            pixel = f"/pixels/conversion/{advertiser_id}.gif?{query}"
            body = (
                "<!doctype html><title>Thank you</title>"
                f"<p>Thank you for order {escape(order_id)}.</p>"
                f'<img src="{escape(pixel)}" width="1" height="1" alt="">'
            )
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found\n"]
        data = body.encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))],
        )
        return [data]

    return shop


def make_app(storage: str, secret_key: str, advertiser_id: int = 1) -> PixelMiddleware:
    """The shop wrapped in the middleware."""
    return PixelMiddleware(make_shop(advertiser_id), storage, secret_key=secret_key)


if __name__ == "__main__":
    application = make_app(
        os.environ.get("PIXEL_WSGI_STORAGE", "sqlite:///plain-wsgi.db"),
        # Keep the real key out of source control; the fallback is for local trials.
        os.environ.get("PIXEL_WSGI_SECRET_KEY", "dev-only-not-a-secret"),
    )
    with make_server("127.0.0.1", 8000, application) as server:
        print("Serving on http://127.0.0.1:8000/landing (Ctrl-C stops)")
        server.serve_forever()
