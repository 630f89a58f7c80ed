"""A search as ``similar_to()`` records it: its :class:`Spec`, checked before any SQL runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import models

from ..conf import EF_SEARCH_RANGE, get_settings
from ..distances import Distance, IndexMethod
from ..exceptions import InvalidQuery
from .targets import Target
from .vectors import instance_vector, query_parts

__all__ = ["Spec", "check_ef_search", "check_k", "make_spec", "max_distance_for"]


@dataclass(frozen=True)
class Spec:
    """What ``similar_to()`` was asked, checked, kept on the queryset until it runs."""

    target: Target
    value: Any  # the query vector as SQL (a literal expression, or an expression given)
    vector: Any  # the checked query vector in Python, None for an SQL expression
    k: int | None = None
    max_distance: float | None = None
    exact: bool | None = None
    ef_search: int | None = None
    exclude_pk: Any = None
    # Rows a binary-quantized index is walked for, per row asked (re-ranked by the distance).
    overfetch: int | None = None
    # The search's own guard (rows with a vector the registered embedder made), kept apart from
    # the caller's filters: a guard that keeps nearly every row must not make the search count
    # as filtered (an EXPLAIN, FILTERED_EF_SEARCH, no calibrated ef_search).
    restrict: Any = None
    # The two annotations as similar_to() added them: a later annotate() that replaces one
    # (or builds on it) must keep the SQL form.
    annotations: tuple[Any, Any] | None = None


def make_spec(
    target: Target,
    model: type[models.Model],
    query: Any,
    *,
    k: Any = None,
    threshold: Any = None,
    exact: Any = None,
    ef_search: Any = None,
    overfetch: Any = None,
) -> Spec:
    """The checked :class:`Spec` of a search; InvalidQuery when an argument is wrong."""
    k = check_k(k)
    ef_search = check_ef_search(ef_search)
    overfetch = _check_int("overfetch", overfetch, 1, 100)
    if isinstance(exact, np.bool_):
        exact = bool(exact)
    if exact is not None and not isinstance(exact, bool):
        # 1 == True, but the planner asks `exact is True`: refuse rather than ignore it.
        raise InvalidQuery(f"exact must be True, False or None (choose per query), not {exact!r}.")
    exclude_pk = None
    if isinstance(query, models.Model):
        query, exclude_pk = instance_vector(
            model, query, target.read_vector, target.column or "stored"
        )
    value, vector = query_parts(
        target.field,
        query,
        target.distance,
        vector_type=target.vector_type,
        embed=target.embedder(),
    )
    max_distance = (
        None if threshold is None else max_distance_for(target.distance, threshold, target.size)
    )
    if exact is False and target.index_method is None:
        raise InvalidQuery(
            f"exact=False needs a vector index for the {target.distance} distance on "
            f"{target.label}, and none is declared; add an HnswIndex to Meta.indexes or leave "
            "exact unset."
        )
    if ef_search is not None and target.index_method is IndexMethod.IVFFLAT:
        raise InvalidQuery(
            f"ef_search applies to HNSW indexes; {target.label} is indexed with IVFFlat."
        )
    return Spec(target, value, vector, k, max_distance, exact, ef_search, exclude_pk, overfetch)


def _check_int(name: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not low <= value <= high
    ):
        raise InvalidQuery(f"{name} must be a whole number from {low} to {high}, not {value!r}.")
    return int(value)


def check_k(k: Any, name: str = "k") -> int | None:
    """``k`` as an int, or InvalidQuery unless 1 <= k <= VECTORSEARCH["MAX_K"]."""
    return _check_int(name, k, 1, get_settings()["MAX_K"])


def check_ef_search(ef_search: Any) -> int | None:
    """``ef_search`` as an int, or InvalidQuery outside pgvector's 1 to 1000."""
    return _check_int("ef_search", ef_search, *EF_SEARCH_RANGE)


def check_int(name: str, value: Any, low: int, high: int) -> int | None:
    """``value`` as an int from ``low`` to ``high``, or InvalidQuery naming ``name``."""
    return _check_int(name, value, low, high)


def max_distance_for(distance: Distance, threshold: Any, dimensions: int | None) -> float:
    """The largest distance whose score is at least ``threshold`` (see :meth:`Distance.score`)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise InvalidQuery(f"threshold must be a number (a minimum score), not {threshold!r}.")
    t = float(threshold)
    if not math.isfinite(t):
        raise InvalidQuery(f"threshold must be a finite number, not {t!r}.")
    if distance is Distance.COSINE:
        low, high = -1.0, 1.0
    elif distance is Distance.INNER_PRODUCT:
        return -t
    elif distance is Distance.JACCARD or (distance is Distance.HAMMING and dimensions):
        low, high = 0.0, 1.0
    else:  # L2, L1, Hamming of unknown length: score = 1 / (1 + distance)
        if not 0.0 < t <= 1.0:
            raise InvalidQuery(
                f"A {distance} score is 1 / (1 + distance), from 0 (excluded) to 1; "
                f"threshold={t!r} is outside that range."
            )
        return 1.0 / t - 1.0
    if not low <= t <= high:
        raise InvalidQuery(
            f"A {distance} score ranges from {low:g} to {high:g}; threshold={t!r} is outside it."
        )
    if distance is Distance.HAMMING:
        assert dimensions
        return (1.0 - t) * dimensions
    return 1.0 - t
