"""GreenGate key material: generation, hashing, constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "gg-"
VISIBLE_CHARS = 10  # "gg-" plus seven characters: enough to tell keys apart, useless to guess with.


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # Keys carry 256 random bits, so a fast unsalted hash cannot be brute-forced; it keeps lookups O(1).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def visible_prefix(secret: str) -> str:
    return secret[:VISIBLE_CHARS]


def hashes_match(stored_hash: str, presented_secret: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_secret(presented_secret))
