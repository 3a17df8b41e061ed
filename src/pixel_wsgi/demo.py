"""The demo shop behind ``pixel-wsgi demo``: the whole flow in one browser tab.

A publisher's page links to the shop through a tracking link; the shop's
thank-you page carries the conversion pixel; the report page shows what the
ledger recorded::

    pixel-wsgi --storage sqlite:///demo.db demo --port 8000
    # open http://127.0.0.1:8000/publisher and follow the link, then buy something

It is a Flask app (install the extra: ``pip install 'pixel-wsgi[demo]'``)
wrapped in :class:`~pixel_wsgi.middleware.PixelMiddleware` exactly as a real
shop would be. Orders live in memory (see :class:`OrderBook`); everything the
middleware records lives in the store.

Given the address it is served at (``base_url``, as ``pixel-wsgi demo`` does), the demo
also plays the publisher's server: a postback target of the demo publisher (as
``pixel-wsgi target add --kind postback`` makes one) points at ``/publisher/postback``,
and a delivery thread in the app (``deliver_in_background=True``) sends each ledger row
there within a second or two; ``/publisher/postbacks`` lists what arrived.

The operator dashboard is mounted at ``/dashboard/`` (user ``admin``, password
from ``PIXEL_WSGI_DASHBOARD_PASSWORD``, ``demo`` when unset). ``demo`` is fine on
127.0.0.1 only: listening beyond this machine (``--host 0.0.0.0``) needs a real
password in that variable, and the demo refuses to start without one.

The cookie-signing key comes from ``PIXEL_WSGI_SECRET_KEY`` when set, otherwise
from a random key that the first run writes beside the SQLite file
(``<db>.secret``, mode 0600), so that attribution cookies stay valid across
restarts of the demo.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlencode

from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .dashboard import Dashboard, basic_auth
from .errors import ConfigurationError, MissingDependencyError
from .middleware import SECRET_KEY_ENV, PixelMiddleware
from .models import Advertiser, Campaign, Link, PayoutKind, PayoutRule, Publisher
from .money import MONEY, to_cents
from .serving import PASSWORD_ENV, PLAIN_HTTP_WARNING, is_loopback, url_host
from .storage import SQLiteStorage, Storage, storage_from_url

if TYPE_CHECKING:
    import flask
    from flask.typing import ResponseReturnValue

__all__ = [
    "DASHBOARD_PASSWORD_ENV",
    "DASHBOARD_PATH",
    "PRODUCTS",
    "SECRET_KEY_ENV",
    "DemoPostbacks",
    "DemoSeed",
    "OrderBook",
    "Product",
    "create_demo_app",
    "demo_dashboard_password",
    "demo_secret_key",
    "run_demo",
    "seed_demo",
]

#: The environment variable with the dashboard's password (``demo`` when unset).
DASHBOARD_PASSWORD_ENV = PASSWORD_ENV
#: Where the demo mounts the operator dashboard.
DASHBOARD_PATH = "/dashboard"
DEMO_DASHBOARD_PASSWORD = "demo"
# A demo listening beyond 127.0.0.1 needs a dashboard password at least this long.
_MIN_PUBLIC_PASSWORD = 8

DEMO_ADVERTISER = "Demo Shop"
DEMO_PUBLISHER = "Demo Publisher"
DEMO_CAMPAIGN = "Spring sale"
DEMO_LANDING = "/landing"
#: The sub id the publisher's tracking link carries, returned in its postback.
DEMO_SUB1 = "spring-tea-post"
#: Where the demo publisher's server takes postbacks, and the macros it asks for.
DEMO_POSTBACK_PATH = "/publisher/postback"
DEMO_POSTBACK_QUERY = (
    "transaction_id={transaction_id}&type={transaction_type}&amount={sale_amount}"
    "&currency={sale_currency}&payout={payout}&sub1={sub1}"
)
DEMO_PAYOUT = PayoutRule(PayoutKind.PERCENT, Decimal("10"))

_NEEDS_FLASK = "the demo needs Flask: pip install 'pixel-wsgi[demo]'"
_PIXEL_PREFIX = "/pixels"
_MAX_QUANTITY = 99


@dataclass(frozen=True, slots=True)
class Product:
    """Something the demo shop sells, at an exact price in USD."""

    sku: str
    name: str
    price: Decimal


PRODUCTS: dict[str, Product] = {
    product.sku: product
    for product in (
        Product("TEA-100", "Green tea sampler", Decimal("24.50")),
        Product("MUG-200", "Stoneware mug", Decimal("12.00")),
        Product("KTL-300", "Gooseneck kettle", Decimal("59.99")),
    )
}


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    product: Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return to_cents(MONEY.multiply(self.product.price, self.quantity))

    @property
    def reference_id(self) -> str:
        return f"order-{self.id}"


class OrderBook:
    """The demo's stand-in for a shop database: orders in a dict behind a lock.

    Orders are lost when the process stops (their conversions are not: those
    are in the store). Ids are random rather than 1, 2, 3 so that a restarted
    demo never reuses an old order's ``reference_id``, which the ledger would
    reject as a duplicate. Only the newest ``max_orders`` are kept, so a demo
    left on a public port cannot be made to grow without bound.
    """

    def __init__(self, max_orders: int = 1000) -> None:
        self.max_orders = max_orders
        self._orders: OrderedDict[str, Order] = OrderedDict()
        self._lock = threading.Lock()

    def place(self, product: Product, quantity: int) -> Order:
        order = Order(secrets.token_hex(6), product, quantity)
        with self._lock:
            self._orders[order.id] = order
            while len(self._orders) > self.max_orders:
                self._orders.popitem(last=False)
        return order

    def get(self, order_id: str) -> Order | None:
        with self._lock:
            return self._orders.get(order_id)


class DemoSeed(TypedDict):
    """The entities the demo needs, and whether this call created them."""

    advertiser: Advertiser
    publisher: Publisher
    campaign: Campaign
    link: Link
    created: bool


class DemoPostbacks:
    """The postbacks the demo publisher's server received, newest last (in memory)."""

    def __init__(self, keep: int = 100) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.received: list[dict[str, str]] = []

    def add(self, params: dict[str, str]) -> None:
        with self._lock:
            self.received.append(params)
            del self.received[: -self._keep]

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self.received)


def seed_demo_postback(storage: Storage, seed: DemoSeed, base_url: str, secret_key: str) -> int:
    """The demo publisher's postback target, pointing at ``base_url``; its id.

    Added once, as ``pixel-wsgi target add --kind postback`` would; a later run on
    another address points the same target there.
    """
    from .delivery.outbox import add_target, change_target
    from .delivery.secrets import SecretBox
    from .models import TargetKind
    from .settings import secret_keys

    box = SecretBox(secret_keys(secret_key))
    url = f"{base_url.rstrip('/')}{DEMO_POSTBACK_PATH}?{DEMO_POSTBACK_QUERY}"
    for target in storage.targets(advertiser_id=seed["advertiser"].id):
        if target.kind is TargetKind.POSTBACK and target.publisher_id == seed["publisher"].id:
            if target.settings.get("url") != url:
                change_target(storage, box, target, settings={"url": url}, secrets={})
            return target.id
    added = add_target(
        storage,
        box,
        seed["advertiser"].id,
        TargetKind.POSTBACK,
        settings={"url": url},
        secrets={},
        publisher_id=seed["publisher"].id,
    )
    return added.stored.id


def _find_demo_link(storage: Storage, advertiser: Advertiser) -> DemoSeed | None:
    for link in storage.links(advertiser_id=advertiser.id):
        if link.destination != DEMO_LANDING:
            continue
        campaign = storage.campaign(link.campaign_id)
        publisher = storage.publisher(link.publisher_id)
        if campaign is None or publisher is None or campaign.name != DEMO_CAMPAIGN:
            continue
        return DemoSeed(
            advertiser=advertiser,
            publisher=publisher,
            campaign=campaign,
            link=link,
            created=False,
        )
    return None


def seed_demo(storage: Storage) -> DemoSeed:
    """Create the demo's advertiser, publisher, campaign and link, once.

    On a fresh store this creates advertiser "Demo Shop", publisher "Demo
    Publisher", campaign "Spring sale" paying 10% of ``sale_amount`` and a
    tracking link to ``/landing``. Later calls find and return them
    (``created`` is False). Migrates the store first.
    """
    storage.migrate()
    advertiser = next((a for a in storage.advertisers() if a.name == DEMO_ADVERTISER), None)
    if advertiser is not None:
        found = _find_demo_link(storage, advertiser)
        if found is not None:
            return found
    else:
        advertiser = storage.add_advertiser(DEMO_ADVERTISER)
    # Reached on a fresh store, or when an earlier seed stopped half-way.
    publisher = storage.add_publisher(DEMO_PUBLISHER)
    campaign = storage.add_campaign(advertiser.id, DEMO_CAMPAIGN, DEMO_PAYOUT)
    link = storage.add_link(campaign.id, publisher.id, DEMO_LANDING)
    return DemoSeed(
        advertiser=advertiser, publisher=publisher, campaign=campaign, link=link, created=True
    )


def pixel_url(advertiser_id: int, order: Order, prefix: str = _PIXEL_PREFIX) -> str:
    """The conversion pixel's URL for an order (not yet HTML-escaped)."""
    query = urlencode(
        [
            ("sale_amount", str(order.total)),
            ("sale_currency", "USD"),
            ("reference_id", order.reference_id),
            ("sku_list[]", order.product.sku),
            ("quantity_list[]", str(order.quantity)),
        ]
    )
    return f"{prefix}/conversion/{advertiser_id}.gif?{query}"


# -- templates (Jinja, autoescaped by render_template_string) ----------------------

_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  table { border-collapse: collapse; } td, th { padding: .25rem .75rem; text-align: left; }
  .note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
"""
_FOOT = """
<p class="note"><a href="/">Demo home</a> · <a href="/report">What the ledger recorded</a></p>
</body>
</html>
"""

_INDEX = (
    _HEAD
    + """<h1>pixel-wsgi demo</h1>
<ol>
  <li>Visit <a href="/publisher">the publisher's page</a> and follow its link
      (the tracking link <code>{{ click_path }}</code> sets the attribution cookie).</li>
  <li>Buy something in the shop; the thank-you page fires the conversion pixel.</li>
  <li>See <a href="/report">the conversion and the publisher's payout</a>.</li>
  <li>Or open <a href="/dashboard/">the operator dashboard</a> (user <code>admin</code>).</li>
</ol>
"""
    + _FOOT
)

_PUBLISHER = (
    _HEAD
    + """<h1>{{ publisher }}'s tea blog</h1>
<p>Our favourite tea shop has a spring sale on.
<a href="{{ click_path }}">Shop the {{ campaign }} at {{ advertiser }}</a>.</p>
<p class="note">This page plays the publisher's site; the link above is its tracking link,
with the publisher's own sub id (<code>sub1</code>). Once you buy something, the
publisher's server gets a postback: <a href="/publisher/postbacks">see what arrived</a>.</p>
"""
    + _FOOT
)

_POSTBACKS = (
    _HEAD
    + """<h1>Postbacks {{ publisher }}'s server received</h1>
<p>Each ledger row of the publisher, sent by the delivery thread as the postback URL
template asks (<code>pixel-wsgi target list</code> shows the target).</p>
{% if postbacks %}
<table>
<tr><th>transaction</th><th>type</th><th>amount</th><th>payout</th><th>sub1</th></tr>
{% for row in postbacks %}
<tr><td>{{ row.transaction_id }}</td><td>{{ row.type }}</td>
<td>{{ row.amount }} {{ row.currency }}</td><td>{{ row.payout }}</td><td>{{ row.sub1 }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None yet: follow the publisher's link, buy something, and reload in a few seconds.</p>
{% endif %}
"""
    + _FOOT
)

_LANDING = (
    _HEAD
    + """<h1>{{ advertiser }}</h1>
<p>Welcome! Everything is on sale this spring.</p>
<ul>
{% for product in products %}
  <li><a href="/product/{{ product.sku }}">{{ product.name }}</a> ${{ product.price }}</li>
{% endfor %}
</ul>
"""
    + _FOOT
)

_PRODUCT = (
    _HEAD
    + """<h1>{{ product.name }}</h1>
<p>Price: ${{ product.price }}</p>
<form method="get" action="/checkout">
  <input type="hidden" name="sku" value="{{ product.sku }}">
  <button type="submit">Buy now</button>
</form>
"""
    + _FOOT
)

_CHECKOUT = (
    _HEAD
    + """<h1>Checkout</h1>
<form method="post" action="/checkout">
  <p>{{ product.name }}, ${{ product.price }} each</p>
  <input type="hidden" name="sku" value="{{ product.sku }}">
  <label>Quantity
    <input type="number" name="quantity" value="1" min="1" max="{{ max_quantity }}"></label>
  <button type="submit">Place order</button>
</form>
"""
    + _FOOT
)

_THANK_YOU = (
    _HEAD
    + """<h1>Thank you!</h1>
<p>Your order has been placed.</p>
<p>Order {{ order.reference_id }}: {{ order.quantity }} x {{ order.product.name }},
total ${{ order.total }}.</p>
<img src="{{ pixel }}" width="1" height="1" alt="">
"""
    + _FOOT
)

_REPORT = (
    _HEAD
    + """<h1>What the ledger recorded for {{ advertiser }}</h1>
<h2>Conversions</h2>
{% if conversions %}
<table>
<tr><th>reference_id</th><th>sale</th><th>payout</th><th>recorded (UTC)</th></tr>
{% for row in conversions %}
<tr><td>{{ row.reference_id or "-" }}</td><td>{{ row.sale_amount }} {{ row.sale_currency }}</td>
<td>{{ row.payout }} {{ row.payout_currency }}</td><td>{{ row.created_at }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None yet.</p>
{% endif %}
<h2>Latest rejections</h2>
{% if rejections %}
<table>
<tr><th>reason</th><th>detail</th><th>recorded (UTC)</th></tr>
{% for row in rejections %}
<tr><td>{{ row.reason }}</td><td>{{ row.detail }}</td><td>{{ row.created_at }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None.</p>
{% endif %}
"""
    + _FOOT
)


def _real_password(password: str) -> bool:
    """Good enough for a dashboard reachable from other machines."""
    return password != DEMO_DASHBOARD_PASSWORD and len(password) >= _MIN_PUBLIC_PASSWORD


def demo_dashboard_password() -> str:
    """The demo dashboard's password: ``PIXEL_WSGI_DASHBOARD_PASSWORD``, else ``demo``."""
    return os.environ.get(DASHBOARD_PASSWORD_ENV) or DEMO_DASHBOARD_PASSWORD


def create_demo_app(
    storage: Storage | str,
    *,
    secret_key: str,
    dashboard_password: str | None = None,
    base_url: str | None = None,
) -> flask.Flask:
    """The demo shop as a Flask app wrapped in :class:`PixelMiddleware`.

    Seeds the store with :func:`seed_demo` (a no-op after the first time); the
    seed is at ``app.extensions["pixel_wsgi_demo"]``. Routes: ``/`` (how to
    use the demo), ``/publisher``, ``/landing``, ``/product/<sku>``,
    ``/checkout`` (GET form, POST places an order and answers 303),
    ``/thank-you/<order_id>`` (with the pixel) and ``/report``; the
    operator dashboard is mounted at ``/dashboard``.

    :param storage: a storage URL or a :class:`~pixel_wsgi.storage.Storage`.
    :param secret_key: signs the attribution cookies.
    :param dashboard_password: the dashboard's password for user ``admin``
        (default: :func:`demo_dashboard_password`).
    :param base_url: where the demo is served (``http://127.0.0.1:8000``): the demo
        publisher's postback target points there (:func:`seed_demo_postback`) and the
        app delivers in the background. Without it, nothing is delivered.
    :raises MissingDependencyError: when Flask is not installed.
    """
    try:
        from flask import Flask, abort, redirect, render_template_string, request
    except ImportError as exc:
        raise MissingDependencyError(_NEEDS_FLASK) from exc

    store = storage_from_url(storage) if isinstance(storage, str) else storage
    seed = seed_demo(store)
    advertiser_id = seed["advertiser"].id
    names = {
        "advertiser": seed["advertiser"].name,
        "publisher": seed["publisher"].name,
        "campaign": seed["campaign"].name,
        "click_path": f"{_PIXEL_PREFIX}/click/{seed['link'].id}?sub1={DEMO_SUB1}",
    }
    if base_url is not None:
        seed_demo_postback(store, seed, base_url, secret_key)
    postbacks = DemoPostbacks()
    orders = OrderBook()
    app = Flask(__name__)

    def product_or_404(sku: str | None) -> Product:
        product = PRODUCTS.get(sku or "")
        if product is None:
            abort(404)
        return product

    @app.get("/")
    def index() -> str:
        return render_template_string(_INDEX, title="pixel-wsgi demo", **names)

    @app.get("/publisher")
    def publisher_page() -> str:
        return render_template_string(_PUBLISHER, title=DEMO_PUBLISHER, **names)

    @app.get(DEMO_POSTBACK_PATH)
    def publisher_postback() -> ResponseReturnValue:
        # The publisher's own server, as TUNE's endpoint answers a postback.
        postbacks.add(request.args.to_dict())
        return "success=true;", 200, {"Content-Type": "text/plain"}

    @app.get("/publisher/postbacks")
    def publisher_postbacks() -> str:
        return render_template_string(
            _POSTBACKS, title="Postbacks", postbacks=postbacks.snapshot(), **names
        )

    @app.get("/landing")
    def landing() -> str:
        return render_template_string(
            _LANDING, title=names["advertiser"], products=PRODUCTS.values(), **names
        )

    @app.get("/product/<sku>")
    def product_page(sku: str) -> str:
        product = product_or_404(sku)
        return render_template_string(_PRODUCT, title=product.name, product=product)

    @app.route("/checkout", methods=["GET", "POST"])
    def checkout() -> ResponseReturnValue:
        if request.method == "GET":
            product = product_or_404(request.args.get("sku"))
            return render_template_string(
                _CHECKOUT, title="Checkout", product=product, max_quantity=_MAX_QUANTITY
            )
        product = product_or_404(request.form.get("sku"))
        text = request.form.get("quantity", "1")
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= _MAX_QUANTITY):
            return f"The quantity must be a whole number from 1 to {_MAX_QUANTITY}.\n", 400
        order = orders.place(product, int(text))
        # 303: the browser fetches the thank-you page with GET, and a reload
        # of it does not post the order again.
        return redirect(f"/thank-you/{order.id}", code=303)

    @app.get("/thank-you/<order_id>")
    def thank_you(order_id: str) -> str:
        order = orders.get(order_id)
        if order is None:
            abort(404)
        return render_template_string(
            _THANK_YOU, title="Thank you", order=order, pixel=pixel_url(advertiser_id, order)
        )

    @app.get("/report")
    def report() -> str:
        return render_template_string(
            _REPORT,
            title="Report",
            conversions=list(store.conversions(advertiser_id=advertiser_id)),
            rejections=list(store.rejections(advertiser_id=advertiser_id, limit=10)),
            **names,
        )

    app.extensions["pixel_wsgi_demo"] = seed
    app.extensions["pixel_wsgi_demo_postbacks"] = postbacks
    password = dashboard_password or demo_dashboard_password()
    operator_dashboard = Dashboard(store, authenticate=basic_auth(password))
    # The dispatcher sends /dashboard/... to the dashboard (SCRIPT_NAME=/dashboard)
    # and everything else through the pixel middleware to the shop.
    pixels = PixelMiddleware(
        app.wsgi_app,
        store,
        secret_key=secret_key,
        deliver_in_background=base_url is not None,
    )
    app.extensions["pixel_wsgi_middleware"] = pixels
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        pixels, {DASHBOARD_PATH: operator_dashboard}
    )
    return app


def demo_secret_key(storage: Storage) -> str:
    """The demo's cookie-signing key, kept beside a SQLite store.

    The first call writes a random key to ``<db>.secret`` (created with mode
    0600, never overwritten); later calls read it, so cookies set by one run of
    the demo still verify after a restart. Other backends get a fresh random key.

    :raises ConfigurationError: when the file exists but holds no usable key.
    """
    if not isinstance(storage, SQLiteStorage):
        return secrets.token_urlsafe(32)
    path = Path(f"{storage.path}.secret")
    key = secrets.token_urlsafe(32)
    try:
        # O_EXCL: two demos started at once cannot both write (and disagree).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = path.read_text(encoding="utf-8").strip()
        if len(stored) < 16:
            raise ConfigurationError(
                f"{path} does not hold a secret key of at least 16 characters; delete it"
                " to have a new one made"
            ) from None
        return stored
    except OSError as exc:
        raise ConfigurationError(f"cannot create the demo's secret key file {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    return key


def _cli_command() -> str:
    """How to call the CLI from a shell: ``make demo`` runs it from ``.venv/bin``."""
    program = sys.argv[0] if sys.argv else ""
    if os.path.basename(program) == "pixel-wsgi":
        return shlex.quote(os.path.relpath(program) if os.path.isabs(program) else program)
    return "pixel-wsgi"


def run_demo(
    storage_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    secret_key: str | None = None,
) -> None:
    """Seed the store, print where to click, and serve the demo until Ctrl-C.

    :param host: the interface to listen on. Beyond this machine (``0.0.0.0``, a
        public address) the dashboard needs a real password in
        ``PIXEL_WSGI_DASHBOARD_PASSWORD`` (not ``demo``, at least 8 characters), and a
        warning says that it crosses the network in the clear.
    :param secret_key: the cookie-signing key; by default ``PIXEL_WSGI_SECRET_KEY``
        or the key kept beside the database (see :func:`demo_secret_key`).
    :raises ConfigurationError: for a host beyond this machine without a real
        dashboard password (before anything is written).
    """
    from werkzeug.serving import run_simple

    try:
        import flask  # noqa: F401  (fail before anything is written)
    except ImportError as exc:
        raise MissingDependencyError(_NEEDS_FLASK) from exc
    public = not is_loopback(host)
    if public and not _real_password(demo_dashboard_password()):
        raise ConfigurationError(
            f"the demo would serve its dashboard on {host or 'every interface'!r}, beyond this"
            f" machine, with the password {DEMO_DASHBOARD_PASSWORD!r}: set"
            f" {DASHBOARD_PASSWORD_ENV} to a real password (at least"
            f" {_MIN_PUBLIC_PASSWORD} characters), or listen on 127.0.0.1"
        )
    storage = storage_from_url(storage_url)
    if secret_key is not None:
        key_source = "the secret_key argument"
    elif os.environ.get(SECRET_KEY_ENV):
        secret_key = os.environ[SECRET_KEY_ENV]
        key_source = f"${SECRET_KEY_ENV}"
    else:
        secret_key = demo_secret_key(storage)
        key_source = (
            f"{storage.path}.secret"
            if isinstance(storage, SQLiteStorage)
            else "a random key (cookies end when the demo stops)"
        )
    base = f"http://{url_host(host)}:{port}"
    app = create_demo_app(storage, secret_key=secret_key, base_url=base)
    seed: DemoSeed = app.extensions["pixel_wsgi_demo"]
    # A password chosen through the environment is not printed.
    shown_password = (
        f"from ${DASHBOARD_PASSWORD_ENV}"
        if os.environ.get(DASHBOARD_PASSWORD_ENV)
        else f'"{DEMO_DASHBOARD_PASSWORD}"'
    )
    print(
        f"pixel-wsgi demo on {base}/ (store: {storage!r}, cookie key: {key_source})\n"
        f"  1. the publisher's page:  {base}/publisher\n"
        f"  2. its tracking link:     {base}{_PIXEL_PREFIX}/click/{seed['link'].id}"
        f"?sub1={DEMO_SUB1}\n"
        f"  3. buy something, then:   {base}/report\n"
        f"  the publisher's postbacks: {base}/publisher/postbacks\n"
        f"  the operator dashboard:   {base}{DASHBOARD_PATH}/"
        f" (user admin, password {shown_password})\n"
        f"  or from a shell:          {_cli_command()} --storage {shlex.quote(storage_url)}"
        f" conversions\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    if public:
        print(PLAIN_HTTP_WARNING, file=sys.stderr, flush=True)
    try:
        run_simple(host, port, app, threaded=True)
    finally:
        app.extensions["pixel_wsgi_middleware"].close()  # its delivery thread
