"""Requests and tokens per minute, per key, per tenant and per unauthenticated client address.

Each limit is a sliding window over the last 60 s, kept in Redis and checked by one Lua script for all the
limits of a request at once: either every limit has room and all of them count the request, or none does. So
N gateways together admit no more than the limit, and never more than the limit in any 60 s: a token bucket
(GCRA) that starts full lets a fresh key through twice its limit in its first minute, which is not what "60 a
minute" means to the people paying for it. Like a bucket, the window lets a burst through up to the limit at
once, and frees room continuously, as each counted request turns 60 s old.

Tokens are counted twice: reserved before the call from an estimate (prompt plus the maximum output), then
settled to the real usage when the call ends, streams and client disconnects included.

Redis unreachable: rate limits fail open (logged, and counted in `failures_open`); budgets do not.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from redis.exceptions import RedisError

from greengate_site import redis as shared

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
# Keys live a little beyond their window, so an idle limit leaves nothing behind.
KEY_TTL_MS = WINDOW_MS + 5_000

# KEYS: per limit, a sorted set (member -> time counted) and a hash (member -> weight) and a running total.
# ARGV: now_ms, window_ms, ttl_ms, member, then per limit: its maximum and this request's weight.
# Returns: {admitted 0/1, the index (1-based) of the limit that refused, ms until it has room (-1: never),
#           then per limit: used after this request, ms until its window is empty}.
_ADMIT = shared.register_script(
    """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local member = ARGV[4]
local count = #KEYS / 3
local used = {}
local refused, wait = 0, 0
for i = 1, count do
  local zset, weights, total = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local expired = redis.call('ZRANGEBYSCORE', zset, '-inf', now - window)
  if #expired > 0 then
    local freed = 0
    for _, m in ipairs(expired) do
      freed = freed + tonumber(redis.call('HGET', weights, m) or '0')
      redis.call('HDEL', weights, m)  -- one by one: unpack() of a long list overflows Lua's stack
    end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now - window)
    redis.call('DECRBY', total, freed)
  end
  used[i] = tonumber(redis.call('GET', total) or '0')
  if used[i] < 0 then used[i] = 0 end
  local limit, weight = tonumber(ARGV[3 + 2*i]), tonumber(ARGV[4 + 2*i])
  if refused == 0 and used[i] + weight > limit then
    refused = i
    if weight > limit then
      wait = -1
    else
      -- Oldest first: how long until enough of the window's weight has aged out.
      local need = used[i] + weight - limit
      local entries = redis.call('ZRANGE', zset, 0, -1, 'WITHSCORES')
      wait = window
      for j = 1, #entries, 2 do
        need = need - tonumber(redis.call('HGET', weights, entries[j]) or '0')
        if need <= 0 then wait = tonumber(entries[j+1]) + window - now; break end
      end
    end
  end
end
local result = {refused == 0 and 1 or 0, refused, wait}
for i = 1, count do
  local zset, weights, total = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local weight = tonumber(ARGV[4 + 2*i])
  if refused == 0 and weight > 0 then
    redis.call('ZADD', zset, now, member)
    redis.call('HSET', weights, member, weight)
    redis.call('INCRBY', total, weight)
    used[i] = used[i] + weight
  end
  for _, k in ipairs({zset, weights, total}) do redis.call('PEXPIRE', k, ttl) end
  local newest = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  local empty_in = 0
  if #newest > 0 then empty_in = tonumber(newest[2]) + window - now end
  table.insert(result, used[i])
  table.insert(result, empty_in)
end
return result
"""
)

# Settle a reservation to the real weight. KEYS: one limit's three keys. ARGV: member, weight, now_ms, ttl_ms.
_SETTLE = shared.register_script(
    """
local member, weight, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('ZSCORE', KEYS[1], member) then
  local old = tonumber(redis.call('HGET', KEYS[2], member) or '0')
  redis.call('HSET', KEYS[2], member, weight)
  redis.call('INCRBY', KEYS[3], weight - old)
elseif weight > 0 then
  -- The reservation has already aged out of the window: what was used beyond it counts from now.
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('HSET', KEYS[2], member, weight)
  redis.call('INCRBY', KEYS[3], weight)
end
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ttl) end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class Limit:
    """One window: what it limits ("requests" or "tokens"), whose it is, and how much a minute."""

    kind: str
    scope: str  # "key", "tenant" or "ip"
    owner: str
    maximum: int

    def keys(self) -> list[str]:
        base = ("rl", self.kind, self.scope, self.owner)
        return [shared.key(*base, "t"), shared.key(*base, "w"), shared.key(*base, "n")]


@dataclass(frozen=True, slots=True)
class Usage:
    """A limit's state after a check: used within the window (this request included), and when it empties."""

    limit: Limit
    used: int
    empty_in_ms: int

    @property
    def remaining(self) -> int:
        return max(self.limit.maximum - self.used, 0)


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    usage: tuple[Usage, ...] = ()
    refused: Limit | None = None
    retry_after_ms: int = 0  # -1: this request can never fit (it alone is over the limit)
    failed_open: bool = False


class LocalWindows:
    """The same windows in this process's memory, for when Redis is the in-process stand-in.

    The stand-in serves one process only, so nothing is lost by keeping the windows here; and its Lua runs
    emulated in Python at about 0.6 ms of event-loop time per call, against a few microseconds for this. The
    results are the script's, call for call (tests/test_admission_scripts.py compares them).
    """

    def __init__(self) -> None:
        # name -> (entries oldest first: (ms, member), member -> weight, [total])
        self._windows: dict[str, tuple[deque[tuple[int, str]], dict[str, int], list[int]]] = {}

    def _window(self, name: str, now: int, window: int) -> tuple[deque[tuple[int, str]], dict[str, int], list[int]]:
        found = self._windows.get(name)
        if found is None:
            found = self._windows[name] = (deque(), {}, [0])
        entries, weights, total = found
        while entries and entries[0][0] <= now - window:
            _, old = entries.popleft()
            total[0] -= weights.pop(old, 0)
        return found

    def admit(self, names: list[str], args: list[int | str]) -> list[int]:
        now, window, member = int(args[0]), int(args[1]), str(args[3])
        rows = [self._window(name, now, window) for name in names]
        used = [max(total[0], 0) for _, _, total in rows]
        refused, wait = 0, 0
        for i, (entries, weights, _) in enumerate(rows):
            limit, weight = int(args[4 + 2 * i]), int(args[5 + 2 * i])
            if used[i] + weight > limit:
                refused = i + 1
                if weight > limit:
                    wait = -1
                else:
                    need, wait = used[i] + weight - limit, window
                    for at, m in entries:
                        need -= weights.get(m, 0)
                        if need <= 0:
                            wait = at + window - now
                            break
                break
        result = [0 if refused else 1, refused, wait]
        for i, (entries, weights, total) in enumerate(rows):
            weight = int(args[5 + 2 * i])
            if not refused and weight > 0:
                if member in weights:
                    total[0] -= weights[member]
                else:
                    entries.append((now, member))
                weights[member] = weight
                total[0] += weight
                used[i] += weight
            result += [used[i], entries[-1][0] + window - now if entries else 0]
        for name, (entries, _, _) in zip(names, rows, strict=True):
            if not entries:
                del self._windows[name]
        return result

    def settle(self, name: str, member: str, weight: int, now: int) -> None:
        entries, weights, total = self._window(name, now, WINDOW_MS)
        if member in weights:
            total[0] += weight - weights[member]
            weights[member] = weight
        elif weight > 0:
            entries.append((now, member))
            weights[member] = weight
            total[0] += weight


local_windows = LocalWindows()
failures_open = 0


async def check(member: str, limits: list[tuple[Limit, int]]) -> Decision:
    """Count `member` against every (limit, weight) at once, or against none if any would go over."""
    global failures_open
    if not limits:
        return Decision(admitted=True)
    keys: list[str] = []
    args: list[int | str] = [int(time.time() * 1000), WINDOW_MS, KEY_TTL_MS, member]
    for limit, weight in limits:
        keys += limit.keys()
        args += [limit.maximum, max(int(weight), 0)]
    try:
        if shared.clients().in_process:
            result = local_windows.admit([limit.keys()[0] for limit, _ in limits], args)
        else:
            result = await _ADMIT(keys, args)
    except (RedisError, OSError) as exc:
        failures_open += 1
        logger.warning("rate limits unavailable; admitting (fail open)", extra={"error": str(exc)})
        return Decision(admitted=True, failed_open=True)
    admitted, refused, wait = int(result[0]), int(result[1]), int(result[2])
    usage = tuple(
        Usage(limit, used=int(result[3 + 2 * i]), empty_in_ms=max(int(result[4 + 2 * i]), 0))
        for i, (limit, _) in enumerate(limits)
    )
    return Decision(
        admitted=bool(admitted),
        usage=usage,
        refused=limits[refused - 1][0] if refused else None,
        retry_after_ms=wait,
    )


async def settle(member: str, limit: Limit, weight: int) -> None:
    """Replace a reservation's weight with what was really used."""
    if shared.clients().in_process:
        local_windows.settle(limit.keys()[0], member, max(int(weight), 0), int(time.time() * 1000))
        return
    try:
        await _SETTLE(limit.keys(), [member, max(int(weight), 0), int(time.time() * 1000), KEY_TTL_MS])
    except (RedisError, OSError) as exc:
        logger.warning("token usage could not be settled with the rate limiter", extra={"error": str(exc)})
