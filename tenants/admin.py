from django.contrib import admin
from django.template.response import TemplateResponse

from ledger.audit.admin_mixin import AuditedAdmin
from tenants.models import ApiKey, Plan, Tenant
from tenants.services import api_key_add, api_key_revoke


@admin.register(Plan)
class PlanAdmin(AuditedAdmin):
    list_display = ["name", "rate_limit_per_minute", "created_at"]
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
    list_display = ["slug", "name", "plan", "is_active", "created_at"]
    list_filter = ["is_active", "plan"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    list_display = ["prefix", "name", "tenant", "created_at", "expires_at", "status"]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "tenant__slug"]
    readonly_fields = ["prefix", "created_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "name", "expires_at"]
        return ["tenant", "name", "prefix", "created_at", "expires_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "tenant"] if obj else self.readonly_fields

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return "revoked" if obj.is_revoked else "active"

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # audited as a configuration change
        else:
            # The service saves and records `key.created` itself, in the admin's transaction.
            request.greengate_new_secret = api_key_add(key=obj, actor=request.user.get_username())

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        # The secret goes straight into this one response: never into a message, a cookie or a log.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "key": obj,
            "secret": request.greengate_new_secret,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/tenants/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        for key in queryset:
            api_key_revoke(key=key, actor=request.user.get_username())
        self.message_user(request, f"Revoked {queryset.count()} key(s); they stop working within a second.")
