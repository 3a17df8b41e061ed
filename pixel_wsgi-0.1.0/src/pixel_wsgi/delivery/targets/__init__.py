"""The platforms a target sends to: one module per :class:`~pixel_wsgi.delivery.model.TargetKind`.

:func:`target_type` imports a kind's module on first use, so a worker loads only the
platforms its targets use.
"""

from __future__ import annotations

import importlib

from ..model import TargetKind
from .base import TargetType

__all__ = ["TARGET_MODULES", "target_type"]

#: Where each kind's :class:`TargetType` subclass lives, and its class name.
TARGET_MODULES: dict[TargetKind, tuple[str, str]] = {
    TargetKind.POSTBACK: (".postback", "Postback"),
    TargetKind.WEBHOOK: (".webhook", "Webhook"),
    TargetKind.META_CAPI: (".meta_capi", "MetaConversionsApi"),
    TargetKind.GOOGLE_ADS: (".google_ads", "GoogleAds"),
    TargetKind.GA4: (".ga4", "GoogleAnalytics4"),
    TargetKind.INVOCA_SIGNAL: (".invoca_signal", "InvocaSignal"),
}


def target_type(kind: TargetKind) -> type[TargetType]:
    """The :class:`TargetType` of ``kind``."""
    module_name, class_name = TARGET_MODULES[kind]
    module = importlib.import_module(module_name, __name__)
    found: type[TargetType] = getattr(module, class_name)
    return found
