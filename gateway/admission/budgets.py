"""Step 3b: daily and monthly USD budgets per tenant (and optionally per key), reserved then settled.

Before the upstream call, the call's expected cost is reserved: its prompt (GreenGate's count) plus the most
output it may ask for (`max_tokens`, else DEFAULT_MAX_OUTPUT_TOKENS, per choice), at the dearest price among
the deployments that may serve it. A call is refused only when the budget left (limit minus what was spent
minus what calls in flight have reserved) cannot cover its reservation. After the call, the reservation is
replaced by the call's cost as its ledger row holds it.

The bound: spend can pass a budget only by what calls admitted together spend beyond their reservations. A call
that names `max_tokens` cannot (its output is capped), except by the difference between GreenGate's prompt count
and the provider's; one that names none can, by the cost of its output beyond DEFAULT_MAX_OUTPUT_TOKENS.

A call whose price is unknown (no price in genai-prices or in admin) counts as BUDGET_UNPRICED_REQUEST_USD,
reserved and settled, against each budget: never as free.

State lives in Redis, in nano-dollars. Redis unreachable: calls of tenants with a budget are refused (503,
fail closed). Redis restarted (counters gone): each budget is reseeded from the ledger on its next use.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import psycopg
from django.conf import settings
from redis.exceptions import RedisError

from gateway.admission import rate_limits
from gateway.admission.rate_limits import estimated_usage
from gateway.call import Call
from gateway.errors import GatewayError
from gateway.schemas import Usage
from greengate_site import async_db
from greengate_site import redis as shared
from ledger.models import AuditAction, LedgerEntry

logger = logging.getLogger(__name__)

NANO = Decimal("1e9")
# A reservation whose call never settled (its gateway died) stops holding budget after this long.
STALE_RESERVATION_MS = 30 * 60 * 1000

# KEYS: per budget, a hash {spent, reserved}, a sorted set (call -> when reserved), a hash (call -> amount).
# ARGV: now_ms, stale_ms, member, then per budget: its limit, its ttl in seconds, this call's amount.
# Returns {'seed', i} when budget i has no state (first use since a Redis restart), else
#         {admitted 0/1, refused index (1-based), then per budget: spent, reserved (before this call)}.
_RESERVE = shared.register_script(
    """
local now, stale, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local count = #KEYS / 3
for i = 1, count do
  if redis.call('EXISTS', KEYS[3*i-2]) == 0 then return {'seed', i} end
end
local result = {1, 0}
for i = 1, count do
  local totals, times, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local old = redis.call('ZRANGEBYSCORE', times, '-inf', now - stale)
  for _, m in ipairs(old) do
    redis.call('HINCRBY', totals, 'reserved', -tonumber(redis.call('HGET', amounts, m) or '0'))
    redis.call('HDEL', amounts, m)
    redis.call('ZREM', times, m)
  end
  local spent = tonumber(redis.call('HGET', totals, 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', totals, 'reserved') or '0')
  local limit, amount = tonumber(ARGV[1 + 3*i]), tonumber(ARGV[3 + 3*i])
  if result[2] == 0 and spent + reserved + amount > limit then
    result[1], result[2] = 0, i
  end
  table.insert(result, spent)
  table.insert(result, reserved)
end
if result[1] == 1 then
  for i = 1, count do
    local totals, times, amounts = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
    local ttl, amount = tonumber(ARGV[2 + 3*i]), tonumber(ARGV[3 + 3*i])
    redis.call('HINCRBY', totals, 'reserved', amount)
    redis.call('ZADD', times, now, member)
    redis.call('HSET', amounts, member, amount)
    for _, k in ipairs({totals, times, amounts}) do redis.call('EXPIRE', k, ttl) end
  end
end
return result
"""
)

# KEYS: one budget's three keys. ARGV: member, cost, ttl. The reservation goes; the cost is spent.
_SETTLE = shared.register_script(
    """
local amount = redis.call('HGET', KEYS[3], ARGV[1])
if amount then
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[2]))
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, tonumber(ARGV[3])) end
return 1
"""
)

# KEYS: one budget's totals. ARGV: spent, ttl. Only where nothing is yet: a concurrent seed or call wins.
_SEED = shared.register_script(
    """
if redis.call('HSETNX', KEYS[1], 'spent', ARGV[1]) == 1 then
  redis.call('HSETNX', KEYS[1], 'reserved', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 1
"""
)


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str  # "tenant" or "key"
    owner_id: int
    owner: str  # how the error names it
    period: str  # "daily" or "monthly"
    starts: dt.datetime
    resets: dt.datetime
    limit_usd: Decimal

    @property
    def limit(self) -> int:
        return to_nano(self.limit_usd)

    @property
    def ttl_seconds(self) -> int:
        return int((self.resets - self.starts).total_seconds()) + 86_400

    def keys(self) -> list[str]:
        base = ("budget", self.scope, str(self.owner_id), self.period, self.starts.strftime("%Y%m%d"))
        return [shared.key(*base), shared.key(*base, "t"), shared.key(*base, "a")]


def to_nano(usd: Decimal) -> int:
    return int((usd * NANO).to_integral_value(rounding=ROUND_CEILING))


def periods(now: dt.datetime) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """The UTC day and calendar month `now` falls in, as [start, reset)."""
    day = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    month = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    next_month = dt.datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=dt.UTC)
    return {"daily": (day, day + dt.timedelta(days=1)), "monthly": (month, next_month)}


def budgets_for(call: Call) -> list[Budget]:
    assert call.key is not None
    key, limits = call.key, call.key.limits
    spans = periods(call.started_at)
    chosen = []
    for scope, owner_id, owner, daily, monthly in (
        ("tenant", key.tenant_id, f"tenant {key.tenant_slug}", limits.tenant_daily_usd, limits.tenant_monthly_usd),
        ("key", key.key_id, f"key {key.prefix}…", limits.key_daily_usd, limits.key_monthly_usd),
    ):
        for period, limit in (("daily", daily), ("monthly", monthly)):
            if limit is not None:
                starts, resets = spans[period]
                chosen.append(Budget(scope, owner_id, owner, period, starts, resets, limit))
    return chosen


def expected_cost(call: Call) -> Decimal | None:
    """The dearest price of the call's prompt and maximum output among its deployments; None if none is priced."""
    from gateway.accounting import price_names, price_of

    assert call.snapshot is not None
    prompt, output = estimated_usage(call)
    usage = Usage.of(input=prompt, output=output)
    prices = [
        price.usd
        for target in call.snapshot.routes.get(call.model, ())
        if (price := price_of(target, usage, price_names(target, call.model), call.started_at)).usd is not None
    ]
    return max(prices) if prices else None


async def admit(call: Call) -> None:
    """Reserve the call's expected cost against each of its budgets, or refuse it (403) naming the budget."""
    budgets = budgets_for(call)
    if not budgets:
        return
    expected = expected_cost(call)
    amount = to_nano(expected if expected is not None else settings.BUDGET_UNPRICED_REQUEST_USD)
    keys: list[str] = []
    for budget in budgets:
        keys += budget.keys()
    args: list[int | str] = [int(time.time() * 1000), STALE_RESERVATION_MS, call.request_id]
    for budget in budgets:
        args += [budget.limit, budget.ttl_seconds, amount]
    try:
        for _ in range(len(budgets) + 1):
            result = await _RESERVE(keys, args)
            if result[0] != b"seed" and result[0] != "seed":
                break
            await seed(budgets[int(result[1]) - 1])
    except (RedisError, OSError, psycopg.Error) as exc:
        logger.error("budgets unavailable; refusing the call (fail closed)", extra={"error": str(exc)})
        raise GatewayError(
            503,
            "Budgets cannot be checked right now, so the request was not sent. Please retry shortly.",
            type="server_error",
            code="budget_unavailable",
            headers={"Retry-After": "1"},
        ) from None
    if not int(result[0]):
        refused = budgets[int(result[1]) - 1]
        index = int(result[1]) - 1
        spent, reserved = int(result[2 + 2 * index]), int(result[3 + 2 * index])
        rate_limits.audit_denial(call, AuditAction.BUDGET_DENIED, f"{refused.scope} {refused.period} budget")
        raise over_budget(refused, spent, reserved, amount)
    call.budgets, call.budget_reservation = budgets, amount


def over_budget(budget: Budget, spent: int, reserved: int, amount: int) -> GatewayError:
    def usd(nano: int) -> str:
        return f"${Decimal(nano) / NANO:.4f}"

    return GatewayError(
        403,
        f"Budget exceeded: the {budget.period} budget of {budget.owner} is {usd(budget.limit)}; "
        f"{usd(spent)} is spent and {usd(reserved)} is held by requests in flight, and this request may cost up "
        f"to {usd(amount)}. It resets at {budget.resets:%Y-%m-%dT%H:%M:%SZ}.",
        type="insufficient_quota",
        code="budget_exceeded",
    )


def settle_later(call: Call, cost_usd: Decimal | None, processed: bool) -> None:
    """After the call: its reservations become its cost (off the request's task)."""
    if not call.budgets:
        return
    budgets, call.budgets = call.budgets, []
    if not processed:
        spent = 0
    elif cost_usd is None:
        spent = to_nano(settings.BUDGET_UNPRICED_REQUEST_USD)
    else:
        spent = to_nano(cost_usd)
    task = asyncio.get_running_loop().create_task(
        _settle(call.request_id, budgets, spent), context=contextvars.Context()
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()


async def _settle(member: str, budgets: list[Budget], spent: int) -> None:
    for budget in budgets:
        try:
            await _SETTLE(budget.keys(), [member, spent, budget.ttl_seconds])
        except (RedisError, OSError) as exc:
            # The reservation ages out after STALE_RESERVATION_MS; the spend is recovered on the next reseed.
            logger.error("budget spend could not be settled", extra={"error": str(exc), "budget": budget.owner})


async def seed(budget: Budget) -> None:
    """What the budget's owner has spent this period, from the ledger (after a Redis restart)."""
    column = "tenant_id" if budget.scope == "tenant" else "api_key_id"
    async with (await async_db.pool()).connection() as conn:
        cursor = await conn.execute(
            f"SELECT coalesce(sum(coalesce(cost_usd, CASE WHEN cost_source = 'unknown' THEN %s ELSE 0 END)), 0) "
            f"FROM {LedgerEntry._meta.db_table} WHERE {column} = %s AND created_at >= %s AND created_at < %s",
            [settings.BUDGET_UNPRICED_REQUEST_USD, budget.owner_id, budget.starts, budget.resets],
        )
        row = await cursor.fetchone()
    spent = Decimal(row[0]) if row else Decimal(0)
    await _SEED(budget.keys()[:1], [to_nano(spent), budget.ttl_seconds])
    logger.info("budget seeded from the ledger", extra={"budget": budget.owner, "period": budget.period})
