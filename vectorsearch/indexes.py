"""HNSW and IVFFlat indexes declared by distance, so the index and the queries agree.

``HnswIndex(fields=["embedding"], distance="cosine")`` picks ``vector_cosine_ops``,
``halfvec_cosine_ops``... from the column type when the migration runs. Explicit ``opclasses=``
still works, as in ``pgvector.django``, and indexes declared either way tell the query layer
which distance they serve (:meth:`VectorIndexMixin.distance_for`).
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib.postgres.indexes import OpClass, PostgresIndex
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.ddl_references import Statement
from django.db.models import Model
from django.db.models.expressions import Col
from django.db.models.sql import Query
from pgvector import django as pgvector_django

from .distances import OPCLASS_DISTANCES, Distance, IndexMethod, vector_type_of

__all__ = ["HnswIndex", "IvfflatIndex", "VectorIndexMixin"]

# pgvector's bounds for the index build parameters (pgvector 0.8).
HNSW_M_RANGE = (2, 100)
HNSW_EF_CONSTRUCTION_RANGE = (4, 1000)
IVFFLAT_LISTS_RANGE = (1, 32768)


def _check_range(name: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is None:
        return
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}.")


class VectorIndexMixin:
    """What HNSW and IVFFlat share: a ``distance`` that chooses the operator classes."""

    method: IndexMethod
    distance: Distance | None
    fields: list[str]
    expressions: tuple[Any, ...]
    opclasses: tuple[str, ...]

    def _init_distance(self, distance: Distance | str | None, kwargs: dict[str, Any]) -> None:
        if distance is not None and kwargs.get("opclasses"):
            raise ValueError(
                "Pass either distance= or opclasses= to a vector index, not both: the distance "
                "chooses the operator class."
            )
        self.distance = None if distance is None else Distance.parse(distance)

    def _deconstruct_distance(self, kwargs: dict[str, Any]) -> None:
        if self.distance is not None:
            kwargs["distance"] = self.distance.value

    def distance_for(self, model: type[Model]) -> Distance | None:
        """The distance this index serves, from ``distance=`` or its operator class."""
        distance: Distance | None = getattr(self, "distance", None)
        if distance is not None:
            return distance
        for opclass in self.opclasses:
            if opclass in OPCLASS_DISTANCES:
                return OPCLASS_DISTANCES[opclass]
        for expression in self.expressions:
            if isinstance(expression, OpClass):
                name = expression.template % {"name": expression.name, "expressions": ""}
                for opclass, distance in OPCLASS_DISTANCES.items():
                    if name.strip().endswith(opclass):
                        return distance
        return None

    def _with_opclasses(self, model: type[Model]) -> Any:
        """A copy of this index whose operator classes are chosen from the column types."""
        if self.distance is None:
            return self
        index = copy.copy(self)
        if self.fields:
            types = [vector_type_of(model._meta.get_field(name)) for name, _ in index.fields_orders]  # type: ignore[attr-defined]
            index.opclasses = tuple(
                self.distance.opclass(vtype or "vector", self.method) for vtype in types
            )
        else:
            wrapped = []
            query = Query(model, alias_cols=False)
            for expression in self.expressions:
                field = expression.resolve_expression(query).output_field
                opclass = self.distance.opclass(vector_type_of(field) or "vector", self.method)
                wrapped.append(OpClass(expression, name=opclass))
            index.expressions = tuple(wrapped)
        return index


class HnswIndex(VectorIndexMixin, pgvector_django.HnswIndex):  # type: ignore[misc]
    """An HNSW index: ``HnswIndex(fields=["embedding"], distance="cosine", m=16, ef_construction=64)``.

    ``m`` (2-100) and ``ef_construction`` (4-1000, at least ``2 * m``) default to pgvector's 16 and
    64 when omitted.
    """

    method = IndexMethod.HNSW

    def __init__(
        self,
        *expressions: Any,
        distance: Distance | str | None = None,
        m: int | None = None,
        ef_construction: int | None = None,
        **kwargs: Any,
    ) -> None:
        _check_range("m", m, HNSW_M_RANGE)
        _check_range("ef_construction", ef_construction, HNSW_EF_CONSTRUCTION_RANGE)
        if ef_construction is not None and ef_construction < 2 * (m or 16):
            raise ValueError(
                f"ef_construction must be at least twice m ({2 * (m or 16)}), not {ef_construction}."
            )
        self._init_distance(distance, kwargs)
        super().__init__(*expressions, m=m, ef_construction=ef_construction, **kwargs)

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        self._deconstruct_distance(kwargs)
        return path, args, kwargs

    def create_sql(
        self, model: type[Model], schema_editor: BaseDatabaseSchemaEditor, using: str = "", **kwargs: Any
    ) -> Statement:
        index = self._with_opclasses(model)
        return super(HnswIndex, index).create_sql(model, schema_editor, using=using, **kwargs)  # type: ignore[no-any-return]


class IvfflatIndex(VectorIndexMixin, pgvector_django.IvfflatIndex):  # type: ignore[misc]
    """An IVFFlat index: ``IvfflatIndex(fields=["embedding"], distance="l2", lists=100)``.

    Build it after the table has data: its lists are computed from the rows present.
    """

    method = IndexMethod.IVFFLAT

    def __init__(
        self,
        *expressions: Any,
        distance: Distance | str | None = None,
        lists: int | None = None,
        **kwargs: Any,
    ) -> None:
        _check_range("lists", lists, IVFFLAT_LISTS_RANGE)
        self._init_distance(distance, kwargs)
        super().__init__(*expressions, lists=lists, **kwargs)

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        self._deconstruct_distance(kwargs)
        return path, args, kwargs

    def create_sql(
        self, model: type[Model], schema_editor: BaseDatabaseSchemaEditor, using: str = "", **kwargs: Any
    ) -> Statement:
        index = self._with_opclasses(model)
        return super(IvfflatIndex, index).create_sql(model, schema_editor, using=using, **kwargs)  # type: ignore[no-any-return]


def vector_indexes(model: type[Model]) -> list[Any]:
    """The model's HNSW/IVFFlat indexes (this app's and ``pgvector.django``'s)."""
    return [
        index
        for index in model._meta.indexes
        if isinstance(index, pgvector_django.HnswIndex | pgvector_django.IvfflatIndex)
    ]


def index_method(index: Any) -> IndexMethod:
    return IndexMethod.HNSW if isinstance(index, pgvector_django.HnswIndex) else IndexMethod.IVFFLAT


def index_distance(index: Any, model: type[Model]) -> Distance | None:
    """The distance ``index`` serves, whichever library declared it."""
    if isinstance(index, VectorIndexMixin):
        return index.distance_for(model)
    return VectorIndexMixin.distance_for(index, model)  # type: ignore[arg-type]


def index_field_names(index: Any, model: type[Model]) -> list[str]:
    """The model fields an index covers: its ``fields``, or the columns its expressions name."""
    if index.fields:
        return [name.lstrip("-") for name in index.fields]
    names: list[str] = []
    query = Query(model, alias_cols=False)
    for expression in index.expressions:
        names.extend(_referenced_fields(expression.resolve_expression(query)))
    return names


def _referenced_fields(expression: Any) -> list[str]:
    found: list[str] = []
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, Col):
            found.append(node.target.name)
        stack.extend(node.get_source_expressions() if hasattr(node, "get_source_expressions") else [])
    return found
