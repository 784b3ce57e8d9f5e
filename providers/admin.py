from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path

from ledger.audit.admin_mixin import AuditedAdmin
from ledger.estimates import electricity_zones
from providers import health
from providers.adapters.registry import kind_choices
from providers.models import Deployment, Provider


class ProviderForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=kind_choices, help_text="Which adapter speaks to it.")
    # A plain text field: Django's URL validator refuses single-label hosts (http://ollama:11434/v1), which
    # local servers use; the model's own check (providers.network) decides what is allowed.
    base_url = forms.CharField(required=False, max_length=500, help_text="API root, e.g. https://api.openai.com/v1")
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")
    electricity_zone = forms.ChoiceField(
        choices=lambda: [(zone, zone) for zone in electricity_zones()],
        initial="WOR",
        help_text="Where its datacenters draw power, for carbon estimates: a country (ISO 3166-1 alpha-3) with an "
        "electricity mix in ecologits, or WOR for the world average.",
    )

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key",
            "clear_api_key",
            "options",
            "allow_private_network",
            "breaker_failures",
            "breaker_failure_rate",
            "breaker_window_seconds",
            "breaker_open_seconds",
            "breaker_probes",
            "electricity_zone",
            "is_enabled",
        ]

    def clean_api_key(self) -> str:
        entered = self.cleaned_data.get("api_key", "")
        if self.data.get("clear_api_key"):
            return ""
        # A blank field means "unchanged": the stored secret is never sent to the browser to be sent back.
        return entered or (self.instance.api_key if self.instance.pk else "")


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fields = [
        "model_name",
        "upstream_model",
        "priority",
        "weight",
        "connect_timeout",
        "first_byte_timeout",
        "total_timeout",
        "parameters_billions",
        "is_enabled",
    ]
    extra = 0


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "credential", "electricity_zone", "is_enabled"]
    list_filter = ["kind", "is_enabled"]
    search_fields = ["name"]
    inlines = [DeploymentInline]

    @admin.display(description="API key")
    def credential(self, obj: Provider) -> str:
        return "set" if obj.api_key else "—"

    def _viewing(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """Staff is not enough: the health page is for those who may see providers."""

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not self.has_view_permission(request):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return guarded

    def _changing(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not self.has_change_permission(request):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return guarded

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path(
                "health/",
                wrap(self._viewing(lambda r: health.health_page(r, self.admin_site.each_context(r)))),
                name="providers_health",
            ),
            path("health/data/", wrap(self._viewing(health.health_data)), name="providers_health_data"),
            path(
                "health/<int:deployment_id>/reset/",
                wrap(self._changing(health.reset_breaker)),
                name="providers_health_reset",
            ),
            *super().get_urls(),
        ]


@admin.register(Deployment)
class DeploymentAdmin(AuditedAdmin):
    list_display = [
        "model_name",
        "provider",
        "upstream_model",
        "priority",
        "weight",
        "parameters_billions",
        "is_enabled",
    ]
    list_filter = ["provider", "is_enabled"]
    list_editable = ["priority", "weight", "is_enabled"]
    search_fields = ["model_name", "upstream_model"]
