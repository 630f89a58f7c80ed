"""``VectorQuerySet``: ``similar_to()`` records a :class:`~.spec.Spec`; evaluation asks the planner.

As thin as Django's own queryset extensions: the search is kept on the queryset (carried by
``_clone``), its ``distance`` and ``score`` annotations and ordering are ordinary ones, so
``filter``, ``exclude``, joins, ``values``, slicing and pagination compose with it; when the
queryset runs (``_fetch_all``, ``count``, ``exists``, ``aggregate``, ``iterator``, ``explain``,
async iteration, as a subquery), :func:`~.planner.plan` chooses how, and the settings it needs
are applied transaction-locally around that one statement (:mod:`vectorsearch.db`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Self, TypeVar

from asgiref.sync import sync_to_async
from django.db import models
from django.db.models.sql import Query

from ..db import apply_settings
from ..distances import Distance
from ..exceptions import InvalidQuery
from ..replicas import bind_to_primary, primary_of, replicas_of, with_fallback
from . import hybrid, mmr
from .planner import Plan, plan
from .spec import Spec, make_spec
from .targets import resolve_target

__all__ = ["VectorManager", "VectorQuerySet"]

_M = TypeVar("_M", bound=models.Model)
_T = TypeVar("_T")


class VectorQuerySet(models.QuerySet[_M]):
    """A queryset that can rank rows by vector similarity (:meth:`similar_to`)."""

    def __init__(
        self,
        model: type[_M] | None = None,
        query: Query | None = None,
        using: str | None = None,
        hints: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, query, using, hints)
        self._search_spec: Spec | None = None
        # Settings pinned by hybrid_search() for its single statement.
        self._search_settings: dict[str, Any] = {}

    if TYPE_CHECKING:  # Django's private queryset API, which django-stubs leaves out.
        _db: str | None
        _fields: tuple[str, ...] | None
        _prefetch_related_lookups: tuple[Any, ...]
        _prefetch_done: bool

        def _chain(self) -> Self: ...
        def _prefetch_related_objects(self) -> None: ...
        def _iterator(self, use_chunked_fetch: bool, chunk_size: int | None) -> Iterator[Any]: ...
        def _not_support_combined_queries(self, operation_name: str) -> None: ...

    def _clone(self) -> Self:
        clone: Self = super()._clone()  # type: ignore[misc]
        clone._search_spec = self._search_spec
        clone._search_settings = self._search_settings
        return clone

    @property
    def searching(self) -> bool:
        """Whether this queryset ranks by similarity (similar_to() or hybrid_search())."""
        return self._search_spec is not None or bool(self._search_settings)

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
        embedder: str | None = None,
        overfetch: int | None = None,
        only_current: bool | None = None,
    ) -> Self:
        """Rows ordered by similarity to ``query``, nearest first.

        ``query`` is a vector (list, numpy array, pgvector ``Vector``...), a text (embedded by
        the registry's embedder) or a model instance ("more like this": its stored vector, and
        the instance itself left out). Each row gets two annotations: ``distance`` (pgvector's,
        smaller is nearer) and ``score`` (higher is more similar; see :meth:`Distance.score`).

        - ``field`` defaults to the model's only vector field; a model without one searches
          its registration in the generic Embedding table (``embedder`` picks one of several).
        - ``distance`` defaults to the one the vector index serves, else the registration's.
        - ``k``: at most the k nearest rows (1 to ``VECTORSEARCH["MAX_K"]``); a slice such as
          ``[:10]`` does the same.
        - ``threshold``: only rows whose ``score`` is at least this.
        - ``exact``: True scans the filtered rows exactly, False walks the vector index (with
          an iterative scan under filters); None (default) lets the planner choose per query.
        - ``ef_search``: HNSW's candidate list size for this query (1 to 1000; default
          ``VECTORSEARCH["EF_SEARCH"]``).
        - ``overfetch``: over a binary-quantized index (``HnswIndex(quantization="binary")``),
          how many rows per row asked the Hamming search finds before they are re-ranked by
          ``distance`` (1 to 100; default ``VECTORSEARCH["BINARY_OVERFETCH"]``).
        - ``only_current``: keep to rows whose vector the registered embedder made (vectors of
          a previous embedder, until the backfill replaces them, lie in another space); default:
          for a text query. ``vectorsearch.search()`` always asks it.

        Raises :class:`~vectorsearch.exceptions.InvalidQuery` before any SQL runs when the
        vector, field, distance or an option is wrong.
        """
        if self.searching:
            raise InvalidQuery(
                "This queryset is already ranked by similar_to(); call it once per queryset."
            )
        self._not_support_combined_queries("similar_to")
        if self.query.is_sliced:
            raise TypeError("Cannot rank a query by similarity once a slice has been taken.")
        target = resolve_target(self.model, field, distance, embedder)
        spec = make_spec(
            target,
            self.model,
            query,
            k=k,
            threshold=threshold,
            exact=exact,
            ef_search=ef_search,
            overfetch=overfetch,
        )
        clone = self._chain()
        if only_current is None:
            only_current = isinstance(query, str) and target.vector_type != "bit"
        if only_current and target.column is not None and target.registration is not None:
            # Not a filter of the caller's: the planner applies it without counting it as one.
            spec = dataclasses.replace(spec, restrict=target.has_vector(self.db))
        search = clone.query
        search.add_annotation(target.distance_expression(spec.value, self.db), "distance")
        search.add_annotation(target.distance.score("distance", dimensions=target.size), "score")
        search.clear_ordering(force=True, clear_default=False)
        search.add_ordering("distance")
        clone._search_spec = dataclasses.replace(
            spec, annotations=(search.annotations["distance"], search.annotations["score"])
        )
        return clone

    def hybrid_search(self, text: str, vector: Any = None, **options: Any) -> Self:
        """Full-text and vector search fused in one SQL query; see :func:`.hybrid.hybrid_search`."""
        return hybrid.hybrid_search(self, text, vector, **options)

    def mmr(self, query: Any, **options: Any) -> list[_M]:
        """``k`` rows similar to ``query`` and different from each other; see :func:`.mmr.mmr`."""
        return mmr.mmr(self, query, **options)

    async def ammr(self, query: Any, **options: Any) -> list[_M]:
        """:meth:`mmr` for async code."""
        return await sync_to_async(self.mmr)(query, **options)

    # -- running ---------------------------------------------------------------------------------

    def plan(
        self, *, rows: bool = False, allow_sql: bool = True, force_exact: bool = False
    ) -> Plan:
        """The planner's :class:`~.planner.Plan` for this queryset as it stands."""
        base = self._chain()
        base._search_spec, base._search_settings = None, {}
        planned = plan(
            base, self._search_spec, rows=rows, allow_sql=allow_sql, force_exact=force_exact
        )
        if self._search_settings:
            planned.settings = {**self._search_settings, **planned.settings}
        return planned

    def _fetch_all(self) -> None:
        if self._result_cache is not None or not self.searching:
            super()._fetch_all()
            return
        planned = self.plan(rows=True)
        results = _rows(planned, routed=self._db is None)
        if planned.expected is not None and len(results) < planned.expected:
            # The iterative scan hit max_scan_tuples before finding enough rows that pass the
            # filters; an exact scan of the filtered rows is complete.
            exact = self.plan(rows=True, force_exact=True)
            results = _rows(exact, routed=self._db is None)
        self._result_cache = results
        if self._prefetch_related_lookups and not self._prefetch_done:
            self._prefetch_related_objects()

    def _found_rows(self) -> models.QuerySet[_M]:
        """The rows this search finds, as a plain queryset of their primary keys."""
        pks = list(self.values_list("pk", flat=True))
        return self.model._base_manager.using(self.db).filter(pk__in=pks)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows the search finds (the k nearest), not every row of the filters."""
        if not self.searching:
            return super().delete()
        return self._found_rows().delete()

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def update(self, **kwargs: Any) -> int:
        """Update the rows the search finds (the k nearest), not every row of the filters."""
        if not self.searching:
            return super().update(**kwargs)
        return self._found_rows().update(**kwargs)

    update.alters_data = True  # type: ignore[attr-defined]

    def count(self) -> int:
        if self._result_cache is not None or not self.searching:
            return super().count()
        return _run(self.plan(), _count, routed=self._db is None)

    def exists(self) -> bool:
        if self._result_cache is not None or not self.searching:
            return super().exists()
        return _run(self.plan(), _exists, routed=self._db is None)

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not self.searching:
            return super().aggregate(*args, **kwargs)
        planned = self.plan()
        with apply_settings(planned.queryset.db, planned.settings):
            return planned.queryset.aggregate(*args, **kwargs)

    def explain(self, *, format: str | None = None, **options: Any) -> str:
        """EXPLAIN the query as it would run: the chosen strategy, with its settings applied."""
        if not self.searching:
            return super().explain(format=format, **options)
        planned = self.plan(rows=True)
        with apply_settings(planned.queryset.db, planned.settings):
            return planned.queryset.explain(format=format, **options)

    def iterator(self, chunk_size: int | None = None) -> Iterator[Any]:
        if not self.searching:
            return super().iterator(chunk_size)
        # No server-side cursor: its rows are read after the statement that set the settings.
        return self._iterate(self.plan(), chunk_size)

    def _iterate(self, planned: Plan, chunk_size: int | None) -> Iterator[Any]:
        if chunk_size is None and self._prefetch_related_lookups:
            raise ValueError(
                "chunk_size must be provided when using QuerySet.iterator() after "
                "prefetch_related()."
            )
        with apply_settings(planned.queryset.db, planned.settings):
            yield from planned.queryset._iterator(False, chunk_size or 2000)  # type: ignore[attr-defined]

    async def aiterator(self, chunk_size: int = 2000) -> AsyncIterator[Any]:
        if not self.searching:
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
        if not self.searching:
            return super().resolve_expression(*args, **kwargs)
        return self.plan(allow_sql=False).queryset.resolve_expression(*args, **kwargs)

    resolve_expression.queryset_only = True  # type: ignore[attr-defined]


def _run(planned: Plan, fetch: Callable[[models.QuerySet[Any]], _T], *, routed: bool) -> _T:
    """``fetch(queryset)`` of a plan, with its settings, on the alias that serves it: a read
    replica (``SEARCH_REPLICAS``) for a search without an explicit ``using()``, falling back to
    the primary when the replica fails (:mod:`vectorsearch.replicas`)."""
    queryset = planned.queryset

    def run(alias: str) -> _T:
        on_alias = queryset if alias == queryset.db else queryset.using(alias)
        with apply_settings(alias, planned.settings):
            return fetch(on_alias)

    # A router may have picked a replica already: its primary is the one with the fallbacks.
    if not routed or not replicas_of(primary_of(queryset.db) or queryset.db):
        return run(queryset.db)
    return with_fallback(queryset.model, run, queryset.db)


def _rows(planned: Plan, *, routed: bool) -> list[Any]:
    """Fetch a plan's model instances with its settings, and finish them in Python."""
    planned.queryset._prefetch_related_lookups = ()  # type: ignore[attr-defined]  # at the end
    fetched = _run(planned, _fetch_rows, routed=routed)
    rows = planned.finish(fetched)
    first = fetched[0] if fetched else None
    if isinstance(first, models.Model) and first._state.db != planned.queryset.db:
        bind_to_primary(rows, first._state.db or "")  # saving one must not go to a standby
    return rows


def _fetch_rows(queryset: models.QuerySet[Any]) -> list[Any]:
    return list(queryset)


def _count(queryset: models.QuerySet[Any]) -> int:
    return queryset.count()


def _exists(queryset: models.QuerySet[Any]) -> bool:
    return queryset.exists()


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
