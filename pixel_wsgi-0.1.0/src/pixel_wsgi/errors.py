"""The exception hierarchy of pixel-wsgi, rooted in :class:`PixelError`.

Configuration errors are raised loudly at construction time. Errors about
request input never escape the middleware: they become a recorded rejection
with a :class:`~pixel_wsgi.models.Reason` and the normal response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Reason


class PixelError(Exception):
    """Base class of every error raised by pixel-wsgi."""


class ConfigurationError(PixelError, ValueError):
    """A constructor or command was given a value it cannot work with."""


# -- Storage: the rules of the entities every writer goes through ---------------------


class EntityInvalid(ConfigurationError):
    """An entity (a name, a payout rule, a link destination, a daily cap) breaks a rule
    of :mod:`pixel_wsgi.entities`; the message names the bad value.

    A :class:`ConfigurationError`, so also a :class:`ValueError`.

    :param field: what was given: ``"name"``, ``"payout"``, ``"destination"``, ...
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ParamError(PixelError, ValueError):
    """A report's parameters broke a rule; ``reason`` is machine-readable.

    :param reason: the stable reason code recorded in the rejection log.
    :param detail: a short human explanation (never contains personal data).
    :param field: the parameter at fault, when there is one.
    """

    def __init__(self, reason: Reason, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class StorageError(PixelError):
    """The store could not complete an operation."""


class RecordRefused(StorageError):
    """The store works but cannot hold this record (text it cannot encode, such as a
    lone surrogate, or a NUL character on PostgreSQL): retrying will not help.

    Never spooled; a replay quarantines the spooled record, with this reason, and
    goes on. Any other :class:`StorageError` means the store is unavailable.
    """


class NotFoundError(StorageError, LookupError):
    """An entity that an operation refers to does not exist."""


class MissingDependencyError(ConfigurationError, ImportError):
    """An optional driver is not installed; the message names the extra."""


# -- Attribution -----------------------------------------------------------------------


class AttributionRejected(PixelError):
    """An attribution cookie was present but cannot attribute; ``reason`` says why.

    Raised by :meth:`~pixel_wsgi.attribution.cookie.AttributionCookies.verify` and
    ``read``; the pixel records the reason instead of a visit.
    """

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


# -- Ledger ----------------------------------------------------------------------------


class ReportRefused(PixelError):
    """A server-side report that cannot be applied (it is in the rejection log).

    The ``reason`` says why; the Conversion Reporting API chooses its HTTP status
    from it (:mod:`pixel_wsgi.endpoints.api.refusals`).

    :param reason: the stable reason code recorded in the rejection log.
    :param detail: a short human explanation.
    :param field: the report's field at fault, when there is one.
    """

    def __init__(self, reason: Reason, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class EventAlreadyApplied(PixelError):
    """A replayed spool event was applied to the store before: nothing was written."""


# -- Outage ----------------------------------------------------------------------------


class SpoolError(StorageError):
    """The spool could not take an event either: it is lost unless the caller retries.

    Also raised for a spool directory that is not safe to use (writable by others,
    owned by another user), with the path and the fault.
    """


class SpoolFull(SpoolError):
    """The record would take the spool past its byte cap: it was not written."""


# -- Dashboard -----------------------------------------------------------------------


class DashboardError(PixelError):
    """A dashboard request that gets an error page; the message is shown to the user."""


class BadRequest(DashboardError, ValueError):
    """A query parameter the dashboard cannot use (a ``400`` page)."""


class NotFound(DashboardError, LookupError):
    """No such page, advertiser or conversion (a ``404`` page)."""
