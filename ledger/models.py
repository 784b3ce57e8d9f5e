"""The ledger: one row per request, failures included, keyed by GreenGate's own request id."""

from __future__ import annotations

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

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return self.request_id
