"""Signing secrets sealed at rest with AES-256-GCM: the one home of the key and sealed formats.

Why AES-GCM (from ``cryptography``) and not Fernet: GCM takes associated data, and each sealed
secret is bound to its webhook id through it, so a row's ciphertext copied onto another webhook
(by someone who can write the database but holds no key) does not open there. The database alone
never yields a usable secret; the keys live only in the processes' settings.

Keys (``INFRAUDIT_SECRET_KEYS``): comma-separated, **newest first**; each is 32 random bytes in
base64, URL-safe (as :func:`new_key` and ``infraudit secrets new-key`` make them) or standard (as
``openssl rand -base64 32`` does).
The newest key seals; every listed key opens. A key's id is derived from the key itself (the
first 8 hex digits of a domain-separated SHA-256), so operators never name keys and two
processes with the same key agree on its id.

Sealed form (the ``webhooks.secret`` column)::

    v1:<key id, 8 hex>:<URL-safe base64 of nonce (12 bytes) || ciphertext || tag (16 bytes)>

The version prefix says how to read the rest; the key id says which key opens it, which is what
rotation (``infraudit secrets rotate``) uses to find rows still under an older key. Nonces are
random: at 96 bits they stay far from collision for the number of secrets a store holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from infraudit.config import Settings

#: The variable that holds the keys (read in config.py; named here for error messages).
KEYS_VARIABLE = "INFRAUDIT_SECRET_KEYS"
#: Bytes of one key (AES-256).
KEY_BYTES = 32
#: Bytes of a GCM nonce (the size GCM is specified for).
NONCE_BYTES = 12
#: Format version of sealed values written today.
VERSION = "v1"
#: Where a :class:`Keyring` rides on a store session (``Database`` puts it there).
SESSION_INFO_KEY = "infraudit.keyring"
_KEY_ID_DOMAIN = b"infraudit secret key id\x00"
_AAD_DOMAIN = b"infraudit webhook secret v1\x00"


class SecretKeyError(ValueError):
    """The keys are missing or malformed; the message names the variable, never a key."""


class UnreadableSecret(Exception):
    """A stored secret that none of the configured keys opens.

    The message names the webhook and the key id only: never the sealed value or a key.
    """


def new_key() -> str:
    """A fresh random key in the form ``INFRAUDIT_SECRET_KEYS`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """The 8-hex-digit id of a key, as written into the sealed values it makes."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:8]


def decode_keys(text: str) -> list[bytes]:
    """The keys of an ``INFRAUDIT_SECRET_KEYS`` value, newest first.

    Raises :class:`SecretKeyError` naming the position of a bad key (never its text): each must
    be base64 (URL-safe or standard) of exactly 32 bytes, and no key may be listed twice.
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise SecretKeyError(f"{KEYS_VARIABLE} is empty")
    keys: list[bytes] = []
    for position, item in enumerate(items, start=1):
        try:
            key = base64.b64decode(item, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretKeyError(
                f"{KEYS_VARIABLE}: key {position} is not {KEY_BYTES} bytes in base64 "
                "(make one with `infraudit secrets new-key`)"
            )
        if key in keys:
            raise SecretKeyError(f"{KEYS_VARIABLE}: key {position} is listed twice")
        keys.append(key)
    return keys


def _associated_data(webhook_id: str) -> bytes:
    return _AAD_DOMAIN + webhook_id.encode()


class Keyring:
    """The configured keys: the newest seals, all of them open.

    Holds no key text a ``repr`` or a traceback's locals could print; build one per process.
    """

    __slots__ = ("_ciphers", "current_id")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeyError(f"{KEYS_VARIABLE} holds no key")
        self._ciphers = {key_id(key): AESGCM(key) for key in keys}
        if len(self._ciphers) != len(keys):
            raise SecretKeyError(f"{KEYS_VARIABLE}: two keys share an id; make new keys")
        #: The id of the newest key, the one that seals.
        self.current_id = key_id(keys[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The keyring of ``settings.secret_keys``; :class:`SecretKeyError` when there is none.

        Every process that seals or opens secrets (API, worker, ``db upgrade`` with rows to
        seal, ``secrets rotate``) builds its keyring here, so a missing key stops it at start
        with one line instead of storing a secret in plain text.
        """
        if settings.secret_keys is None:
            raise SecretKeyError(
                f"{KEYS_VARIABLE} is not set: signing secrets are stored encrypted and this "
                "process needs the key (`infraudit secrets new-key` makes one; `make run` "
                "keeps its own in .infraudit/secret.key)"
            )
        return cls(decode_keys(settings.secret_keys.get_secret_value()))

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, keys={len(self._ciphers)})"

    def seal(self, secret: str, *, webhook_id: str) -> str:
        """``secret`` sealed under the newest key and bound to ``webhook_id``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(
            nonce, secret.encode(), _associated_data(webhook_id)
        )
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{VERSION}:{self.current_id}:{payload}"

    def open(self, stored: str, *, webhook_id: str) -> str:
        """The secret sealed in ``stored`` for ``webhook_id``.

        Raises :class:`UnreadableSecret` when the value is not sealed, names a key this keyring
        lacks, or does not open (tampered with, or moved from another webhook's row).
        """
        version, _, rest = stored.partition(":")
        kid, _, payload = rest.partition(":")
        if version != VERSION or not payload:
            raise UnreadableSecret(
                f"the signing secret of {webhook_id} is not stored in a sealed form "
                f"(run `infraudit db upgrade` with {KEYS_VARIABLE} set)"
            )
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnreadableSecret(
                f"the signing secret of {webhook_id} is sealed under key {kid}, which "
                f"{KEYS_VARIABLE} of this process does not hold"
            )
        try:
            raw = base64.urlsafe_b64decode(payload)
            opened = cipher.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(webhook_id)
            )
        except (binascii.Error, ValueError, InvalidTag):
            raise UnreadableSecret(
                f"the signing secret of {webhook_id} does not open under key {kid}: the stored "
                "value was altered or belongs to another webhook"
            ) from None
        return opened.decode()

    @property
    def current_prefix(self) -> str:
        """The start of every value the newest key seals, ``v1:<id>:``: rotation re-seals the
        rows that do not start with it."""
        return f"{VERSION}:{self.current_id}:"


def keyring_of(session: AsyncSession) -> Keyring:
    """The keyring of the ``Database`` that made ``session``.

    Raises :class:`SecretKeyError` when that ``Database`` was built without one: the store then
    refuses to seal or open a secret rather than fall back to plain text.
    """
    keyring = session.info.get(SESSION_INFO_KEY)
    if not isinstance(keyring, Keyring):
        raise SecretKeyError(
            f"this store was opened without a keyring ({KEYS_VARIABLE}), so it cannot seal "
            "or open signing secrets"
        )
    return keyring
