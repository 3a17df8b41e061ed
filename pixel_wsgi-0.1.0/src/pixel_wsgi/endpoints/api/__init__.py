"""The server-side APIs under ``<prefix>/api/``, for the advertiser's own servers.

==========================================  ===================================
``POST /pixels/api/conversions``             report, update or reverse conversions
``POST /pixels/api/conversions.csv``         bulk CSV upload
``GET  /pixels/api/transactions.json``       the ledger rows (``.csv`` too)
==========================================  ===================================

Every request is authenticated with a credential made by ``pixel-wsgi credential add``
(see :mod:`pixel_wsgi.endpoints.api.auth`) and only ever sees its own advertiser's data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...errors import StorageError
from ...ledger.ledger import Ledger
from ..responses import json_response
from .auth import CHALLENGES, Authenticator, AuthFailure
from .conversions import ConversionsEndpoint, error_body, status_line
from .transactions import TransactionsEndpoint

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ...settings import Settings

__all__ = ["ReportingAPI"]

logger = logging.getLogger("pixel_wsgi")

_POST = ("POST",)
_READ = ("GET", "HEAD")
_ROUTES: dict[str, tuple[str, ...]] = {
    "conversions": _POST,
    "conversions.csv": _POST,
    "transactions": _READ,
    "transactions.json": _READ,
    "transactions.csv": _READ,
}


class ReportingAPI:
    """Routes, authenticates and answers the API requests the middleware hands it."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
    ) -> None:
        self.authenticate = Authenticator(
            ledger.storage, allowed_origins=frozenset(settings.api_allowed_origins)
        )
        self.conversions = ConversionsEndpoint(
            ledger, default_currency=settings.default_currency, limits=settings.limits
        )
        self.transactions = TransactionsEndpoint(ledger.storage)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, route: str
    ) -> Iterable[bytes]:
        methods = _ROUTES.get(route)
        head = environ["REQUEST_METHOD"] == "HEAD"
        if methods is None:
            body = error_body("not_found", "no such API endpoint")
            return json_response(start_response, status_line(404), body, head=head)
        if environ["REQUEST_METHOD"] not in methods:
            return json_response(
                start_response,
                "405 Method Not Allowed",
                error_body("method_not_allowed", f"use {' or '.join(methods)}"),
                extra_headers=[("Allow", ", ".join(methods))],
                head=head,
            )
        try:
            who = self.authenticate(environ)
            if isinstance(who, AuthFailure):
                return json_response(
                    start_response,
                    "401 Unauthorized" if who.status == 401 else "403 Forbidden",
                    error_body(who.code, who.message),
                    extra_headers=CHALLENGES if who.status == 401 else (),
                    head=head,
                )
            if route == "conversions":
                return self.conversions(environ, start_response, who)
            if route == "conversions.csv":
                return self.conversions.upload_csv(environ, start_response, who)
            extension = route.partition(".")[2] or None
            return self.transactions(environ, start_response, who, extension)
        except StorageError as exc:
            logger.error("pixel-wsgi API: the store failed: %s", exc)
            return json_response(
                start_response,
                status_line(503),
                error_body("storage_unavailable", "the store is unavailable; retry later"),
                extra_headers=[("Retry-After", "5")],
                head=head,
            )
