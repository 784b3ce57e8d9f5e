"""Plans, tenants and their API keys: the source of truth the hot path copies into memory."""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tenants.model_names import validate_models

# Bounds that catch a slipped digit, not a business decision: ten million requests or ten billion tokens a
# minute, a billion dollars a day.
MAX_RPM = 10_000_000
MAX_TPM = 10_000_000_000
MAX_BUDGET = Decimal("1000000000")


def _rpm(**kwargs) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_RPM)], **kwargs)


def _tpm(**kwargs) -> models.PositiveBigIntegerField:
    return models.PositiveBigIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_TPM)], **kwargs)


def _budget(help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(MAX_BUDGET)],
        help_text=help_text,
    )


def _models(help_text: str) -> models.TextField:
    return models.TextField(blank=True, validators=[validate_models], help_text=help_text)


class Plan(models.Model):
    """Defaults for its tenants; a tenant may override each, and a key may narrow them further."""

    name = models.CharField(max_length=100, unique=True)
    rate_limit_per_minute = _rpm(help_text="Requests per minute allowed for each tenant on this plan.")
    tokens_per_minute = _tpm(null=True, blank=True, help_text="Tokens per minute per tenant; blank: unlimited.")
    daily_budget_usd = _budget("USD per UTC day; blank: no budget.")
    monthly_budget_usd = _budget("USD per calendar month (UTC); blank: no budget.")
    allowed_models = _models("Public model names, one per line or comma-separated; blank: every model.")
    cache_enabled = models.BooleanField(default=True, help_text="Whether answers may come from the cache.")
    cache_ttl_seconds = models.PositiveIntegerField(
        default=3600, validators=[MaxValueValidator(30 * 86400)], help_text="How long a cached answer is served."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    is_active = models.BooleanField(default=True, help_text="Inactive tenants' keys are refused.")
    # Blank: the plan's.
    rate_limit_per_minute = _rpm(null=True, blank=True, help_text="Overrides the plan's; blank: the plan's.")
    tokens_per_minute = _tpm(null=True, blank=True, help_text="Overrides the plan's; blank: the plan's.")
    daily_budget_usd = _budget("Overrides the plan's; blank: the plan's.")
    monthly_budget_usd = _budget("Overrides the plan's; blank: the plan's.")
    allowed_models = _models("Overrides the plan's list; blank: the plan's.")
    cache_enabled = models.BooleanField(null=True, blank=True, help_text="Overrides the plan's; unknown: the plan's.")
    cache_ttl_seconds = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(30 * 86400)], help_text="Blank: the plan's."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def effective_daily_budget_usd(self) -> Decimal | None:
        return self.daily_budget_usd if self.daily_budget_usd is not None else self.plan.daily_budget_usd

    @property
    def effective_monthly_budget_usd(self) -> Decimal | None:
        return self.monthly_budget_usd if self.monthly_budget_usd is not None else self.plan.monthly_budget_usd


class ApiKeyQuerySet(models.QuerySet):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, tenant__is_active=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A GreenGate key. Only its SHA-256 hash and a short prefix are kept; the secret is shown once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. 'billing service'.")
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Set by a rotation's grace period too.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Narrowing only: each applies on top of the tenant's, never instead of it.
    rate_limit_per_minute = _rpm(null=True, blank=True, help_text="This key's own limit; blank: the tenant's.")
    tokens_per_minute = _tpm(null=True, blank=True, help_text="This key's own limit; blank: the tenant's.")
    daily_budget_usd = _budget("This key's own daily budget, within the tenant's; blank: none of its own.")
    monthly_budget_usd = _budget("This key's own monthly budget, within the tenant's; blank: none of its own.")
    allowed_models = _models("Narrows the tenant's models; blank: all the tenant's.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
