"""Targets' credentials at rest: sealed with AES-256-GCM under a key from ``secret_key``.

The store keeps only the sealed text, so a copy of the database (a backup, a replica)
gives away no access token. The key is derived with HKDF-SHA256 from the middleware's
``secret_key`` (the CLI reads ``PIXEL_WSGI_SECRET_KEY``), with its own purpose string,
so it is never the key that signs cookies. Each sealing binds the target's advertiser
and kind as associated data: credentials copied onto another target do not open.
When ``secret_key`` is a list (rotation), the last key seals (as the last signs
cookies) and every key opens.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigurationError

__all__ = ["SecretBox"]

_PURPOSE = b"pixel-wsgi delivery target credentials v1"
_PREFIX = "v1."
_NONCE_BYTES = 12


def _derive(secret_key: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key)
    return AESGCM(key)


class SecretBox:
    """Seals and opens targets' credentials.

    :param secret_keys: the middleware's keys (``Settings.secret_keys``), newest last.

    >>> box = SecretBox([b"k" * 32])
    >>> sealed = box.seal({"access_token": "EAAB..."}, advertiser_id=1, kind="meta_capi")
    >>> "EAAB" in sealed
    False
    >>> box.open(sealed, advertiser_id=1, kind="meta_capi")
    {'access_token': 'EAAB...'}
    """

    def __init__(self, secret_keys: Sequence[bytes]) -> None:
        if not secret_keys:
            raise ConfigurationError("sealing credentials needs a secret_key")
        # Newest first: it seals, and it is tried first when opening.
        self._ciphers = [_derive(key) for key in reversed(secret_keys)]

    @staticmethod
    def _bound_to(advertiser_id: int, kind: str) -> bytes:
        return f"advertiser={advertiser_id};kind={kind}".encode()

    def seal(self, secrets: Mapping[str, str], *, advertiser_id: int, kind: str) -> str:
        """The credentials as the store keeps them: ``v1.`` and base64url text."""
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps(dict(secrets), sort_keys=True).encode()
        sealed = self._ciphers[0].encrypt(nonce, plain, self._bound_to(advertiser_id, kind))
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, *, advertiser_id: int, kind: str) -> dict[str, str]:
        """The credentials in plain text.

        :raises ConfigurationError: when no key opens them (``secret_key`` changed and
            the old key is no longer listed) or the text was altered.
        """
        if not sealed.startswith(_PREFIX):
            raise ConfigurationError("a target's credentials are not sealed by this version")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :].encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ConfigurationError("a target's sealed credentials are damaged") from exc
        nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        bound = self._bound_to(advertiser_id, kind)
        for cipher in self._ciphers:
            try:
                opened: dict[str, str] = json.loads(cipher.decrypt(nonce, body, bound))
            except InvalidTag:
                continue
            return opened
        raise ConfigurationError(
            "cannot open a target's credentials: secret_key is not the one they were"
            " sealed with (keep the old key listed after the new one while rotating)"
        )
