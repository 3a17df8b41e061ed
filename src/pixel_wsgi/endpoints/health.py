"""``/pixels/health``: 200 when the store answers and the spool is empty, else 503."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .responses import json_response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ..outage.spool import Spool
    from ..storage import Storage

__all__ = ["HealthCheck"]

logger = logging.getLogger("pixel_wsgi")


class HealthCheck:
    """Answers a load balancer's or a monitor's health check.

    Degraded (503, with what is wrong) while the store does not answer, while
    the outage spool holds events a replay has not applied, or while there is no
    usable spool although one was asked for.

    :param storage: the store to check.
    :param spool: the outage spool, or None.
    :param spool_problem: why there is no spool although one was asked for, if so.
    """

    def __init__(
        self,
        storage: Storage,
        spool: Spool | None,
        spool_problem: str | None = None,
    ) -> None:
        self.storage = storage
        self.spool = spool
        self.spool_problem = spool_problem

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse, rest: str = ""
    ) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        spooled, spool = (0, "ok") if self.spool is None else self.spool.status()
        try:
            self.storage.check()
        except Exception as exc:
            logger.error("pixel-wsgi store unhealthy: %s", exc)
            store = "unavailable"
        else:
            store = "ok"
        problem = self.spool_problem or (None if spool == "ok" else spool)
        if store != "ok" or spooled or problem:
            # Degraded until the store answers and a replay has drained the spool.
            body: dict[str, object] = {"status": "degraded", "store": store}
            if problem:  # "full": events are being lost; "unusable"/"unavailable": see the log
                body["spool"] = problem
            body["spooled_bytes"] = spooled
            return json_response(start_response, "503 Service Unavailable", body, head=head)
        return json_response(start_response, "200 OK", {"status": "ok"}, head=head)
