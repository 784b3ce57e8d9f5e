"""Step 3b: idempotency keys, with Stripe's and the IETF draft's semantics, per tenant, kept 24 hours.

`Idempotency-Key` (the standard header; a quoted structured-field string is accepted too) or `x-idempotency-key`
names an attempt. The first request with a key claims it by inserting a unique row; a repeat then gets:
- the stored answer (status, body, and for a stream its events replayed as SSE), marked `Idempotent-Replayed:
  true`, without calling the upstream or being charged again;
- 422 if its body differs from the first one's;
- 409 while the first is still running.
What is stored is what the upstream decided: a success, or a refusal of the request itself (400, 404, 413,
422). A failure a retry could fix (429, 5xx, a timeout, a client that left, a shutdown) releases the key, so
the client's retry runs again. A request GreenGate refused before admitting it (a bad body, a bad key, a rate
limit) never claims a key at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from gateway.call import Call
from gateway.errors import GatewayError, invalid_request
from gateway.models import IdempotencyRecord
from greengate_site import async_db
from greengate_site.request_context import header_value

logger = logging.getLogger(__name__)

KEEP_FOR = dt.timedelta(hours=24)
# A claim whose request never finished (its gateway died) can be taken over after this long.
STALE_CLAIM = dt.timedelta(minutes=15)
MAX_KEY_LENGTH = 255
# Upstream answers that are the request's own fault: stored, since a retry would get the same.
STORED_ERRORS = frozenset({400, 404, 413, 422})
REPLAYED_HEADER = ("idempotent-replayed", "true")

_TABLE = IdempotencyRecord._meta.db_table
_IN_FLIGHT = IdempotencyRecord.State.IN_FLIGHT.value
_COMPLETE = IdempotencyRecord.State.COMPLETE.value


@dataclass
class Claim:
    """This call owns the key: its answer is stored, or the key released, when it ends."""

    tenant_id: int
    key: str
    request_id: str
    settled: bool = False


@dataclass(frozen=True)
class Stored:
    request_id: str
    status: int
    stream: bool
    body: bytes


def key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's idempotency key, if it sent one; a 400 if it is malformed or the two headers disagree."""
    values = [v for v in (header_value(headers, b"idempotency-key"), header_value(headers, b"x-idempotency-key")) if v]
    if not values:
        return None
    keys = {_unquoted(v) for v in values}
    if len(keys) > 1:
        raise _bad_key("Idempotency-Key and X-Idempotency-Key differ; send one of them.")
    key = keys.pop()
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        raise _bad_key(f"The idempotency key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.")
    return key


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _bad_key(message: str) -> GatewayError:
    return invalid_request(message, param="Idempotency-Key", code="invalid_idempotency_key")


def fingerprint(endpoint: str, body: bytes) -> str:
    """The same request however its JSON is spaced or ordered."""
    canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    return hashlib.sha256(endpoint.encode() + b"\n" + canonical).hexdigest()


async def admit(call: Call) -> Stored | None:
    """Claim the call's key, or find what a request with it left: a stored answer to replay, or a refusal."""
    if not call.idempotency_key:
        return None
    assert call.key is not None
    tenant, key, now = call.key.tenant_id, call.idempotency_key, call.started_at
    try:
        async with (await async_db.pool()).connection() as conn:
            for _ in range(3):
                # The unique row decides who runs: no read-then-write between two instances.
                claimed = await conn.execute(
                    f"INSERT INTO {_TABLE} (tenant_id, key, fingerprint, state, request_id, stream, headers, body, "
                    f"created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    f"ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id",
                    [
                        tenant,
                        key,
                        call.fingerprint,
                        _IN_FLIGHT,
                        call.request_id,
                        call.stream,
                        Jsonb({}),
                        b"",
                        now,
                        now + KEEP_FOR,
                    ],
                )
                if await claimed.fetchone() is not None:
                    call.idempotency = Claim(tenant, key, call.request_id)
                    return None
                found = await conn.execute(
                    f"SELECT fingerprint, state, request_id, status_code, stream, body, created_at, "
                    f"expires_at FROM {_TABLE} WHERE tenant_id = %s AND key = %s",
                    [tenant, key],
                )
                row = await found.fetchone()
                if row is None:
                    continue  # released meanwhile: claim again
                prior, state, request_id, status, stream, body, created, expires = row
                if expires <= now or (state == _IN_FLIGHT and created <= now - STALE_CLAIM):
                    # Expired, or its request died with its gateway: gone, then claimed afresh.
                    await conn.execute(
                        f"DELETE FROM {_TABLE} WHERE tenant_id = %s AND key = %s AND request_id = %s",
                        [tenant, key, request_id],
                    )
                    continue
                if prior != call.fingerprint:
                    raise GatewayError(
                        422,
                        "This idempotency key was already used with a different request body. Use a new key for a "
                        "new request.",
                        param="Idempotency-Key",
                        code="idempotency_key_reused",
                    )
                if state == _IN_FLIGHT:
                    raise GatewayError(
                        409,
                        "A request with this idempotency key is still in progress. Retry once it has finished.",
                        param="Idempotency-Key",
                        code="idempotency_key_in_use",
                        headers={"Retry-After": "1"},
                    )
                return Stored(request_id, status, stream, bytes(body))
    except psycopg.Error as exc:
        logger.error("idempotency keys unavailable", extra={"error": str(exc)})
        raise GatewayError(
            503,
            "Idempotency keys cannot be checked right now, so the request was not sent. Please retry shortly.",
            type="server_error",
            code="idempotency_unavailable",
            headers={"Retry-After": "1"},
        ) from None
    raise GatewayError(409, "The idempotency key is changing hands; retry.", code="idempotency_key_in_use")


async def store(claim: Claim, status: int, body: bytes, stream: bool) -> None:
    """The answer of the call that owns the key, before its last bytes leave: a repeat sees it at once.

    The figures headers are not kept: a replay costs nothing, and says so in its own ledger row.
    """
    try:
        async with (await async_db.pool()).connection() as conn:
            await conn.execute(
                f"UPDATE {_TABLE} SET state = %s, status_code = %s, stream = %s, body = %s "
                f"WHERE tenant_id = %s AND key = %s AND request_id = %s",
                [_COMPLETE, status, stream, body, claim.tenant_id, claim.key, claim.request_id],
            )
        claim.settled = True
    except psycopg.Error as exc:
        # The answer still goes out; the key is freed so that a retry runs again rather than waiting for ever.
        logger.error("an idempotent answer could not be stored", extra={"error": str(exc)})
        release_later(claim)


def release_later(claim: Claim | None) -> None:
    """The call ended without an answer worth keeping: free the key for a retry (off the request's task)."""
    if claim is None or claim.settled:
        return
    claim.settled = True
    task = asyncio.get_running_loop().create_task(_release(claim), context=contextvars.Context())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()


async def _release(claim: Claim) -> None:
    try:
        async with (await async_db.pool()).connection() as conn:
            await conn.execute(
                f"DELETE FROM {_TABLE} WHERE tenant_id = %s AND key = %s AND request_id = %s AND state = %s",
                [claim.tenant_id, claim.key, claim.request_id, _IN_FLIGHT],
            )
    except psycopg.Error as exc:
        # The claim goes stale after STALE_CLAIM and is taken over then.
        logger.error("an idempotency key could not be released", extra={"error": str(exc)})


Headers = list[tuple[bytes, bytes]]


class Recorder:
    """A responder that stores the answer of the call owning the key before passing its last bytes on."""

    def __init__(self, out, claim: Claim) -> None:  # noqa: ANN001 - any Responder
        self.out = out
        self.claim = claim
        self.events: list[bytes] = []
        self.stream_headers: dict[str, str] = {}

    @property
    def started(self) -> bool:
        return bool(self.out.started)

    @started.setter
    def started(self, value: bool) -> None:
        self.out.started = value

    async def json(self, status: int, body: bytes, headers: Headers) -> None:
        if 200 <= status < 300:
            await store(self.claim, status, body, stream=False)
        await self.out.json(status, body, headers)

    async def start_stream(self, headers: Headers) -> None:
        await self.out.start_stream(headers)

    async def event(self, data: bytes) -> None:
        self.events.append(data)
        await self.out.event(data)

    async def end_stream(self, *, done: bool) -> None:
        if done:
            await store(self.claim, 200, b"\n".join(self.events), stream=True)
        await self.out.end_stream(done=done)

    async def error(self, error: GatewayError) -> None:
        if not self.out.started and error.status in STORED_ERRORS and error.code not in _OWN_REFUSALS:
            await store(self.claim, error.status, error.encoded(), stream=False)
        await self.out.error(error)


# Refusals GreenGate makes itself before the upstream is asked: nothing the upstream decided, so not stored.
_OWN_REFUSALS = frozenset({"model_not_found", "model_not_supported"})


async def replay(stored: Stored, out, extra: Headers) -> None:  # noqa: ANN001 - any Responder
    """The stored answer again, as it was first given: JSON, or the same events as SSE."""
    headers = [*extra, (REPLAYED_HEADER[0].encode(), REPLAYED_HEADER[1].encode())]
    if not stored.stream:
        await out.json(stored.status, stored.body, headers)
        return
    await out.start_stream(headers)
    for event in stored.body.split(b"\n") if stored.body else []:
        await out.event(event)
    await out.end_stream(done=True)


def purge_expired() -> int:
    """Delete answers past their 24 hours (a periodic task)."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=dt.datetime.now(dt.UTC)).delete()
    return deleted
