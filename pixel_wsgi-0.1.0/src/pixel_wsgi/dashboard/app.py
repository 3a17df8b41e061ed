"""The dashboard as a WSGI application: authentication, routing and responses."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Iterable
from datetime import timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from werkzeug.datastructures import Authorization
from werkzeug.wrappers import Request

from ..clock import Clock, utc_now
from ..errors import BadRequest, ConfigurationError, NotFound, StorageError
from ..storage import Storage, storage_from_url
from . import export, pages, views
from .query import parse_range
from .svg import daily_chart
from .views import Scope

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["REALM", "Authenticator", "Dashboard", "basic_auth"]

logger = logging.getLogger("pixel_wsgi.dashboard")

#: ``authenticate(environ) -> bool``: whether the request may see the dashboard.
Authenticator = Callable[["WSGIEnvironment"], bool]

#: The realm of the ``WWW-Authenticate`` challenge.
REALM = "pixel-wsgi dashboard"

# Pages are private, and nothing in them is loaded from anywhere but here: no
# script at all, styles inline, the chart inline SVG.
_SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]
_HTML = "text/html; charset=utf-8"
_CSV = "text/csv; charset=utf-8"
_ALLOWED = "GET, HEAD"
_CHALLENGE = ("WWW-Authenticate", f'Basic realm="{REALM}"')

_ID = r"([1-9][0-9]{0,17})"
_TARGET_RE = re.compile(rf"/advertisers/{_ID}/targets/{_ID}")
_ADVERTISER_RE = re.compile(
    rf"/advertisers/{_ID}"
    r"(|/campaigns|/publishers|/days|/conversions|/rejections|/rejections/reasons"
    rf"|/conversions/{_ID})(\.csv)?"
)

# One response: status, headers, body.
_Response = tuple[str, list[tuple[str, str]], bytes]


def basic_auth(password: str, username: str = "admin") -> Authenticator:
    """An ``authenticate`` callable for HTTP Basic authentication with one account.

    Both the user name and the password are compared in constant time
    (:func:`hmac.compare_digest`), so the time an answer takes tells nothing
    about how much of a guess was right. Serve the dashboard over HTTPS, or on
    localhost only: Basic authentication sends the password with every request::

        Dashboard(store, authenticate=basic_auth(os.environ["DASHBOARD_PASSWORD"]))

    :raises ConfigurationError: when the password or the user name is empty.
    """
    if not isinstance(password, str) or not password:
        raise ConfigurationError("the dashboard password must be a non-empty string")
    if not isinstance(username, str) or not username or ":" in username:
        raise ConfigurationError(
            f"the dashboard user name must be non-empty without ':', got {username!r}"
        )
    expected_user = username.encode("utf-8")
    expected_password = password.encode("utf-8")

    def authenticate(environ: WSGIEnvironment) -> bool:
        auth = Authorization.from_header(environ.get("HTTP_AUTHORIZATION"))
        if auth is None or auth.type != "basic":
            return False
        user_ok = hmac.compare_digest((auth.username or "").encode("utf-8"), expected_user)
        password_ok = hmac.compare_digest((auth.password or "").encode("utf-8"), expected_password)
        return user_ok and password_ok

    return authenticate


class Dashboard:
    """The operator dashboard: a WSGI application to mount beside your site.

    Shows, per advertiser and date range, the conversions with their sale and
    payout totals by campaign, by publisher and by day (with an SVG chart), the
    correction chain of any conversion, and the rejection log with counts per
    reason. Every table sorts (``sort=<column>&dir=asc|desc``) and filters
    (``q=``) on the server, and exports CSV at the same path with ``.csv``
    appended. Money is exact decimal text with its currency, totals are kept
    per currency, and no personal data is ever shown.

    Pages, below wherever the app is mounted:

    - ``/``: the advertisers (or a redirect to the only one)
    - ``/advertisers/<id>``: totals, daily chart, by campaign, by publisher
      (``?from=YYYY-MM-DD&to=YYYY-MM-DD``, UTC days, both included; by
      default the last 30 days)
    - ``/advertisers/<id>/campaigns``, ``/publishers``, ``/days``
    - ``/advertisers/<id>/conversions`` (``campaign=``, ``publisher=``) and
      ``/advertisers/<id>/conversions/<transaction_id>``: one correction chain
    - ``/advertisers/<id>/rejections`` (``reason=``) and ``/rejections/reasons``
    - ``/advertisers/<id>/targets/<target_id>``: a delivery target (``pixel-wsgi target
      add``): its status, backlog, oldest undelivered row, attempts per day and outcome
      over the last 14 days, and its last errors with their (redacted) requests and
      answers. The advertiser's page lists its targets. Settings are shown; credentials
      never are.

    Mount it with Werkzeug's dispatcher, protected by a password::

        from werkzeug.middleware.dispatcher import DispatcherMiddleware
        from pixel_wsgi.dashboard import Dashboard, basic_auth

        app.wsgi_app = DispatcherMiddleware(
            app.wsgi_app,
            {"/dashboard": Dashboard(store, authenticate=basic_auth(password))},
        )

    :param storage: a :class:`~pixel_wsgi.storage.Storage` or a storage URL. The
        dashboard only reads; it does not migrate the schema.
    :param authenticate: ``authenticate(environ) -> bool``, required: a request
        it refuses gets ``401`` with a Basic challenge. Use :func:`basic_auth`,
        or check the host application's own session.
    :param clock: the current UTC time, which sets the default date range.
    :raises ConfigurationError: without a callable ``authenticate``, or for a
        storage that is neither a URL nor a Storage.

    Security: the pages are as private as ``authenticate`` makes them. They
    answer ``no-store`` and refuse to be framed; with :func:`basic_auth`, serve
    them over HTTPS.
    """

    def __init__(
        self,
        storage: Storage | str,
        *,
        authenticate: Authenticator | None = None,
        clock: Clock = utc_now,
    ) -> None:
        # A default of None only to fail with a clear ConfigurationError, not a
        # TypeError, when it is left out: an unprotected dashboard is no option.
        if authenticate is None or not callable(authenticate):
            raise ConfigurationError(
                "the dashboard needs authenticate=, a callable(environ) -> bool"
                f" (for example basic_auth(password)), got {authenticate!r}"
            )
        self.storage = storage_from_url(storage) if isinstance(storage, str) else storage
        if not isinstance(self.storage, Storage):
            raise ConfigurationError(f"storage must be a URL or a Storage, got {storage!r}")
        self.authenticate = authenticate
        self.clock = clock
        self._dates_indexed = False

    def _index_dates(self) -> None:
        """Ask the store for its date indexes, once: pages read by date range."""
        self._dates_indexed = True
        try:
            self.storage.index_dates()
        except StorageError as exc:
            # A dashboard that may not write is a normal deployment: say it, quietly.
            logger.info(
                "the store could not add its date indexes (%s): pages stay correct but"
                " read all of an advertiser's rows; run the dashboard once as a user who"
                " may write the store",
                exc,
            )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._dates_indexed:
            self._index_dates()
        request = Request(environ)
        today = self.clock().astimezone(timezone.utc).date()
        page = pages.Page(quote(request.script_root), today)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            allowed = bool(self.authenticate(environ))
        except Exception:
            logger.exception("the dashboard's authenticate callable failed")
            allowed = False
        if not allowed:
            status, headers, body = _error(
                page, "401 Unauthorized", "Sign in to see the dashboard."
            )
            headers.append(_CHALLENGE)
        elif method not in ("GET", "HEAD"):
            status, headers, body = _error(
                page, "405 Method Not Allowed", "The dashboard only reads: use GET."
            )
            headers.append(("Allow", _ALLOWED))
        else:
            status, headers, body = self._respond(request, page)
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [] if method == "HEAD" else [body]

    # -- routing -------------------------------------------------------------------

    def _respond(self, request: Request, page: pages.Page) -> _Response:
        try:
            return self._route(request, page)
        except BadRequest as exc:
            return _error(page, "400 Bad Request", str(exc))
        except NotFound as exc:
            return _error(page, "404 Not Found", str(exc))
        except StorageError:
            logger.exception("the dashboard cannot read its store")
            response = _error(
                page,
                "503 Service Unavailable",
                "The store cannot be read right now. Try again in a moment.",
            )
            response[1].append(("Retry-After", "30"))
            return response
        except Exception:
            # Never a traceback on the page: the log has it.
            logger.exception("the dashboard failed on %s", request.path)
            return _error(page, "500 Internal Server Error", "Something went wrong.")

    def _route(self, request: Request, page: pages.Page) -> _Response:
        path = request.path
        if path in ("", "/"):
            return self._index(request, page)
        target = _TARGET_RE.fullmatch(path)
        if target is not None:
            scope = self._scope(request, page, target.group(1))
            shown = views.target_view(self.storage, scope, int(target.group(2)), self.clock())
            return _html(pages.target_page(page, scope, shown))
        match = _ADVERTISER_RE.fullmatch(path)
        if match is None:
            raise NotFound(f"there is no page {path}")
        advertiser_id, section, transaction_id, as_csv = match.groups()
        scope = self._scope(request, page, advertiser_id)
        args = request.args.to_dict(flat=False)
        storage = self.storage
        if transaction_id is not None:
            chain = views.chain_view(storage, scope, int(transaction_id), args)
            if as_csv:
                return _csv(export.table_csv(chain.view), scope, f"conversion-{transaction_id}")
            return _html(pages.chain_page(page, scope, chain))
        if section == "":
            overview = views.overview(storage, scope)
            if as_csv:
                return _csv(export.totals_csv(overview.totals), scope, "totals")
            targets = views.target_summaries(storage, scope, self.clock())
            return _html(pages.overview_page(page, overview, targets))
        if section == "/rejections":
            rejections = views.rejections_view(storage, scope, args)
            if as_csv:
                return _csv(export.table_csv(rejections.log), scope, "rejections")
            return _html(pages.rejections_page(page, scope, rejections))
        if section == "/days":
            view, days = views.days_view(storage, scope, args)
            if as_csv:
                return _csv(export.table_csv(view), scope, view.table.name)
            return _html(pages.table_page(page, scope, section, view, chart=daily_chart(days)))
        loaders: dict[str, Callable[..., views.TableView[Any]]] = {
            "/campaigns": views.campaigns_view,
            "/publishers": views.publishers_view,
            "/conversions": views.conversions_view,
            "/rejections/reasons": views.reasons_view,
        }
        view = loaders[section](storage, scope, args)
        if as_csv:
            return _csv(export.table_csv(view), scope, view.table.name)
        active = "/rejections" if section == "/rejections/reasons" else section
        return _html(pages.table_page(page, scope, active, view))

    def _scope(self, request: Request, page: pages.Page, advertiser_id: str) -> Scope:
        """The advertiser of a page and its date range (``from``/``to``)."""
        advertiser = self.storage.advertiser(int(advertiser_id))
        if advertiser is None:
            raise NotFound(f"there is no advertiser {advertiser_id}")
        return Scope(advertiser, parse_range(request.args.to_dict(flat=False), page.today))

    def _index(self, request: Request, page: pages.Page) -> _Response:
        advertisers = self.storage.advertisers()
        if len(advertisers) == 1:
            query = request.query_string.decode("latin-1")
            location = f"{page.root}/advertisers/{advertisers[0].id}" + (
                f"?{query}" if query else ""
            )
            return "302 Found", [("Location", location), *_SECURITY_HEADERS], b""
        return _html(pages.index_page(page, advertisers))


def _html(text: str, status: str = "200 OK") -> _Response:
    return status, [("Content-Type", _HTML), *_SECURITY_HEADERS], text.encode("utf-8")


def _error(page: pages.Page, status: str, message: str) -> _Response:
    return _html(pages.error_page(page, status, message), status)


def _csv(body: bytes, scope: Scope, name: str) -> _Response:
    filename = f"advertiser-{scope.advertiser.id}-{name}-{scope.days.start}-to-{scope.days.end}.csv"
    headers = [
        ("Content-Type", _CSV),
        ("Content-Disposition", f'attachment; filename="{filename}"'),
        *_SECURITY_HEADERS,
    ]
    return "200 OK", headers, body
