"""Upstream providers and the deployments that map public model names onto them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from providers.crypto import EncryptedTextField
from providers.network import check_base_url


def _seconds(low: float, high: float) -> list:
    return [MinValueValidator(low), MaxValueValidator(high)]


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    # No `choices` here: the adapter registry is the only list of kinds, so adding one needs no migration.
    kind = models.CharField(max_length=32, help_text="Which adapter speaks to it.")
    # Not a URLField: its validator refuses single-label hosts (http://ollama:11434/v1); clean() checks instead.
    base_url = models.CharField(max_length=500, blank=True, help_text="API root, e.g. https://api.openai.com/v1")
    api_key = EncryptedTextField(blank=True, help_text="Stored encrypted; never shown again in full.")
    options = models.JSONField(default=dict, blank=True, help_text="Adapter-specific settings, e.g. an API version.")
    allow_private_network = models.BooleanField(
        default=False,
        help_text="Allow a base URL on a loopback, private or link-local address (a local model server). "
        "Cloud metadata addresses are refused whatever this says.",
    )
    # Circuit breaker overrides for this provider's deployments; blank uses the BREAKER_* settings.
    breaker_failures = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Consecutive failures that open it."
    )
    breaker_failure_rate = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01), MaxValueValidator(1.0)],
        help_text="Share of failed calls in the window that opens it (with enough calls).",
    )
    breaker_window_seconds = models.FloatField(null=True, blank=True, validators=_seconds(1, 3600))
    breaker_open_seconds = models.FloatField(
        null=True, blank=True, validators=_seconds(0.1, 3600), help_text="How long it stays open before a probe."
    )
    breaker_probes = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Trial calls while half-open."
    )
    electricity_zone = models.CharField(
        max_length=8,
        default="WOR",
        help_text="Where its datacenters draw power, for carbon estimates: an ISO 3166-1 alpha-3 country code "
        "with an electricity mix in ecologits (USA, FRA, SWE...), or WOR for the world average.",
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from providers.adapters.registry import SPECS

        if self.kind not in SPECS:
            raise ValidationError({"kind": f"Unknown provider kind {self.kind!r}; known: {', '.join(SPECS)}."})
        from ledger.estimates import electricity_zones

        if self.electricity_zone not in electricity_zones():
            raise ValidationError(
                {"electricity_zone": f"ecologits has no electricity mix for {self.electricity_zone!r}."}
            )
        if self.base_url:
            try:
                check_base_url(self.base_url, allow_private=self.allow_private_network)
            except ValueError as exc:
                raise ValidationError({"base_url": str(exc)}) from None


class Deployment(models.Model):
    """A public model name served by one provider's upstream model; several make a route."""

    model_name = models.CharField(max_length=200, db_index=True, help_text="The name clients ask for.")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="deployments")
    upstream_model = models.CharField(max_length=200, help_text="The provider's own name for the model.")
    priority = models.PositiveIntegerField(
        default=0, help_text="Lower is tried first; the next priority is the fallback."
    )
    weight = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Share of traffic within one priority."
    )
    connect_timeout = models.FloatField(
        default=5.0, validators=_seconds(0.1, 120), help_text="Seconds to open a connection upstream."
    )
    first_byte_timeout = models.FloatField(
        default=120.0,
        validators=_seconds(0.1, 3600),
        help_text="Seconds until the first piece of the answer: the first chunk of a stream, or the whole "
        "answer of a non-streamed request (it arrives at once).",
    )
    total_timeout = models.FloatField(
        default=600.0,
        validators=_seconds(0.1, 7200),
        help_text="Seconds for the whole call, a stream included; past it the call is cut.",
    )
    parameters_billions = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.001), MaxValueValidator(100_000)],
        help_text="The model's size in billions of parameters, for energy estimates of a model ecologits does not "
        "know (self-hosted, new). Blank: a default size class is assumed, and the ledger says so.",
    )
    is_enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model_name", "priority", "-weight"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "provider", "upstream_model"], name="unique_deployment")
        ]

    def __str__(self) -> str:
        return f"{self.model_name} -> {self.provider.name}/{self.upstream_model}"
