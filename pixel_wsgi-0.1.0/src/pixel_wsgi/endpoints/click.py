"""Tracking links: ``/pixels/click/<link_id>`` records a visit and redirects.

The visitor is sent, with a ``302`` (a ``301`` would be cached and skip the
next click), to the destination stored with the link; the signed attribution
cookie that the conversion pixel later reads is set on the way.

A click from a known bot (a link preview, a mail scanner) or one that is not a
person's navigation (``Sec-Fetch-Dest: image``, ``iframe``, ...: cookie stuffing)
gets the very same redirect, so previews still work and a fraudster learns
nothing from the answer, but no visit and no cookie; the rejection log records
it (``bot``, ``cookie_stuffing``). A cross-site navigation without user activation
(a script or a meta refresh) counts but is flagged (``no_user_activation``), or is
refused the same way with ``refuse_without_user_activation``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from werkzeug.utils import redirect

from ..attribution.cookie import AttributionCookies
from ..entities import destination_allowed, destination_problem
from ..errors import StorageError
from ..ledger.ledger import Ledger
from ..models import Link, Reason
from ..params.click_ids import parse_click_context
from ..params.conversion_context import stored_user_agent
from ..params.network import truncated_ip
from ..params.values import parse_positive_id
from .edge import is_https, is_prefetch, sends_global_privacy_control
from .filters import Filters
from .responses import text_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..settings import Settings

logger = logging.getLogger("pixel_wsgi")

ConsentCheck = Callable[["WSGIEnvironment"], bool]

_CLICK_SOURCE = "click"


class TrackingLink:
    """Answers tracking-link clicks.

    :param honor_gpc: set no cookie when the browser sends ``Sec-GPC: 1``.
    :param consent: called with the WSGI environ; a false answer means no cookie.
    :param allowed_redirect_hosts: hosts, besides the request's own, that a
        link's absolute destination may point to.
    :param filters: the fraud and noise filters
        (default: :class:`~pixel_wsgi.endpoints.filters.Filters`).
    """

    def __init__(
        self,
        ledger: Ledger,
        cookies: AttributionCookies,
        settings: Settings,
        *,
        filters: Filters | None = None,
    ) -> None:
        self.ledger = ledger
        self.cookies = cookies
        self.honor_gpc = settings.honor_gpc
        self.consent = settings.consent
        self.allowed_redirect_hosts = frozenset(settings.allowed_redirect_hosts)
        self.filters = filters if filters is not None else Filters()

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, link_text: str
    ) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        prefetch = is_prefetch(environ)
        # HEAD requests and prefetches look, but never count.
        counts = not head and not prefetch
        link_id = parse_positive_id(link_text)
        link = None if link_id is None else self.ledger.catalog.link(link_id)
        if link is None:
            detail = f"no tracking link {link_text[:40]!r}"
            return self._refuse(start_response, head, counts, None, Reason.UNKNOWN_LINK, detail)
        broken = destination_problem(link.destination)
        if broken is not None:
            # Stored before destinations were checked: never an exception (a 503).
            return self._refuse(
                start_response,
                head,
                counts,
                link.advertiser_id,
                Reason.INVALID_LINK_DESTINATION,
                f"link {link.id}: {broken}",
                "This tracking link is broken: its destination is not a valid URL.\n",
            )
        request_host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if not destination_allowed(link.destination, request_host, self.allowed_redirect_hosts):
            detail = f"link {link.id} points to a host not in allowed_redirect_hosts"
            return self._refuse(
                start_response,
                head,
                counts,
                link.advertiser_id,
                Reason.LINK_DESTINATION_NOT_ALLOWED,
                detail,
                "This tracking link leads to a site this one does not redirect to.\n",
            )
        if prefetch:
            # A non-2xx answer makes the browser drop the prefetch and make the
            # real navigation later, which is the click we want to count.
            return text_response(
                start_response,
                "503 Service Unavailable",
                "Tracking links are not prefetched.\n",
                extra_headers=[("Retry-After", "0")],
            )
        response = redirect(link.destination, code=302)
        response.headers["Cache-Control"] = "no-store, private"
        response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
        if counts:
            problem = self.filters.click_problem(environ)
            if problem is not None:
                # Same redirect, no visit, no cookie.
                self._log_refusal(link, *problem)
                return response(environ, start_response)
            visit_id = self._record_visit(environ, link)
            flag = None if visit_id is None else self.filters.click_flag(environ)
            if flag is not None:
                # A flag: the visit above stands, and so does its cookie.
                self._log_refusal(link, *flag, visit_id=visit_id)
            if visit_id is not None and self._may_set_cookie(environ):
                response.headers.add(
                    "Set-Cookie",
                    self.cookies.set_cookie_header(
                        link.advertiser_id, visit_id, link.id, secure=is_https(environ)
                    ),
                )
        return response(environ, start_response)

    def _refuse(
        self,
        start_response: StartResponse,
        head: bool,
        counts: bool,
        advertiser_id: int | None,
        reason: Reason,
        detail: str,
        body: str = "Unknown tracking link.\n",
    ) -> Iterable[bytes]:
        """404 for a link we will not follow, recorded unless only looked at."""
        if counts:
            self.ledger.reject(
                advertiser_id=advertiser_id, source=_CLICK_SOURCE, reason=reason, detail=detail
            )
        return text_response(start_response, "404 Not Found", body, head=head)

    def _log_refusal(
        self, link: Link, reason: Reason, detail: str, visit_id: int | None = None
    ) -> None:
        try:
            self.ledger.reject(
                advertiser_id=link.advertiser_id,
                source=_CLICK_SOURCE,
                reason=reason,
                detail=f"link {link.id}: {detail}",
                visit_id=visit_id,
            )
        except Exception:
            # The redirect must still be answered.
            logger.exception("refused click on link %s not logged", link.id)

    def _record_visit(self, environ: WSGIEnvironment, link: Link) -> int | None:
        user_agent = stored_user_agent(environ.get("HTTP_USER_AGENT", "")) or None
        try:
            # The sub ids and click ids the link carried, for delivery (never logged).
            click = parse_click_context(
                environ.get("QUERY_STRING", ""), int(self.ledger.clock().timestamp() * 1000)
            )
        except Exception:  # a bug of ours: the visit still counts, without them
            logger.exception("the click's sub ids and click ids on link %s failed", link.id)
            click = None
        try:
            # The store, or the outage spool when the store fails.
            return self.ledger.record_visit(
                link,
                ip_prefix=truncated_ip(environ.get("REMOTE_ADDR")),
                user_agent=user_agent,
                click=click,
            )
        except StorageError:
            # Neither took it. The visitor still reaches the page; only this click
            # is unattributed.
            logger.exception("tracking-link click on link %s not stored", link.id)
            return None
        except Exception as exc:
            # pixel-wsgi itself failed (a bug): keep the click in the rejection log too.
            logger.exception("tracking-link click on link %s failed", link.id)
            self._log_refusal(link, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:300])
            return None

    def _may_set_cookie(self, environ: WSGIEnvironment) -> bool:
        if self.honor_gpc and sends_global_privacy_control(environ):
            return False
        if self.consent is not None:
            try:
                return bool(self.consent(environ))
            except Exception:
                logger.exception("the consent callable failed; no attribution cookie set")
                return False
        return True
