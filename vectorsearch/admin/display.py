"""The compact vector display, and what the admin pages show about one object's vector.

Functions and small classes only, no ModelAdmin: the mixins and ``EmbeddingAdmin`` import them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.db import models
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..registry import Registration
from ..sync import classify, items_of, stored_states

#: The changelist's GET parameter that turns search by meaning on (``?q=...&semantic=1``).
SEMANTIC_VAR = "semantic"


def as_array(value: Any) -> np.ndarray[Any, Any] | None:
    """``value`` (a pgvector value, a list, an array) as a flat float64 array; None if it is none."""
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
    array = as_array(value)
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

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        if "\x00" in request.GET.get(SEARCH_VAR, ""):
            # Django's search form refused the text (its error is shown) and searches for ""
            # instead: that would list every row under a search that matched nothing.
            return queryset.none()
        return queryset
