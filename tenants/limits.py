"""A key's effective limits: its plan's defaults, the tenant's overrides, the key's own narrowing."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from tenants.model_names import parse_models

if TYPE_CHECKING:
    from tenants.models import ApiKey, Plan, Tenant


@dataclass(frozen=True, slots=True)
class Limits:
    tenant_rpm: int
    tenant_tpm: int | None  # None: unlimited
    key_rpm: int | None  # None: only the tenant's limit applies
    key_tpm: int | None
    tenant_daily_usd: Decimal | None
    tenant_monthly_usd: Decimal | None
    key_daily_usd: Decimal | None
    key_monthly_usd: Decimal | None
    models: frozenset[str] | None  # None: every model
    cache_enabled: bool
    cache_ttl_seconds: int

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models


def _first(*values):
    return next((v for v in values if v is not None), None)


def tenant_models(tenant: Tenant, plan: Plan) -> frozenset[str] | None:
    if tenant.allowed_models.strip():
        return parse_models(tenant.allowed_models)
    if plan.allowed_models.strip():
        return parse_models(plan.allowed_models)
    return None


def effective_limits(key: ApiKey, tenant: Tenant, plan: Plan) -> Limits:
    tenant_rpm = _first(tenant.rate_limit_per_minute, plan.rate_limit_per_minute)
    tenant_tpm = _first(tenant.tokens_per_minute, plan.tokens_per_minute)
    models = tenant_models(tenant, plan)
    if key.allowed_models.strip():
        own = parse_models(key.allowed_models)
        models = own if models is None else models & own
    return Limits(
        tenant_rpm=tenant_rpm,
        tenant_tpm=tenant_tpm,
        # A key's own limit above its tenant's would never bind: the tenant's is checked too.
        key_rpm=key.rate_limit_per_minute,
        key_tpm=key.tokens_per_minute,
        tenant_daily_usd=_first(tenant.daily_budget_usd, plan.daily_budget_usd),
        tenant_monthly_usd=_first(tenant.monthly_budget_usd, plan.monthly_budget_usd),
        key_daily_usd=key.daily_budget_usd,
        key_monthly_usd=key.monthly_budget_usd,
        models=models,
        cache_enabled=_first(tenant.cache_enabled, plan.cache_enabled),
        cache_ttl_seconds=_first(tenant.cache_ttl_seconds, plan.cache_ttl_seconds),
    )
