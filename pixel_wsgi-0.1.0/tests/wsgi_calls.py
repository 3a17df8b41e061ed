"""Helpers without pytest: the host app, a store with one campaign, a direct WSGI call.

The tests import them, and so do the processes that cannot load ``conftest.py``: the
fault tests' children (``fault_wsgi_child.py``, ``fault_kill_writer.py``) and
``benchmarks/load.py``. Keep this module free of pytest and WebTest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder, run_wsgi_app

from pixel_wsgi import Link, PayoutKind, PayoutRule, PixelMiddleware, Storage

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The payout of :func:`seed_campaign` unless told otherwise.
TEN_PERCENT = PayoutRule(PayoutKind.PERCENT, Decimal("10"))


def host_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The advertiser's own site: echoes the path so pass-through is visible."""
    body = f"host page {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed_campaign` made."""

    advertiser_id: int
    publisher_id: int
    campaign_id: int
    link: Link


def seed_campaign(
    storage: Storage,
    *,
    advertiser: str = "Acme",
    publisher: str = "Deals Blog",
    campaign: str = "Ten percent",
    rule: PayoutRule = TEN_PERCENT,
    destination: str = "/landing",
) -> Seeded:
    """Migrate ``storage``, then add an advertiser, a publisher, a campaign and its link."""
    storage.migrate()
    owner = storage.add_advertiser(advertiser)
    partner = storage.add_publisher(publisher)
    made = storage.add_campaign(owner.id, campaign, rule)
    link = storage.add_link(made.id, partner.id, destination)
    return Seeded(owner.id, partner.id, made.id, link)


def call(
    app: WSGIApplication,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    environ: dict[str, Any] | None = None,
) -> tuple[str, Headers, bytes]:
    """One request straight into the WSGI callable, as a server would make it (no
    WebTest, so threads and forked processes may race it): status, headers, body."""
    builder = EnvironBuilder(
        path=path,
        method=method,
        headers=None if headers is None else list(headers.items()),
        data=None if form is None else urlencode(form),
        content_type=None if form is None else "application/x-www-form-urlencoded",
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    try:
        app_iter, status, response_headers = run_wsgi_app(
            app, {**builder.get_environ(), **(environ or {})}
        )
        body = b"".join(app_iter)
    finally:
        builder.close()
    return status, response_headers, body


def attribution(
    middleware: PixelMiddleware, headers: Headers, advertiser_id: int
) -> tuple[str, int] | None:
    """The ``Cookie`` header a click's answer sets, and the visit id it carries; None
    when the answer set no cookie."""
    set_cookie = headers.get("Set-Cookie")
    if set_cookie is None:
        return None
    cookie = set_cookie.split(";", 1)[0]
    value = middleware.cookies.read(cookie, advertiser_id)
    assert value is not None, cookie
    return cookie, middleware.cookies.verify(value).visit_id
