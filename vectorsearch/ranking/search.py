"""``vectorsearch.search(queryset, "text")``: the search page's entry point, a thin wrapper.

It picks the model's registration, turns any queryset into a :class:`VectorQuerySet` (keeping
its filters) and calls ``similar_to()`` -- so the page, the API and the admin run exactly the plan
``Model.objects.similar_to()`` would.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from ..conf import get_settings
from ..exceptions import InvalidQuery, NotRegistered
from ..registry import Registration, registry
from . import fulltext
from .hybrid import keyword_search
from .queryset import VectorQuerySet
from .spec import check_k
from .targets import target_for_registration
from .vectors import query_parts

__all__ = ["MODES", "as_vector_queryset", "query_vector", "registration_of", "search"]

#: The ways search() ranks: full text and vectors fused, vectors only, full text only.
MODES = ("hybrid", "semantic", "keyword")


def search(
    queryset: models.QuerySet[Any] | type[models.Model],
    query: Any,
    *,
    k: int = 10,
    vector_field: str | None = None,
    embedder: str | None = None,
    iterative_scan: bool = True,
    mode: str | None = None,
    text: str | None = None,
    **options: Any,
) -> VectorQuerySet[Any]:
    """The ``k`` objects of ``queryset`` most similar to ``query`` (a text or a vector).

    Works for a model whose vectors are in its own column or in the generic Embedding table,
    keeps the queryset's filters, and returns a :class:`VectorQuerySet` annotated with
    ``distance`` and ``score``, nearest first. ``vector_field``/``embedder`` choose the
    registration when the model has several. Raises :class:`InvalidQuery` for a bad ``k`` or
    vector, or a model that is not registered. (``iterative_scan`` is accepted for
    compatibility: the planner chooses the scan.) ``options`` (``exact``, ``ef_search``,
    ``threshold``) go to ``similar_to()``.

    ``mode``: ``"hybrid"`` (the default when there is a text) fuses full-text and vector scores
    in one query (``HYBRID_*`` settings: a weighted sum by default); ``"semantic"`` ranks by vector only;
    ``"keyword"`` by full text only. Full text needs the text: ``text``, or ``query`` when it is
    one; a registration whose text comes from a callable has no text columns, so its hybrid
    search is semantic. Hybrid rows are ordered by ``hybrid_score`` and keep ``distance`` and
    ``score`` (vector similarity) and ``text_score``; keyword rows have ``text_score`` and
    ``score`` (the same).
    """
    words = text if text is not None else query if isinstance(query, str) else None
    if mode is None:
        mode = "semantic" if words is None else "hybrid"
    if mode not in MODES:
        raise InvalidQuery(f"mode must be one of {', '.join(MODES)}, not {mode!r}.")
    if words is not None and not words.strip():
        raise InvalidQuery("The search text is empty.")
    if isinstance(queryset, type):
        queryset = queryset._default_manager.all()
    checked_k = check_k(k)  # the same rule and message as similar_to(k=...)
    if checked_k is None:  # optional for similar_to(), not here
        raise InvalidQuery(
            f"k must be a whole number from 1 to {get_settings()['MAX_K']}, not None."
        )
    registration = registration_of(queryset.model, vector_field, embedder)
    searched = as_vector_queryset(queryset)
    if mode != "semantic" and words is None:
        raise InvalidQuery(f"A {mode} search needs the text searched for: pass text=.")
    if mode == "hybrid" and not fulltext.has_columns(registration):
        mode = "semantic"  # the text comes from a callable: no columns to search by keyword
    if mode == "keyword":
        assert words is not None
        return keyword_search(searched, words, fulltext.document(registration), k=checked_k)
    # Only vectors the registered embedder made are compared with its queries, whether the
    # query is a text or a vector it made (the page embeds once per request): only_current.
    where: dict[str, Any] = (
        {"field": registration.vector_field}
        if registration.vector_field is not None
        else {"embedder": registration.embedder_alias}
    )
    if mode == "semantic":
        return searched.similar_to(query, k=checked_k, only_current=True, **where, **options)
    assert words is not None
    conf = get_settings()
    return searched.hybrid_search(
        words,
        None if isinstance(query, str) else query,
        search_fields=fulltext.document(registration),
        candidates=min(max(checked_k, conf["HYBRID_CANDIDATES"]), conf["MAX_K"]),
        k=checked_k,
        rrf_k=conf["RRF_K"],
        weights=(conf["HYBRID_VECTOR_WEIGHT"], conf["HYBRID_TEXT_WEIGHT"]),
        any_word=True,
        fusion=conf["HYBRID_FUSION"],
        only_current=True,
        **where,
        **{key: value for key, value in options.items() if key in ("exact", "ef_search")},
    )


def registration_of(
    model: type[models.Model], vector_field: str | None = None, embedder: str | None = None
) -> Registration:
    """The registration a search of ``model`` uses; InvalidQuery when there is none or several."""
    try:
        return registry.get(model, vector_field=vector_field, embedder=embedder)
    except NotRegistered as e:
        raise InvalidQuery(str(e)) from None


def as_vector_queryset(queryset: models.QuerySet[Any]) -> VectorQuerySet[Any]:
    """``queryset`` as a :class:`VectorQuerySet` with the same filters (a copy of its Query)."""
    if isinstance(queryset, VectorQuerySet):
        return queryset.all()
    converted: VectorQuerySet[Any] = VectorQuerySet(
        model=queryset.model,
        query=queryset.query.chain(),
        using=queryset._db,  # type: ignore[attr-defined]
        hints=queryset._hints,  # type: ignore[attr-defined]
    )
    return converted


def query_vector(registration: Registration, query: Any) -> Any:
    """``query`` (a text, embedded once, or a vector) checked for ``registration``'s searches:
    the vector to pass to :func:`search` again (a page searching several facets embeds once)."""
    target = target_for_registration(registration)
    _, vector = query_parts(
        target.field,
        query,
        target.distance,
        vector_type=target.vector_type,
        embed=target.embedder(),
    )
    return vector
