"""pixel-wsgi: self-hosted conversion tracking as WSGI middleware.

Wrap any WSGI application::

    from pixel_wsgi import PixelMiddleware

    app.wsgi_app = PixelMiddleware(app.wsgi_app, "sqlite:///pixel-wsgi.db", secret_key=KEY)

Importing the package costs almost nothing: each name below is imported on
first use (PEP 562), so a pytest run that loads the :mod:`pixel_wsgi.testing`
plugin, or a tool that only reads ``__version__``, never pays for the middleware,
the storage drivers, the CLI or the dashboard.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attribution.signing import PixelUrlSigner, sign_pixel_url
    from .errors import (
        ConfigurationError,
        EntityInvalid,
        MissingDependencyError,
        NotFoundError,
        ParamError,
        PixelError,
        RecordRefused,
        ReportRefused,
        StorageError,
    )
    from .ledger.ledger import Ledger, Outcome
    from .ledger.payouts import compute_payout
    from .middleware import PixelMiddleware
    from .models import (
        Advertiser,
        Campaign,
        Link,
        PayoutKind,
        PayoutRule,
        Publisher,
        Reason,
        Rejection,
        SaleReport,
        Source,
        Transaction,
    )
    from .storage import PostgresStorage, SQLiteStorage, Storage, storage_from_url

__version__ = "0.1.0"

# Where each public name lives: imported by __getattr__ on first use.
_LAZY = {
    "ConfigurationError": ".errors",
    "EntityInvalid": ".errors",
    "MissingDependencyError": ".errors",
    "NotFoundError": ".errors",
    "ParamError": ".errors",
    "PixelError": ".errors",
    "RecordRefused": ".errors",
    "ReportRefused": ".errors",
    "StorageError": ".errors",
    "Ledger": ".ledger.ledger",
    "Outcome": ".ledger.ledger",
    "compute_payout": ".ledger.payouts",
    "PixelMiddleware": ".middleware",
    "Advertiser": ".models",
    "Campaign": ".models",
    "Link": ".models",
    "PayoutKind": ".models",
    "PayoutRule": ".models",
    "Publisher": ".models",
    "Reason": ".models",
    "Rejection": ".models",
    "SaleReport": ".models",
    "Source": ".models",
    "Transaction": ".models",
    "PixelUrlSigner": ".attribution.signing",
    "sign_pixel_url": ".attribution.signing",
    "PostgresStorage": ".storage",
    "SQLiteStorage": ".storage",
    "Storage": ".storage",
    "storage_from_url": ".storage",
}

__all__ = [
    "Advertiser",
    "Campaign",
    "ConfigurationError",
    "EntityInvalid",
    "Ledger",
    "Link",
    "MissingDependencyError",
    "NotFoundError",
    "Outcome",
    "ParamError",
    "PayoutKind",
    "PayoutRule",
    "PixelError",
    "PixelMiddleware",
    "PixelUrlSigner",
    "PostgresStorage",
    "Publisher",
    "Reason",
    "RecordRefused",
    "Rejection",
    "ReportRefused",
    "SQLiteStorage",
    "SaleReport",
    "Source",
    "Storage",
    "StorageError",
    "Transaction",
    "compute_payout",
    "sign_pixel_url",
    "storage_from_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next look-up is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
