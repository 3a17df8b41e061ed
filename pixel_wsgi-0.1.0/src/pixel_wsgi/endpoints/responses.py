"""Small fixed WSGI responses shared by the endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

_NO_STORE = ("Cache-Control", "no-store, private")


def text_response(
    start_response: StartResponse,
    status: str,
    body: str,
    *,
    extra_headers: Iterable[tuple[str, str]] = (),
    head: bool = False,
) -> list[bytes]:
    """A short ``text/plain`` answer that no cache keeps."""
    data = body.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(data))),
        _NO_STORE,
        *extra_headers,
    ]
    start_response(status, headers)
    return [] if head else [data]


def json_response(
    start_response: StartResponse,
    status: str,
    payload: Any,
    *,
    extra_headers: Iterable[tuple[str, str]] = (),
    head: bool = False,
) -> list[bytes]:
    """A JSON answer that no cache keeps."""
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        _NO_STORE,
        *extra_headers,
    ]
    start_response(status, headers)
    return [] if head else [data]


def method_not_allowed(start_response: StartResponse) -> list[bytes]:
    return text_response(
        start_response,
        "405 Method Not Allowed",
        "Method not allowed: use GET or HEAD.\n",
        extra_headers=[("Allow", "GET, HEAD")],
    )
