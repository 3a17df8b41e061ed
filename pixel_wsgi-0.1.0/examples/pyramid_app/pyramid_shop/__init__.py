"""A tiny Pyramid shop; pixel-wsgi is added in ``development.ini``, not here.

The shop only renders the conversion pixel on its thank-you page. The
middleware that answers ``/pixels/...`` is the ``[filter:pixel]`` of the Paste
pipeline, so this package does not import pixel_wsgi at all.
"""

from __future__ import annotations

import secrets
import threading
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import urlencode

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPBadRequest, HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

PLAN_NAME = "Annual membership"
PLAN_SKU = "MEMBER-1Y"
PLAN_PRICE = Decimal("35.00")


class Orders:
    """Placed orders, in memory: stands in for the shop's real database."""

    def __init__(self) -> None:
        self._orders: dict[str, tuple[int, Decimal]] = {}
        self._lock = threading.Lock()

    def place(self, quantity: int) -> str:
        order_id = secrets.token_hex(4)
        with self._lock:
            self._orders[order_id] = (quantity, PLAN_PRICE * quantity)
        return order_id

    def get(self, order_id: str) -> tuple[int, Decimal] | None:
        with self._lock:
            return self._orders.get(order_id)


def landing(request: Request) -> Response:
    return Response(
        "<!doctype html><title>Members Club</title>"
        f"<h1>Join the club</h1><p>{PLAN_NAME}: ${PLAN_PRICE}</p>"
        f'<form method="post" action="{escape(request.route_path("checkout"))}">'
        '<input type="number" name="quantity" value="1" min="1"> <button>Join</button>'
        "</form>"
    )


def checkout(request: Request) -> HTTPSeeOther:
    quantity = request.POST.get("quantity", "1")
    if not (quantity.isascii() and quantity.isdigit() and 1 <= int(quantity) <= 10):
        raise HTTPBadRequest("quantity must be 1 to 10")
    order_id = request.registry.shop_orders.place(int(quantity))
    return HTTPSeeOther(location=request.route_path("thank_you", order_id=order_id))


def thank_you(request: Request) -> Response:
    order_id = request.matchdict["order_id"]
    order = request.registry.shop_orders.get(order_id)
    if order is None:
        raise HTTPNotFound()
    quantity, total = order
    settings = request.registry.settings
    query = urlencode(
        [
            ("sale_amount", f"{total:.2f}"),
            ("reference_id", f"order-{order_id}"),
            ("sku_list[]", PLAN_SKU),
            ("quantity_list[]", str(quantity)),
        ]
    )
    pixel = f"{settings['shop.pixel_prefix']}/conversion/{settings['shop.advertiser_id']}.gif"
    return Response(
        "<!doctype html><title>Welcome</title>"
        f"<p>Welcome aboard! Order {escape(order_id)}: ${total:.2f}.</p>"
        f'<img src="{escape(pixel + "?" + query)}" width="1" height="1" alt="">'
    )


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    """The Paste app factory named by ``use = call:pyramid_shop:main``."""
    settings.setdefault("shop.advertiser_id", "1")
    settings.setdefault("shop.pixel_prefix", "/pixels")
    with Configurator(settings=settings) as config:
        config.registry.shop_orders = Orders()
        config.add_route("landing", "/landing")
        config.add_route("checkout", "/checkout")
        config.add_route("thank_you", "/thank-you/{order_id}")
        config.add_view(landing, route_name="landing", request_method="GET")
        config.add_view(checkout, route_name="checkout", request_method="POST")
        config.add_view(thank_you, route_name="thank_you", request_method="GET")
    return config.make_wsgi_app()
