"""The hot path's copy of keys, tenants and routes, kept in memory and reloaded when the shared version moves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings

from greengate_site import redis as shared
from providers.types import Target
from tenants.limits import Limits, effective_limits

if TYPE_CHECKING:
    from ledger.estimates import PriceOverrideRule
    from ledger.models import PriceOverride

logger = logging.getLogger(__name__)

# Under REDIS_KEY_PREFIX: "greengate:config:version" by default.
VERSION_KEY = ("config", "version")
# Reload at least this often even if the version seems unchanged: a bump lost while Redis was away
# must not leave an instance on old keys for ever.
MAX_AGE_SECONDS = 30.0
# With the in-process stand-in, an unknown key may be one another process just created: look again, at most
# this often.
MISS_RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: int
    key_hash: str
    prefix: str
    tenant_id: int
    tenant_slug: str
    plan_id: int
    limits: Limits
    expires_at: float | None  # epoch seconds


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    loaded_at: float
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    routes: dict[str, tuple[Target, ...]] = field(default_factory=dict)


def load_snapshot(version: int) -> Snapshot:
    """Read every usable key and enabled deployment once (sync ORM; runs off the event loop)."""
    from ledger.models import PriceOverride
    from providers.breaker import policy_for
    from providers.models import Deployment
    from tenants.models import ApiKey

    keys = {}
    for key in ApiKey.objects.usable().select_related("tenant__plan"):
        keys[key.key_hash] = KeyEntry(
            key_id=key.pk,
            key_hash=key.key_hash,
            prefix=key.prefix,
            tenant_id=key.tenant_id,
            tenant_slug=key.tenant.slug,
            plan_id=key.tenant.plan_id,
            limits=effective_limits(key, key.tenant, key.tenant.plan),
            expires_at=key.expires_at.timestamp() if key.expires_at else None,
        )
    overrides = _price_overrides(PriceOverride.objects.select_related("provider"))
    routes: dict[str, list[Target]] = {}
    deployments = Deployment.objects.filter(is_enabled=True, provider__is_enabled=True).select_related("provider")
    for deployment in deployments:
        provider = deployment.provider
        routes.setdefault(deployment.model_name, []).append(
            Target(
                deployment_id=deployment.pk,
                provider_id=provider.pk,
                provider_name=provider.name,
                kind=provider.kind,
                base_url=provider.base_url,
                api_key=provider.api_key,
                upstream_model=deployment.upstream_model,
                weight=deployment.weight,
                priority=deployment.priority,
                connect_timeout=deployment.connect_timeout,
                first_byte_timeout=deployment.first_byte_timeout,
                total_timeout=deployment.total_timeout,
                options={str(k): str(v) for k, v in (provider.options or {}).items()},
                allow_private_network=provider.allow_private_network,
                breaker=policy_for(
                    failures=provider.breaker_failures,
                    failure_rate=provider.breaker_failure_rate,
                    window_seconds=provider.breaker_window_seconds,
                    open_seconds=provider.breaker_open_seconds,
                    probes=provider.breaker_probes,
                ),
                electricity_zone=provider.electricity_zone,
                parameters_billions=deployment.parameters_billions,
                price_overrides=tuple(
                    rule
                    for rule in overrides.get((provider.kind, deployment.upstream_model), ())
                    if rule.provider_id in (None, provider.pk)
                ),
            )
        )
    return Snapshot(
        version=version,
        loaded_at=time.monotonic(),
        keys=keys,
        routes={model: tuple(ts) for model, ts in routes.items()},
    )


def _price_overrides(rows: Iterable[PriceOverride]) -> dict[tuple[str, str], list[PriceOverrideRule]]:
    """Negotiated prices by (provider kind, model), in precedence: a provider's own before its kind's, then the
    latest start first."""
    from ledger.estimates import PriceOverrideRule, TokenPrices

    by_model: dict[tuple[str, str], list[PriceOverrideRule]] = {}
    for row in rows:
        kind = row.provider.kind if row.provider is not None else row.provider_kind
        by_model.setdefault((kind, row.model), []).append(
            PriceOverrideRule(
                prices=TokenPrices.per_million(
                    input=row.input_per_million,
                    output=row.output_per_million,
                    cached_input=row.cached_input_per_million,
                    cache_write=row.cache_write_per_million,
                ),
                valid_from=row.valid_from,
                valid_until=row.valid_until,
                provider_id=row.provider_id,
            )
        )
    earliest = datetime.min.replace(tzinfo=UTC)
    for rules in by_model.values():
        rules.sort(key=lambda rule: (rule.provider_id is None, -(rule.valid_from or earliest).timestamp()))
    return by_model


class LiveConfig:
    def __init__(self, redis: shared.RedisClients | None = None) -> None:
        # None: the process's clients, resolved on first use so that importing this module needs no settings.
        self._redis = redis
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._miss_reload_at = 0.0
        self._lock: asyncio.Lock | None = None

    @property
    def redis(self) -> shared.RedisClients:
        return self._redis if self._redis is not None else shared.clients()

    async def read_version(self) -> int:
        """The shared config version (0 before the first bump); raises if Redis cannot be reached."""
        value = await self.redis.async_client().get(self.redis.key(*VERSION_KEY))
        return int(value) if value is not None else 0

    async def current(self) -> Snapshot:
        """The snapshot, checking the shared version at most every CONFIG_REFRESH_SECONDS."""
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now - self._checked_at < settings.CONFIG_REFRESH_SECONDS:
            return snapshot
        self._checked_at = now
        try:
            version = await self.read_version()
        except Exception:  # noqa: BLE001 - a Redis outage must not stop traffic the snapshot can serve
            if snapshot is not None:
                logger.warning("config version check failed; serving the last loaded config", exc_info=True)
                return snapshot
            version = -1
        if snapshot is None or version != snapshot.version:
            snapshot = await self._reload(version)
        elif now - snapshot.loaded_at > MAX_AGE_SECONDS:
            snapshot = await self._reload(version, force=True)
        return snapshot

    async def reload_after_miss(self) -> Snapshot | None:
        """For an unknown key: a fresher snapshot if there may be one, else None.

        With Redis the shared version says at once whether anything changed. The in-process stand-in cannot
        see changes made by another process (a CLI-created key), so there a reload is forced, at most once a
        second.
        """
        self._checked_at = 0.0
        snapshot = self._snapshot
        fresher = await self.current()
        if fresher is not snapshot:
            return fresher
        if not self.redis.in_process:
            return None
        now = time.monotonic()
        if now - self._miss_reload_at < MISS_RELOAD_SECONDS:
            return None
        self._miss_reload_at = now
        return await self._reload(fresher.version, force=True)

    async def _reload(self, version: int, *, force: bool = False) -> Snapshot:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self._snapshot
            if current is not None and current.version == version and not force:
                return current  # another request reloaded while this one waited
            # thread_sensitive=False: a reload must not queue behind the admin's sync thread.
            snapshot = await sync_to_async(load_snapshot, thread_sensitive=False)(version)
            self._snapshot = snapshot
            logger.info("config loaded", extra={"config_version": version, "keys": len(snapshot.keys)})
            return snapshot

    def invalidate(self) -> None:
        self._snapshot = None


live_config = LiveConfig()


def bump_config_version(redis: shared.RedisClients | None = None) -> int | None:
    """Tell every instance to reload; called after commits that touch keys, tenants, plans or routes.

    Sync: it runs in on_commit hooks of admin saves and management commands. Returns the new version, or None
    if Redis could not be reached (the change is committed all the same).
    """
    redis = redis if redis is not None else shared.clients()
    version: int | None = None
    try:
        version = int(redis.sync_client().incr(redis.key(*VERSION_KEY)))
    except Exception:  # noqa: BLE001 - the change is committed; instances still reload within MAX_AGE_SECONDS
        logger.exception("could not bump the config version")
    # This process need not wait for its next version check.
    live_config._checked_at = 0.0
    return version
