"""Provider credentials are stored encrypted (Fernet) and decrypted only into process memory.

GREENGATE_ENCRYPTION_KEY may list several keys, comma-separated: the first encrypts, any of them decrypts
(MultiFernet). To rotate: put a new key first, keep the old one after it, restart, run
`manage.py rotate_credentials` (re-encrypts every stored credential with the first key), then drop the old key.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.ENCRYPTION_KEY.split(",") if k.strip()]
    if keys:
        try:
            return MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError:
            raise ImproperlyConfigured(
                "GREENGATE_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes each)"
            ) from None
    # Derived from SECRET_KEY so a bare install needs no extra secret; production should set its own.
    digest = hashlib.sha256(b"greengate-credentials:" + settings.SECRET_KEY.encode()).digest()
    return MultiFernet([Fernet(base64.urlsafe_b64encode(digest))])


def reencrypt(token: str) -> str:
    """The same secret under the first key (rotation); raises ImproperlyConfigured if no key can read it."""
    if not token:
        return token
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored provider credential cannot be decrypted with any GREENGATE_ENCRYPTION_KEY"
        ) from None


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored provider credential cannot be decrypted: the encryption key has changed"
        ) from None


class EncryptedTextField(models.TextField):
    """Plain text in Python, Fernet ciphertext in the database."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if value else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value else value
