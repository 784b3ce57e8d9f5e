"""The ledger: one row per request, failures included, keyed by request id."""

from __future__ import annotations

from django.db import models


class CacheStatus(models.TextChoices):
    NONE = "none", "not cacheable"
    MISS = "miss", "miss"
    HIT = "hit", "hit"


class LedgerEntry(models.Model):
    # Time-ordered UUID made by the writer: the key that makes a retried write harmless.
    id = models.UUIDField(primary_key=True, editable=False)
    request_id = models.CharField(max_length=160, unique=True)
    created_at = models.DateTimeField(db_index=True)
    tenant = models.ForeignKey("tenants.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    cache_status = models.CharField(max_length=8, choices=CacheStatus.choices, default=CacheStatus.NONE)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(
        default=False, help_text="The upstream sent no usage (e.g. the client left mid-stream); GreenGate counted."
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
