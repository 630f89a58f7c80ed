"""The Django admin for registered models: compact vectors, search by meaning, similar items.

Mix :class:`VectorSearchAdminMixin` into the ``ModelAdmin`` of any model registered with
:func:`vectorsearch.register` (vectors in its own column or in the generic Embedding table)::

    from django.contrib import admin
    from vectorsearch.admin import VectorSearchAdminMixin

    @admin.register(Product)
    class ProductAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
        search_fields = ["name"]

The generic :class:`~vectorsearch.models.Embedding` table gets a read-only admin of its own,
registered on the default admin site when this module is imported (``admin.autodiscover()``).
See ``docs/admin.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR, ChangeList
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .conf import get_settings
from .exceptions import EmbeddingError, InvalidEmbedderError, InvalidQuery, NotRegistered
from .models import Embedding
from .ranking.search import query_vector, search
from .registry import Registration, registry

__all__ = [
    "SEMANTIC_VAR",
    "EmbeddingAdmin",
    "SimilarItem",
    "VectorSearchAdminMixin",
    "VectorSearchChangeList",
    "render_vector",
    "sparkline_points",
]

#: The changelist's GET parameter that turns search by meaning on (``?q=...&semantic=1``).
SEMANTIC_VAR = "semantic"
_TRUE = ("1", "on", "true", "yes")

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Any]
    _EmbeddingAdminBase = admin.ModelAdmin[Embedding]
else:
    # ModelAdmin is generic for the type checker only (django-stubs), not at run time.
    _Base = object
    _EmbeddingAdminBase = admin.ModelAdmin


# -- the compact vector display -------------------------------------------------------------------


def _as_array(value: Any) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if hasattr(value, "to_numpy"):  # pgvector Vector / HalfVector / SparseVector
        value = value.to_numpy()
    elif hasattr(value, "to_list"):
        value = value.to_list()
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    return array


def sparkline_points(
    values: Sequence[float] | np.ndarray[Any, Any],
    *,
    width: int = 160,
    height: int = 32,
    points: int = 80,
) -> str:
    """The ``points`` attribute of an SVG polyline drawing ``values`` in a width x height box.

    Long vectors are averaged into ``points`` buckets (a 1,536-number polyline would be larger
    than the page it sits on); the line is scaled to the largest magnitude so a unit vector's
    small components are still visible. Zero sits in the middle.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        return ""
    if array.size > points:
        array = np.array([chunk.mean() for chunk in np.array_split(array, points)])
    peak = float(np.max(np.abs(array))) or 1.0
    middle = height / 2
    span = middle - 1  # keep the stroke inside the box
    step = width / max(array.size - 1, 1)
    return " ".join(
        f"{i * step:.1f},{middle - (v / peak) * span:.1f}" for i, v in enumerate(array.tolist())
    )


def render_vector(
    value: Any,
    *,
    preview: int = 5,
    state: str | None = None,
    identity: str | None = None,
    note: str | None = None,
    compact: bool = False,
) -> SafeString:
    """HTML for a vector: dimensions, L2 norm, the first ``preview`` values and a sparkline.

    Rendered from ``admin/vectorsearch/vector.html`` (``vector_compact.html`` with
    ``compact``), which a site may override. ``value`` may be None (no vector yet).
    """
    array = _as_array(value)
    context: dict[str, Any] = {"state": state, "identity": identity, "note": note}
    if array is not None and array.size:
        finite = bool(np.all(np.isfinite(array)))
        context.update(
            has_vector=True,
            dimensions=int(array.size),
            norm=float(np.linalg.norm(array)) if finite else math.nan,
            first_values=[f"{v:.4g}" for v in array[:preview].tolist()],
            more=int(array.size) > preview,
            points=sparkline_points(array) if finite else "",
        )
    template = "vector_compact.html" if compact else "vector.html"
    return render_to_string(f"admin/vectorsearch/{template}", context)


# -- helpers over the registry and sync -------------------------------------------------------------


def stored_vector(registration: Registration, obj: models.Model, using: str) -> Any:
    """``obj``'s stored vector for ``registration``: its column's value, or its Embedding row's."""
    if hasattr(obj, "_vectorsearch_vector"):  # loaded for a whole changelist page at once
        return obj._vectorsearch_vector
    if registration.vector_field is not None:
        attname = registration.model_field().attname
        if attname in obj.get_deferred_fields():
            obj.refresh_from_db(fields=[attname])
        return getattr(obj, attname)
    vector = (
        registration.embedding_rows(using)
        .filter(object_id=str(obj.pk))
        .values_list("vector", flat=True)
        .first()
    )
    # The change page asks twice (the display, the similar items): read once.
    obj._vectorsearch_vector = vector  # type: ignore[attr-defined]
    return vector


def embedding_state(registration: Registration, obj: models.Model, using: str) -> str:
    """``current``, ``stale``, ``missing`` or ``unknown``, as :mod:`vectorsearch.sync` says."""
    from .sync import classify, items_of, stored_states

    (item,) = items_of(registration, [obj], column_known=registration.vector_field is not None)
    states = stored_states(registration, [item.object_id], using)
    return classify(registration, item, states.get(item.object_id), registration.embedder.identity)


STATE_LABELS = {
    "current": _("current"),
    "stale": _("stale: the text or the embedder changed since"),
    "missing": _("missing: not embedded yet"),
    "unknown": _("source unknown (imported)"),
    "orphan": _("orphan: the object is gone"),
    "unregistered": _("unregistered: no registration uses this row"),
}


@dataclass(frozen=True)
class SimilarItem:
    """One row of the "Similar items" panel."""

    obj: models.Model
    label: str
    url: str | None
    score: float | None


class VectorSearchChangeList(ChangeList):
    """A ChangeList that knows ``?semantic=1`` is not a field lookup (else: a redirect to ?e=1)."""

    def get_filters_params(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        lookup_params: dict[str, Any] = super().get_filters_params(params)
        lookup_params.pop(SEMANTIC_VAR, None)
        return lookup_params


# -- the mixin -------------------------------------------------------------------------------------


class VectorSearchAdminMixin(_Base):
    """ModelAdmin behaviour for a model registered with :func:`vectorsearch.register`.

    - the registered vector field is left out of the form and shown read-only, compactly
      (``vectorsearch_vector``; add ``"vectorsearch_vector_summary"`` to ``list_display`` for a
      one-line version);
    - the changelist search box gets a "By meaning" toggle (``?semantic=1``) that ranks the
      filtered changelist by similarity to the search text;
    - the change page lists "Similar items" the viewer may view;
    - the action "Re-embed selected" embeds the selected objects again.
    """

    #: Which registration, when the model has several (see ``registry.get``).
    vectorsearch_vector_field: str | None = None
    vectorsearch_embedder: str | None = None
    #: How many objects a search by meaning ranks (at most ``VECTORSEARCH["MAX_K"]``).
    vectorsearch_search_k: int = 100
    #: The longest search text a search by meaning accepts, in characters.
    vectorsearch_max_query_length: int = 2_000
    #: How many similar items the change page lists; 0 hides the panel.
    vectorsearch_similar_k: int = 10
    #: Show the registered vector field read-only (True) or as the editable text box (False).
    vectorsearch_readonly_vector: bool = True
    #: Offer the "Re-embed selected" action.
    vectorsearch_reembed_action: bool = True
    #: Values shown before the sparkline.
    vectorsearch_preview_values: int = 5

    change_list_template = "admin/vectorsearch/mixin/change_list.html"
    change_form_template = "admin/vectorsearch/mixin/change_form.html"

    # -- registration ------------------------------------------------------------------------

    def get_vectorsearch_registration(self) -> Registration:
        """The model's registration; raises :class:`NotRegistered` when there is none."""
        return registry.get(
            self.model,
            vector_field=self.vectorsearch_vector_field,
            embedder=self.vectorsearch_embedder,
        )

    def _registration_or_none(self) -> Registration | None:
        try:
            return self.get_vectorsearch_registration()
        except NotRegistered:
            return None

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
        from django import forms

        return super().media + forms.Media(css={"all": ["vectorsearch/admin.css"]})

    # -- the vector, read-only -----------------------------------------------------------------

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

    @admin.display(description=_("similarity"), ordering="distance")
    def vectorsearch_score(self, obj: Any) -> str:
        """The similarity score of a row of a search by meaning."""
        score = getattr(obj, "score", None)
        return "—" if score is None else f"{score:.3f}"

    # -- search by meaning ---------------------------------------------------------------------

    def vectorsearch_can_toggle(self) -> bool:
        """Whether the search box offers both kinds of search (it has ``search_fields``)."""
        return bool(self.search_fields)

    def is_semantic_search(self, request: HttpRequest) -> bool:
        """Whether this changelist request asks for search by meaning.

        Without ``search_fields`` the search box searches by meaning only.
        """
        if self._registration_or_none() is None:
            return False
        if not self.vectorsearch_can_toggle():
            return True
        return request.GET.get(SEMANTIC_VAR, "").lower() in _TRUE

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return VectorSearchChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        list_display = list(super().get_list_display(request))
        text = request.GET.get(SEARCH_VAR, "")
        if (
            self.is_semantic_search(request)
            and text.strip()
            and "\x00" not in text  # the search form refuses it: nothing is ranked
            and "vectorsearch_score" not in list_display
        ):
            list_display.append("vectorsearch_score")
        return list_display

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

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet[Any], search_term: str
    ) -> tuple[models.QuerySet[Any], bool]:
        if not self.is_semantic_search(request):
            results: tuple[models.QuerySet[Any], bool] = super().get_search_results(
                request, queryset, search_term
            )
            return results
        if not search_term.strip():
            return queryset, False
        vector = self._query_vector(request, search_term)
        if vector is None:
            return queryset.none(), False
        registration = self.get_vectorsearch_registration()
        k = max(1, min(int(self.vectorsearch_search_k), int(get_settings()["MAX_K"])))
        try:
            ranked = search(
                queryset,
                vector,
                k=k,
                vector_field=registration.vector_field,
                embedder=registration.embedder_alias,
            )
        except InvalidQuery as e:
            self._message_once(request, gettext("Search by meaning failed: %s") % e, "invalid")
            return queryset.none(), False
        if request.GET.get(ORDER_VAR):
            # The user sorted by a column: the ChangeList ordered the queryset before the
            # search, whose similarity order replaced it. Sort the k results their way.
            ranked = ranked.order_by(*queryset.query.order_by)
        else:
            # Equal distances (duplicate texts) in a stable order, so pages never overlap.
            ranked = ranked.order_by("distance", "pk")
        return ranked, False

    def _query_vector(self, request: HttpRequest, text: str) -> Any:
        """The search text embedded once per request (facet counts rerun the search), or None
        after a message to the user."""
        cache: dict[str, Any] = request.__dict__.setdefault("_vectorsearch_query_vectors", {})
        if text in cache:
            return cache[text]
        vector = None
        limit = int(self.vectorsearch_max_query_length)
        if len(text) > limit:
            messages.error(
                request,
                gettext(
                    "The search text is %(length)s characters long; search by meaning takes "
                    "at most %(limit)s."
                )
                % {"length": len(text), "limit": limit},
            )
        else:
            try:
                vector = query_vector(self.get_vectorsearch_registration(), text)
            except (InvalidQuery, EmbeddingError, InvalidEmbedderError, NotRegistered) as e:
                messages.error(request, gettext("Search by meaning failed: %s") % e)
        cache[text] = vector
        return vector

    def _message_once(self, request: HttpRequest, message: str, key: str) -> None:
        sent: set[str] = request.__dict__.setdefault("_vectorsearch_messages", set())
        if key not in sent:
            sent.add(key)
            messages.error(request, message)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        registration = self._registration_or_none()
        context = {
            "vectorsearch": {
                "enabled": registration is not None,
                "can_toggle": self.vectorsearch_can_toggle(),
                "semantic": self.is_semantic_search(request),
                "search_var": SEARCH_VAR,
                "semantic_var": SEMANTIC_VAR,
                "k": self.vectorsearch_search_k,
            },
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    # -- similar items -------------------------------------------------------------------------

    def get_similar_items(
        self, request: HttpRequest, obj: models.Model
    ) -> tuple[list[SimilarItem], str | None]:
        """The objects most similar to ``obj`` that the viewer may view, and an error message.

        Candidates come from this admin's ``get_queryset(request)`` (so its row restrictions
        hold) and each must pass ``has_view_permission(request, obj)``; more are fetched than
        shown so that refusing some still fills the list.
        """
        registration = self._registration_or_none()
        if registration is None:
            return [], gettext("This model is not registered with vectorsearch.")
        using = obj._state.db or "default"
        vector = stored_vector(registration, obj, using)
        if vector is None:
            return [], gettext(
                "This object has no vector yet: save it or use the action “Re-embed selected”."
            )
        wanted = int(self.vectorsearch_similar_k)
        fetch = max(1, min(wanted * 3, int(get_settings()["MAX_K"])))
        candidates = self.get_queryset(request).using(using).exclude(pk=obj.pk)
        try:
            ranked = list(
                search(
                    candidates,
                    _as_array(vector),
                    k=fetch,
                    vector_field=registration.vector_field,
                    embedder=registration.embedder_alias,
                )
            )
        except (InvalidQuery, InvalidEmbedderError) as e:
            return [], gettext("Similar items could not be found: %s") % e
        items = []
        for candidate in ranked:
            if not self.has_view_permission(request, candidate):
                continue
            items.append(
                SimilarItem(
                    obj=candidate,
                    label=str(candidate),
                    url=self._change_url(candidate),
                    score=getattr(candidate, "score", None),
                )
            )
            if len(items) >= wanted:
                break
        return items, None

    def _change_url(self, obj: models.Model) -> str | None:
        opts = obj._meta
        try:
            return reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=(quote(obj.pk),),
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return None

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Here rather than in change_view: only when the page is shown, not on a save that
        # redirects.
        if obj is not None and not add and self.vectorsearch_similar_k > 0:
            items, error = self.get_similar_items(request, obj)
            context["vectorsearch_similar"] = {"items": items, "error": error}
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- the action ----------------------------------------------------------------------------

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        if (
            self.actions is None
            or not self.vectorsearch_reembed_action
            or "_popup" in request.GET
            or not self.has_change_permission(request)
        ):
            return actions
        action = self.get_action("vectorsearch_reembed")
        if action is not None:
            actions[action[1]] = action
        return actions

    @admin.action(
        description=_("Re-embed selected %(verbose_name_plural)s"), permissions=["change"]
    )
    def vectorsearch_reembed(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        """Embed the selected objects again, whatever their state, and say how it went."""
        from .sync import (
            Failure,
            embed_items,
            failure_summary,
            items_of,
            reading_sources,
            write_vectors,
        )

        registration = self.get_vectorsearch_registration()
        using = queryset.db
        batch_size = int(get_settings()["BATCH_SIZE"])
        objects = reading_sources(registration, queryset.order_by("pk"))
        embedded = 0
        failures: list[Failure] = []
        batch: list[Any] = []

        def flush() -> None:
            nonlocal embedded
            items = items_of(registration, batch, column_known=False)
            good, vectors, failed = embed_items(registration, items)
            embedded += write_vectors(registration, good, vectors, using=using)
            failures.extend(failed)
            batch.clear()

        try:
            for obj in objects.iterator(chunk_size=batch_size):
                batch.append(obj)
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
        except InvalidEmbedderError as e:  # a broken VECTORSEARCH_EMBEDDERS setting
            self.message_user(request, str(e), messages.ERROR)
            return
        if embedded:
            self.message_user(
                request,
                ngettext(
                    "Re-embedded %(count)d %(name)s.", "Re-embedded %(count)d %(name)s.", embedded
                )
                % {
                    "count": embedded,
                    "name": self.model._meta.verbose_name
                    if embedded == 1
                    else self.model._meta.verbose_name_plural,
                },
                messages.SUCCESS,
            )
        if failures:
            self.message_user(
                request,
                ngettext(
                    "%(count)d object could not be embedded: %(errors)s",
                    "%(count)d objects could not be embedded: %(errors)s",
                    len(failures),
                )
                % {"count": len(failures), "errors": failure_summary(failures)},
                messages.ERROR,
            )
        if not embedded and not failures:
            self.message_user(request, gettext("Nothing was re-embedded."), messages.WARNING)


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


# -- the generic Embedding table ---------------------------------------------------------------------


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
        from django import forms

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
        from .sync import State, classify, items_of

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


# The "Vector indexes" page registers itself on admin.site; imported here so that
# admin.autodiscover(), which imports only this module, finds it.
from . import admin_indexes  # noqa: E402, F401
