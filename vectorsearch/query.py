"""The query API: ``Model.objects.filter(...).similar_to(vector)``, hybrid search and MMR.

``similar_to`` annotates each row with ``distance`` and ``score`` and orders nearest first; it is
an ordinary queryset method, so ``filter``, ``exclude``, joins, ``values``, slicing and pagination
compose with it and each search stays one SQL query.

It only *records* the search. When the queryset runs (iteration, ``count()``, ``explain()``...),
:meth:`VectorQuerySet._plan` looks at the finished queryset -- filters, slice, ordering -- and
chooses how to find the rows:

- unfiltered: ``ORDER BY distance LIMIT k`` on the HNSW index, ``hnsw.ef_search`` >= k;
- filtered, when the planner expects many rows: the k nearest by an *iterative* index scan in a
  ``pk IN (...)`` subquery, sorted again outside (pgvector's materialized-CTE pattern), so k rows
  come back even when the filter rejects most of what the index walks past;
- filtered, when the planner expects few rows, or ``exact=True``: an exact scan of the filtered
  rows, ordered by ``distance + 0`` so no vector index can be chosen.

The pgvector settings the plan needs are sent with ``SET LOCAL`` in the search's own round trip
(:mod:`vectorsearch.db`), so they never outlive it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypeVar

import numpy as np
from asgiref.sync import sync_to_async
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector, SearchVectorField
from django.core.exceptions import (
    EmptyResultSet,
    FieldDoesNotExist,
    FullResultSet,
    ValidationError,
)
from django.db import connections, models
from django.db.models import (
    Case,
    Expression,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    Q,
    TextField,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.db.models.lookups import GreaterThanOrEqual
from django.db.models.query import ModelIterable
from django.db.models.sql import Query
from django.utils.functional import cached_property
from pgvector import Bit, HalfVector, SparseVector, Vector

from . import replay
from .conf import get_settings
from .db import apply_settings
from .distances import Distance, IndexMethod, vector_type_of
from .exceptions import ImproperlyConfiguredVectorSearch, InvalidQuery
from .fields import BINARY_READS, dense_text, validate_dense_array
from .indexes import index_distance, index_method, serves_column, vector_indexes

__all__ = ["Strategy", "VectorManager", "VectorQuerySet", "mmr_select"]

# pgvector's bounds for hnsw.ef_search.
EF_SEARCH_RANGE = (1, 1000)

_M = TypeVar("_M", bound=models.Model)
_Q = TypeVar("_Q", bound=models.QuerySet[Any])


def vector_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The model's concrete vector fields, in declaration order."""
    return [f for f in model._meta.concrete_fields if vector_type_of(f) is not None]


def resolve_field(model: type[models.Model], name: str | None) -> models.Field[Any, Any]:
    """The vector field called ``name``, or the model's only one; InvalidQuery otherwise."""
    candidates = vector_fields(model)
    choices = ", ".join(repr(f.name) for f in candidates) or "none"
    if name is None:
        if len(candidates) == 1:
            return candidates[0]
        raise InvalidQuery(
            f"{model._meta.label} has {len(candidates)} vector fields; "
            f"pass field= one of: {choices}."
        )
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        raise InvalidQuery(
            f"{model._meta.label} has no field {name!r}; vector fields: {choices}."
        ) from None
    if vector_type_of(field) is None:  # type: ignore[arg-type]
        raise InvalidQuery(
            f"{model._meta.label}.{name} is not a vector field; vector fields: {choices}."
        )
    return field  # type: ignore[return-value]


def resolve_distance(
    model: type[models.Model], field: models.Field[Any, Any], distance: Distance | str | None
) -> Distance:
    """``distance``, or the one distance the field's vector indexes serve."""
    vtype = vector_type_of(field)
    assert vtype is not None
    if distance is not None:
        try:
            chosen = Distance.parse(distance)
        except ValueError as e:
            raise InvalidQuery(str(e)) from None
        if vtype not in chosen.vector_types:
            allowed = ", ".join(d.value for d in Distance if vtype in d.vector_types)
            raise InvalidQuery(
                f"The {chosen} distance is not defined for {vtype} field {field.name!r}; "
                f"choose one of: {allowed}."
            )
        return chosen
    table = field.model  # whose Meta.indexes index the column (a proxy's or a child's parent)
    indexed = {
        index_distance(index, table)
        for index in vector_indexes(table)
        if serves_column(index, field.name)
    } - {None}
    if len(indexed) == 1:
        return indexed.pop()  # type: ignore[return-value]
    allowed = ", ".join(d.value for d in Distance if vtype in d.vector_types)
    reason = (
        "no vector index declares one"
        if not indexed
        else f"its indexes serve several ({', '.join(sorted(str(d) for d in indexed))})"
    )
    raise InvalidQuery(
        f"Pass distance= for {model._meta.label}.{field.name}: {reason}. Choose one of: {allowed}."
    )


def _query_parts(field: models.Field[Any, Any], query: Any, distance: Distance) -> tuple[Any, Any]:
    """(the query as SQL value or expression, the checked vector in Python or None)."""
    if hasattr(query, "resolve_expression"):
        return query, None
    vtype = vector_type_of(field)
    if isinstance(query, str) and vtype != "bit":
        from .registry import embed_query

        text, query = query, embed_query(field.model, field.name, query)
        if not np.any(np.asarray(query, dtype=np.float64)):
            raise InvalidQuery(
                f"There is nothing in {text[:80]!r} to search by: it has no words the embedder "
                "knows."
            )
    try:
        if vtype in ("vector", "halfvec"):
            # The array itself, not the list to_python() builds: a 384-dimension query is
            # checked and formatted on every search.
            value: Any = validate_dense_array(
                query,
                vector_type=vtype,
                dimensions=getattr(field, "dimensions", None),
                stored=True,
            )
        else:
            value = field.to_python(query)
    except ValidationError as e:
        raise InvalidQuery(f"Invalid query vector: {' '.join(e.messages)}") from None
    if value is None:
        raise InvalidQuery("The query vector is empty.")
    if distance is Distance.COSINE:
        numbers = value.values() if isinstance(value, SparseVector) else value
        if has_no_length(numbers, vtype):
            raise InvalidQuery(NO_DIRECTION)
    if vtype == "bit":
        return Bit(value).to_text(), value
    if vtype == "sparsevec":
        return value, value
    return QueryVector(dense_text(value), vtype or "vector"), value


NO_DIRECTION = (
    "The query vector is all zeros (or too close to zero for a float32 length), which has no "
    "direction: its cosine distance to every row is undefined. Use another vector, or the l2 "
    "distance."
)


def has_no_length(values: Any, vector_type: str | None) -> bool:
    """Whether a vector's cosine length is 0 as pgvector computes it: the stored float32
    (float16) numbers squared and summed in float32. [1e-30, ...] is not zero, yet its length
    is, and every cosine distance to it NaN."""
    stored = np.asarray(values, dtype=np.float16 if vector_type == "halfvec" else np.float32)
    stored = stored.astype(np.float32, copy=False)
    return float(np.dot(stored, stored)) == 0.0


_TEXT = TextField()


class QueryVector(Expression):
    """A query vector in SQL: its text, formatted once, as a typed literal (``%s::vector``).

    Django hashes and compares the expressions of a query several times while compiling it; a
    ``Value`` holding a few kilobytes of text is slow to do that for, this one is not.
    """

    def __init__(self, literal: str, vector_type: str = "vector") -> None:
        super().__init__(output_field=_TEXT)
        self.literal = literal
        self.vector_type = vector_type

    @cached_property
    def identity(self) -> tuple[Any, ...]:
        return (QueryVector, self.literal, self.vector_type)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[str]]:
        return f"%s::{self.vector_type}", (self.literal,)

    def get_group_by_cols(self) -> list[Any]:
        return []  # a constant


class Strategy(enum.StrEnum):
    """How a similarity query finds its rows."""

    #: Compute the distance of every row the filters keep, then sort: complete and exact.
    EXACT = "exact"
    #: Walk the HNSW/IVFFlat index (with an iterative scan when rows are filtered): approximate.
    INDEX = "index"


@dataclass(frozen=True)
class _Search:
    """What similar_to() was asked, kept on the queryset until it runs."""

    field: str
    distance: Distance
    value: Any
    vector: Any
    k: int | None
    max_distance: float | None
    exact: bool | None
    ef_search: int | None
    exclude_pk: Any
    index_method: IndexMethod | None
    # The size of the vectors for a Hamming score (bits), else None.
    size: int | None
    # The two annotations as similar_to() added them: a later annotate() that replaces one
    # (or builds on it) must keep the SQL form. None until they are added (see _build()).
    annotations: tuple[Any, Any] | None = None


@dataclass
class _Plan:
    """The queryset that actually runs, and the settings it runs with."""

    queryset: VectorQuerySet[Any]
    settings: dict[str, Any] = field(default_factory=dict)
    strategy: Strategy | None = None
    # Rows the caller should get if the filters keep enough rows; a shorter answer from an
    # iterative index scan (it gave up after max_scan_tuples) is completed by an exact scan.
    expected: int | None = None
    # Work left for Python on the fetched model instances (plans made with rows=True): sort
    # by distance and keep [low:high] (rows of a relaxed-order index scan), and set `score`.
    sort_slice: tuple[int, int] | None = None
    score: Callable[[float], float] | None = None

    def finish(self, rows: list[Any]) -> list[Any]:
        if self.sort_slice is not None:
            rows = sorted(rows, key=_distance_of)[slice(*self.sort_slice)]
        if self.score is not None:
            for row in rows:
                row.score = None if row.distance is None else self.score(row.distance)
        return rows


def _distance_of(row: Any) -> tuple[bool, float]:
    return (row.distance is None, row.distance or 0.0)


def index_method_for(
    model: type[models.Model], field_name: str, distance: Distance
) -> IndexMethod | None:
    """The method of an index that serves ``distance`` on ``field_name`` (HNSW preferred)."""
    methods = {
        index_method(index)
        for index in vector_indexes(model)
        if serves_column(index, field_name) and index_distance(index, model) is distance
    }
    if IndexMethod.HNSW in methods:
        return IndexMethod.HNSW
    return IndexMethod.IVFFLAT if methods else None


_TARGETS: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any, Distance, IndexMethod | None]] = {}
_TARGETS_MAX = 1024


def _target(
    model: type[models.Model], field: str | None, distance: Distance | str | None
) -> tuple[models.Field[Any, Any], Distance, IndexMethod | None]:
    """(vector field, distance, index method) of a search; InvalidQuery when they are wrong.

    Remembered per model, field and distance while the model's indexes are the same objects:
    it reads them, they do not change between requests, and every search asks.
    """
    key: tuple[Any, ...] = (model, field, distance)
    indexes = tuple(index for owner in _index_owners(model) for index in owner._meta.indexes)
    try:
        known = _TARGETS.get(key)
    except TypeError:  # an unhashable argument, which resolving reports
        key, known = (), None
    if (
        known is not None
        and len(known[0]) == len(indexes)
        and all(a is b for a, b in zip(known[0], indexes, strict=True))
    ):
        return known[1:]
    model_field = resolve_field(model, field)
    chosen = resolve_distance(model, model_field, distance)
    taken = {"distance", "score"} & {f.name for f in model._meta.get_fields()}
    if taken:
        raise InvalidQuery(
            f"{model._meta.label} has a field named {' and '.join(sorted(taken))}, "
            "which similar_to()'s annotations of the same name would shadow; rank with "
            f".annotate(d={chosen.function.__name__}({model_field.name!r}, vector))"
            ".order_by('d') instead."
        )
    target = (model_field, chosen, index_method_for(model_field.model, model_field.name, chosen))
    if key:
        if len(_TARGETS) >= _TARGETS_MAX:
            _TARGETS.clear()
        _TARGETS[key] = (indexes, *target)
    return target


@functools.cache
def _index_owners(model: type[models.Model]) -> tuple[type[models.Model], ...]:
    """The models whose ``Meta.indexes`` may index ``model``'s columns: itself, the model a
    proxy stands for, and multi-table parents."""
    owners = [model, model._meta.concrete_model or model, *model._meta.get_parent_list()]
    return tuple(dict.fromkeys(owners))


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


# The integer settings this module reads, with their allowed ranges.
_SETTING_RANGES = {
    "MAX_K": (1, 100_000),
    "EF_SEARCH": EF_SEARCH_RANGE,
    "FILTERED_EF_SEARCH": EF_SEARCH_RANGE,
    "MAX_SCAN_TUPLES": (1, 2**31 - 1),
    "EXACT_SEARCH_MAX_ROWS": (0, 2**63 - 1),
    "RRF_K": (0, 1_000_000),
}
_checked_settings: list[dict[str, Any]] = []


def query_settings() -> dict[str, Any]:
    """``get_settings()``, with the query layer's keys checked once per settings dict."""
    conf = get_settings()
    if not _checked_settings or _checked_settings[0] is not conf:
        for key, (low, high) in _SETTING_RANGES.items():
            value = conf[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ImproperlyConfiguredVectorSearch(
                    f"VECTORSEARCH[{key!r}] must be a whole number from {low} to {high}, "
                    f"not {value!r}."
                )
        _checked_settings[:] = [conf]
    return conf


def check_k(k: Any) -> int | None:
    """``k`` as an int, or InvalidQuery unless 1 <= k <= VECTORSEARCH["MAX_K"]."""
    return _check_int("k", k, 1, query_settings()["MAX_K"])


def check_ef_search(ef_search: Any) -> int | None:
    """``ef_search`` as an int, or InvalidQuery outside pgvector's 1 to 1000."""
    return _check_int("ef_search", ef_search, *EF_SEARCH_RANGE)


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


def _instance_vector(
    model: type[models.Model], model_field: models.Field[Any, Any], instance: models.Model
) -> tuple[Any, Any]:
    """The stored vector of ``instance`` and its pk, for a "more like this" query."""
    if instance._meta.concrete_model is not model._meta.concrete_model:
        raise InvalidQuery(
            f"Cannot rank {model._meta.label} rows by similarity to a "
            f"{instance._meta.label} instance; pass a {model._meta.label} instance or a vector."
        )
    if model_field.attname in instance.get_deferred_fields():
        instance.refresh_from_db(fields=[model_field.attname])
    value = getattr(instance, model_field.attname)
    if value is None:
        raise InvalidQuery(
            f"{model._meta.label} {instance.pk!r} has no {model_field.name} vector to compare "
            "with; embed it first or pass a vector."
        )
    return value, instance.pk


def _reorder(queryset: _Q, ordering: Sequence[Any]) -> _Q:
    """``queryset.order_by(*ordering)`` in place, on a clone the caller owns (one clone less)."""
    queryset.query.clear_ordering(force=True, clear_default=False)
    queryset.query.add_ordering(*ordering)
    return queryset


def _swap_distance_ordering(ordering: tuple[Any, ...]) -> list[Any]:
    """``ordering`` with "distance" hidden from the index, so the planner sorts exactly.

    ``ORDER BY (embedding <=> q) + 0`` sorts by the same value, but no vector index matches it:
    the planner then filters first (using the B-tree indexes of the filters) and computes the
    distance only for the rows kept. That is the exact strategy, and the outer sort of the
    index strategy (which must sort its k rows again, not walk the index a second time).
    """
    swapped: list[Any] = []
    for item in ordering:
        if item in ("distance", "-distance"):
            exact = F("distance") + Value(0.0)
            swapped.append(exact.desc() if item.startswith("-") else exact.asc())
        else:
            swapped.append(item)
    return swapped


# Planner estimates by (database, filter SQL, parameters): a site runs the same few filters
# over and over, and an EXPLAIN round trip is a sizeable share of a fast search.
_ESTIMATES: dict[tuple[Any, ...], tuple[float, float]] = {}
ESTIMATE_TTL = 60.0
_ESTIMATES_MAX = 1024


def _estimate_rows(queryset: models.QuerySet[Any]) -> float:
    """The planner's estimate of the rows ``queryset``'s filters keep (one EXPLAIN, no scan).

    Cached for :data:`ESTIMATE_TTL` seconds per filter SQL and parameters.
    """
    # The key: the WHERE clause and the tables it joins, compiled on their own (a cache hit
    # is the common case, and compiling the whole probe query costs several times as much).
    query = queryset.query
    try:
        where_sql, where_params = query.get_compiler(using=queryset.db).compile(query.where)
    except EmptyResultSet:  # e.g. pk__in=[]: no row can match
        return 0.0
    except FullResultSet:  # e.g. ~Q(pk__in=[]): every row matches
        where_sql, where_params = "", []
    joins = tuple(
        (
            alias,
            join.table_name,
            getattr(join, "parent_alias", None),
            getattr(join, "join_field", None),
            getattr(join, "join_type", None),
            # A FilteredRelation's condition is part of its join (and not hashable itself).
            str(getattr(join.filtered_relation, "condition", "")),
        )
        for alias, join in query.alias_map.items()
    )
    key: tuple[Any, ...] | None = (
        queryset.db,
        query.model,
        where_sql,
        tuple(where_params),
        joins,
        tuple(query.extra_tables),
        query.distinct,
        tuple(query.distinct_fields),
    )
    now = time.monotonic()
    try:
        cached = _ESTIMATES.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable parameter: estimate every time
        key, cached = None, None
    if cached is not None and now - cached[0] < ESTIMATE_TTL:
        return cached[1]
    probe = queryset.order_by().values("pk")
    probe.query.clear_limits()
    sql, params = probe.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        row = cursor.fetchone()
    plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    rows = float(plan[0]["Plan"]["Plan Rows"])
    if key is not None:
        if len(_ESTIMATES) >= _ESTIMATES_MAX:
            _ESTIMATES.clear()
        _ESTIMATES[key] = (now, rows)
    return rows


class VectorQuerySet(models.QuerySet[_M]):
    """A queryset that can rank rows by vector similarity.

    :meth:`similar_to` only records the search and adds the ``distance`` and ``score``
    annotations; the strategy (exact scan or index scan), the pgvector settings and the SQL shape
    are chosen when the queryset runs, once every filter, slice and ordering is known.
    """

    def __init__(
        self,
        model: type[_M] | None = None,
        query: Query | None = None,
        using: str | None = None,
        hints: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, query, using, hints)
        self._search: _Search | None = None
        # Settings pinned by hybrid_search() for its single statement.
        self._pinned_settings: dict[str, Any] = {}
        # How this queryset was made, for vectorsearch.replay: its class and model, then each
        # recorded method and its arguments. A clone starts without one; recorded methods give
        # theirs. None for a subclass that overrides how querysets are built.
        self._recipe: tuple[Any, ...] | None = (
            (type(self), model)
            if query is None and _replayable(type(self)) and get_settings()["REPLAY_SEARCHES"]
            else None
        )
        # Set when code outside QuerySet read the Query, which it may have changed in place.
        self._touched = False
        # similar_to()'s annotations, ordering and then a slice, not yet added to the Query:
        # a replayed search never needs them (see _build()).
        self._unbuilt = False
        self._pending_limits: tuple[int | None, int | None] | None = None

    if TYPE_CHECKING:  # Django's private queryset API, which django-stubs leaves out.
        _query: Query
        _known_related_objects: dict[Any, Any]
        _deferred_filter: tuple[bool, tuple[Any, ...], dict[str, Any]] | None
        _fields: tuple[str, ...] | None
        _sticky_filter: bool
        _defer_next_filter: bool
        _prefetch_related_lookups: tuple[Any, ...]
        _prefetch_done: bool

        def _chain(self) -> Self: ...
        def _prefetch_related_objects(self) -> None: ...
        def _iterator(self, use_chunked_fetch: bool, chunk_size: int | None) -> Iterator[Any]: ...

    def _clone(self) -> Self:
        # Django's _clone() reads self.query, which adds similar_to()'s annotations first.
        clone: Self = super()._clone()  # type: ignore[misc]
        clone._search = self._search
        clone._pinned_settings = self._pinned_settings
        return clone

    @property
    def query(self) -> Query:
        if sys._getframe(1).f_globals.get("__name__") not in _TRUSTED_MODULES:
            # Code outside QuerySet may change the Query in place: the recipe stops being a
            # description of it.
            self._touched = True
        if self._unbuilt:
            self._build()
        query: Query = models.QuerySet.query.fget(self)  # type: ignore[attr-defined]
        return query

    @query.setter
    def query(self, value: Query) -> None:
        if self._unbuilt:
            self._build()
        self._touched = True
        models.QuerySet.query.fset(self, value)  # type: ignore[attr-defined]

    def _build(self) -> None:
        """Add what similar_to() recorded to the Query: the distance and score annotations,
        the ordering by distance, and a slice taken since.

        Under a lock, on a copy put in place when complete: two threads reading the same
        queryset (a module-level one, say) build it once, and never see it half-built.
        """
        with _BUILD_LOCK:
            if not self._unbuilt:
                return
            search = self._search
            assert search is not None
            query = self._query.chain()  # the unbuilt Query may be shared by a slice of it
            distance = search.distance.expression(search.field, search.value)
            query.add_annotation(distance, "distance")
            query.add_annotation(search.distance.score("distance", dimensions=search.size), "score")
            query.clear_ordering(force=True, clear_default=False)
            query.add_ordering("distance")
            if self._pending_limits is not None:
                query.set_limits(*self._pending_limits)
            self._search = dataclasses.replace(
                search, annotations=(query.annotations["distance"], query.annotations["score"])
            )
            self._query = query
            self._unbuilt = False

    def _next_is_sticky(self) -> Self:
        self._touched = True  # the next filter reuses joins: a recipe would not say so
        sticky: Self = super()._next_is_sticky()  # type: ignore[misc]
        return sticky

    # -- recorded methods (see vectorsearch.replay) ---------------------------------------------

    def _own_recipe(self) -> tuple[Any, ...] | None:
        return None if self._touched else self._recipe

    def _recorded(
        self, clone: Self, recipe: tuple[Any, ...] | None, *step: Any, frozen: bool = False
    ) -> Self:
        if not clone._touched:
            clone._recipe = replay.record(recipe, *step, frozen=frozen)
        return clone

    def all(self) -> Self:
        recipe = self._own_recipe()
        return self._recorded(super().all(), recipe, "all")

    def filter(self, *args: Any, **kwargs: Any) -> Self:
        recipe = self._own_recipe()
        return self._recorded(super().filter(*args, **kwargs), recipe, "filter", args, kwargs)

    def exclude(self, *args: Any, **kwargs: Any) -> Self:
        recipe = self._own_recipe()
        return self._recorded(super().exclude(*args, **kwargs), recipe, "exclude", args, kwargs)

    def select_related(self, *fields: Any) -> Self:
        recipe = self._own_recipe()
        return self._recorded(super().select_related(*fields), recipe, "select_related", fields)

    def using(self, alias: str | None) -> Self:
        recipe = self._own_recipe()
        return self._recorded(super().using(alias), recipe, "using", alias)

    def get(self, *args: Any, **kwargs: Any) -> _M:
        # Django's get() limits the clone its filter() made in place (LIMIT 21), which no
        # recipe would say: run it from a clone without one.
        found: _M = super(VectorQuerySet, self._chain()).get(*args, **kwargs)
        return found

    def __getitem__(self, k: Any) -> Any:
        recipe = self._own_recipe()
        plain = isinstance(k, slice) and k.step is None and _index(k.start) and _index(k.stop)
        if plain and self._unbuilt:
            # A slice of a search not built yet stays unbuilt: the limits wait with it. A
            # clone as Django's _clone() makes one, without reading (so building) self.query.
            # The two share the unbuilt Query: _build() changes a copy, never it. Under the
            # build lock, so another thread cannot build self between the check and the copy.
            with _BUILD_LOCK:
                lazy = (
                    self._unbuilt
                    and self._pending_limits is None
                    and self._result_cache is None
                    and not self._sticky_filter
                )
                if lazy:
                    clone = self.__class__.__new__(self.__class__)
                    clone.__dict__.update(self.__dict__)
            if lazy:
                clone._prefetch_related_lookups = self._prefetch_related_lookups[:]
                clone._defer_next_filter = False
                clone._touched = False
                clone._pending_limits = (k.start, k.stop)
                return self._recorded(clone, recipe, "slice", k.start, k.stop, frozen=True)
        result = super().__getitem__(k)
        if plain and isinstance(result, VectorQuerySet):
            return self._recorded(result, recipe, "slice", k.start, k.stop, frozen=True)
        return result

    # -- building -------------------------------------------------------------------------------

    def similar_to(
        self,
        query: Any,
        *,
        field: str | None = None,
        distance: Distance | str | None = None,
        k: int | None = None,
        threshold: float | None = None,
        exact: bool | None = None,
        ef_search: int | None = None,
    ) -> Self:
        """Rows ordered by similarity to ``query``, nearest first.

        ``query`` is a vector (list, numpy array, pgvector ``Vector``...), a text (embedded by
        the registry's embedder) or a model instance ("more like this": its stored vector, and
        the instance itself left out). Each row gets two annotations: ``distance`` (pgvector's,
        smaller is nearer) and ``score`` (higher is more similar; see :meth:`Distance.score`).

        - ``field`` defaults to the model's only vector field, ``distance`` to the one its
          vector index serves.
        - ``k``: at most the k nearest rows (1 to ``VECTORSEARCH["MAX_K"]``); a slice such as
          ``[:10]`` does the same.
        - ``threshold``: only rows whose ``score`` is at least this.
        - ``exact``: True scans the filtered rows exactly, False walks the vector index (with
          an iterative scan under filters); None (default) chooses per query from the planner's
          estimate of the rows the filters keep (``VECTORSEARCH["EXACT_SEARCH_MAX_ROWS"]``).
        - ``ef_search``: HNSW's candidate list size for this query (1 to 1000; default
          ``VECTORSEARCH["EF_SEARCH"]``).

        Raises :class:`~vectorsearch.exceptions.InvalidQuery` before any SQL runs when the
        vector, field, distance or an option is wrong.
        """
        recipe = self._own_recipe()
        if self._search is not None:
            raise InvalidQuery(
                "This queryset is already ranked by similar_to(); call it once per queryset."
            )
        self._not_support_combined_queries("similar_to")  # type: ignore[attr-defined]
        if self.query.is_sliced:
            raise TypeError("Cannot rank a query by similarity once a slice has been taken.")
        model_field, chosen, method = _target(self.model, field, distance)
        k = check_k(k)
        ef_search = check_ef_search(ef_search)
        if isinstance(exact, np.bool_):
            exact = bool(exact)
        if exact is not None and not isinstance(exact, bool):
            # 1 == True, but the planner asks `exact is True`: refuse rather than ignore it.
            raise InvalidQuery(
                f"exact must be True, False or None (choose per query), not {exact!r}."
            )
        exclude_pk = None
        if isinstance(query, models.Model):
            query, exclude_pk = _instance_vector(self.model, model_field, query)
        base = self
        if isinstance(query, str) and vector_type_of(model_field) != "bit":
            # The text is embedded by the registered embedder; vectors another embedder made
            # (before a change of model, until the backfill replaces them) are not comparable.
            from .registry import comparable_vectors

            base = self.filter(comparable_vectors(self.model, model_field.name, self.db))
        value, vector = _query_parts(model_field, query, chosen)
        size = getattr(model_field, "length", None) if chosen is Distance.HAMMING else None
        max_distance = None if threshold is None else max_distance_for(chosen, threshold, size)
        if exact is False and method is None:
            raise InvalidQuery(
                f"exact=False needs a vector index for the {chosen} distance on "
                f"{self.model._meta.label}.{model_field.name}, and none is declared; add an "
                "HnswIndex to Meta.indexes or leave exact unset."
            )
        if ef_search is not None and method is IndexMethod.IVFFLAT:
            raise InvalidQuery(
                f"ef_search applies to HNSW indexes; {self.model._meta.label}.{model_field.name} "
                "is indexed with IVFFlat."
            )
        # The annotations and the ordering are added to the Query when something needs it
        # (_build()); a search run again from its recipe never does. (_target() has ruled out
        # model fields named distance or score, the check annotate() would make.)
        clone = base._chain()
        clone._search = _Search(
            field=model_field.name,
            distance=chosen,
            value=value,
            vector=vector,
            k=k,
            max_distance=max_distance,
            exact=exact,
            ef_search=ef_search,
            exclude_pk=exclude_pk,
            index_method=method,
            size=size,
        )
        clone._unbuilt = True
        if base is self and exclude_pk is None and isinstance(value, QueryVector):
            # The recipe leaves the vector out: that is what changes between runs. It records
            # the field, distance and index the search resolved to, which follow Meta.indexes;
            # k and ef_search are ints and exact a bool or None by now.
            try:
                limit = replay.freeze(threshold)
            except replay.Unrecordable:
                pass
            else:
                self._recorded(
                    clone,
                    recipe,
                    *("similar_to", model_field.name, chosen, method, k, limit, exact, ef_search),
                    frozen=True,
                )
        if clone._recipe is None:
            clone._build()  # never replayed: nothing to gain from waiting (and errors show now)
        return clone

    def hybrid_search(
        self,
        text: str,
        vector: Any = None,
        *,
        search_fields: str | Sequence[str] | None = None,
        config: str | None = None,
        field: str | None = None,
        distance: Distance | str | None = None,
        candidates: int = 50,
        k: int | None = None,
        rrf_k: int | None = None,
        exact: bool | None = None,
        ef_search: int | None = None,
    ) -> Self:
        """Full-text and vector search fused by reciprocal rank fusion, in one SQL query.

        The ``candidates`` best rows by PostgreSQL full-text rank (``websearch`` syntax over
        ``search_fields``: a ``SearchVectorField``, or text fields turned into a search vector
        on the fly) and the ``candidates`` nearest by vector (``vector``, or ``text`` embedded
        by the registry) are merged; each row gets ``rrf_score`` = sum over the lists it is in
        of ``1 / (rrf_k + its rank there)``, plus ``vector_rank`` and ``text_rank`` (None when
        absent from a list), ``distance``, ``score`` and ``text_score`` (``ts_rank``). Rows come
        best fused first; ``k`` keeps the first k.

        Filter before calling it, so both lists are drawn from the filtered rows; it must be
        the last ranking step (similar_to() cannot follow it).
        """
        if self._search is not None or self._pinned_settings:
            raise InvalidQuery("hybrid_search() cannot follow similar_to() or hybrid_search().")
        if not isinstance(text, str) or not text.strip():
            raise InvalidQuery("hybrid_search() needs a non-empty text to search for.")
        candidates_ = check_k(candidates)
        assert candidates_ is not None
        k = check_k(k)
        rrf = query_settings()["RRF_K"] if rrf_k is None else rrf_k
        rrf = _check_int("rrf_k", rrf, 0, 1_000_000) or 0
        document = _search_document(self.model, search_fields, config)
        text_query = SearchQuery(text, config=config, search_type="websearch")

        ranked = self.similar_to(
            text if vector is None else vector,
            field=field,
            distance=distance,
            k=candidates_,
            exact=exact,
            ef_search=ef_search,
        )
        plan = ranked._plan()
        vector_ids = plan.queryset.values("pk")
        text_ids = (
            self.alias(_document=document)
            .filter(_document=text_query)
            .annotate(_text_score=SearchRank(document, text_query))
            .order_by("-_text_score", "pk")
            .values("pk")[:candidates_]
        )
        assert ranked._search is not None
        search = ranked._search
        n = Value(candidates_)
        # Ranks are row numbers over the merged candidates. A row of the vector list is nearer
        # than every row only the text list brought (and vice versa for text rank), so the first
        # `candidates` positions are exactly each list: no need to compare against the lists
        # again, which would run their subqueries once per mention.
        by_distance = Window(RowNumber(), order_by=[F("distance").asc(), F("pk").asc()])
        # text_score is NULL for rows that do not match the text query: ts_rank is positive for
        # rows holding the words but not the phrase, which must not outrank the real matches.
        by_text = Window(
            RowNumber(), order_by=[F("text_score").desc(nulls_last=True), F("pk").asc()]
        )
        matches = Q(_document=text_query)
        fused = (
            self.filter(Q(pk__in=vector_ids) | Q(pk__in=text_ids))
            .alias(_document=document)
            .annotate(distance=search.distance.expression(search.field, search.value))
            .annotate(score=search.distance.score("distance", dimensions=search.size))
            .annotate(
                text_score=Case(
                    When(matches, then=SearchRank(document, text_query)),
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
            .annotate(
                rrf_score=ExpressionWrapper(
                    Coalesce(Value(1.0) / (Value(float(rrf)) + F("vector_rank")), Value(0.0))
                    + Coalesce(Value(1.0) / (Value(float(rrf)) + F("text_rank")), Value(0.0)),
                    output_field=FloatField(),
                )
            )
            .order_by("-rrf_score", "distance", "pk")
        )
        fused._pinned_settings = plan.settings
        if k is not None:
            fused = fused[:k]
        return fused

    def mmr(
        self,
        query: Any,
        *,
        k: int = 10,
        fetch_k: int | None = None,
        lambda_mult: float = 0.5,
        **options: Any,
    ) -> list[_M]:
        """``k`` rows that are similar to ``query`` *and* different from each other.

        Maximal marginal relevance: from the ``fetch_k`` nearest rows (default ``4 * k``), pick
        greedily the row maximising ``lambda_mult * sim(row, query) - (1 - lambda_mult) *
        max sim(row, picked)``, with cosine similarity. ``lambda_mult`` = 1 is plain similarity
        order, 0 maximal diversity. ``options`` go to :meth:`similar_to`. Returns model
        instances, in pick order, with their ``distance`` and ``score``.
        """
        k_ = check_k(k)
        assert k_ is not None
        fetch = check_k(4 * k_ if fetch_k is None else fetch_k)
        assert fetch is not None
        if fetch < k_:
            raise InvalidQuery(f"fetch_k ({fetch}) must be at least k ({k_}).")
        if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, int | float):
            raise InvalidQuery(f"lambda_mult must be a number from 0 to 1, not {lambda_mult!r}.")
        if not 0.0 <= lambda_mult <= 1.0:
            raise InvalidQuery(f"lambda_mult must be from 0 to 1, not {lambda_mult!r}.")
        if self._fields is not None:
            raise InvalidQuery("mmr() returns model instances; call it before values().")
        ranked = self.similar_to(query, k=fetch, **options)
        assert ranked._search is not None
        search = ranked._search
        if search.vector is None:
            raise InvalidQuery("mmr() needs a query vector or instance, not an SQL expression.")
        rows = list(ranked)
        if not rows:
            return []
        attname = self.model._meta.get_field(search.field).attname  # type: ignore[union-attr]
        matrix = np.stack([_dense(getattr(row, attname)) for row in rows])
        query_vector = _dense(search.vector)
        return [rows[i] for i in mmr_select(query_vector, matrix, k_, float(lambda_mult))]

    async def ammr(self, query: Any, **options: Any) -> list[_M]:
        """:meth:`mmr` for async code."""
        return await sync_to_async(self.mmr)(query, **options)

    # -- planning -------------------------------------------------------------------------------

    def _plan(
        self, *, allow_sql: bool = True, force_exact: bool = False, rows: bool = False
    ) -> _Plan:
        """Choose the strategy and SQL shape now that filters, slices and ordering are known.

        ``rows``: the plan's model instances are fetched by :meth:`_fetch_all`, which can finish
        the work in Python (:meth:`_Plan.finish`), so a search ranked only by distance runs as
        one flat query, as hand-written pgvector SQL would.
        """
        base = self._chain()
        base._search = None
        base._pinned_settings = {}
        search = self._search
        if search is None:
            return _Plan(base, dict(self._pinned_settings))
        conf = query_settings()
        low, high = base.query.low_mark, base.query.high_mark
        base.query.clear_limits()
        filtered = base.query.has_filters()
        if search.exclude_pk is not None:
            base = base.exclude(pk=search.exclude_pk)
        ordering = tuple(base.query.order_by)
        by_distance = base.query.standard_ordering and ordering[:1] == ("distance",)
        # The k nearest: with similarity order a slice asks the same as k; under another
        # ordering only k does (a slice then cuts the reordered rows).
        limit: int | None = search.k
        if by_distance and high is not None:
            limit = high if limit is None else min(limit, high)
        if not by_distance and limit is None and search.max_distance is None:
            # Ranked by something else and no k: nothing to search, only annotations.
            base.query.set_limits(low, high)
            return _Plan(base)

        if force_exact or search.exact is True or search.index_method is None:
            strategy = Strategy.EXACT
        elif search.exact is False:
            strategy = Strategy.INDEX
        elif limit is None and search.max_distance is None:
            strategy = Strategy.EXACT  # no LIMIT: an index scan would visit every row anyway
        elif not filtered:
            strategy = Strategy.INDEX
        elif not allow_sql:
            strategy = Strategy.EXACT  # a subquery: no settings reach it, so stay complete
        else:
            estimate = _estimate_rows(base)
            strategy = (
                Strategy.EXACT if estimate <= conf["EXACT_SEARCH_MAX_ROWS"] else Strategy.INDEX
            )

        threshold = Q() if search.max_distance is None else Q(distance__lte=search.max_distance)
        outer_high = limit if by_distance else high
        settings: dict[str, Any] = {}
        # Model instances ranked by distance alone: `score` is computed in Python from
        # `distance` (the same float arithmetic as the SQL), which spares the database a second
        # distance per row and the query a second copy of the vector.
        annotations = base.query.annotations
        flat = (
            rows
            and self._iterable_class is ModelIterable
            and by_distance
            and ordering == ("distance",)
            and not base.query.extra_order_by
            and not base.query.distinct
            and not base.query.combinator
            and base.query.group_by is None
            # No annotation but similar_to()'s own, unchanged: a window, an aggregate or a
            # replaced score must see the rows the SQL form gives it.
            and annotations.keys() == {"distance", "score"}
            and search.annotations is not None
            and annotations["distance"] is search.annotations[0]
            and annotations["score"] is search.annotations[1]
        )
        plan = _Plan(base, strategy=strategy)
        if strategy is Strategy.EXACT:
            if limit is None and search.max_distance is not None:
                # A threshold without k returns at most MAX_K rows, as the index path does:
                # the size of the answer must not depend on which strategy the planner chose.
                limit = conf["MAX_K"]
                outer_high = limit if by_distance else high
            if limit is None or flat:
                # Model instances ranked by distance: one query, whose select list is only the
                # columns and the distance (score is Python's, vectors are encoded after the
                # sort: BINARY_READS). 0.1 ms less planning than the two-level form below.
                queryset = base.filter(threshold) if threshold else base
                if flat:
                    # The selected distance is itself "+ 0", and ordered by its alias: no
                    # vector index serves it, and each row's distance is computed once.
                    queryset.query.add_annotation(
                        search.distance.expression(search.field, search.value) + Value(0.0),
                        "distance",
                    )
            else:
                # The k nearest by a subquery that computes one distance per filtered row and
                # selects only the pk; the outer query computes distance and score for k rows.
                # (In one query, PostgreSQL would compute the whole select list -- every
                # annotation, the score's second distance -- for every filtered row before
                # sorting them.)
                inner = _reorder(base.values("pk"), _swap_distance_ordering(("distance",)))
                inner.query.standard_ordering = True  # the nearest, even under reverse()
                inner.query.set_limits(high=limit)
                queryset = base.filter(Q(pk__in=inner) & threshold)
            _reorder(queryset, ordering if flat else _swap_distance_ordering(ordering))
        else:
            ef = search.ef_search or conf["FILTERED_EF_SEARCH" if filtered else "EF_SEARCH"]
            simple = (
                by_distance and not filtered and search.max_distance is None and limit is not None
            )
            if simple:
                # Unfiltered: one index scan returns ef_search rows in order, so ef_search >= the
                # rows asked (plus the left-out instance) makes it complete without an iterative
                # scan.
                assert limit is not None
                wanted = limit + (1 if search.exclude_pk is not None else 0)
                settings = _index_settings(search.index_method, max(ef, min(wanted, 1000)), False)
                queryset = base
            elif flat and search.max_distance is None and limit is not None:
                # Filtered: the k nearest by an iterative index scan in relaxed order, in one
                # query; Python puts the k rows in exact order.
                settings = _index_settings(search.index_method, ef, True)
                queryset = base
                plan.sort_slice = (low, limit)
                outer_high = limit
            else:
                # Filtered or thresholded: the k nearest by an iterative index scan (relaxed
                # order, so it keeps going until k rows pass the filters), then sorted again
                # exactly outside -- pgvector's materialized-CTE pattern, as "pk IN (subquery)"
                # so it stays a queryset. The planner runs the subquery first and fetches its k
                # rows by primary key.
                inner = _reorder(base.values("pk"), ("distance",))
                inner.query.standard_ordering = True  # the nearest, even under reverse()
                inner.query.set_limits(high=limit if limit is not None else conf["MAX_K"])
                settings = _index_settings(search.index_method, ef, True)
                queryset = _reorder(
                    base.filter(Q(pk__in=inner) & threshold), _swap_distance_ordering(ordering)
                )
        if settings and base.query.select_for_update:
            # Inside a transaction the settings are undone by rolling back to a savepoint, which
            # would also release the row locks the search took.
            raise InvalidQuery(
                "select_for_update() cannot lock the rows of an index search, whose pgvector "
                "settings are rolled back with a savepoint; pass exact=True, or lock the rows "
                "found in a second query."
            )
        if flat:
            _drop_annotation(queryset, "score")
            plan.score = functools.partial(search.distance.score_of, dimensions=search.size)
            # Its rows go straight to model instances: vectors may travel in binary.
            setattr(queryset.query, BINARY_READS, True)
        # The flat index query fetches the k nearest from the start; Python cuts [low:high].
        queryset.query.set_limits(0 if plan.sort_slice else low, outer_high)
        expected = None
        if (
            strategy is Strategy.INDEX
            and filtered
            and search.max_distance is None
            and search.exact is None
            and outer_high
        ):
            expected = outer_high - low
        plan.queryset, plan.settings, plan.expected = queryset, settings, expected
        return plan

    # -- running ---------------------------------------------------------------------------------

    def _fetch_all(self) -> None:
        if self._result_cache is not None or (self._search is None and not self._pinned_settings):
            super()._fetch_all()
            return
        cache_key = self._statement_key()
        statement = None if cache_key is None else replay.lookup(cache_key)
        if statement is None:
            plan = self._plan(rows=True)
            # The plan prefetches nothing: a short answer may be replaced below, and
            # prefetching is done once on the final rows.
            plan.queryset._prefetch_related_lookups = ()
            if cache_key is not None:
                statement = replay.Statement.compile(plan, self._literal())
                if statement is not None:
                    replay.remember(cache_key, statement)
        if statement is not None:
            plan = statement.plan
            with apply_settings(self.db, plan.settings):
                fetched = statement.rows(self.db, self._literal(), list)
        else:
            with apply_settings(plan.queryset.db, plan.settings):
                plan.queryset._fetch_all()
            assert plan.queryset._result_cache is not None
            fetched = plan.queryset._result_cache
        results = plan.finish(fetched)
        if plan.expected is not None and len(results) < plan.expected:
            # The iterative scan hit max_scan_tuples before finding enough rows that pass the
            # filters; an exact scan of the filtered rows is complete.
            retry = self._plan(force_exact=True, rows=True)
            retry.queryset._prefetch_related_lookups = ()
            retry.queryset._fetch_all()
            assert retry.queryset._result_cache is not None
            results = retry.finish(retry.queryset._result_cache)
        self._result_cache = results
        if self._prefetch_related_lookups and not self._prefetch_done:
            self._prefetch_related_objects()

    def _statement_key(self) -> tuple[Any, ...] | None:
        """The key of this search's compiled statement (vectorsearch.replay), or None when it
        must be compiled from its Query."""
        if (
            self._touched
            or self._recipe is None
            or self._pinned_settings
            or self._iterable_class is not ModelIterable
            or self._known_related_objects
            or self._prefetch_related_lookups
            or self._deferred_filter is not None
        ):
            return None
        return replay.key(self._recipe, self.db)

    def _literal(self) -> str:
        assert self._search is not None and isinstance(self._search.value, QueryVector)
        return self._search.value.literal

    def _found_rows(self) -> models.QuerySet[_M]:
        """The rows this search finds, as a plain queryset of their primary keys."""
        pks = list(self.values_list("pk", flat=True))
        return self.model._base_manager.using(self.db).filter(pk__in=pks)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows the search finds (the k nearest), not every row of the filters."""
        if self._search is None and not self._pinned_settings:
            return super().delete()
        return self._found_rows().delete()

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def update(self, **kwargs: Any) -> int:
        """Update the rows the search finds (the k nearest), not every row of the filters."""
        if self._search is None and not self._pinned_settings:
            return super().update(**kwargs)
        return self._found_rows().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def _planned(self) -> _Plan | None:
        if self._search is None and not self._pinned_settings:
            return None
        return self._plan()

    def count(self) -> int:
        plan = None if self._result_cache is not None else self._planned()
        if plan is None:
            return super().count()
        with apply_settings(plan.queryset.db, plan.settings):
            return plan.queryset.count()

    def exists(self) -> bool:
        plan = None if self._result_cache is not None else self._planned()
        if plan is None:
            return super().exists()
        with apply_settings(plan.queryset.db, plan.settings):
            return plan.queryset.exists()

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        plan = self._planned()
        if plan is None:
            return super().aggregate(*args, **kwargs)
        with apply_settings(plan.queryset.db, plan.settings):
            return plan.queryset.aggregate(*args, **kwargs)

    def explain(self, *, format: str | None = None, **options: Any) -> str:
        """EXPLAIN the query as it would run: the chosen strategy, with its settings applied."""
        plan = None if self._search is None and not self._pinned_settings else self._plan(rows=True)
        if plan is None:
            return super().explain(format=format, **options)
        with apply_settings(plan.queryset.db, plan.settings):
            return plan.queryset.explain(format=format, **options)

    def iterator(self, chunk_size: int | None = None) -> Iterator[Any]:
        plan = self._planned()
        if plan is None:
            return super().iterator(chunk_size)
        # No server-side cursor: its rows are read after the statement that set the settings.
        return self._iterate(plan, chunk_size)

    def _iterate(self, plan: _Plan, chunk_size: int | None) -> Iterator[Any]:
        if chunk_size is None and self._prefetch_related_lookups:
            raise ValueError(
                "chunk_size must be provided when using QuerySet.iterator() after "
                "prefetch_related()."
            )
        with apply_settings(plan.queryset.db, plan.settings):
            yield from plan.queryset._iterator(False, chunk_size or 2000)

    async def aiterator(self, chunk_size: int = 2000) -> AsyncIterator[Any]:
        if self._search is None and not self._pinned_settings:
            async for row in super().aiterator(chunk_size):
                yield row
            return
        rows = await sync_to_async(lambda: list(self.iterator(chunk_size)))()
        for row in rows:
            yield row

    def resolve_expression(self, *args: Any, **kwargs: Any) -> Any:
        """As a subquery (``pk__in=...``), the planned query without settings.

        No ``SET LOCAL`` reaches a subquery, so a filtered search there scans exactly and an
        unfiltered one uses the index with the server's ``hnsw.ef_search``.
        """
        if self._search is None and not self._pinned_settings:
            return super().resolve_expression(*args, **kwargs)
        return self._plan(allow_sql=False).queryset.resolve_expression(*args, **kwargs)

    resolve_expression.queryset_only = True  # type: ignore[attr-defined]


# Modules whose reads of QuerySet.query change only the clones they make.
_TRUSTED_MODULES = frozenset({"django.db.models.query", __name__, "vectorsearch.replay"})
# Re-entrant: building a search may resolve an expression holding another unbuilt search.
_BUILD_LOCK = threading.RLock()

# What makes a recipe a faithful description of a queryset's Query: these, as VectorQuerySet
# has them. A subclass that overrides one (to rewrite lookups by the active language, say) may
# build other SQL from the same calls, so its querysets are compiled every time.
_BUILDING_METHODS = (
    "__init__",
    "_clone",
    "_chain",
    "_filter_or_exclude",
    "_filter_or_exclude_inplace",
    "_next_is_sticky",
    "all",
    "filter",
    "exclude",
    "select_related",
    "using",
    "__getitem__",
    "get",
    "similar_to",
    "query",
    "_build",
    "_plan",
    "_fetch_all",
    "_statement_key",
)


@functools.cache
def _replayable(cls: type[Any]) -> bool:
    return all(getattr(cls, name) is getattr(VectorQuerySet, name) for name in _BUILDING_METHODS)


def _index(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _drop_annotation(queryset: models.QuerySet[Any], name: str) -> None:
    """Stop selecting annotation ``name`` (filters that use it keep their own copy)."""
    query = queryset.query
    query.set_annotation_mask(set(query.annotation_select) - {name})


def _index_settings(method: IndexMethod | None, ef_search: int, iterative: bool) -> dict[str, Any]:
    conf = query_settings()
    if method is IndexMethod.IVFFLAT:
        settings: dict[str, Any] = {
            "ivfflat.iterative_scan": "relaxed_order" if iterative else "off"
        }
        return settings
    settings = {
        "hnsw.ef_search": ef_search,
        "hnsw.iterative_scan": "relaxed_order" if iterative else "off",
    }
    if iterative:
        settings["hnsw.max_scan_tuples"] = conf["MAX_SCAN_TUPLES"]
    return settings


def _search_document(
    model: type[models.Model], search_fields: str | Sequence[str] | None, config: str | None
) -> Any:
    """The tsvector to search: a SearchVectorField, or text fields as a SearchVector."""
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


def _dense(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, SparseVector):
        return np.asarray(value.to_numpy(), dtype=np.float64)
    if isinstance(value, Vector | HalfVector):
        return np.asarray(value.to_numpy(), dtype=np.float64)
    if isinstance(value, str):  # bit string
        return np.array([c == "1" for c in value], dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def mmr_select(
    query: np.ndarray[Any, Any], candidates: np.ndarray[Any, Any], k: int, lambda_mult: float
) -> list[int]:
    """Indices of ``k`` rows of ``candidates`` chosen by maximal marginal relevance."""
    norms = np.linalg.norm(candidates, axis=1)
    norms[norms == 0] = 1.0
    unit = candidates / norms[:, None]
    q = query / (np.linalg.norm(query) or 1.0)
    relevance = unit @ q
    pairwise = unit @ unit.T
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)
    for _ in range(min(k, len(candidates))):
        if chosen:
            marginal = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        else:
            marginal = relevance.copy()
        marginal[chosen] = -np.inf
        pick = int(np.argmax(marginal))
        chosen.append(pick)
        redundancy = np.maximum(redundancy, pairwise[pick])
    return chosen


class VectorManager(models.Manager[_M]):
    """``objects = VectorManager()``: a manager whose querysets rank by vector similarity."""

    def get_queryset(self) -> VectorQuerySet[_M]:
        return VectorQuerySet(self.model, using=self._db)

    def similar_to(self, query: Any, **kwargs: Any) -> VectorQuerySet[_M]:
        return self.get_queryset().similar_to(query, **kwargs)

    def hybrid_search(self, text: str, vector: Any = None, **kwargs: Any) -> VectorQuerySet[_M]:
        return self.get_queryset().hybrid_search(text, vector, **kwargs)

    def mmr(self, query: Any, **kwargs: Any) -> list[_M]:
        return self.get_queryset().mmr(query, **kwargs)

    async def ammr(self, query: Any, **kwargs: Any) -> list[_M]:
        return await self.get_queryset().ammr(query, **kwargs)
