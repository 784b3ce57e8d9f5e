"""Bearer GreenGate key -> KeyEntry, from memory; the database is never read per request."""

from __future__ import annotations

import time

from gateway.errors import invalid_api_key
from gateway.live_config import KeyEntry, LiveConfig, Snapshot
from tenants.keys import KEY_PREFIX, hash_secret, hashes_match


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise invalid_api_key("You didn't provide an API key. Send it in the Authorization header as 'Bearer gg-...'.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise invalid_api_key("The Authorization header must be 'Bearer <your GreenGate key>'.")
    return token


async def authenticate(authorization: str | None, config: LiveConfig) -> tuple[KeyEntry, Snapshot]:
    """The key's entry and the snapshot it was found in (fresher than before if the key was new)."""
    snapshot = await config.current()
    secret = bearer_token(authorization)
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        raise invalid_api_key()
    key_hash = hash_secret(secret)
    entry = snapshot.keys.get(key_hash)
    if entry is None:
        fresher = await config.reload_after_miss()
        if fresher is not None:
            snapshot = fresher
            entry = snapshot.keys.get(key_hash)
    if entry is None or not hashes_match(entry.key_hash, secret):
        raise invalid_api_key()
    if entry.expires_at is not None and entry.expires_at <= time.time():
        raise invalid_api_key("This API key has expired.")
    return entry, snapshot
