"""Turn what a caller searches by -- a text, a list, an array, a model instance -- into a checked
query vector, once, before any SQL runs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import models
from pgvector import Bit, SparseVector

from ..distances import Distance
from ..exceptions import InvalidQuery
from ..fields import dense_text, validate_dense_array
from .expressions import QueryVector

__all__ = ["NO_DIRECTION", "has_no_length", "instance_vector", "query_parts"]

NOTHING_TO_SEARCH = (
    "There is nothing in that text to search by: it has no words the embedder knows."
)
# A word character of any script: a text without one has nothing to search by.
_WORD = re.compile(r"\w")

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


def query_parts(
    field: models.Field[Any, Any],
    query: Any,
    distance: Distance,
    *,
    vector_type: str,
    embed: Any = None,
) -> tuple[Any, Any]:
    """(the query as an SQL value or expression, the checked vector in Python or None).

    ``field`` checks the vector (its type and length); ``embed`` turns a text into a vector.
    """
    if hasattr(query, "resolve_expression"):
        return query, None
    if isinstance(query, str) and vector_type != "bit":
        if not query.strip():
            raise InvalidQuery("The search text is empty.")
        if not _WORD.search(query):
            # Emoji or punctuation only: a byte-level embedder would still make a vector of it,
            # and every row would be "similar" to that noise.
            raise InvalidQuery(NOTHING_TO_SEARCH)
        if embed is None:
            raise InvalidQuery(
                "A text query needs an embedder, and none is registered for "
                f"{field.model._meta.label}.{field.name}; register one with "
                "vectorsearch.register(..., vector_field=...), or pass a vector (a list of "
                "numbers or a numpy array)."
            )
        query = embed(query)
        if not np.any(np.asarray(query, dtype=np.float64)):
            raise InvalidQuery(NOTHING_TO_SEARCH)
    try:
        if vector_type in ("vector", "halfvec"):
            # The array itself, not the list to_python() builds: a 384-dimension query is
            # checked and formatted on every search.
            value: Any = validate_dense_array(
                query,
                vector_type=vector_type,
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
        if has_no_length(numbers, vector_type):
            raise InvalidQuery(NO_DIRECTION)
    if vector_type == "bit":
        return Bit(value).to_text(), value
    if vector_type == "sparsevec":
        return value, value
    return QueryVector(dense_text(value), vector_type), value


def instance_vector(
    model: type[models.Model], instance: models.Model, read: Any, name: str = "stored"
) -> tuple[Any, Any]:
    """The stored vector of ``instance`` (``read(instance)``) and its pk, for "more like this"."""
    if instance._meta.concrete_model is not model._meta.concrete_model:
        raise InvalidQuery(
            f"Cannot rank {model._meta.label} rows by similarity to a "
            f"{instance._meta.label} instance; pass a {model._meta.label} instance or a vector."
        )
    value = read(instance)
    if value is None:
        raise InvalidQuery(
            f"{model._meta.label} {instance.pk!r} has no {name} vector to compare with; embed it "
            "first or pass a vector."
        )
    return value, instance.pk
