"""A small Flask shop with pixel-wsgi wired in: the "how do I add this to my app" example.

Set up the tracking once (the advertiser must exist before the pixel can credit it)::

    export PIXEL_WSGI_STORAGE=sqlite:///shop.db
    pixel-wsgi advertiser add "My Shop"                          # -> advertiser 1
    pixel-wsgi publisher add "Partner Blog"                      # -> publisher 1
    pixel-wsgi campaign add --advertiser 1 "Launch" --payout 5   # 5.00 USD per order
    pixel-wsgi link add --campaign 1 --publisher 1 --to /        # -> /pixels/click/1

Then run the shop and follow http://127.0.0.1:5000/pixels/click/1::

    PIXEL_WSGI_SECRET_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))") \
        python examples/flask_shop.py      # or: flask --app flask_shop run

Everything the middleware does happens on its own ``/pixels/...`` routes; the
shop only renders the pixel ``<img>`` on its thank-you page.
"""

from __future__ import annotations

import itertools
import os
import threading
from decimal import Decimal
from urllib.parse import urlencode

from flask import Flask, abort, redirect, render_template_string, request, url_for
from werkzeug.wrappers import Response

from pixel_wsgi import PixelMiddleware

PRODUCTS = {
    "notebook": ("Dot-grid notebook", Decimal("14.00")),
    "pen": ("Fountain pen", Decimal("38.50")),
}

PAGE = """<!doctype html><title>Paper & Ink</title>
<h1>Paper &amp; Ink</h1>
{% for sku, (name, price) in products.items() %}
  <p><a href="{{ url_for('product', sku=sku) }}">{{ name }}</a> ${{ price }}</p>
{% endfor %}"""

PRODUCT = """<!doctype html><title>{{ name }}</title>
<h1>{{ name }}</h1><p>${{ price }}</p>
<form method="post" action="{{ url_for('checkout') }}">
  <input type="hidden" name="sku" value="{{ sku }}">
  <input type="number" name="quantity" value="1" min="1">
  <button>Buy</button>
</form>"""

THANK_YOU = """<!doctype html><title>Thank you</title>
<p>Thanks! Order {{ order_id }} is on its way: {{ quantity }} x {{ name }}, ${{ total }}.</p>
<img src="{{ pixel_src }}" width="1" height="1" alt="">"""


def create_app(storage: str | None = None, secret_key: str | None = None) -> Flask:
    """The shop; with no arguments its settings come from the environment."""
    app = Flask(__name__)
    advertiser_id = int(os.environ.get("SHOP_ADVERTISER_ID", "1"))
    orders: dict[int, tuple[str, int, Decimal]] = {}  # use your database in a real shop
    next_order_id = itertools.count(1001)
    lock = threading.Lock()

    @app.get("/")
    def home() -> str:
        return render_template_string(PAGE, products=PRODUCTS)

    @app.get("/product/<sku>")
    def product(sku: str) -> str:
        if sku not in PRODUCTS:
            abort(404)
        name, price = PRODUCTS[sku]
        return render_template_string(PRODUCT, sku=sku, name=name, price=price)

    @app.post("/checkout")
    def checkout() -> Response:
        sku = request.form.get("sku", "")
        quantity = request.form.get("quantity", "1")
        if sku not in PRODUCTS or not quantity.isdigit() or int(quantity) < 1:
            abort(400)
        total = PRODUCTS[sku][1] * int(quantity)
        with lock:
            order_id = next(next_order_id)
            orders[order_id] = (sku, int(quantity), total)
        return redirect(url_for("thank_you", order_id=order_id), code=303)

    @app.get("/thank-you/<int:order_id>")
    def thank_you(order_id: int) -> str:
        if order_id not in orders:
            abort(404)
        sku, quantity, total = orders[order_id]
        # The pixel reports the sale; reference_id makes a reload count once.
        query = urlencode(
            {
                "sale_amount": f"{total:.2f}",
                "reference_id": f"order-{order_id}",
                "sku_list[]": sku,
                "quantity_list[]": quantity,
            }
        )
        return render_template_string(
            THANK_YOU,
            order_id=order_id,
            quantity=quantity,
            name=PRODUCTS[sku][0],
            total=f"{total:.2f}",
            pixel_src=f"/pixels/conversion/{advertiser_id}.gif?{query}",
        )

    app.wsgi_app = PixelMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        storage or os.environ.get("PIXEL_WSGI_STORAGE", "sqlite:///shop.db"),
        # Signs the attribution cookie: set PIXEL_WSGI_SECRET_KEY in production.
        # The fallback is for trying the example locally only.
        secret_key=secret_key or os.environ.get("PIXEL_WSGI_SECRET_KEY", "dev-only-not-a-secret"),
    )
    return app


if __name__ == "__main__":
    create_app().run()
