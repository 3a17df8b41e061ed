"""``Settings``: the middleware's options, checked once and frozen.

:class:`~pixel_wsgi.middleware.PixelMiddleware` takes its options as keyword
arguments (its public interface) and turns them into one :class:`Settings`;
every endpoint it assembles reads what it needs from that object instead of a
list of arguments of its own. A wrong option fails here, at construction,
naming the option and the bad value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from .attribution.cookie import DEFAULT_WINDOW, check_window
from .attribution.keyring import MAKE_A_KEY, secret_key_list
from .clock import Clock, utc_now
from .currencies import ISO_4217_CODES
from .endpoints.click import ConsentCheck
from .endpoints.filters import Filters
from .errors import ConfigurationError
from .ledger.ledger import DEFAULT_RELOAD_WINDOW
from .outage.spool import DEFAULT_MAX_BYTES
from .params.sale import DEFAULT_LIMITS, Limits

__all__ = [
    "INGEST_MODES",
    "QUEUED_MODES",
    "SECRET_KEY_ENV",
    "Settings",
    "check_prefix",
    "secret_keys",
]

#: How the pixel and the click write: at once (``sync``), or through the local log and
#: its applier (``queued``; ``queued-durable`` syncs the log before each answer).
INGEST_MODES = ("sync", "queued", "queued-durable")
#: The modes whose pixel and click append to the log for an applier.
QUEUED_MODES = ("queued", "queued-durable")

#: The environment variable read for ``secret_key`` when none is given.
SECRET_KEY_ENV = "PIXEL_WSGI_SECRET_KEY"


def check_prefix(name: str, prefix: str) -> str:
    """``prefix`` when it is a route prefix like ``/pixels``, else a ConfigurationError."""
    if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise ConfigurationError(
            f"{name} must start with '/' and not end with one, like '/pixels', got {prefix!r}"
        )
    return prefix


def secret_keys(secret_key: str | bytes | Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """The middleware's ``secret_key`` as :attr:`Settings.secret_keys`: the key (or list
    of keys) given, else ``$PIXEL_WSGI_SECRET_KEY``; a clear error when neither is set."""
    if secret_key is None:
        secret_key = os.environ.get(SECRET_KEY_ENV) or None
    if secret_key is None or secret_key == "":
        raise ConfigurationError(
            f"PixelMiddleware needs a secret_key: pass secret_key=... or set {SECRET_KEY_ENV}"
            f" to a random key of at least 16 characters; make one with: {MAKE_A_KEY}"
        )
    return tuple(secret_key_list(secret_key))


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Every option of :class:`~pixel_wsgi.middleware.PixelMiddleware` but the
    application and the store, validated (see its ``:param:`` list for each).

    The middleware's ``secret_key`` is :attr:`secret_keys` here (see
    :func:`secret_keys`). The iterables given become frozensets (the hosts lower-cased)
    and a tuple (``bot_user_agents``: checked, lower-cased, without repeats), so nothing
    given can change afterwards::

        settings = Settings(secret_keys=(KEY,), prefix="/track")
        settings.prefix  # '/track'
    """

    secret_keys: tuple[bytes, ...]
    prefix: str = "/pixels"
    legacy_prefix: str = "/tracked_actions/web_sale"
    attribution_window: timedelta = DEFAULT_WINDOW
    reload_window: timedelta = DEFAULT_RELOAD_WINDOW
    default_currency: str = "USD"
    honor_gpc: bool = True
    consent: ConsentCheck | None = None
    allowed_redirect_hosts: Iterable[str] = frozenset()
    limits: Limits = DEFAULT_LIMITS
    advertiser_id: int | None = None
    api_allowed_origins: Iterable[str] = frozenset()
    environ_key: str | None = "pixel_wsgi"
    migrate: bool = True
    bot_user_agents: Iterable[str] | None = None
    min_seconds_to_convert: float = 0
    refuse_without_user_activation: bool = False
    spool_dir: str | os.PathLike[str] | None = "auto"
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    deliver_in_background: bool = False
    ingest: str = "sync"
    clock: Clock = utc_now

    def __post_init__(self) -> None:
        check_prefix("prefix", self.prefix)
        check_prefix("legacy_prefix", self.legacy_prefix)
        if self.default_currency not in ISO_4217_CODES:
            raise ConfigurationError(
                f"default_currency must be an ISO 4217 code, got {self.default_currency!r}"
            )
        check_window(self.attribution_window)
        if self.ingest not in INGEST_MODES:
            raise ConfigurationError(
                f"ingest must be one of {', '.join(INGEST_MODES)}, got {self.ingest!r}"
            )
        if self.ingest in QUEUED_MODES and self.spool_dir is None:
            raise ConfigurationError(
                "ingest='queued' writes through the spool: give spool_dir a directory"
                " (or 'auto'), not None"
            )
        if not isinstance(self.deliver_in_background, bool):
            raise ConfigurationError(
                f"deliver_in_background must be True or False, got {self.deliver_in_background!r}"
            )
        # Frozen: what was given as a list (or a generator) is copied once. The
        # filters check their own options: building them once fails here.
        hosts = frozenset(host.lower() for host in self.allowed_redirect_hosts)
        object.__setattr__(self, "allowed_redirect_hosts", hosts)
        object.__setattr__(self, "api_allowed_origins", frozenset(self.api_allowed_origins))
        if self.bot_user_agents is not None:
            bots = self.filters().bots.substrings  # checked, lower-cased, without repeats
            object.__setattr__(self, "bot_user_agents", bots)
        else:
            self.filters()

    def filters(self) -> Filters:
        """New fraud and noise filters with these options (each keeps its own memory)."""
        return Filters(
            bot_user_agents=self.bot_user_agents,
            min_seconds_to_convert=self.min_seconds_to_convert,
            refuse_without_user_activation=self.refuse_without_user_activation,
        )
