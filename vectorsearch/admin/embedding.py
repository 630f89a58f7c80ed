"""The admin of the generic Embedding table, registered on the default admin site on import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import Embedding
from ..registry import Registration, registry
from ..sync import State, classify, items_of
from .display import STATE_LABELS, render_vector, stored_vector

if TYPE_CHECKING:
    _EmbeddingAdminBase = admin.ModelAdmin[Embedding]
else:
    # ModelAdmin is generic for the type checker only (django-stubs), not at run time.
    _EmbeddingAdminBase = admin.ModelAdmin


@admin.register(Embedding)
class EmbeddingAdmin(_EmbeddingAdminBase):
    """The generic Embedding table, read-only: vectors are written by the sync, not by hand."""

    list_display = [
        "content_type",
        "object_link",
        "key",
        "identity",
        "short_hash",
        "state",
        "vector_summary",
        "updated_at",
    ]
    list_filter = ["content_type", "key", "identity"]
    search_fields = ["object_id"]
    list_select_related = ["content_type"]
    readonly_fields = [
        "content_type",
        "object_link",
        "key",
        "identity",
        "source_hash",
        "state",
        "vector_display",
        "updated_at",
    ]
    fields = tuple(readonly_fields)

    @property
    def media(self) -> Any:
        return super().media + forms.Media(css={"all": ["vectorsearch/admin.css"]})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        if "state" in changelist.list_display:
            # The state needs each row's object: one query per model on the page, not per row.
            rows = list(changelist.result_list)
            wanted: dict[Registration, list[Any]] = {}
            for row in rows:
                registration = self._registration(row)
                if registration is None:
                    continue
                try:
                    pk = registration.model._meta.pk.to_python(row.object_id)
                except ValidationError:  # an id that cannot be this model's pk: an orphan
                    continue
                wanted.setdefault(registration, []).append(pk)
            found: dict[tuple[int, str], Any] = {}
            for registration, pks in wanted.items():
                model = registration.model
                ct_id = registration.content_type_id(changelist.queryset.db)
                for obj in model._base_manager.using(changelist.queryset.db).filter(pk__in=pks):
                    found[(ct_id, str(obj.pk))] = obj
            for row in rows:
                if self._registration(row) is not None:
                    row._vectorsearch_object = found.get((row.content_type_id, row.object_id))
        return changelist

    def _registration(self, row: Embedding) -> Registration | None:
        # Asked several times per row (list columns, the change page): looked up once.
        memo: Any = row  # an attribute Embedding does not declare
        if not hasattr(memo, "_vectorsearch_registration"):
            memo._vectorsearch_registration = self._find_registration(row)
        registration: Registration | None = memo._vectorsearch_registration
        return registration

    def _find_registration(self, row: Embedding) -> Registration | None:
        model = row.content_type.model_class()
        if model is None:
            return None
        return next((r for r in registry.for_model(model) if r.key == row.key), None)

    @admin.display(description=_("object"), ordering="object_id")
    def object_link(self, row: Embedding) -> str:
        ct = row.content_type
        try:
            url = reverse(
                f"admin:{ct.app_label}_{ct.model}_change",
                args=(quote(row.object_id),),
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return row.object_id
        return format_html('<a href="{}">{}</a>', url, row.object_id)

    @admin.display(description=_("source hash"), ordering="source_hash")
    def short_hash(self, row: Embedding) -> str:
        return row.source_hash[:12] or "—"

    @admin.display(description=_("state"))
    def state(self, row: Embedding) -> str:
        """Whether the row's vector is current for its object's present text."""
        registration = self._registration(row)
        if registration is None:
            return str(STATE_LABELS["unregistered"])
        if hasattr(row, "_vectorsearch_object"):  # loaded for the whole page
            obj = row._vectorsearch_object
        else:
            obj = registration.model._base_manager.filter(pk=row.object_id).first()
        if obj is None:
            return str(STATE_LABELS["orphan"])
        has_vector = (
            row.vector is not None
            if registration.is_generic
            else stored_vector(registration, obj, row._state.db or "default") is not None
        )
        (item,) = items_of(registration, [obj], column_known=False)
        kind = classify(
            registration,
            item,
            State(row.identity, row.source_hash, has_vector),
            registration.embedder.identity,
        )
        return str(STATE_LABELS[kind])

    @admin.display(description=_("vector"))
    def vector_summary(self, row: Embedding) -> SafeString:
        if row.vector is None:
            return render_vector(None, compact=True, note=gettext("in the model's column"))
        return render_vector(row.vector, compact=True)

    @admin.display(description=_("vector"))
    def vector_display(self, row: Embedding) -> SafeString:
        if row.vector is None:
            return render_vector(
                None,
                note=gettext("Stored in the model's own column “%s”.") % row.key,
                identity=row.identity,
            )
        return render_vector(row.vector, identity=row.identity)
