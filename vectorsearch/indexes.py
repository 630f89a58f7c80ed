"""HNSW and IVFFlat indexes declared by distance, so the index and the queries agree.

``HnswIndex(fields=["embedding"], distance="cosine")`` picks ``vector_cosine_ops``,
``halfvec_cosine_ops``... from the column type when the migration runs. Explicit ``opclasses=``
still works, as in ``pgvector.django``, and indexes declared either way tell the query layer
which distance they serve (:meth:`VectorIndexMixin.distance_for`).
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib.postgres.indexes import OpClass
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.ddl_references import Statement
from django.db.models import F, Func, Model
from django.db.models.expressions import Col
from django.db.models.functions import Cast
from django.db.models.sql import Query
from pgvector import django as pgvector_django

from .distances import OPCLASS_DISTANCES, Distance, IndexMethod, vector_type_of
from .fields import BitField, HalfVectorField

__all__ = ["QUANTIZATIONS", "HnswIndex", "IvfflatIndex", "VectorIndexMixin", "quantized_expression"]

#: ``HnswIndex(quantization=...)``: what a full-precision column can be indexed as, and the
#: distances each serves (binary: a Hamming search, re-ranked by the full-precision distance).
QUANTIZATIONS: dict[str, tuple[Distance, ...]] = {
    "halfvec": (Distance.COSINE, Distance.L2, Distance.INNER_PRODUCT, Distance.L1),
    "binary": (Distance.COSINE, Distance.L2, Distance.INNER_PRODUCT),
}
#: The column types a quantized index can be declared on.
QUANTIZABLE_TYPES = ("vector", "halfvec")

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
    # Set by django's Index, which the concrete classes also inherit from.
    fields: Any
    fields_orders: Any
    expressions: Any
    opclasses: Any

    def _init_distance(self, distance: Distance | str | None, kwargs: dict[str, Any]) -> None:
        if distance is not None and kwargs.get("opclasses"):
            raise ValueError(
                "Pass either distance= or opclasses= to a vector index, not both: the distance "
                "chooses the operator class."
            )
        self.distance = None if distance is None else Distance.parse(distance)

    def __eq__(self, other: object) -> bool:
        # An index declared with pgvector.django's class of the same method and arguments is the
        # same index: switching the import must not make makemigrations drop and rebuild it.
        if isinstance(other, pgvector_django.HnswIndex | pgvector_django.IvfflatIndex):
            return (
                index_method(other) is self.method
                and self.deconstruct()[1:] == other.deconstruct()[1:]
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like django's Index: mutable, compared by value

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        if self.distance is not None:
            kwargs["distance"] = self.distance.value
        if getattr(self, "quantization", None) is not None:
            kwargs["quantization"] = self.quantization  # type: ignore[attr-defined]
        return path, args, kwargs

    def create_sql(
        self,
        model: type[Model],
        schema_editor: BaseDatabaseSchemaEditor,
        using: str = "",
        **kwargs: Any,
    ) -> Statement:
        index = self._with_opclasses(model)
        return super(VectorIndexMixin, index).create_sql(  # type: ignore[misc, no-any-return]
            model, schema_editor, using=using, **kwargs
        )

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
                name = expression.extra.get("name")
                if name in OPCLASS_DISTANCES:
                    return OPCLASS_DISTANCES[name]
        return None

    def _with_opclasses(self, model: type[Model]) -> Any:
        """A copy of this index whose operator classes are chosen from the column types."""
        if self.distance is None:
            return self
        index = copy.copy(self)
        quantization = getattr(self, "quantization", None)
        if quantization is not None:
            field = model._meta.get_field(self.fields[0].lstrip("-"))
            expression = quantized_expression(field, quantization)
            vtype = "bit" if quantization == "binary" else "halfvec"
            distance = Distance.HAMMING if quantization == "binary" else self.distance
            index.fields, index.fields_orders, index.opclasses = [], [], ()
            index.expressions = (OpClass(expression, name=distance.opclass(vtype, self.method)),)
        elif self.fields:
            types = [
                vector_type_of(model._meta.get_field(name))  # type: ignore[arg-type]
                for name, _ in index.fields_orders
            ]
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


class HnswIndex(VectorIndexMixin, pgvector_django.HnswIndex):
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
        quantization: str | None = None,
        **kwargs: Any,
    ) -> None:
        if quantization is not None:
            if quantization not in QUANTIZATIONS:
                raise ValueError(
                    f"quantization must be one of {', '.join(map(repr, QUANTIZATIONS))} or None, "
                    f"not {quantization!r}."
                )
            if expressions or len(kwargs.get("fields") or ()) != 1 or distance is None:
                raise ValueError(
                    "quantization= takes fields=[one vector field] and distance=, e.g. "
                    f'HnswIndex(fields=["embedding"], distance="cosine", '
                    f"quantization={quantization!r})."
                )
        self.quantization = quantization
        _check_range("m", m, HNSW_M_RANGE)
        _check_range("ef_construction", ef_construction, HNSW_EF_CONSTRUCTION_RANGE)
        if ef_construction is not None and ef_construction < 2 * (m or 16):
            raise ValueError(
                f"ef_construction must be at least twice m ({2 * (m or 16)}), not {ef_construction}."
            )
        self._init_distance(distance, kwargs)
        super().__init__(*expressions, m=m, ef_construction=ef_construction, **kwargs)


class IvfflatIndex(VectorIndexMixin, pgvector_django.IvfflatIndex):
    """An IVFFlat index: ``IvfflatIndex(fields=["embedding"], distance="l2", lists=100)``.

    Build it after the table has data: its list centres are sampled from the rows present when
    it is built, so an index built on an empty table serves searches poorly.
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


class BinaryQuantize(Func):
    """pgvector's ``binary_quantize(vector)``: one bit per dimension, set where it is > 0."""

    function = "binary_quantize"


def quantized_expression(field: Any, quantization: str, value: Any = None) -> Any:
    """``field`` (or ``value``, a query vector) as a quantized index stores it:
    ``embedding::halfvec(n)`` or ``binary_quantize(embedding)::bit(n)``."""
    size = getattr(field, "dimensions", None)
    source = F(field.name) if value is None else value
    if quantization == "halfvec":
        return Cast(source, HalfVectorField(dimensions=size))
    return Cast(BinaryQuantize(source, output_field=BitField(length=size)), BitField(length=size))


def quantization_of(index: Any) -> str | None:
    """The quantization of a vector index, or None for a full-precision one."""
    return getattr(index, "quantization", None)


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
    return VectorIndexMixin.distance_for(index, model)


def served_distances(model: type[Model], field_name: str) -> set[Distance]:
    """The distances the plain vector indexes of ``model.field_name`` serve (the table's own
    ``Meta.indexes``: pass the model that declares the column)."""
    found = {
        index_distance(index, model)
        for index in vector_indexes(model)
        if serves_column(index, field_name)
    }
    return {d for d in found if d is not None}


def serves_column(index: Any, field_name: str) -> bool:
    """Whether ``ORDER BY field <op> query`` can use ``index``: a plain index on that one field.

    An expression index (``Cast(...)``) or a partial one (``condition=``) answers other queries.
    """
    return [name.lstrip("-") for name in index.fields] == [field_name] and index.condition is None


def index_field_names(index: Any, model: type[Model]) -> list[str]:
    """The model fields an index covers: its ``fields``, or the columns its expressions name."""
    if index.fields:
        return [name.lstrip("-") for name in index.fields]
    names: list[str] = []
    query = Query(model, alias_cols=False)
    for expression in index.expressions:
        names.extend(_referenced_fields(expression.resolve_expression(query)))
    return names


def indexed_targets(index: Any, model: type[Model]) -> list[tuple[str, Any]]:
    """What an index stores, as (description, field) pairs.

    For ``fields=`` the model fields; for expressions the expression's output field (a
    ``Cast("embedding", HalfVectorField(dimensions=3072))`` is a halfvec of 3,072 dimensions,
    whatever the column is). Raises FieldDoesNotExist for a field the model lacks.
    """
    quantization = quantization_of(index)
    if index.fields and quantization is not None:
        name = index.fields[0].lstrip("-")
        field = model._meta.get_field(name)
        stored = quantized_expression(field, quantization).output_field
        return [(f"{name!r} as {quantization}", stored)]
    if index.fields:
        return [
            (repr(name), model._meta.get_field(name))
            for name in (n.lstrip("-") for n in index.fields)
        ]
    query = Query(model, alias_cols=False)
    targets = []
    for expression in index.expressions:
        inner = (
            expression.get_source_expressions()[0]
            if isinstance(expression, OpClass)
            else expression
        )
        resolved = inner.resolve_expression(query)
        columns = ", ".join(_referenced_fields(resolved)) or "an expression"
        targets.append((f"an expression on {columns}", resolved.output_field))
    return targets


def _referenced_fields(expression: Any) -> list[str]:
    found: list[str] = []
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, Col):
            found.append(node.target.name)
        stack.extend(
            node.get_source_expressions() if hasattr(node, "get_source_expressions") else []
        )
    return found
