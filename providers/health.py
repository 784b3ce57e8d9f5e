"""The provider health page in admin: every deployment's breaker and recent calls, live, with a reset."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from ledger.audit import breakers as audit_breakers
from providers import breaker
from providers.models import Deployment

REFRESH_SECONDS = 2


def deployment_rows() -> list[dict[str, Any]]:
    rows = []
    for deployment in Deployment.objects.select_related("provider").order_by("model_name", "priority"):
        health = breaker.health(deployment.pk)
        rows.append(
            {
                "id": deployment.pk,
                "model": deployment.model_name,
                "provider": deployment.provider.name,
                "upstream_model": deployment.upstream_model,
                "enabled": deployment.is_enabled and deployment.provider.is_enabled,
                "state": health.state,
                "consecutive_failures": health.consecutive_failures,
                "error_rate": None if health.error_rate is None else round(health.error_rate * 100, 1),
                "p50_ms": health.latency_p50_ms,
                "p95_ms": health.latency_p95_ms,
                "calls": health.calls,
                "last_error": health.last_error,
                "retry_in": round(health.retry_in_seconds),
            }
        )
    return rows


def event_rows() -> list[dict[str, Any]]:
    names = dict(Deployment.objects.values_list("pk", "model_name"))
    return [
        {
            "at": event.at,
            "deployment": names.get(event.deployment_id, event.deployment_id),
            "change": event.change,
            "detail": event.detail,
        }
        for event in breaker.recent_events(20)
    ]


def health_page(request: HttpRequest, context: dict[str, Any]) -> TemplateResponse:
    return TemplateResponse(
        request,
        "admin/providers/health.html",
        {**context, "title": "Provider health", "refresh_seconds": REFRESH_SECONDS, "rows": deployment_rows()},
    )


def health_data(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"deployments": deployment_rows(), "events": event_rows()})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def reset_breaker(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment, pk=deployment_id)
    actor = request.user.get_username()
    previous = breaker.reset(deployment.pk, actor=actor)
    audit_breakers.reset(deployment.pk, actor=actor, state_before=previous)
    messages.success(request, f"Circuit breaker of {deployment} reset.")
    return HttpResponseRedirect(reverse("admin:providers_health"))
