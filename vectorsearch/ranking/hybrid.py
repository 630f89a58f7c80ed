"""Hybrid search: PostgreSQL full-text rank and vector similarity, fused in one SQL query.

The vector list is the planner's (``similar_to(...).plan()``), so it is found the way any other
search is, with the same settings; the text list is a full-text query over a ``tsvector``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector, SearchVectorField
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import (
    Case,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.db.models.lookups import GreaterThanOrEqual

from ..conf import get_settings
from ..distances import Distance
from ..exceptions import InvalidQuery
from . import fulltext
from .spec import check_int, check_k

if TYPE_CHECKING:
    from .queryset import VectorQuerySet

__all__ = ["FUSIONS", "hybrid_search", "keyword_search", "search_document"]

_Q = TypeVar("_Q", bound="VectorQuerySet[Any]")


def hybrid_search(
    queryset: _Q,
    text: str,
    vector: Any = None,
    *,
    search_fields: str | Sequence[str] | None = None,
    config: str | None = None,
    field: str | None = None,
    distance: Distance | str | None = None,
    embedder: str | None = None,
    candidates: int = 50,
    k: int | None = None,
    rrf_k: int | None = None,
    exact: bool | None = None,
    ef_search: int | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
    any_word: bool = False,
    fusion: str = "rrf",
    only_current: bool | None = None,
) -> _Q:
    """Full-text and vector search fused by reciprocal rank fusion, in one SQL query.

    The ``candidates`` best rows by PostgreSQL full-text rank (``websearch`` syntax over
    ``search_fields``: a ``SearchVectorField``, or text fields turned into a search vector on
    the fly) and the ``candidates`` nearest by vector (``vector``, or ``text`` embedded by the
    registry) are merged; each row gets ``rrf_score`` = sum over the lists it is in of
    ``1 / (rrf_k + its rank there)``, plus ``vector_rank`` and ``text_rank`` (None when absent
    from a list), ``distance``, ``score`` and ``text_score`` (``ts_rank``). Rows come best fused
    first; ``k`` keeps the first k.

    ``weights`` (vector, text) multiply each list's ``1 / (rrf_k + rank)`` (weighted RRF), or
    with ``fusion="wsum"`` the scores: ``hybrid_score = w_vector * score + w_text *
    text_score`` over the vector list's candidates (the fusion that measured best on the demo's
    questions, ``benchmarks/relevance.py``; a row only the text list would bring cannot outrank
    them, so the text score re-ranks the vector candidates); ``text_score`` is then ``ts_rank``
    normalised by the document's length (normalization 1);
    ``any_word`` matches rows holding any word of ``text`` (ranked by how many and where)
    instead of ``websearch`` syntax, which wants them all. ``search_fields`` may also be a
    tsvector expression (see :mod:`.fulltext`).

    Filter before calling it, so both lists are drawn from the filtered rows; it must be the
    last ranking step (similar_to() cannot follow it).
    """
    if queryset.searching:
        raise InvalidQuery("hybrid_search() cannot follow similar_to() or hybrid_search().")
    if not isinstance(text, str) or not text.strip():
        raise InvalidQuery("hybrid_search() needs a non-empty text to search for.")
    candidates_ = check_k(candidates, "candidates")
    assert candidates_ is not None
    k = check_k(k)
    rrf = get_settings()["RRF_K"] if rrf_k is None else rrf_k
    rrf = check_int("rrf_k", rrf, 0, 1_000_000) or 0
    w_vector, w_text = _weights(weights)
    if fusion not in FUSIONS:
        raise InvalidQuery(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}.")
    rank = _text_rank(fusion)
    document = search_document(queryset.model, search_fields, config)
    text_query: Any = (
        fulltext.text_query(text)
        if any_word
        else SearchQuery(text, config=config, search_type="websearch")
    )
    if text_query is None:  # no word at all (emoji, punctuation): the vector list alone
        w_text, text_query = 0.0, SearchQuery("", config=config, search_type="plain")

    ranked = queryset.similar_to(
        text if vector is None else vector,
        field=field,
        distance=distance,
        embedder=embedder,
        k=candidates_,
        exact=exact,
        ef_search=ef_search,
        only_current=only_current,
    )
    planned = ranked.plan()
    vector_ids = planned.queryset.values("pk")
    spec = ranked._search_spec
    assert spec is not None
    target = spec.target
    text_ids = (
        queryset.filter(target.has_vector(queryset.db))
        .alias(_document=document)
        .filter(_document=text_query)
        .annotate(_text_score=rank(document, text_query))
        .order_by("-_text_score", "pk")
        .values("pk")[:candidates_]
    )
    n = Value(candidates_)
    # Ranks are row numbers over the merged candidates. A row of the vector list is nearer than
    # every row only the text list brought (and vice versa for text rank), so the first
    # `candidates` positions are exactly each list: no need to compare against the lists again,
    # which would run their subqueries once per mention.
    by_distance = Window(RowNumber(), order_by=[F("distance").asc(), F("pk").asc()])
    # text_score is NULL for rows that do not match the text query: ts_rank is positive for rows
    # holding the words but not the phrase, which must not outrank the real matches.
    by_text = Window(RowNumber(), order_by=[F("text_score").desc(nulls_last=True), F("pk").asc()])
    matches = Q(_document=text_query)
    # The weighted sum counts a list's score only for rows it brought: a row only the text list
    # brought scores w_text * ts_rank (~0.1) against w_vector * similarity for the vector list's,
    # so it cannot rank among them. The text score then re-ranks the vector candidates, and the
    # text list is not searched on its own (the costly part: ts_rank over every matching row).
    candidates_q = (
        Q(pk__in=vector_ids) if fusion == "wsum" else Q(pk__in=vector_ids) | Q(pk__in=text_ids)
    )
    fused = (
        queryset.filter(candidates_q)
        .alias(_document=document)
        .annotate(distance=target.distance_expression(spec.value, queryset.db))
        .annotate(score=target.distance.score("distance", dimensions=target.size))
        .annotate(
            text_score=Case(
                When(matches, then=rank(document, text_query)),
                default=None,
                output_field=FloatField(),
            )
        )
        .annotate(
            vector_rank=Case(
                When(GreaterThanOrEqual(n, by_distance), then=by_distance),
                default=None,
                output_field=IntegerField(),
            ),
            text_rank=Case(
                When(matches & Q(GreaterThanOrEqual(n, by_text)), then=by_text),
                default=None,
                output_field=IntegerField(),
            ),
        )
        .annotate(hybrid_score=_fused(fusion, w_vector, w_text, float(rrf)))
        .order_by("-hybrid_score", "distance", "pk")
    )
    if fusion == "rrf":
        fused = fused.annotate(rrf_score=F("hybrid_score"))
    fused._search_settings = planned.settings
    if k is not None:
        fused = fused[:k]
    return fused


#: How hybrid_search() fuses its two lists: reciprocal ranks, or a weighted sum of the scores.
FUSIONS = ("rrf", "wsum")


def _text_rank(fusion: str) -> Any:
    """The full-text rank of a fusion: ts_rank, normalised by length for the weighted sum."""
    if fusion == "wsum":
        return lambda document, query: SearchRank(document, query, normalization=Value(1))
    return SearchRank


def _fused(fusion: str, w_vector: float, w_text: float, rrf: float) -> Any:
    """The fused score of a row from its annotations (vector_rank / text_rank are NULL for a
    row a list did not bring)."""
    if fusion == "rrf":
        combined: Any = Coalesce(
            Value(w_vector) / (Value(rrf) + F("vector_rank")), Value(0.0)
        ) + Coalesce(Value(w_text) / (Value(rrf) + F("text_rank")), Value(0.0))
    else:
        # Every row is a vector candidate (see hybrid_search); text_score is NULL where the
        # text does not match.
        text = Coalesce(F("text_score"), Value(0.0))
        combined = Value(w_vector) * F("score") + Value(w_text) * text
    return ExpressionWrapper(combined, output_field=FloatField())


def keyword_search(queryset: _Q, text: str, document: Any, *, k: int | None = None) -> _Q:
    """Rows holding any word of ``text`` in ``document`` (a tsvector), best first by ``ts_rank``
    normalised by the document's length (which measured best of PostgreSQL's ranks on the demo's
    questions): each annotated with ``text_score`` and ``score`` (the same number)."""
    if queryset.searching:
        raise InvalidQuery("keyword search cannot follow similar_to() or hybrid_search().")
    k = check_k(k)
    query = fulltext.text_query(text)
    if query is None:
        return queryset.none()
    rank = SearchRank(document, query, normalization=Value(1))
    found = (
        queryset.alias(_document=document)
        .filter(_document=query)
        .annotate(text_score=rank, score=rank)
        .order_by("-text_score", "pk")
    )
    return found[:k] if k is not None else found


def _weights(weights: Any) -> tuple[float, float]:
    try:
        w_vector, w_text = (float(w) for w in weights)
    except (TypeError, ValueError):
        raise InvalidQuery(
            f"weights must be two numbers (vector, text), not {weights!r}."
        ) from None
    if not (w_vector >= 0 and w_text >= 0 and w_vector + w_text > 0):
        raise InvalidQuery(f"weights must be two numbers >= 0, not both 0: {weights!r}.")
    return w_vector, w_text


def search_document(model: type[models.Model], search_fields: Any, config: str | None) -> Any:
    """The tsvector to search: a SearchVectorField, text fields as a SearchVector, or a tsvector
    expression as it is."""
    if hasattr(search_fields, "resolve_expression"):
        return search_fields
    if search_fields is None:
        vectors = [f.name for f in model._meta.concrete_fields if isinstance(f, SearchVectorField)]
        if len(vectors) != 1:
            raise InvalidQuery(
                f"Pass search_fields= to hybrid_search(): {model._meta.label} has "
                f"{len(vectors)} SearchVectorField(s); name one, or the text fields to search."
            )
        return F(vectors[0])
    names = [search_fields] if isinstance(search_fields, str) else list(search_fields)
    if not names:
        raise InvalidQuery("search_fields must name at least one field.")
    for name in names:
        try:
            model._meta.get_field(name)
        except FieldDoesNotExist:
            raise InvalidQuery(
                f"{model._meta.label} has no field {name!r} to search in search_fields."
            ) from None
    if len(names) == 1 and isinstance(model._meta.get_field(names[0]), SearchVectorField):
        return F(names[0])
    return SearchVector(*names, config=config)
