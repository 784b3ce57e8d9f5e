from datetime import timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from ledger.audit.admin_mixin import AuditedAdmin
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import MAX_GRACE, api_key_add, api_key_revoke, api_key_rotate

LIMIT_FIELDS = [
    "rate_limit_per_minute",
    "tokens_per_minute",
    "daily_budget_usd",
    "monthly_budget_usd",
    "allowed_models",
]


class RotateForm(forms.Form):
    grace_minutes = forms.IntegerField(
        label="Grace period (minutes)",
        min_value=0,
        max_value=MAX_GRACE.days * 24 * 60,
        initial=60,
        help_text="How long the old key keeps working beside the new one; 0 stops it at once.",
    )


@admin.register(Plan)
class PlanAdmin(AuditedAdmin):
    list_display = [
        "name",
        "rate_limit_per_minute",
        "tokens_per_minute",
        "daily_budget_usd",
        "monthly_budget_usd",
        "created_at",
    ]
    search_fields = ["name"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "name", "created_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "name", "created_at", "expires_at", "revoked_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # keys are created on their own page, where the secret is shown once


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin):
    list_display = ["slug", "name", "plan", "is_active", "rate_limit_per_minute", "monthly_budget_usd", "created_at"]
    list_filter = ["is_active", "plan"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    list_display = ["prefix", "name", "tenant", "created_at", "last_used_at", "expires_at", "status"]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "tenant__slug"]
    readonly_fields = ["prefix", "created_at", "revoked_at", "last_used_at", "rotated_to", "rotate"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "name", "expires_at", *LIMIT_FIELDS]
        return [
            "tenant",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "rotated_to",
            "rotate",
            *LIMIT_FIELDS,
        ]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "tenant"] if obj else self.readonly_fields

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        if obj.is_revoked:
            return "revoked"
        if obj.expires_at is not None and obj.expires_at <= timezone.now():
            return "expired"
        if obj.rotated_to_id is not None:
            return "rotated (in grace)"
        return "active"

    @admin.display(description="rotation")
    def rotate(self, obj: ApiKey) -> str:
        if obj.pk is None or obj.is_revoked or obj.rotated_to_id is not None:
            return "-"
        url = reverse("admin:tenants_apikey_rotate", args=[obj.pk])
        return format_html('<a class="button" id="rotate-key" href="{}">Rotate this key…</a>', url)

    def get_urls(self):
        rotate = path(
            "<int:object_id>/rotate/", self.admin_site.admin_view(self.rotate_view), name="tenants_apikey_rotate"
        )
        return [rotate, *super().get_urls()]

    def rotate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """A new key with the same name and limits; the old one keeps working for the chosen grace period."""
        key = get_object_or_404(ApiKey.objects.select_related("tenant"), pk=object_id)
        if not self.has_change_permission(request, key):
            raise PermissionDenied
        form = RotateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            grace = timedelta(minutes=form.cleaned_data["grace_minutes"])
            try:
                new, secret = api_key_rotate(key=key, grace=grace, actor=request.user.get_username())
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), level="error")
                return HttpResponseRedirect(reverse("admin:tenants_apikey_change", args=[key.pk]))
            return self._secret_page(request, new, secret, rotated=key)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": key,
            "form": form,
            "title": f"Rotate key {key.prefix}…",
        }
        return TemplateResponse(request, "admin/tenants/apikey/rotate.html", context)

    def _secret_page(self, request: HttpRequest, key: ApiKey, secret: str, rotated: ApiKey | None = None):
        # The secret goes straight into this one response: never into a message, a cookie or a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": key,
            "secret": secret,
            "rotated": rotated,
            "title": "API key rotated" if rotated else "API key created",
        }
        response = TemplateResponse(request, "admin/tenants/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # audited as a configuration change
        else:
            # The service saves and records `key.created` itself, in the admin's transaction.
            request.greengate_new_secret = api_key_add(key=obj, actor=request.user.get_username())

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        return self._secret_page(request, obj, request.greengate_new_secret)

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            api_key_revoke(key=key, actor=request.user.get_username())
        self.message_user(request, f"Revoked {queryset.count()} key(s); they stop working within a second.")
