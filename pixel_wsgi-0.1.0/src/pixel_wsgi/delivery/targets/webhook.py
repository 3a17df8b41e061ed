"""Signed webhooks: a JSON POST per ledger row, as the Standard Webhooks specification says.

The receiver verifies each request with the ``standardwebhooks`` library (or by hand: an
HMAC-SHA256) and deduplicates on ``webhook-id``, which is derived from the ledger row and
so stays the same on every retry of that row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import ClassVar

from ...errors import ConfigurationError
from ...models import TransactionType
from ..model import (
    DeliveryItem,
    HttpRequest,
    HttpResponse,
    Outcome,
    OutcomeKind,
    TargetKind,
)
from .answers import described, no_answer, retrying
from .base import TargetType
from .payloads import check_http_url

__all__ = [
    "EVENT_TYPES",
    "SECRET_PREFIX",
    "Webhook",
    "sign",
    "webhook_secrets",
]

#: What a Standard Webhooks secret starts with; base64 of the key follows.
SECRET_PREFIX = "whsec_"
#: The key sizes the specification allows (bytes, after base64 decoding).
SECRET_BYTES = range(24, 65)
#: The ``type`` of the webhook's body for each kind of ledger row.
EVENT_TYPES: Mapping[TransactionType, str] = {
    TransactionType.CONVERSION: "conversion.created",
    TransactionType.CORRECTION: "conversion.corrected",
    TransactionType.REVERSAL: "conversion.reversed",
}
#: Statuses that say the request itself is wrong: sending it again cannot help.
#: (The specification retries every non-2xx but 410; these four cannot heal by waiting.)
REFUSED = frozenset({400, 404, 413, 422})
#: Statuses that refuse the sender's credentials: the target pauses.
AUTH_REFUSED = frozenset({401, 403})


def webhook_secrets(value: str) -> list[bytes]:
    """The HMAC keys of a secret setting: one or more ``whsec_...`` separated by spaces
    (several while rotating: every one signs).

    :raises ConfigurationError: naming which secret of the list is malformed (never
        quoting it).
    """
    given = value.split()
    if not given:
        raise ConfigurationError("a webhook target needs a secret (whsec_ and base64)")
    keys = []
    for number, secret in enumerate(given, 1):
        where = f"secret {number} of {len(given)}" if len(given) > 1 else "the secret"
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigurationError(f"{where} of a webhook target must start with whsec_")
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            raise ConfigurationError(
                f"{where} of a webhook target must be whsec_ followed by base64"
            ) from None
        if len(key) not in SECRET_BYTES:
            raise ConfigurationError(
                f"{where} of a webhook target must hold 24 to 64 bytes, it holds {len(key)}"
            )
        keys.append(key)
    return keys


def sign(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256>`` for every key,
    separated by spaces, over ``{message_id}.{timestamp}.{body}``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


class Webhook(TargetType):
    """A JSON POST of each ledger row to ``url``, signed as Standard Webhooks says.

    Settings: ``url``. Secrets: ``secret``, ``whsec_`` + base64 of 24 to 64 random bytes;
    during a rotation several, separated by spaces, and each one signs every request (the
    ``webhook-signature`` header lists ``v1,<signature>`` entries separated by spaces), so
    the receiver may switch to the new one at any time.

    The body, one row per request::

        {"type": "conversion.created", "timestamp": "2026-11-25T12:00:00.000000Z",
         "data": {"transaction_id": 42, "sale_amount": "24.50", ...}}

    ``type`` is ``conversion.created``, ``conversion.corrected`` or ``conversion.reversed``;
    ``timestamp`` is the row's ``created_at``; ``data`` is
    :meth:`~pixel_wsgi.models.Transaction.as_dict` (money as strings).

    Headers: ``webhook-id`` = ``msg_<transaction_id>``, the same on every retry of a row
    (the receiver's idempotency key); ``webhook-timestamp`` = the attempt's Unix seconds;
    ``webhook-signature``; ``content-type: application/json``.

    Answers: 2xx delivered; 410 Gone stops for good (the specification's "stop sending");
    401/403 pause the target (auth); 400, 404, 413 and 422 are permanent (the request
    itself is wrong, sending it again cannot help); everything else (408, 429, 5xx, a
    timeout, other 4xx) is tried again later, honouring ``Retry-After``. The specification
    counts a 3xx as a failure: it is tried again and never followed, since a signed
    request must not be replayed to a place its owner did not configure.
    """

    kind: ClassVar[TargetKind] = TargetKind.WEBHOOK
    batch_limit: ClassVar[int] = 1
    required_settings: ClassVar[frozenset[str]] = frozenset({"url"})
    required_secrets: ClassVar[frozenset[str]] = frozenset({"secret"})

    @classmethod
    def check_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().check_settings(settings, secrets)
        check_http_url(cls.kind, "url", settings["url"])
        webhook_secrets(secrets["secret"])

    @staticmethod
    def message_id(transaction_id: int) -> str:
        """The ``webhook-id`` of a ledger row: the same on every attempt."""
        return f"msg_{transaction_id}"

    @staticmethod
    def body(item: DeliveryItem) -> bytes:
        """The JSON body of one row (UTF-8, compact, keys in :meth:`as_dict` order)."""
        row = item.row
        document = {
            "type": EVENT_TYPES[row.transaction_type],
            "timestamp": row.created_at,
            "data": row.as_dict(),
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def requests(self, items: Sequence[DeliveryItem], now: datetime) -> list[HttpRequest]:
        keys = webhook_secrets(self.secrets["secret"])
        timestamp = int(now.timestamp())
        made = []
        for item in items:
            message_id = self.message_id(item.row.transaction_id)
            body = self.body(item)
            headers = (
                ("content-type", "application/json"),
                ("webhook-id", message_id),
                ("webhook-timestamp", str(timestamp)),
                ("webhook-signature", sign(keys, message_id, timestamp, body)),
            )
            made.append(
                HttpRequest("POST", self.settings["url"], headers, body, (item.row.transaction_id,))
            )
        return made

    def classify(
        self, request: HttpRequest, response: HttpResponse | None, error: str | None
    ) -> dict[int, Outcome]:
        if response is None:
            outcome = no_answer(error)
        elif 200 <= response.status < 300:
            outcome = Outcome(OutcomeKind.DELIVERED, f"HTTP {response.status}")
        elif response.status == 410:
            outcome = Outcome(OutcomeKind.PERMANENT, described(response, " Gone: stop sending"))
        elif response.status in AUTH_REFUSED:
            outcome = Outcome(OutcomeKind.AUTH, described(response))
        elif response.status in REFUSED:
            outcome = Outcome(OutcomeKind.PERMANENT, described(response))
        else:  # 3xx (never followed), 408, 429, 5xx, other 4xx: the spec retries them
            outcome = retrying(response)
        return dict.fromkeys(request.transaction_ids, outcome)

    def redacted(self, request: HttpRequest) -> str:
        """The request without the secret or the signature (which would let anyone who
        reads the log test guesses of the secret)."""
        headers = tuple(
            (name, "[redacted]" if name == "webhook-signature" else value)
            for name, value in request.headers
        )
        text = super().redacted(HttpRequest(request.method, request.url, headers, request.body, ()))
        for secret in self.secrets.get("secret", "").split():
            # The whole secret, then its key alone (what a receiver's config may echo).
            text = text.replace(secret, "[secret]").replace(
                secret[len(SECRET_PREFIX) :], "[secret]"
            )
        return text
