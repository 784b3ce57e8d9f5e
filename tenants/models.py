"""Plans, tenants and their API keys: the source of truth the hot path copies into memory."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone


class Plan(models.Model):
    name = models.CharField(max_length=100, unique=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        help_text="Requests per minute allowed for each tenant on this plan."
    )
    daily_budget_usd = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="USD per UTC day; blank: no budget."
    )
    monthly_budget_usd = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="USD per calendar month; blank: no budget."
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
    daily_budget_usd = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="Overrides the plan's; blank: the plan's."
    )
    monthly_budget_usd = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True, help_text="Overrides the plan's; blank: the plan's."
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
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None
