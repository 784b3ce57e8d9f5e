"""Upstream providers and the deployments that map public model names onto them."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models

from providers.adapters import KIND_CHOICES
from providers.crypto import EncryptedTextField


class Provider(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32, choices=KIND_CHOICES)
    base_url = models.URLField(max_length=500, blank=True, help_text="API root, e.g. https://api.openai.com/v1")
    api_key = EncryptedTextField(blank=True, help_text="Stored encrypted; never shown again in full.")
    timeout_seconds = models.FloatField(
        default=120.0, validators=[MinValueValidator(0.1)], help_text="Whole-request timeout upstream."
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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
    is_enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model_name", "priority", "-weight"]
        constraints = [
            models.UniqueConstraint(fields=["model_name", "provider", "upstream_model"], name="unique_deployment")
        ]

    def __str__(self) -> str:
        return f"{self.model_name} -> {self.provider.name}/{self.upstream_model}"
