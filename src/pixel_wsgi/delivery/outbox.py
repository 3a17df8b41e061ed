"""Managing targets: add one (checked, its credentials sealed), change it, open it.

What ``pixel-wsgi target add|set|...``, the dashboard and the worker share. The store
keeps a target's credentials sealed (:mod:`.secrets`); :func:`open_target` gives the
worker and ``--dry-run`` the :class:`~.model.Target` with them in plain text.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..clock import iso_utc
from ..errors import ConfigurationError
from ..models import StoredTarget, TargetKind, TargetStatus
from ..storage import Storage
from .model import Target
from .secrets import SecretBox
from .targets import target_type
from .targets.webhook import SECRET_PREFIX

__all__ = [
    "NewTarget",
    "add_target",
    "change_target",
    "new_webhook_secret",
    "open_target",
    "remove_target",
]


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


@dataclass(frozen=True)
class NewTarget:
    """A target just added, with its credentials: the only time they are shown."""

    stored: StoredTarget
    secrets: Mapping[str, str]


def _check(
    kind: TargetKind,
    publisher_id: int | None,
    settings: Mapping[str, str],
    secrets: Mapping[str, str],
) -> None:
    if kind is TargetKind.POSTBACK and publisher_id is None:
        raise ConfigurationError("a postback target needs --publisher: the publisher it pays")
    if kind is not TargetKind.POSTBACK and publisher_id is not None:
        raise ConfigurationError(f"a {kind.value} target takes no publisher")
    for name, value in secrets.items():
        # A pasted token with its newline would make every request fail to send.
        if value != value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ConfigurationError(
                f"the {name} of a {kind.value} target has blanks around it or control"
                " characters (a copied newline?)"
            )
    target_type(kind).check_settings(settings, secrets)


def add_target(
    storage: Storage,
    box: SecretBox,
    advertiser_id: int,
    kind: TargetKind,
    *,
    settings: Mapping[str, str],
    secrets: Mapping[str, str],
    publisher_id: int | None = None,
    history_from: datetime | None = None,
) -> NewTarget:
    """Check and store a new target for ``advertiser_id``'s ledger rows.

    :param secrets: its credentials; a webhook given none gets a new secret.
    :param history_from: replay the ledger rows made since then; by default the
        target gets only rows made from now on.
    :raises ConfigurationError: for a setting the kind refuses (naming it).
    :raises NotFoundError: for an unknown advertiser or publisher.
    """
    secrets = dict(secrets)
    if kind is TargetKind.WEBHOOK and not secrets.get("secret"):
        secrets["secret"] = new_webhook_secret()
    _check(kind, publisher_id, settings, secrets)
    if history_from is None:
        start_after = storage.last_transaction_id()
    else:
        start_after = storage.last_transaction_id(before=iso_utc(history_from))
    stored = storage.add_target(
        advertiser_id,
        kind,
        publisher_id=publisher_id,
        settings=settings,
        sealed_secrets=box.seal(secrets, advertiser_id=advertiser_id, kind=kind.value),
        start_after=start_after,
    )
    if target_type(kind).needs_conversion_context:
        storage.set_advertiser_keeps_conversion_context(advertiser_id, True)
    return NewTarget(stored, secrets)


def open_target(stored: StoredTarget, box: SecretBox) -> Target:
    """The target with its credentials opened.

    :raises ConfigurationError: when ``box`` cannot open them (another secret_key).
    """
    return Target(
        id=stored.id,
        advertiser_id=stored.advertiser_id,
        kind=stored.kind,
        publisher_id=stored.publisher_id,
        settings=stored.settings,
        secrets=box.open(
            stored.sealed_secrets, advertiser_id=stored.advertiser_id, kind=stored.kind.value
        ),
        status=stored.status,
        status_detail=stored.status_detail,
        created_at=stored.created_at,
    )


def change_target(
    storage: Storage,
    box: SecretBox,
    stored: StoredTarget,
    *,
    settings: Mapping[str, str | None],
    secrets: Mapping[str, str],
) -> StoredTarget:
    """Change some of a target's settings (None removes an optional one) and secrets,
    checked as ``add`` checks them."""
    current = open_target(stored, box)
    new_settings = {**current.settings, **settings}
    kept = {name: value for name, value in new_settings.items() if value is not None}
    new_secrets = {**current.secrets, **secrets}
    _check(stored.kind, stored.publisher_id, kept, new_secrets)
    return storage.set_target(
        stored.id,
        kept,
        box.seal(new_secrets, advertiser_id=stored.advertiser_id, kind=stored.kind.value),
    )


def remove_target(storage: Storage, stored: StoredTarget) -> StoredTarget:
    """Stop sending to a target for good; its deliveries stay on record.

    When it was the advertiser's last target that needs conversion contexts (Meta,
    GA4), the pixel stops keeping them and the ones kept are forgotten at once.
    """
    removed = storage.set_target_status(stored.id, TargetStatus.REMOVED, None)
    if not target_type(stored.kind).needs_conversion_context:
        return removed
    still_needed = any(
        target_type(other.kind).needs_conversion_context
        for other in storage.targets(advertiser_id=stored.advertiser_id)
    )
    if not still_needed:
        storage.set_advertiser_keeps_conversion_context(stored.advertiser_id, False)
        storage.forget_conversion_contexts(stored.advertiser_id, storage.last_transaction_id())
    return removed
