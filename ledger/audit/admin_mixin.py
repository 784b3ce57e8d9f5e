"""A ModelAdmin mixin recording every add, change and delete made in admin, inlines included, as audit events.

Each record is written inside the admin's own transaction (Django wraps add, change and delete views in one),
so an event exists exactly when its change was committed. `before` is read from the database just before the
save, so it is what was stored, not what the form showed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.forms import BaseModelFormSet, ModelForm
from django.http import HttpRequest

from ledger.audit import events, values


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _stored(obj: models.Model) -> dict[str, Any]:
    return values.snapshot(type(obj)._default_manager.get(pk=obj.pk))


class _Gone:
    """What a deleted row was, captured before it goes (a deleted instance loses its primary key)."""

    def __init__(self, obj: models.Model, before: dict[str, Any] | None = None) -> None:
        self.model = type(obj)
        self.pk = obj.pk
        self.text = str(obj)
        self.tenant = events.tenant_of(obj)
        self.before = before if before is not None else values.snapshot(obj)

    def record(self, actor: str) -> None:
        events.config_deleted(
            model=self.model, pk=self.pk, text=self.text, before=self.before, tenant=self.tenant, actor=actor
        )


class AuditedAdmin(admin.ModelAdmin):
    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        before = _stored(obj) if change else None
        super().save_model(request, obj, form, change)
        if before is None:
            events.config_created(obj, actor=_actor(request))
        else:
            events.config_changed(obj, before=before, actor=_actor(request))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        gone = _Gone(obj)
        super().delete_model(request, obj)
        gone.record(_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # The changelist's bulk "Delete selected" action: one event per row.
        gone = [_Gone(obj) for obj in queryset]
        super().delete_queryset(request, queryset)
        for each in gone:
            each.record(_actor(request))

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseModelFormSet, change: bool) -> None:
        """Inline rows: the ones added, changed and deleted, each as its own event."""
        model = formset.model
        existing = [f.instance.pk for f in formset.initial_forms if f.instance.pk is not None]
        stored = {pk: values.snapshot(obj) for pk, obj in model._default_manager.in_bulk(existing).items()}
        # A deleted inline row's instance already holds the form's values: what it was is what was stored.
        gone = [_Gone(f.instance, stored.get(f.instance.pk)) for f in formset.deleted_forms if f.instance.pk]
        super().save_formset(request, form, formset, change)
        actor = _actor(request)
        for obj in formset.new_objects:
            events.config_created(obj, actor=actor)
        for obj, _fields in formset.changed_objects:
            events.config_changed(obj, before=stored.get(obj.pk, {}), actor=actor)
        for each in gone:
            each.record(actor)
