"""Circuit breakers per deployment, held in Redis so every instance agrees.

All of a deployment's breaker lives in one hash, `greengate:cb:<deployment id>`; deleting that key resets the
breaker (the runbook's remedy). Fields: `fails` (consecutive failures), `win_start`/`win_total`/`win_fail`
(the current failure-rate window), `open_until` (epoch ms; set while open and, once passed, while half-open),
`probes` (half-open trial calls granted, across all instances), `opened_at`, `last_error`, and recent latency
and outcome samples in `greengate:cb:<id>:lat` for the health page.

A breaker opens after `failures` consecutive failures, or when at least `min_requests` calls in the window
failed at `failure_rate` or more. While open, calls fail fast. After `open_seconds` it is half-open: at most
`probes` calls, counted across instances, may try; a success closes it, a failure opens it again.

Each check and each record is one Lua script, so concurrent instances cannot both take the last probe.
If Redis is unreachable, breakers let every call through (a missing breaker must not stop traffic).
A transition (opened, closed) is returned with its reason only to the call whose script made it, and that
instance alone hands it to the audit trail (`ledger.audit.breakers`), which writes it off the request path.

The hot path mostly talks to memory (`local`): a "closed" verdict is trusted for TRUST_SECONDS, and
successes on a closed breaker are counted in the process and flushed every FLUSH_SECONDS in one script
call per deployment. Failures, and every call while a breaker is not closed, go to Redis at once. So an
instance honours a breaker another opened within TRUST_SECONDS, and the health page's figures lag by at
most FLUSH_SECONDS. (Measured: two Lua calls per request cost the in-process stand-in about 3 ms.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from greengate_site import redis as shared
from greengate_site.redis import RedisClients
from providers.types import BreakerPolicy as Policy

logger = logging.getLogger(__name__)

SAMPLES = 200  # latency samples kept per deployment, for the health page's percentiles
TRUST_SECONDS = 0.25
FLUSH_SECONDS = 0.5


class Verdict(StrEnum):
    CLOSED = "closed"  # call normally
    PROBE = "probe"  # half-open: this call is one of the allowed trials
    OPEN = "open"  # fail fast


def policy_for(
    *,
    failures: int | None = None,
    failure_rate: float | None = None,
    window_seconds: float | None = None,
    open_seconds: float | None = None,
    probes: int | None = None,
) -> Policy:
    """A provider's overrides (None: the BREAKER_* setting) as one policy."""
    return Policy(
        failures=failures or settings.BREAKER_FAILURES,
        failure_rate=failure_rate or settings.BREAKER_FAILURE_RATE,
        min_requests=settings.BREAKER_MIN_REQUESTS,
        window_seconds=window_seconds or settings.BREAKER_WINDOW_SECONDS,
        open_seconds=open_seconds or settings.BREAKER_OPEN_SECONDS,
        probes=probes or settings.BREAKER_HALF_OPEN_PROBES,
    )


_CHECK = shared.register_script(
    """
local now = tonumber(ARGV[1])
local max_probes = tonumber(ARGV[2])
local open_ms = tonumber(ARGV[3])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 'closed' end
if now < open_until then return 'open' end
if now >= open_until + open_ms then
  -- A probe that never reported (its instance died) must not hold the breaker half-open for ever.
  redis.call('HSET', KEYS[1], 'open_until', now, 'probes', 0)
end
local probes = redis.call('HINCRBY', KEYS[1], 'probes', 1)
if probes <= max_probes then return 'probe' end
return 'open'
"""
)

_RECORD = shared.register_script(
    """
local now = tonumber(ARGV[1])
local ok = ARGV[2] == '1'
local failures = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local min_requests = tonumber(ARGV[5])
local window_ms = tonumber(ARGV[6])
local open_ms = tonumber(ARGV[7])
local latency_ms = ARGV[8]
local err = ARGV[9]
local samples = tonumber(ARGV[10])
local ttl_ms = tonumber(ARGV[11])
local key = KEYS[1]

redis.call('LPUSH', KEYS[2], (ok and '1:' or '0:') .. latency_ms)
redis.call('LTRIM', KEYS[2], 0, samples - 1)
redis.call('PEXPIRE', KEYS[2], ttl_ms)

local open_until = tonumber(redis.call('HGET', key, 'open_until') or '0')
local half_open = open_until > 0 and now >= open_until
local win_start = tonumber(redis.call('HGET', key, 'win_start') or '0')
if now - win_start >= window_ms then
  redis.call('HSET', key, 'win_start', now, 'win_total', 0, 'win_fail', 0)
end
local total = redis.call('HINCRBY', key, 'win_total', 1)
local result = 'same'
local fails, failed, opened_at = 0, 0, 0
if ok then
  if half_open then
    opened_at = tonumber(redis.call('HGET', key, 'opened_at') or '0')
    redis.call('HDEL', key, 'open_until', 'probes', 'opened_at', 'fails')
    redis.call('HSET', key, 'win_start', now, 'win_total', 0, 'win_fail', 0)
    result = 'closed'
  else
    redis.call('HSET', key, 'fails', 0)
  end
else
  redis.call('HSET', key, 'last_error', err, 'last_error_at', now)
  fails = redis.call('HINCRBY', key, 'fails', 1)
  failed = redis.call('HINCRBY', key, 'win_fail', 1)
  local tripped = fails >= failures or (total >= min_requests and failed / total >= rate)
  if half_open or (open_until == 0 and tripped) then
    redis.call('HSET', key, 'open_until', now + open_ms, 'opened_at', now, 'probes', 0)
    result = 'opened'
  end
end
redis.call('PEXPIRE', key, ttl_ms)
if result ~= 'same' then
  redis.call('LPUSH', KEYS[3], now .. '|' .. ARGV[12] .. '|' .. result .. '|' .. err)
  redis.call('LTRIM', KEYS[3], 0, 199)
  -- Only the caller whose call made the change gets this back, so one instance alone records it.
  return {result, half_open and 'half-open' or 'closed', fails, failed, total, opened_at}
end
return result
"""
)


_SUCCESSES = shared.register_script(
    """
local now = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local last_ok = tonumber(ARGV[4])
local ttl_ms = tonumber(ARGV[5])
local samples = tonumber(ARGV[6])
local win_start = tonumber(redis.call('HGET', KEYS[1], 'win_start') or '0')
if now - win_start >= window_ms then
  redis.call('HSET', KEYS[1], 'win_start', now, 'win_total', 0, 'win_fail', 0)
end
redis.call('HINCRBY', KEYS[1], 'win_total', count)
-- A success resets the run of failures, unless a failure came after it.
local last_error_at = tonumber(redis.call('HGET', KEYS[1], 'last_error_at') or '0')
if last_ok > last_error_at then redis.call('HSET', KEYS[1], 'fails', 0) end
for i = 7, #ARGV do redis.call('LPUSH', KEYS[2], '1:' .. ARGV[i]) end
redis.call('LTRIM', KEYS[2], 0, samples - 1)
redis.call('PEXPIRE', KEYS[1], ttl_ms)
redis.call('PEXPIRE', KEYS[2], ttl_ms)
return count
"""
)


def breaker_key(deployment_id: int, redis: RedisClients | None = None) -> str:
    return (redis or shared.clients()).key("cb", deployment_id)


def samples_key(deployment_id: int, redis: RedisClients | None = None) -> str:
    return (redis or shared.clients()).key("cb", deployment_id, "lat")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def check(deployment_id: int, policy: Policy, *, redis: RedisClients | None = None) -> Verdict:
    redis = redis or shared.clients()
    try:
        verdict = await _CHECK(
            [breaker_key(deployment_id, redis)],
            [_now_ms(), policy.probes, int(policy.open_seconds * 1000)],
            client=redis.async_client(),
        )
    except Exception:  # noqa: BLE001 - without Redis every deployment is tried
        logger.warning("breaker check failed; calling the deployment", exc_info=True)
        return Verdict.CLOSED
    return Verdict(verdict)


async def record(
    deployment_id: int,
    policy: Policy,
    *,
    ok: bool,
    latency_ms: int,
    error: str = "",
    redis: RedisClients | None = None,
) -> str:
    """Note one call's outcome; returns "opened", "closed" or "same"."""
    redis = redis or shared.clients()
    ttl_ms = _ttl_ms(policy)
    try:
        result = await _RECORD(
            [breaker_key(deployment_id, redis), samples_key(deployment_id, redis), redis.key("cb", "events")],
            [
                _now_ms(),
                1 if ok else 0,
                policy.failures,
                policy.failure_rate,
                policy.min_requests,
                int(policy.window_seconds * 1000),
                int(policy.open_seconds * 1000),
                latency_ms,
                error[:200],
                SAMPLES,
                ttl_ms,
                deployment_id,
            ],
            client=redis.async_client(),
        )
    except Exception:  # noqa: BLE001 - a breaker that cannot count must not fail the request
        logger.warning("breaker record failed", exc_info=True)
        return "same"
    if isinstance(result, list):
        # A transition, returned only to the call that made it: this instance alone records it.
        change = str(result[0])
        _audit_transition(deployment_id, change, _transition_details(result, error=error[:200], policy=policy))
        return change
    return str(result)


def _transition_details(result: list, *, error: str, policy: Policy) -> dict[str, object]:
    change, previous, fails, failed, total, opened_at = result
    if change == "opened":
        return {
            "state": [str(previous), "open"],
            "consecutive_failures": int(fails),
            "window_failures": int(failed),
            "window_calls": int(total),
            "last_error": error,
            "open_seconds": policy.open_seconds,
        }
    return {
        "state": ["half-open", "closed"],
        "reason": "a probe succeeded",
        "open_for_seconds": round((_now_ms() - int(opened_at)) / 1000, 3) if int(opened_at) else None,
    }


def _audit_transition(deployment_id: int, change: str, details: dict[str, object]) -> None:
    """Hand a transition to the audit trail, which writes it off the request path and returns at once."""
    try:
        from ledger.audit import breakers  # here, not at import: the gateway loads this module before the ORM

        breakers.transition(deployment_id, change, details)
    except Exception:  # noqa: BLE001 - the audit trail must never cost the request
        logger.exception("breaker transition not audited", extra={"deployment": deployment_id})


def _ttl_ms(policy: Policy) -> int:
    # Idle breakers disappear on their own, long after anything in them matters.
    return int(max(policy.window_seconds, policy.open_seconds) * 1000 * 20)


@dataclass(slots=True)
class _Successes:
    policy: Policy
    latencies: list[int]
    last_at_ms: int = 0


class LocalView:
    """This process's short-lived view of its breakers, so that most calls cost no Redis round trip."""

    def __init__(self, redis: RedisClients | None = None) -> None:
        self._redis = redis
        self._closed_until: dict[int, float] = {}
        self._pending: dict[int, _Successes] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def check(self, deployment_id: int, policy: Policy) -> Verdict:
        now = time.monotonic()
        if self._closed_until.get(deployment_id, 0.0) > now:
            return Verdict.CLOSED
        verdict = await check(deployment_id, policy, redis=self._redis)
        if verdict is Verdict.CLOSED:
            self._closed_until[deployment_id] = now + TRUST_SECONDS
        return verdict

    async def record(
        self, deployment_id: int, policy: Policy, *, verdict: Verdict, ok: bool, latency_ms: int, error: str = ""
    ) -> str:
        if ok and verdict is Verdict.CLOSED:
            pending = self._pending.get(deployment_id)
            if pending is None:
                pending = self._pending[deployment_id] = _Successes(policy, [])
            pending.latencies.append(latency_ms)
            pending.last_at_ms = _now_ms()
            self._ensure_flusher()
            return "same"
        self._closed_until.pop(deployment_id, None)
        return await record(deployment_id, policy, ok=ok, latency_ms=latency_ms, error=error, redis=self._redis)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        redis = self._redis or shared.clients()
        for deployment_id, successes in pending.items():
            policy = successes.policy
            try:
                await _SUCCESSES(
                    [breaker_key(deployment_id, redis), samples_key(deployment_id, redis)],
                    [
                        _now_ms(),
                        len(successes.latencies),
                        int(policy.window_seconds * 1000),
                        successes.last_at_ms,
                        _ttl_ms(policy),
                        SAMPLES,
                        *successes.latencies[-SAMPLES:],
                    ],
                    client=redis.async_client(),
                )
            except Exception:  # noqa: BLE001 - statistics only; the next flush carries on
                logger.warning("breaker statistics flush failed", exc_info=True)

    def _ensure_flusher(self) -> None:
        loop = asyncio.get_running_loop()
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            # An empty context: the flusher outlives the request that started it.
            self._flusher = loop.create_task(self._flush_forever(), context=contextvars.Context())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()


local = LocalView()


_RELEASE = shared.register_script(
    """
local probes = tonumber(redis.call('HGET', KEYS[1], 'probes') or '0')
if probes > 0 then redis.call('HINCRBY', KEYS[1], 'probes', -1) end
return probes
"""
)


async def release_probe(deployment_id: int, *, redis: RedisClients | None = None) -> None:
    """Hand back a half-open probe whose call ended without telling anything about the provider."""
    redis = redis or shared.clients()
    try:
        await _RELEASE([breaker_key(deployment_id, redis)], [], client=redis.async_client())
    except Exception:  # noqa: BLE001 - the probe is taken back when the next open period starts anyway
        logger.warning("breaker probe release failed", exc_info=True)


async def retry_after(deployment_id: int, *, redis: RedisClients | None = None) -> float:
    """Seconds until an open breaker lets a probe through (for the client's Retry-After)."""
    redis = redis or shared.clients()
    try:
        raw = await redis.async_client().hget(breaker_key(deployment_id, redis), "open_until")
    except Exception:  # noqa: BLE001
        return 0.0
    return max(0.0, (int(raw or 0) - _now_ms()) / 1000)


@dataclass(frozen=True, slots=True)
class Health:
    """One deployment's breaker and recent calls, as the health page shows them."""

    state: str
    consecutive_failures: int
    error_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    calls: int
    last_error: str
    opened_at: float | None
    retry_in_seconds: float


def health(deployment_id: int, *, redis: RedisClients | None = None) -> Health:
    """Read from a sync context (the admin)."""
    redis = redis or shared.clients()
    client = redis.sync_client()
    # The clients decode responses to str (greengate_site.redis).
    fields: dict[str, str] = client.hgetall(breaker_key(deployment_id, redis)) or {}  # type: ignore[assignment]
    raw_samples: list[str] = client.lrange(samples_key(deployment_id, redis), 0, -1) or []  # type: ignore[assignment]
    now = _now_ms()
    open_until = int(fields.get("open_until") or 0)
    state = "closed" if not open_until else ("open" if now < open_until else "half-open")
    outcomes, latencies = [], []
    for sample in raw_samples:
        ok, _, latency = sample.partition(":")
        outcomes.append(ok == "1")
        latencies.append(float(latency or 0))
    latencies.sort()

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return Health(
        state=state,
        consecutive_failures=int(fields.get("fails") or 0),
        error_rate=(outcomes.count(False) / len(outcomes)) if outcomes else None,
        latency_p50_ms=percentile(0.5),
        latency_p95_ms=percentile(0.95),
        calls=len(outcomes),
        last_error=fields.get("last_error", ""),
        opened_at=int(fields["opened_at"]) / 1000 if fields.get("opened_at") else None,
        retry_in_seconds=max(0.0, (open_until - now) / 1000) if state == "open" else 0.0,
    )


def reset(deployment_id: int, *, actor: str = "", redis: RedisClients | None = None) -> str:
    """Close a breaker now (the admin's reset button): the same as deleting its key. Returns the state it was in."""
    redis = redis or shared.clients()
    previous = health(deployment_id, redis=redis).state
    client = redis.sync_client()
    client.delete(breaker_key(deployment_id, redis))
    client.lpush(redis.key("cb", "events"), f"{_now_ms()}|{deployment_id}|reset|{actor[:100]}")
    client.ltrim(redis.key("cb", "events"), 0, 199)
    logger.warning("circuit breaker reset", extra={"deployment": deployment_id, "actor": actor})
    return previous


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    deployment_id: int
    change: str  # opened, closed, reset
    detail: str


def recent_events(limit: int = 50, *, redis: RedisClients | None = None) -> list[Event]:
    """Breaker changes across all deployments, newest first (kept in Redis, the last 200)."""
    redis = redis or shared.clients()
    raw: list[str] = redis.sync_client().lrange(redis.key("cb", "events"), 0, limit - 1) or []  # type: ignore[assignment]
    events = []
    for line in raw:
        at, deployment, change, detail = (line.split("|", 3) + ["", "", "", ""])[:4]
        try:
            events.append(Event(int(at) / 1000, int(deployment), change, detail))
        except ValueError:
            continue
    return events
