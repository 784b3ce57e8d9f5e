"""The ledger: one row per request, failures included, keyed by GreenGate's own request id."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now


class CacheStatus(models.TextChoices):
    NONE = "none", "not cacheable"
    MISS = "miss", "miss"
    HIT = "hit", "hit"


class LedgerEntry(models.Model):
    # Time-ordered UUID made by the writer: the key that makes a retried write harmless.
    id = models.UUIDField(primary_key=True, editable=False)
    # GreenGate's own id, unique by construction; the client's X-Request-ID is kept apart, never suffixed.
    request_id = models.CharField(max_length=160, unique=True)
    client_request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(db_index=True)
    tenant = models.ForeignKey("tenants.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    endpoint = models.CharField(max_length=32, default="chat.completions")
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    cache_status = models.CharField(max_length=8, choices=CacheStatus.choices, default=CacheStatus.NONE)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Deployments tried for this request.")
    providers_tried = models.CharField(
        max_length=500, blank=True, help_text="Each attempt as provider:outcome, in order."
    )
    prompt_tokens = models.PositiveIntegerField(default=0, help_text="All input tokens, cached ones included.")
    completion_tokens = models.PositiveIntegerField(default=0, help_text="All output tokens, reasoning included.")
    cached_input_tokens = models.PositiveIntegerField(default=0, help_text="Input tokens read from a prompt cache.")
    cache_write_tokens = models.PositiveIntegerField(default=0, help_text="Input tokens written to a prompt cache.")
    reasoning_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(
        default=False, help_text="The upstream sent no usage (e.g. the client left mid-stream); GreenGate counted."
    )
    token_encoding = models.CharField(
        max_length=32, blank=True, help_text="The tokenizer GreenGate counted with, when it counted."
    )
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, help_text="Time to first token, streams only.")
    # Estimates (ledger.estimates): the central value and its range. Blank sources: the row predates them.
    energy_joules = models.FloatField(default=0.0, help_text="ecologits' estimate; it counts output tokens only.")
    energy_joules_min = models.FloatField(default=0.0)
    energy_joules_max = models.FloatField(default=0.0)
    co2e_grams = models.FloatField(default=0.0, help_text="gCO2e: the energy's electricity mix, plus hardware.")
    co2e_grams_min = models.FloatField(default=0.0)
    co2e_grams_max = models.FloatField(default=0.0)
    electricity_zone = models.CharField(max_length=8, blank=True, help_text="The mix the carbon was computed with.")
    energy_source = models.CharField(
        max_length=16, blank=True, help_text="ecologits, parameters, default, not_estimated, none or failed."
    )
    cost_usd = models.DecimalField(
        max_digits=20, decimal_places=12, null=True, help_text="Empty when the price is unknown (see cost source)."
    )
    cost_source = models.CharField(
        max_length=16, blank=True, help_text="genai-prices, override, unknown, none or failed."
    )
    estimate_method = models.CharField(
        max_length=64, blank=True, help_text="The estimators and their versions, so old rows stay explainable."
    )
    # What a cache hit spared: the estimates of the answer it replayed (zero for every other row).
    energy_saved_joules = models.FloatField(default=0.0)
    co2e_saved_grams = models.FloatField(default=0.0)
    cost_saved_usd = models.DecimalField(max_digits=20, decimal_places=12, default=0)
    # A repeat of an idempotency key answered with a stored answer: the request whose answer it replayed.
    replay_of = models.CharField(max_length=160, blank=True, help_text="Replayed answer of this request id.")
    # When the row reached the database, which can be long after created_at (a spool replayed after an outage):
    # the rollups recompute the days of rows recorded since their last run.
    recorded_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["recorded_at"]),
            models.Index(fields=["provider", "created_at"]),
            models.Index(fields=["model", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.request_id


class PriceOverride(models.Model):
    """A negotiated price for one upstream model, for a provider or every provider of a kind, within dates.

    Read into the hot path's snapshot (gateway.live_config), never per request. The override valid at the
    request's start wins over genai-prices; a provider's own beats its kind's, then the latest start.
    """

    provider_kind = models.CharField(max_length=32, blank=True, help_text="Every provider of this kind...")
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.CASCADE, help_text="...or this one provider."
    )
    model = models.CharField(max_length=200, help_text="The provider's own model name (the upstream model).")
    input_per_million = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD per million tokens.")
    cached_input_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="Cache reads; blank: the input price."
    )
    cache_write_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="Cache writes; blank: the input price."
    )
    output_per_million = models.DecimalField(max_digits=14, decimal_places=6)
    valid_from = models.DateTimeField(null=True, blank=True, help_text="Blank: since always.")
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Exclusive; blank: until further notice.")
    note = models.CharField(max_length=200, blank=True, help_text="E.g. the contract it comes from.")

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(provider__isnull=True) & ~models.Q(provider_kind=""))
                | (models.Q(provider__isnull=False) & models.Q(provider_kind="")),
                name="price_override_kind_or_provider",
            ),
            models.CheckConstraint(
                condition=models.Q(valid_from__isnull=True)
                | models.Q(valid_until__isnull=True)
                | models.Q(valid_from__lt=models.F("valid_until")),
                name="price_override_dates_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider or self.provider_kind}/{self.model}"

    def clean(self) -> None:
        from providers.adapters.registry import SPECS

        if bool(self.provider_id) == bool(self.provider_kind):
            raise ValidationError("Set either a provider kind or a provider, not both.")
        if self.provider_kind and self.provider_kind not in SPECS:
            raise ValidationError({"provider_kind": f"Unknown provider kind; known: {', '.join(SPECS)}."})
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValidationError({"valid_until": "Must be after valid from."})


class DailyUsage(models.Model):
    """One UTC day of the ledger per tenant, key, provider and model: what finance's reports read.

    Maintained by `ledger.rollups` (a Celery periodic task), which recomputes whole days from the raw rows, so
    the sums equal the ledger's exactly; never edited by hand.
    """

    day = models.DateField()
    tenant = models.ForeignKey("tenants.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0, help_text="Requests answered with a status of 400 or more.")
    cache_hits = models.BigIntegerField(default=0)
    unpriced_requests = models.BigIntegerField(default=0, help_text="Requests whose price was unknown.")
    prompt_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    energy_joules = models.FloatField(default=0.0)
    energy_joules_min = models.FloatField(default=0.0)
    energy_joules_max = models.FloatField(default=0.0)
    energy_saved_joules = models.FloatField(default=0.0)
    co2e_grams = models.FloatField(default=0.0)
    co2e_grams_min = models.FloatField(default=0.0)
    co2e_grams_max = models.FloatField(default=0.0)
    co2e_saved_grams = models.FloatField(default=0.0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    cost_saved_usd = models.DecimalField(max_digits=24, decimal_places=12, default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "tenant", "api_key", "provider", "model"],
                nulls_distinct=False,
                name="daily_usage_one_row_per_group",
            )
        ]
        indexes = [models.Index(fields=["tenant", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.tenant_id or '-'} {self.provider}/{self.model}"


class RollupWatermark(models.Model):
    """How far the rollups have read the ledger, by `LedgerEntry.recorded_at`."""

    name = models.CharField(max_length=32, primary_key=True)
    recorded_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.recorded_until}"


class AuditAction(models.TextChoices):
    KEY_CREATED = "key.created", "key created"
    KEY_ROTATED = "key.rotated", "key rotated"
    KEY_REVOKED = "key.revoked", "key revoked"
    RATE_LIMITED = "quota.denied", "rate limit denial"
    BUDGET_DENIED = "budget.denied", "budget denial"
    BREAKER_OPENED = "breaker.opened", "breaker opened"
    BREAKER_CLOSED = "breaker.closed", "breaker closed"
    CONFIG_CREATED = "config.created", "configuration added"
    CONFIG_CHANGED = "config.changed", "configuration changed"
    CONFIG_DELETED = "config.deleted", "configuration deleted"


class AuditEvent(models.Model):
    """What happened, who did it and what changed: append-only, read-only in admin. Never holds a secret."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_default=Now(), db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices, db_index=True)
    actor = models.CharField(max_length=150, help_text="An admin user, 'cli:<user>', or 'gateway'.")
    # Plain text, not foreign keys: the event outlives what it is about.
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=200, blank=True, help_text="How the target read at the time.")
    tenant = models.CharField(max_length=64, blank=True, db_index=True, help_text="The tenant's slug, if any.")
    changes = models.JSONField(default=dict, blank=True, help_text="Field: [before, after], or details.")
    request_id = models.CharField(max_length=160, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"
