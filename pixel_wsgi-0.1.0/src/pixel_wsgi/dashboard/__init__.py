"""The operator dashboard: conversions, payouts, correction chains and rejections.

A read-only WSGI application, protected by an ``authenticate`` callable, to
mount beside the tracked site or to serve on its own with
``pixel-wsgi dashboard``::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from pixel_wsgi.dashboard import Dashboard, basic_auth

    app.wsgi_app = DispatcherMiddleware(
        app.wsgi_app,
        {"/dashboard": Dashboard(store, authenticate=basic_auth(password))},
    )
"""

from __future__ import annotations

from .app import REALM, Authenticator, Dashboard, basic_auth

__all__ = ["REALM", "Authenticator", "Dashboard", "basic_auth"]
