"""pixel-wsgi: self-hosted conversion tracking as WSGI middleware.

Wrap any WSGI application::

    from pixel_wsgi import PixelMiddleware

    app.wsgi_app = PixelMiddleware(app.wsgi_app, "sqlite:///pixel-wsgi.db", secret_key=KEY)
"""

from __future__ import annotations

from .attribution.signing import PixelUrlSigner, sign_pixel_url
from .errors import (
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    ParamError,
    PixelError,
    StorageError,
)
from .ledger.rules import Ledger, Outcome, compute_payout
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

__all__ = [
    "Advertiser",
    "Campaign",
    "ConfigurationError",
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
    "Rejection",
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
