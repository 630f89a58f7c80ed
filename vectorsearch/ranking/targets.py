"""Where a search's vectors live: a model's own column, or the generic ``Embedding`` table.

Both are a :class:`Target`: the planner asks it for the distance of a row, for the pks of the
nearest rows, and for the stored vector of an instance, and plans them the same way. A target is
resolved once per (model, field, distance, declared indexes) and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Exists, OuterRef, Q, Subquery
from django.db.models.functions import Cast

from ..distances import Distance, IndexMethod, vector_type_of
from ..exceptions import InvalidQuery, NotRegistered
from ..fields import HalfVectorField
from ..indexes import (
    index_distance,
    index_method,
    quantization_of,
    quantized_expression,
    served_distances,
    serves_column,
    vector_indexes,
)
from ..registry import Registration, registry
from .expressions import QueryVector, Unindexed

__all__ = ["Target", "resolve_target", "target_for_registration", "vector_fields"]

_TEXT = models.TextField()


def vector_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """The model's concrete vector fields, in declaration order."""
    return [f for f in model._meta.concrete_fields if vector_type_of(f) is not None]


@dataclass(frozen=True, eq=False)
class Target:
    """A model's vectors as a search sees them.

    ``field`` checks query vectors (the model's column, or the sized type of the generic table);
    ``column`` is the model field name for a column target, None for the generic table.
    """

    model: type[models.Model]
    field: models.Field[Any, Any]
    column: str | None
    distance: Distance
    index_method: IndexMethod | None
    registration: Registration | None
    # The quantization of the vector index a search walks ("halfvec", "binary"), if any.
    quantization: str | None = None

    @property
    def vector_type(self) -> str:
        return vector_type_of(self.field) or "vector"

    @property
    def size(self) -> int | None:
        """The bit length behind a Hamming score, else None."""
        return getattr(self.field, "length", None) if self.distance is Distance.HAMMING else None

    @property
    def direct(self) -> bool:
        """Whether ``ORDER BY distance`` on the model's table walks the vector index (not the
        generic table, not a binary index whose Hamming order is re-ranked)."""
        return self.column is not None and self.quantization != "binary"

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.column or '@' + self.registration.embedder_alias}"  # type: ignore[union-attr]

    # -- SQL ------------------------------------------------------------------------------------

    def distance_expression(self, value: Any, using: str) -> Any:
        """The distance of each row of the model to ``value``."""
        if self.quantization == "halfvec":
            # The same cast as the index: it only serves queries that say it (pgvector#522).
            return self.distance.expression(
                quantized_expression(self.field, "halfvec"), _as_halfvec(self.field, value)
            )
        if self.column is not None:
            return self.distance.expression(self.column, value)
        rows = self._rows(using).filter(object_id=Cast(OuterRef("pk"), output_field=_TEXT))
        return Subquery(
            rows.annotate(_vs_distance=self._vector_distance(value)).values("_vs_distance")[:1]
        )

    def comparable(self, using: str) -> Q:
        """Rows whose stored vector the registered embedder made (a column target: another
        embedder's vectors, before the backfill replaces them, lie in another space)."""
        if self.column is None or self.registration is None:
            return Q()
        return ~Q(Exists(self.registration.foreign_vectors(using)))

    def has_vector(self, using: str) -> Q:
        """Rows with a vector a search may compare: one the registered embedder made (a text
        search's other list, e.g. hybrid's full text, keeps to the same rows)."""
        if self.column is None:
            rows = self._rows(using).filter(object_id=Cast(OuterRef("pk"), output_field=_TEXT))
            return Q(Exists(rows))
        return Q(**{f"{self.column}__isnull": False}) & self.comparable(using)

    def nearest(
        self,
        queryset: models.QuerySet[Any],
        value: Any,
        *,
        limit: int,
        exact: bool,
        exclude_pk: Any = None,
    ) -> models.QuerySet[Any]:
        """The pks of the ``limit`` rows of ``queryset`` nearest ``value``, as a subquery.

        ``exact`` orders by a distance no index serves; otherwise the vector index (walked by an
        iterative scan when the caller's settings say so) finds them.
        """
        if self.column is not None:
            if self.quantization == "binary" and not exact:
                # The Hamming order of the binary index; the caller re-ranks by `distance`.
                stored = quantized_expression(self.field, "binary")
                query = quantized_expression(self.field, "binary", value=value)
                distance = Distance.HAMMING.expression(stored, query)
            else:
                distance = self.distance_expression(value, queryset.db)
            inner = queryset.order_by().values("pk")
            ordering = Unindexed(distance) if exact else distance
            inner = inner.order_by(ordering.asc())
            inner.query.clear_limits()
            return inner[:limit]
        assert self.registration is not None
        using = queryset.db
        rows = self._rows(using)
        query = queryset.query
        if query.where or query.distinct or query.combinator:
            allowed = queryset.order_by().annotate(_vs_id=Cast("pk", output_field=_TEXT))
            rows = rows.filter(object_id__in=allowed.values("_vs_id"))
        # Else every object is allowed: a semi-join with the whole table would make PostgreSQL
        # rank every vector exactly instead of walking the HNSW index. The outer pk__in still
        # drops an orphan vector's row.
        if exclude_pk is not None:
            rows = rows.exclude(object_id=str(exclude_pk))
        distance = self._vector_distance(value)
        pk_field = self.model._meta.pk
        assert pk_field is not None
        nearest: models.QuerySet[Any] = (
            rows.annotate(_vs_distance=Unindexed(distance) if exact else distance)
            .order_by("_vs_distance")
            .annotate(_vs_pk=Cast("object_id", output_field=pk_field))
            .values("_vs_pk")[:limit]
        )
        return nearest

    def read_vector(self, instance: models.Model) -> Any:
        """``instance``'s stored vector (None when it has none), for "more like this"."""
        if self.column is not None:
            attname = self.field.attname
            if attname in instance.get_deferred_fields():
                instance.refresh_from_db(fields=[attname])
            return getattr(instance, attname)
        row = (
            self._rows(instance._state.db or "default")
            .filter(object_id=str(instance.pk))
            .values_list("vector", flat=True)
            .first()
        )
        return row

    def embedder(self) -> Callable[[str], Any] | None:
        """The function embedding a text query, or None when no embedder is registered."""
        if self.registration is None:
            return None
        return self.registration.embedder.embed_one

    def _rows(self, using: str) -> models.QuerySet[Any]:
        assert self.registration is not None
        return self.registration.embedding_rows(using, current=True)

    def _vector_distance(self, value: Any) -> Any:
        assert self.registration is not None
        return self.distance.expression(self.registration.vector_expression(), value)


def _index_owners(model: type[models.Model]) -> tuple[type[models.Model], ...]:
    """The models whose ``Meta.indexes`` may index ``model``'s columns: itself, the model a
    proxy stands for, and multi-table parents."""
    owners = [model, model._meta.concrete_model or model, *model._meta.get_parent_list()]
    return tuple(dict.fromkeys(owners))


def resolve_target(
    model: type[models.Model],
    field: str | None,
    distance: Distance | str | None,
    embedder: str | None = None,
) -> Target:
    """The target of ``similar_to(field=..., distance=...)`` on ``model``; InvalidQuery when wrong.

    A model with no vector field of its own searches its generic registration (the Embedding
    table). Cached per model, arguments and the identity of the declared indexes (a test may
    change ``Meta.indexes``).
    """
    indexes = tuple(id(index) for owner in _index_owners(model) for index in owner._meta.indexes)
    if embedder is not None:
        try:
            registration = registry.get(model, vector_field=field, embedder=embedder)
        except NotRegistered as e:
            raise InvalidQuery(str(e)) from None
        if registration.vector_field is None:
            return target_for_registration(registration, distance)
        field = registration.vector_field
    registered = tuple(id(r) for r in registry.for_model(model))
    try:
        return _resolve(model, field, distance, indexes, registered)
    except TypeError:  # an unhashable argument: resolve without the cache, which reports it
        return _resolve.__wrapped__(model, field, distance, indexes, registered)


@functools.lru_cache(maxsize=1024)
def _resolve(
    model: type[models.Model],
    field: str | None,
    distance: Distance | str | None,
    indexes: tuple[int, ...],
    registered: tuple[int, ...],
) -> Target:
    if field is None and not vector_fields(model) and registered:
        try:
            generic = registry.get(model)
        except NotRegistered as e:
            raise InvalidQuery(str(e)) from None
        return target_for_registration(generic, distance)
    model_field = _resolve_field(model, field)
    chosen = _resolve_distance(model, model_field, distance)
    taken = {"distance", "score"} & {f.name for f in model._meta.get_fields()}
    if taken:
        raise InvalidQuery(
            f"{model._meta.label} has a field named {' and '.join(sorted(taken))}, "
            "which similar_to()'s annotations of the same name would shadow; rank with "
            f".annotate(d={chosen.function.__name__}({model_field.name!r}, vector))"
            ".order_by('d') instead."
        )
    try:
        registration: Registration | None = registry.get(model, vector_field=model_field.name)
    except NotRegistered:
        registration = None
    method, quantization = _index_for(model_field.model, model_field.name, chosen)
    return Target(
        model=model,
        field=model_field,
        column=model_field.name,
        distance=chosen,
        index_method=method,
        registration=registration,
        quantization=quantization,
    )


def target_for_registration(
    registration: Registration, distance: Distance | str | None = None
) -> Target:
    """The target of a registration: its model's column, or its rows of the Embedding table."""
    if registration.vector_field is not None:
        return resolve_target(registration.model, registration.vector_field, distance)
    chosen = registration.query_distance() if distance is None else _parse(distance)
    return Target(
        model=registration.model,
        field=registration.cast_field(),
        column=None,
        distance=chosen,
        # vectorsearch_index builds an HNSW index per (model, embedder) on the generic table.
        index_method=IndexMethod.HNSW,
        registration=registration,
    )


def _parse(distance: Distance | str) -> Distance:
    try:
        return Distance.parse(distance)
    except ValueError as e:
        raise InvalidQuery(str(e)) from None


def _resolve_field(model: type[models.Model], name: str | None) -> models.Field[Any, Any]:
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


def _resolve_distance(
    model: type[models.Model], field: models.Field[Any, Any], distance: Distance | str | None
) -> Distance:
    """``distance``; else the one distance the field's vector indexes serve; else the distance
    its registration (its embedder) declares."""
    vtype = vector_type_of(field)
    assert vtype is not None
    allowed = ", ".join(d.value for d in Distance if vtype in d.vector_types)
    if distance is not None:
        chosen = _parse(distance)
        if vtype not in chosen.vector_types:
            raise InvalidQuery(
                f"The {chosen} distance is not defined for {vtype} field {field.name!r}; "
                f"choose one of: {allowed}."
            )
        return chosen
    indexed = served_distances(field.model, field.name)
    if len(indexed) == 1:
        return next(iter(indexed))
    if not indexed:
        try:
            return registry.get(model, vector_field=field.name).query_distance()
        except NotRegistered:
            pass
    reason = (
        "no vector index declares one"
        if not indexed
        else f"its indexes serve several ({', '.join(sorted(str(d) for d in indexed))})"
    )
    raise InvalidQuery(
        f"Pass distance= for {model._meta.label}.{field.name}: {reason}. Choose one of: {allowed}."
    )


def _index_for(
    model: type[models.Model], field_name: str, distance: Distance
) -> tuple[IndexMethod | None, str | None]:
    """(method, quantization) of the index a search by ``distance`` on ``field_name`` walks:
    HNSW before IVFFlat, full precision before halfvec before binary."""
    found = [
        (index_method(index), quantization_of(index))
        for index in vector_indexes(model)
        if serves_column(index, field_name) and index_distance(index, model) is distance
    ]
    rank = {None: 0, "halfvec": 1, "binary": 2}
    found.sort(key=lambda f: (f[0] is not IndexMethod.HNSW, rank.get(f[1], 3)))
    return found[0] if found else (None, None)


def _as_halfvec(field: models.Field[Any, Any], value: Any) -> Any:
    """The query vector as a halfvec, for the distance a halfvec index serves."""
    if isinstance(value, QueryVector):
        return QueryVector(value.literal, "halfvec")
    return Cast(value, HalfVectorField(dimensions=getattr(field, "dimensions", None)))
