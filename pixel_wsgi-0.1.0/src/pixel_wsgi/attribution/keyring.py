"""The HMAC keyring behind every signature pixel-wsgi makes.

The middleware's ``secret_key`` signs both the attribution cookie
(:mod:`pixel_wsgi.attribution.cookie`) and signed pixel URLs
(:mod:`pixel_wsgi.attribution.signing`): one key, or a list of them for rotation
(the *last* signs, every one verifies). Each user derives its own key from every
secret with a label of its own, so that a signature of one kind never passes for
the other; the keyring keeps one ready HMAC state per derived key, newest first,
which each signature copies instead of deriving the key again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence

from ..errors import ConfigurationError

__all__ = ["MAKE_A_KEY", "Keyring", "secret_key_list"]

#: A shell command that prints a good random key.
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

SecretKey = str | bytes | Sequence[str | bytes]


def secret_key_list(secret_key: SecretKey) -> list[bytes]:
    """One key, or a list of them for rotation, as bytes in the order given.

    :raises ConfigurationError: for no key (None, an empty list), a key that is not
        text or bytes, or a key shorter than 16 characters; the message says how to
        make a good one.
    """
    if isinstance(secret_key, (str, bytes)):
        given: list[object] = [secret_key]
    elif isinstance(secret_key, Sequence):
        given = list(secret_key)
    else:
        given = []  # None, a number: no key
    keys = [key.encode() if isinstance(key, str) else key for key in given]
    usable = [key for key in keys if isinstance(key, bytes) and len(key) >= 16]
    if not usable or len(usable) != len(keys):
        raise ConfigurationError(
            "secret_key must be a key (or list of keys) of at least 16 characters;"
            f" make one with: {MAKE_A_KEY}"
        )
    return usable


def _encoded(mac: hmac.HMAC, message: bytes) -> bytes:
    check = mac.copy()
    check.update(message)
    return base64.urlsafe_b64encode(check.digest()).rstrip(b"=")


class Keyring:
    """The derived HMAC-SHA256 states of a ``secret_key``, newest key first.

    :param secret_key: one key of at least 16 characters, or a list for rotation.
    :param derive: the signer's key derivation, ``derive(secret) -> key``.
    """

    __slots__ = ("keys", "macs")

    def __init__(self, secret_key: SecretKey, derive: Callable[[bytes], bytes]) -> None:
        #: The secrets as given (bytes), in their order: the last one signs.
        self.keys = secret_key_list(secret_key)
        # Derived once per key; each signature copies the ready state.
        self.macs = [hmac.new(derive(key), digestmod=hashlib.sha256) for key in reversed(self.keys)]

    def signature(self, message: bytes) -> bytes:
        """The URL-safe base64 signature (no padding) of ``message`` by the newest key."""
        return _encoded(self.macs[0], message)

    def verifies(self, message: bytes, signature: bytes) -> bool:
        """Whether any key of the ring signed ``message`` with ``signature``."""
        # A loop rather than any(genexpr): the cookie's check runs on every pixel hit.
        for mac in self.macs:
            # _encoded() inline: one Python call less on every pixel hit with a cookie.
            check = mac.copy()
            check.update(message)
            if hmac.compare_digest(
                base64.urlsafe_b64encode(check.digest()).rstrip(b"="), signature
            ):
                return True
        return False
