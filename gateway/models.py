"""What the gateway itself keeps in PostgreSQL: stored answers for idempotency keys."""

from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """One idempotency key of one tenant: claimed by the first request (a unique row, never read-then-write),
    then holding its answer for 24 hours so that a repeat gets the same answer without a second call."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", "in flight"
        COMPLETE = "complete", "complete"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the endpoint and the request body as parsed: the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    request_id = models.CharField(max_length=160, help_text="The request that ran; repeats replay its answer.")
    status_code = models.PositiveSmallIntegerField(null=True)
    stream = models.BooleanField(default=False)
    headers = models.JSONField(default=dict)
    # The JSON body, or for a stream every SSE event's data, in order (newline-separated JSON lines).
    body = models.BinaryField(default=b"")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.key}"
