"""The query API: ``Model.objects.filter(...).similar_to(vector)``.

``similar_to`` annotates each row with ``distance`` and ``score`` and orders nearest first; it is
an ordinary queryset method, so ``filter``, ``exclude``, slicing and pagination compose with it
and the whole search stays one SQL query.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

import numpy as np
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models
from pgvector import Bit, HalfVector, SparseVector, Vector

from .distances import Distance, vector_type_of
from .exceptions import InvalidQuery
from .indexes import index_distance, index_field_names, vector_indexes

__all__ = ["VectorManager", "VectorQuerySet"]

_M = TypeVar("_M", bound=models.Model)


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
            f"{model._meta.label} has {len(candidates)} vector fields; pass field= one of: {choices}."
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
    indexed = {
        index_distance(index, model)
        for index in vector_indexes(model)
        if field.name in index_field_names(index, model)
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


def query_value(field: models.Field[Any, Any], query: Any, distance: Distance) -> Any:
    """Check the query vector against the field and return it in the form pgvector expects."""
    if hasattr(query, "resolve_expression"):
        return query
    if isinstance(query, str) and vector_type_of(field) != "bit":
        from .registry import embed_query

        query = embed_query(field.model, field.name, query)
    try:
        value = field.to_python(query)
    except ValidationError as e:
        raise InvalidQuery(f"Invalid query vector: {' '.join(e.messages)}") from None
    if value is None:
        raise InvalidQuery("The query vector is empty.")
    vtype = vector_type_of(field)
    if distance is Distance.COSINE:
        norm = (
            np.linalg.norm(value.values()) if isinstance(value, SparseVector) else np.linalg.norm(value)
        )
        if norm == 0:
            raise InvalidQuery(
                "The query vector is all zeros, which has no direction: its cosine distance to "
                "every row is undefined. Use another vector, or the l2 distance."
            )
    if vtype == "bit":
        return Bit(value).to_text()
    if vtype == "sparsevec":
        return value
    return HalfVector(value) if vtype == "halfvec" else Vector(value)


class VectorQuerySet(models.QuerySet[_M]):
    """A queryset that can rank rows by vector similarity."""

    def similar_to(
        self,
        query: Any,
        *,
        field: str | None = None,
        distance: Distance | str | None = None,
    ) -> Self:
        """Rows ordered by similarity to ``query``, nearest first.

        Each row gets two annotations: ``distance`` (pgvector's, smaller is nearer) and ``score``
        (higher is more similar; see :meth:`Distance.score`). ``field`` defaults to the model's
        only vector field and ``distance`` to the one its vector index serves. Raises
        :class:`~vectorsearch.exceptions.InvalidQuery` before any SQL runs when the vector, field
        or distance is wrong.
        """
        model_field = resolve_field(self.model, field)
        chosen = resolve_distance(self.model, model_field, distance)
        value = query_value(model_field, query, chosen)
        size = getattr(model_field, "length", None) if chosen is Distance.HAMMING else None
        return self.annotate(
            distance=chosen.expression(model_field.name, value),
        ).annotate(
            score=chosen.score("distance", dimensions=size),
        ).order_by("distance")


class VectorManager(models.Manager[_M]):
    """``objects = VectorManager()``: a manager whose querysets have :meth:`~VectorQuerySet.similar_to`."""

    def get_queryset(self) -> VectorQuerySet[_M]:
        return VectorQuerySet(self.model, using=self._db)

    def similar_to(self, query: Any, **kwargs: Any) -> VectorQuerySet[_M]:
        return self.get_queryset().similar_to(query, **kwargs)
