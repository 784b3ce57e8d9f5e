"""The ledger: one row per request, failures included, keyed by GreenGate's own request id."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


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

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["tenant", "created_at"])]

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
