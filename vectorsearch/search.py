"""``vectorsearch.search(queryset, "text")``: similarity search for any registered model.

Works the same whether the vectors live in the model's own column or in the generic
:class:`~vectorsearch.models.Embedding` table, and keeps the queryset's filters. It returns a
queryset of the model, annotated with ``distance`` and ``score`` and ordered nearest first, so
``values()``, ``select_related()`` and slicing still apply.

The nearest ``k`` objects are chosen in a subquery that PostgreSQL serves from the registration's
HNSW index (``ORDER BY vector <=> query LIMIT k``, with the queryset's filters as a semi-join);
the outer query fetches those objects. Only vectors of the registered embedder's identity take
part, so vectors of a previous embedder are never ranked against the new ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Subquery
from django.db.models.functions import Cast
from pgvector import HalfVector, Vector

from .db import apply_settings
from .distances import Distance
from .exceptions import InvalidQuery
from .query import NO_DIRECTION, check_k, has_no_length, query_settings
from .registry import Registration, registry

__all__ = ["search"]


def search(
    queryset: models.QuerySet[Any] | type[models.Model],
    query: Any,
    *,
    k: int = 10,
    vector_field: str | None = None,
    embedder: str | None = None,
    iterative_scan: bool = True,
) -> models.QuerySet[Any]:
    """The ``k`` objects of ``queryset`` most similar to ``query`` (a text or a vector).

    ``vector_field``/``embedder`` choose the registration when the model has several. With
    ``iterative_scan`` (the default) the results are fetched with pgvector's iterative index
    scan on, so a selective filter still gets ``k`` rows when there are ``k`` to find. Raises
    :class:`InvalidQuery` for a bad ``k`` or vector, or a model that is not registered.
    """
    if isinstance(queryset, type):
        queryset = queryset._default_manager.all()
    checked_k = check_k(k)  # the same rule and message as similar_to(k=...)
    if checked_k is None:  # optional for similar_to(), not here
        raise InvalidQuery(
            f"k must be a whole number from 1 to {query_settings()['MAX_K']}, not None."
        )
    from .exceptions import NotRegistered

    try:
        registration = registry.get(queryset.model, vector_field=vector_field, embedder=embedder)
    except NotRegistered as e:
        raise InvalidQuery(str(e)) from None
    distance = registration.query_distance()
    vector = query_vector(registration, query, distance)
    if registration.is_generic:
        results = _search_generic(queryset, registration, vector, distance, checked_k)
    else:
        results = _search_column(queryset, registration, vector, distance, checked_k)
    return _with_iterative_scan(results) if iterative_scan else results


class IterativeScanMixin:
    """Fetches results with ``hnsw.iterative_scan`` (and IVFFlat's) on, transaction-locally.

    An HNSW scan yields ``hnsw.ef_search`` candidates (40 by default); rows the queryset's
    filters reject are dropped *after* it, so a selective filter could leave fewer than ``k``.
    pgvector 0.8's iterative scan keeps scanning until enough rows pass. ``relaxed_order`` may
    return them slightly out of order, which the outer ``ORDER BY distance`` restores. The
    settings (with the app's ``FILTERED_EF_SEARCH``) travel with the query as transaction-local
    ``SET LOCAL``s (:mod:`vectorsearch.db`), so they never outlive it on a pooled
    connection. (``count()``, ``exists()`` and ``iterator()`` run without them.)
    """

    _result_cache: Any
    db: str

    def _fetch_all(self) -> None:
        if self._result_cache is not None:
            super()._fetch_all()  # type: ignore[misc]
            return
        # The same transaction-local settings, sent the same way, as similar_to's index path:
        # they end with the search and leave the caller's own SET LOCALs as they were.
        settings = {
            # Both index types: a model's own column may have an IVFFlat index.
            "hnsw.iterative_scan": "relaxed_order",
            "ivfflat.iterative_scan": "relaxed_order",
            "hnsw.ef_search": query_settings()["FILTERED_EF_SEARCH"],
        }
        with apply_settings(self.db, settings):
            super()._fetch_all()  # type: ignore[misc]


_iterative_classes: dict[type, type] = {}


def _with_iterative_scan(queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
    """``queryset`` with :class:`IterativeScanMixin` mixed into its own (possibly custom) class;
    clones keep the class, so filters and slices added later keep the behaviour."""
    base = type(queryset)
    if base not in _iterative_classes:
        _iterative_classes[base] = type(
            f"IterativeScan{base.__name__}", (IterativeScanMixin, base), {}
        )
    queryset.__class__ = _iterative_classes[base]
    return queryset


def query_vector(registration: Registration, query: Any, distance: Distance | None = None) -> Any:
    """``query`` embedded (a text) or checked (a vector), as the pgvector value to compare with.

    (``similar_to`` checks a vector against a model field the same way, in
    ``query._query_parts``; this one also serves the generic table, which has no model field.)
    """
    embedder = registration.embedder
    distance = distance or registration.query_distance()
    if isinstance(query, str):
        if not query.strip():
            raise InvalidQuery("The search text is empty.")
        values = embedder.embed_one(query)
    else:
        field = (
            registration.model_field() if registration.vector_field else registration.cast_field()
        )
        try:
            values = field.to_python(query)
        except ValidationError as e:
            raise InvalidQuery(f"Invalid query vector: {' '.join(e.messages)}") from None
        if values is None:
            raise InvalidQuery("The query vector is empty.")
    if isinstance(query, str) and not np.any(np.asarray(values, dtype=np.float64)):
        raise InvalidQuery(
            "There is nothing in that text to search by: it has no words the embedder knows."
        )
    if distance is Distance.COSINE and has_no_length(values, registration.vector_type()):
        # Under cosine every row would be at distance NaN, and the "results" the table in
        # storage order.
        raise InvalidQuery(NO_DIRECTION)
    return HalfVector(values) if registration.vector_type() == "halfvec" else Vector(values)


def _search_generic(
    queryset: models.QuerySet[Any], registration: Registration, vector: Any, distance: Any, k: int
) -> models.QuerySet[Any]:

    using = queryset.db
    model = registration.model
    own = registration.embedding_rows(using, current=True)
    ranked = own.annotate(
        _vs_distance=distance.expression(registration.vector_expression(), vector)
    )
    allowed = (
        queryset.order_by()
        .annotate(_vs_id=Cast("pk", output_field=models.TextField()))
        .values("_vs_id")
    )
    query = queryset.query
    if query.where or query.is_sliced or query.distinct or query.combinator:
        ranked_here = ranked.filter(object_id__in=allowed)
    else:
        # Every object is allowed: a semi-join with the whole table would only make PostgreSQL
        # rank every vector exactly (a hash join and a sort, 30x slower at 20k rows) instead of
        # walking the HNSW index. The outer pk__in still drops an orphan vector's row.
        ranked_here = ranked
    nearest = (
        ranked_here.order_by("_vs_distance")
        .annotate(_vs_pk=Cast("object_id", output_field=model._meta.pk))
        .values("_vs_pk")[:k]
    )
    distance_of = Subquery(
        ranked.filter(object_id=Cast(OuterRef("pk"), output_field=models.TextField())).values(
            "_vs_distance"
        )[:1]
    )
    results: models.QuerySet[Any] = (
        queryset.filter(pk__in=nearest)
        .annotate(distance=distance_of)
        .annotate(score=distance.score("distance"))
        .order_by("distance")
    )
    return results


def _search_column(
    queryset: models.QuerySet[Any], registration: Registration, vector: Any, distance: Any, k: int
) -> models.QuerySet[Any]:

    using = queryset.db
    name = registration.vector_field
    assert name is not None
    # A vector made by another embedder than the registered one must not be ranked against the
    # query: such rows have bookkeeping with another identity (the backfill re-embeds them).
    foreign = registration.foreign_vectors(using)
    expression = distance.expression(name, vector)
    nearest = (
        queryset.order_by()
        .filter(**{f"{name}__isnull": False})
        .filter(~Exists(foreign))
        .annotate(_vs_distance=expression)
        .order_by("_vs_distance")
        .values("pk")[:k]
    )
    results: models.QuerySet[Any] = (
        queryset.filter(pk__in=nearest)
        .annotate(distance=expression)
        .annotate(score=distance.score("distance"))
        .order_by("distance")
    )
    return results
