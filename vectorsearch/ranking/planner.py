"""The one planner: every ranking in vectorsearch asks :func:`plan` how to find its rows.

``plan(queryset, spec)`` looks at a finished queryset -- its filters, slice, ordering, what it
returns -- and the search :class:`Spec` recorded by ``similar_to()``, and returns a :class:`Plan`:
the strategy, the queryset that actually runs (the SQL shape), the pgvector settings it runs
with, and the work left for Python. It runs no SQL itself except through the ``estimate``
function it is given (one cached EXPLAIN), so its choices are testable on their own.

Strategies and shapes:

- unfiltered, on a column: ``ORDER BY distance LIMIT k`` on the HNSW index, ``hnsw.ef_search``
  >= k, no iterative scan;
- filtered, model instances ranked by distance alone: one flat query ``WHERE filters ORDER BY
  distance LIMIT k`` with a relaxed-order iterative scan; Python sorts the k rows exactly;
- filtered otherwise (``values()``, another ordering, a threshold, the generic table): the k
  nearest by an iterative index scan in a ``pk IN (subquery)``, sorted again outside
  (pgvector's materialized-CTE pattern), so k rows come back even when the filter rejects most
  of what the index walks past;
- exact (``exact=True``, no index, or few rows expected): ``ORDER BY distance + 0``, which no
  vector index serves, so PostgreSQL filters first and computes the distance of the kept rows.

The auto choice between an iterative index scan and an exact scan compares their costs: an
exact scan computes one distance per filtered row (``r``); an iterative scan walks about
``k * N / r`` index tuples to find k rows that pass (``N`` rows in the table). Exact wins when
``r <= sqrt(EXACT_COST_RATIO * k * N)``, unless ``EXACT_SEARCH_MAX_ROWS`` sets a fixed bound (on 100k x
384 an index tuple walked costs about half an exact distance: at k = 10 a 1% filter, 1,000 rows,
goes to the index, 1.1 ms against 2.3 ms exact).
"""

from __future__ import annotations

import enum
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, models
from django.db.models import F, Q, Value
from django.db.models.query import ModelIterable

from ..calibration import calibrated_ef_search
from ..conf import get_settings
from ..distances import IndexMethod
from ..exceptions import InvalidQuery
from ..fields import HalfVectorField, VectorField
from .expressions import BinaryVector, Unindexed
from .spec import Spec

__all__ = ["EXACT_COST_RATIO", "Plan", "Strategy", "estimate_rows", "plan"]

#: How many index tuples an iterative scan walks for the cost of one exact distance.
EXACT_COST_RATIO = 0.5
#: Seconds a planner estimate (and a table's row count) is reused for the same filters.
ESTIMATE_TTL = 60.0
# Where Python puts a vector read in binary before moving it to the field's attribute.
_BINARY = "vectorsearch_binary_"


class Strategy(enum.StrEnum):
    """How a similarity query finds its rows."""

    #: Compute the distance of every row the filters keep, then sort: complete and exact.
    EXACT = "exact"
    #: Walk the HNSW/IVFFlat index (with an iterative scan when rows are filtered): approximate.
    INDEX = "index"


@dataclass
class Plan:
    """The queryset that actually runs, the settings it runs with, and what Python finishes."""

    queryset: models.QuerySet[Any]
    settings: dict[str, Any] = field(default_factory=dict)
    strategy: Strategy | None = None
    # Rows the caller should get if the filters keep enough rows; a shorter answer from an
    # iterative index scan (it gave up after max_scan_tuples) is completed by an exact scan.
    expected: int | None = None
    # Sort by distance and keep [low:high] (rows of a relaxed-order index scan).
    sort_slice: tuple[int, int] | None = None
    # `score` computed in Python from `distance` (the same arithmetic as the SQL).
    score: Callable[[float], float] | None = None
    # The attnames whose vectors were read in binary (see BinaryVector).
    binary: tuple[str, ...] = ()

    def finish(self, rows: list[Any]) -> list[Any]:
        """The fetched model instances made into the answer."""
        for attname in self.binary:
            for row in rows:
                row.__dict__[attname] = row.__dict__.pop(_BINARY + attname)
        if self.sort_slice is not None:
            rows = sorted(rows, key=_distance_of)[slice(*self.sort_slice)]
        if self.score is not None:
            for row in rows:
                row.score = None if row.distance is None else self.score(row.distance)
        return rows


def _distance_of(row: Any) -> tuple[bool, float]:
    return (row.distance is None, row.distance or 0.0)


def plan(
    queryset: models.QuerySet[Any],
    spec: Spec | None,
    *,
    rows: bool = False,
    allow_sql: bool = True,
    force_exact: bool = False,
    estimate: Callable[[models.QuerySet[Any], int | None], tuple[float, float]] | None = None,
) -> Plan:
    """How to run ``queryset`` (which carries ``spec``'s annotations and ordering).

    - ``rows``: the caller fetches model instances itself and calls :meth:`Plan.finish`, so a
      search ranked by distance alone can run as one flat query.
    - ``allow_sql``: False for a subquery, which no setting reaches: filtered searches are exact.
    - ``force_exact``: complete a short answer of an iterative scan.
    - ``estimate(queryset, k)``: ``(rows the filters keep, rows in the table)``;
      :func:`estimate_rows` by default.
    """
    base = queryset._chain()  # type: ignore[attr-defined]
    if spec is None:
        return Plan(base)
    target = spec.target
    conf = get_settings()
    low, high = base.query.low_mark, base.query.high_mark
    base.query.clear_limits()
    filtered = base.query.has_filters()
    if spec.restrict is not None:
        base = base.filter(spec.restrict)
    if spec.exclude_pk is not None:
        base = base.exclude(pk=spec.exclude_pk)
    ordering = tuple(base.query.order_by)
    by_distance = base.query.standard_ordering and ordering[:1] == ("distance",)
    # The k nearest: with similarity order a slice asks the same as k; under another ordering
    # only k does (a slice then cuts the reordered rows).
    limit: int | None = spec.k
    if by_distance and high is not None:
        limit = high if limit is None else min(limit, high)
    if not by_distance and limit is None and spec.max_distance is None:
        # Ranked by something else and no k: nothing to search, only annotations.
        base.query.set_limits(low, high)
        return Plan(base)

    strategy = choose_strategy(
        base, spec, filtered=filtered, limit=limit, allow_sql=allow_sql,
        force_exact=force_exact, estimate=estimate or estimate_rows,
    )  # fmt: skip
    threshold = Q() if spec.max_distance is None else Q(distance__lte=spec.max_distance)
    outer_high = limit if by_distance else high
    settings: dict[str, Any] = {}
    flat = rows and target.direct and _is_flat(base, spec, ordering, by_distance)
    result = Plan(base, strategy=strategy)
    if strategy is Strategy.EXACT:
        if limit is None and spec.max_distance is not None:
            # A threshold without k returns at most MAX_K rows, as the index path does: the
            # size of the answer must not depend on which strategy the planner chose.
            limit = conf["MAX_K"]
            outer_high = limit if by_distance else high
        if (limit is None or flat) and target.direct:
            # One query. The selected distance itself is "+ 0", ordered by its alias: no vector
            # index serves it, and each row's distance is computed once.
            queryset_ = base.filter(threshold) if threshold else base
            if flat:
                queryset_ = queryset_.annotate(
                    distance=Unindexed(target.distance_expression(spec.value, base.db))
                )
                queryset_ = queryset_.order_by(*ordering)
            else:
                queryset_ = queryset_.order_by(*_unindexed_ordering(ordering))
        else:
            # The k nearest by a subquery that computes one distance per filtered row and
            # selects only the pk; the outer query computes distance and score for k rows.
            nearest = target.nearest(
                base, spec.value, limit=limit or conf["MAX_K"], exact=True,
                exclude_pk=spec.exclude_pk,
            )  # fmt: skip
            queryset_ = base.filter(Q(pk__in=nearest) & threshold)
            queryset_ = queryset_.order_by(*_unindexed_ordering(ordering))
    else:
        ef = spec.ef_search or conf["FILTERED_EF_SEARCH" if filtered else "EF_SEARCH"]
        if not filtered and not spec.ef_search:
            # The ef_search `vectorsearch_bench --apply` measured for this index to reach
            # TARGET_RECALL, when it has been calibrated (one cached lookup, no SQL).
            key = target.column or (target.registration.key if target.registration else None)
            ef = calibrated_ef_search(target.model, key, base.db) or ef
        simple = (
            by_distance
            and not filtered
            and spec.max_distance is None
            and limit is not None
            and target.direct
        )
        if simple:
            # Unfiltered: one index scan returns ef_search rows in order, so ef_search >= the
            # rows asked (plus the left-out instance) makes it complete without an iterative scan.
            assert limit is not None
            wanted = limit + (1 if spec.exclude_pk is not None else 0)
            # Under the search's guard, a strict-order iterative scan steps over the few rows it
            # drops (vectors of a previous embedder) and keeps the index's exact order.
            iterative = "strict_order" if spec.restrict is not None else False
            settings = index_settings(target.index_method, max(ef, min(wanted, 1000)), iterative)
            queryset_ = base
        elif flat and spec.max_distance is None and limit is not None:
            # Filtered: the k nearest by an iterative index scan in relaxed order, in one query;
            # Python puts the k rows in exact order.
            settings = index_settings(target.index_method, ef, True)
            queryset_ = base
            result.sort_slice = (low, limit)
            outer_high = limit
        else:
            # The k nearest by an iterative index scan (relaxed order, so it keeps going until
            # k rows pass the filters), then sorted again exactly outside -- pgvector's
            # materialized-CTE pattern, as "pk IN (subquery)" so it stays a queryset. A binary
            # index is walked for `overfetch` times the rows, re-ranked by the full distance.
            inner_limit = limit if limit is not None else conf["MAX_K"]
            if target.quantization == "binary":
                inner_limit *= spec.overfetch or conf["BINARY_OVERFETCH"]
                ef = max(ef, min(inner_limit, 1000))
            nearest = target.nearest(
                base, spec.value, limit=inner_limit, exact=False, exclude_pk=spec.exclude_pk
            )
            settings = index_settings(target.index_method, ef, True)
            queryset_ = base.filter(Q(pk__in=nearest) & threshold)
            queryset_ = queryset_.order_by(*_unindexed_ordering(ordering))
    if settings and base.query.select_for_update:
        # Inside a transaction the settings are undone by rolling back to a savepoint, which
        # would also release the row locks the search took.
        raise InvalidQuery(
            "select_for_update() cannot lock the rows of an index search, whose pgvector "
            "settings are rolled back with a savepoint; pass exact=True, or lock the rows "
            "found in a second query."
        )
    if flat:
        # Score in Python: the database computes no second distance per row, and the query
        # carries one copy of the vector.
        query = queryset_.query
        query.set_annotation_mask(set(query.annotation_select) - {"score"})
        result.score = functools.partial(target.distance.score_of, dimensions=target.size)
        binary = _binary_fields(queryset_)
        if binary:
            result.binary = tuple(f.attname for f in binary)
            # On the plan's own queryset (no clone): what defer() and annotate() would add.
            query.add_deferred_loading([f.name for f in binary])
            for f in binary:
                query.add_annotation(BinaryVector(f), _BINARY + f.attname, select=True)
    queryset_.query.set_limits(0 if result.sort_slice else low, outer_high)
    if (
        strategy is Strategy.INDEX
        and filtered
        and spec.max_distance is None
        and spec.exact is None
        and outer_high
    ):
        result.expected = outer_high - low
    result.queryset, result.settings = queryset_, settings
    return result


def choose_strategy(
    base: models.QuerySet[Any],
    spec: Spec,
    *,
    filtered: bool,
    limit: int | None,
    allow_sql: bool,
    force_exact: bool,
    estimate: Callable[[models.QuerySet[Any], int | None], tuple[float, float]],
) -> Strategy:
    """Exact scan or index scan, for this queryset and search."""
    if force_exact or spec.exact is True or spec.target.index_method is None:
        return Strategy.EXACT
    if spec.exact is False:
        return Strategy.INDEX
    if limit is None and spec.max_distance is None:
        return Strategy.EXACT  # no LIMIT: an index scan would visit every row anyway
    if not filtered:
        return Strategy.INDEX
    if not allow_sql:
        return Strategy.EXACT  # a subquery: no settings reach it, so stay complete
    kept, total = estimate(base, limit)
    return Strategy.EXACT if exact_is_cheaper(kept, total, limit) else Strategy.INDEX


def exact_is_cheaper(kept: float, total: float, k: int | None) -> bool:
    """Whether scanning ``kept`` filtered rows exactly beats an iterative index scan for ``k``
    rows out of ``total`` (see the module's docstring), unless EXACT_SEARCH_MAX_ROWS is set."""
    conf = get_settings()
    if conf["EXACT_SEARCH_MAX_ROWS"] is not None:
        return bool(kept <= conf["EXACT_SEARCH_MAX_ROWS"])
    return kept <= _crossover(max(total, kept), k)


def _crossover(total: float, k: int | None) -> float:
    """The filtered rows below which an exact scan is cheaper than an iterative index scan."""
    return math.sqrt(EXACT_COST_RATIO * (k or get_settings()["MAX_K"]) * total)


def index_settings(
    method: IndexMethod | None, ef_search: int, iterative: bool | str
) -> dict[str, Any]:
    """The pgvector settings of an index scan; ``iterative``: False, True (relaxed order) or
    ``"strict_order"`` (HNSW only; IVFFlat scans in relaxed order)."""
    mode = "off" if not iterative else iterative if isinstance(iterative, str) else "relaxed_order"
    if method is IndexMethod.IVFFLAT:
        return {"ivfflat.iterative_scan": "off" if not iterative else "relaxed_order"}
    settings: dict[str, Any] = {"hnsw.ef_search": ef_search, "hnsw.iterative_scan": mode}
    if iterative:
        settings["hnsw.max_scan_tuples"] = get_settings()["MAX_SCAN_TUPLES"]
    return settings


def _is_flat(
    base: models.QuerySet[Any], spec: Spec, ordering: tuple[Any, ...], by_distance: bool
) -> bool:
    """Model instances ranked by distance alone, with similar_to()'s own annotations only: a
    window, an aggregate or a replaced score must see the rows the SQL form gives it."""
    query = base.query
    annotations = query.annotations
    return (
        base._iterable_class is ModelIterable
        and by_distance
        and ordering == ("distance",)
        and not query.extra_order_by
        and not query.distinct
        and not query.combinator
        and query.group_by is None
        and annotations.keys() == {"distance", "score"}
        and spec.annotations is not None
        and annotations["distance"] is spec.annotations[0]
        and annotations["score"] is spec.annotations[1]
    )


def _binary_fields(queryset: models.QuerySet[Any]) -> list[Any]:
    """The vector/halfvec columns to read in binary: all of the model's, unless the caller chose
    the columns (only()/defer()). pgvector.django's own fields read text only."""
    if queryset.query.deferred_loading != (frozenset(), True):
        return []
    return [
        f
        for f in queryset.model._meta.concrete_fields
        if isinstance(f, VectorField | HalfVectorField)
    ]


def _unindexed_ordering(ordering: tuple[Any, ...]) -> list[Any]:
    """``ordering`` with "distance" hidden from the index, so PostgreSQL sorts exactly."""
    swapped: list[Any] = []
    for item in ordering:
        if item in ("distance", "-distance"):
            exact = F("distance") + Value(0.0)
            swapped.append(exact.desc() if item.startswith("-") else exact.asc())
        else:
            swapped.append(item)
    return swapped


class _Expiring:
    """A dict whose entries expire after ``ttl`` seconds, cleared whole when ``maxsize`` is
    reached (the planner's estimates: the same few filters, asked over and over)."""

    def __init__(self, ttl: float, maxsize: int) -> None:
        self.ttl, self.maxsize = ttl, maxsize
        self.data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        found = self.data.get(key)
        if found is None or time.monotonic() - found[0] >= self.ttl:
            return None
        return found[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self.data) >= self.maxsize:
            self.data.clear()
        self.data[key] = (time.monotonic(), value)


_ESTIMATES = _Expiring(ESTIMATE_TTL, 1024)
# Per filter *shape* (its SQL without the values): the estimates seen for its values, so a
# search whose value changes from request to request can skip the EXPLAIN when every value seen
# lands far on one side of the crossover (SHAPE_MARGIN times), as `category = %s` over 100
# categories of 1,000 rows each does.
_SHAPES = _Expiring(ESTIMATE_TTL, 1024)
_TABLE_ROWS = _Expiring(ESTIMATE_TTL, 256)
#: How far (a factor) every estimate of a filter shape must lie from the crossover, and how many
#: there must be, before a new value of that shape is decided without an EXPLAIN.
SHAPE_MARGIN, SHAPE_SEEN = 4.0, 3


def estimate_rows(queryset: models.QuerySet[Any], k: int | None = None) -> tuple[float, float]:
    """PostgreSQL's estimates of the rows ``queryset``'s filters keep and of the rows of its
    table: one EXPLAIN, no scan, cached for :data:`ESTIMATE_TTL` seconds per filter SQL and
    values -- or none, when other values of the same filter shape were all decisive for ``k``.
    """
    query = queryset.query
    try:
        where_sql, where_params = query.get_compiler(using=queryset.db).compile(query.where)
    except EmptyResultSet:  # e.g. pk__in=[]: no row can match
        return 0.0, 0.0
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
    shape = (queryset.db, query.model, where_sql, joins, query.distinct, k)
    key = (*shape, tuple(where_params))
    try:
        cached = _ESTIMATES.get(key)
    except TypeError:  # an unhashable parameter: estimate every time
        key, cached = None, None  # type: ignore[assignment]
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    seen = _SHAPES.get(shape) or []
    if len(seen) >= SHAPE_SEEN:
        total = seen[0][1]
        crossover = _crossover(total, k)
        low, high = min(kept for kept, _ in seen), max(kept for kept, _ in seen)
        if high * SHAPE_MARGIN < crossover or low > crossover * SHAPE_MARGIN:
            return (low, total) if high < crossover else (high, total)
    estimate = _explain(queryset)
    if key is not None:
        _ESTIMATES.put(key, estimate)
        _SHAPES.put(shape, [*seen[-15:], estimate])
    return estimate


def _explain(queryset: models.QuerySet[Any]) -> tuple[float, float]:
    probe = queryset.order_by().values("pk")
    probe.query.clear_limits()
    sql, params = probe.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        explained = cursor.fetchone()[0]
    parsed = json.loads(explained) if isinstance(explained, str) else explained
    kept = float(parsed[0]["Plan"]["Plan Rows"])
    return kept, max(_table_rows(queryset), kept)


def _table_rows(queryset: models.QuerySet[Any]) -> float:
    """The planner's row count of the queryset's table (pg_class.reltuples), cached."""
    table = queryset.model._meta.db_table
    key = (queryset.db, table)
    rows = _TABLE_ROWS.get(key)
    if rows is None:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(
                "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = to_regclass(%s)", [table]
            )
            found = cursor.fetchone()
        rows = float(found[0]) if found and found[0] is not None else 0.0
        _TABLE_ROWS.put(key, rows)
    return float(rows)
