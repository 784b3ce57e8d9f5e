"""A ModelAdmin mixin recording every add, change and delete made in admin, inlines included, as audit events.

Each record is written inside the admin's own transaction (Django wraps add, change and delete views in one),
so an event exists exactly when its change was committed. Both sides are read from the database, just before
and just after the save, so they are what was stored, not what the form showed.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models, router
from django.db.models.deletion import Collector
from django.forms import BaseModelFormSet, ModelForm
from django.http import HttpRequest

from ledger.audit import events, values


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _reread(obj: Any) -> Any:
    # Both sides as stored: a form's values can differ from what the database keeps (precision, encryption).
    return type(obj)._default_manager.get(pk=obj.pk)


def _stored(obj: models.Model) -> dict[str, Any]:
    return values.snapshot(_reread(obj))


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


def _doomed(objs: list[models.Model]) -> list[_Gone]:
    """The rows a delete removes: those named and those that cascade with them (a provider's deployments)."""
    if not objs:
        return []
    collector = Collector(using=router.db_for_write(type(objs[0])))
    collector.collect(objs)
    rows = [obj for instances in collector.data.values() for obj in instances]
    rows += [obj for queryset in collector.fast_deletes for obj in queryset]
    return [_Gone(obj) for obj in rows]


class AuditedAdmin(admin.ModelAdmin):
    """Put first among an editable ModelAdmin's bases; the actor is the admin user's name."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        before = _stored(obj) if change else None
        super().save_model(request, obj, form, change)
        if before is None:
            events.config_created(_reread(obj), actor=_actor(request))
        else:
            events.config_changed(_reread(obj), before=before, actor=_actor(request))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        gone = _doomed([obj])
        super().delete_model(request, obj)
        for each in gone:
            each.record(_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        # The changelist's bulk "Delete selected" action: one event per row.
        gone = _doomed(list(queryset))
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
        saved = [obj.pk for obj in formset.new_objects] + [obj.pk for obj, _ in formset.changed_objects]
        now = model._default_manager.in_bulk(saved)
        for obj in formset.new_objects:
            events.config_created(now[obj.pk], actor=actor)
        for obj, _fields in formset.changed_objects:
            events.config_changed(now[obj.pk], before=stored.get(obj.pk, {}), actor=actor)
        for each in gone:
            each.record(actor)
