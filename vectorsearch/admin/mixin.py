"""``VectorSearchAdminMixin``: the parts of the admin integration composed into one mixin.

The parts are cooperative mixins over :class:`~vectorsearch.admin.base.VectorSearchAdminBase`,
which finds the model's registration: :class:`VectorFieldMixin` (here: the vector field shown
read-only and in the fieldsets), :class:`~vectorsearch.admin.search.SearchByMeaningMixin`,
:class:`~vectorsearch.admin.similar.SimilarItemsMixin` and
:class:`~vectorsearch.admin.reembed.ReembedActionMixin`. Each ``ModelAdmin`` method they
override calls ``super()``, so a site's own admin methods and mixins compose with them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core import checks
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..exceptions import InvalidEmbedderError, NotRegistered
from .base import VectorSearchAdminBase
from .display import STATE_LABELS, embedding_state, render_vector, stored_vector
from .reembed import ReembedActionMixin
from .search import SearchByMeaningMixin
from .similar import SimilarItemsMixin


class VectorFieldMixin(VectorSearchAdminBase):
    """The registered vector field out of the form, shown read-only and compactly instead."""

    #: Show the registered vector field read-only (True) or as the editable text box (False).
    vectorsearch_readonly_vector: bool = True
    #: Values shown before the sparkline.
    vectorsearch_preview_values: int = 5

    def _vector_field_name(self) -> str | None:
        registration = self._registration_or_none()
        if registration is None or not self.vectorsearch_readonly_vector:
            return None
        return registration.vector_field

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        exclude = list(super().get_exclude(request, obj) or [])
        name = self._vector_field_name()
        if name is not None and name not in exclude:
            # Out of the form, not just disabled: saving the form then never writes back a
            # vector the backfill or the save signal has just replaced.
            exclude.append(name)
        return exclude

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if self._registration_or_none() is not None and "vectorsearch_vector" not in fields:
            fields.append("vectorsearch_vector")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        registration = self._registration_or_none()
        name = registration.vector_field if registration is not None else None
        if name is None:
            return fieldsets
        # Declared fieldsets may name the vector field: read-only, the display takes its place;
        # editable, the display follows it. Shown once, wherever the fieldsets name it first.
        replace = self.vectorsearch_readonly_vector
        shown = [False]
        placed = []
        for title, options in fieldsets:
            fields = []
            for entry in options.get("fields", ()):
                kept = _place_display(entry, name if replace else None, shown)
                if kept is not None:
                    fields.append(kept)
                if not replace and not shown[0] and _names(entry, name):
                    fields.append("vectorsearch_vector")
                    shown[0] = True
            placed.append((title, {**options, "fields": fields}))
        return placed

    @admin.display(description=_("vector"))
    def vectorsearch_vector(self, obj: Any) -> SafeString:
        """The object's vector: dimensions, norm, first values, sparkline, sync state."""
        registration = self._registration_or_none()
        if registration is None:
            return render_vector(None, note=gettext("This model is not registered."))
        if obj is None or obj.pk is None:
            return render_vector(
                None, note=gettext("No vector yet: it is made from the text once saved.")
            )
        using = obj._state.db or "default"
        vector = stored_vector(registration, obj, using)
        try:
            state = str(STATE_LABELS[embedding_state(registration, obj, using)])
            identity = registration.embedder.identity
        except InvalidEmbedderError as e:  # the page still shows what is stored
            return render_vector(vector, preview=self.vectorsearch_preview_values, note=str(e))
        return render_vector(
            vector, preview=self.vectorsearch_preview_values, state=state, identity=identity
        )

    @admin.display(description=_("vector"))
    def vectorsearch_vector_summary(self, obj: Any) -> SafeString:
        """A one-line vector display for ``list_display`` (one query per row for generic ones)."""
        registration = self._registration_or_none()
        if registration is None:
            return render_vector(None, compact=True)
        return render_vector(
            stored_vector(registration, obj, obj._state.db or "default"), compact=True
        )

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        registration = self._registration_or_none()
        if (
            registration is not None
            and registration.is_generic
            and "vectorsearch_vector_summary" in changelist.list_display
        ):
            # One query for the page's vectors rather than one per row. list() fills the
            # page's result cache, which the template then iterates.
            objects = list(changelist.result_list)
            using = changelist.queryset.db
            vectors = dict(
                registration.embedding_rows(using)
                .filter(object_id__in=[str(obj.pk) for obj in objects])
                .values_list("object_id", "vector")
            )
            for obj in objects:
                obj._vectorsearch_vector = vectors.get(str(obj.pk))
        return changelist


class VectorSearchAdminMixin(
    VectorFieldMixin, SearchByMeaningMixin, SimilarItemsMixin, ReembedActionMixin
):
    """ModelAdmin behaviour for a model registered with :func:`vectorsearch.register`.

    - the registered vector field is left out of the form and shown read-only, compactly
      (``vectorsearch_vector``; add ``"vectorsearch_vector_summary"`` to ``list_display`` for a
      one-line version);
    - the changelist search box gets a "By meaning" toggle (``?semantic=1``) that ranks the
      filtered changelist by similarity to the search text;
    - the change page lists "Similar items" the viewer may view;
    - the action "Re-embed selected" embeds the selected objects again.
    """

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = super().check(**kwargs)
        try:
            self.get_vectorsearch_registration()
        except NotRegistered as e:
            errors.append(
                checks.Error(
                    f"{type(self).__name__} uses VectorSearchAdminMixin, but: {e}",
                    hint="Call vectorsearch.register(...) for the model in an AppConfig.ready(), "
                    "or set vectorsearch_vector_field / vectorsearch_embedder to choose one.",
                    obj=type(self),
                    id="vectorsearch.E040",
                )
            )
        return errors

    @property
    def media(self) -> Any:
        return super().media + forms.Media(css={"all": ["vectorsearch/admin.css"]})


def _place_display(entry: Any, name: str | None, shown: list[bool]) -> Any:
    """A fieldsets entry (a field name or a row of them) with the vector field ``name`` replaced
    by the display, and any display after the first one (``shown``) left out; None if nothing
    of it is left."""
    if isinstance(entry, list | tuple):  # a row of fields shown side by side
        row = [kept for f in entry if (kept := _place_display(f, name, shown)) is not None]
        return type(entry)(row) if row else None
    if entry == name:
        entry = "vectorsearch_vector"
    if entry == "vectorsearch_vector":
        if shown[0]:
            return None
        shown[0] = True
    return entry


def _names(entry: Any, name: str) -> bool:
    return entry == name or (isinstance(entry, list | tuple) and name in entry)
