"""One notion of distance: its SQL operator, its index opclasses and a score a person can read.

An index declared with ``distance="cosine"`` and a query ranked by ``distance="cosine"`` read the
operator and opclass from the same :class:`Distance` member, so they cannot silently disagree.
"""

from __future__ import annotations

import enum
from typing import Any

from django.db import models
from django.db.models import F, FloatField, Func, Value
from django.db.models.expressions import Combinable, ExpressionWrapper
from pgvector.django import (
    BitField,
    CosineDistance,
    HalfVectorField,
    HammingDistance,
    JaccardDistance,
    L1Distance,
    L2Distance,
    MaxInnerProduct,
    SparseVectorField,
    VectorField,
)

__all__ = ["VECTOR_TYPES", "Distance", "IndexMethod", "vector_type_of"]

# pgvector's four column types, named as in SQL.
VECTOR_TYPES = ("vector", "halfvec", "sparsevec", "bit")


class IndexMethod(enum.StrEnum):
    HNSW = "hnsw"
    IVFFLAT = "ivfflat"


def vector_type_of(field: models.Field[Any, Any] | None) -> str | None:
    """The pgvector column type of ``field`` ("vector", "halfvec", ...), or None for other fields.

    Works for ``pgvector.django`` fields as well as this app's, which subclass them.
    """
    # Order matters for nothing here: the four pgvector field classes are unrelated.
    if isinstance(field, VectorField):
        return "vector"
    if isinstance(field, HalfVectorField):
        return "halfvec"
    if isinstance(field, SparseVectorField):
        return "sparsevec"
    if isinstance(field, BitField):
        return "bit"
    return None


class Distance(enum.StrEnum):
    """A distance between vectors, as pgvector computes it.

    ``Distance("cosine")`` and ``Distance.COSINE`` are the same member, so settings and keyword
    arguments may use the plain string.
    """

    COSINE = "cosine"
    L2 = "l2"
    INNER_PRODUCT = "inner_product"
    L1 = "l1"
    HAMMING = "hamming"
    JACCARD = "jaccard"

    @property
    def operator(self) -> str:
        """The SQL operator, e.g. ``<=>`` for cosine distance."""
        return _OPERATORS[self]

    @property
    def function(self) -> type[Func]:
        """The ``pgvector.django`` expression class computing this distance."""
        return _FUNCTIONS[self]

    @property
    def vector_types(self) -> tuple[str, ...]:
        """The column types this distance is defined for."""
        return ("bit",) if self in (Distance.HAMMING, Distance.JACCARD) else VECTOR_TYPES[:3]

    def index_methods(self, vector_type: str) -> tuple[IndexMethod, ...]:
        """The index methods that can serve this distance on a column of ``vector_type``."""
        if vector_type not in self.vector_types:
            return ()
        methods = [IndexMethod.HNSW]
        # IVFFlat has no L1, Jaccard or sparsevec operator classes (pgvector 0.8).
        if self not in (Distance.L1, Distance.JACCARD) and vector_type != "sparsevec":
            methods.append(IndexMethod.IVFFLAT)
        return tuple(methods)

    def opclass(self, vector_type: str, method: IndexMethod | str = IndexMethod.HNSW) -> str:
        """The operator class that indexes this distance, e.g. ``halfvec_cosine_ops``.

        Raises ValueError naming what is possible when the combination has no operator class.
        """
        method = IndexMethod(method)
        if method not in self.index_methods(vector_type):
            possible = [str(d) for d in Distance if method in d.index_methods(vector_type)] or [
                "none"
            ]
            raise ValueError(
                f"A {method} index on a {vector_type} column cannot serve the {self} distance; "
                f"distances it can serve: {', '.join(possible)}."
            )
        return f"{vector_type}_{_OPCLASS_SUFFIXES[self]}_ops"

    def expression(self, field: str | Combinable, query: Any) -> Func:
        """An expression computing this distance between ``field`` and ``query``."""
        lhs = F(field) if isinstance(field, str) else field
        return self.function(lhs, query)

    def score(self, distance: Any, *, dimensions: int | None = None) -> ExpressionWrapper[Any]:
        """An expression turning ``distance`` into a score where higher means more similar.

        - cosine: cosine similarity, ``1 - distance`` (-1 to 1);
        - inner product: the inner product itself (pgvector's ``<#>`` returns its negation);
        - L2 and L1: ``1 / (1 + distance)`` (0 to 1);
        - Jaccard: Jaccard similarity, ``1 - distance`` (0 to 1);
        - Hamming: the share of equal bits, ``1 - distance / dimensions`` (0 to 1), or
          ``1 / (1 + distance)`` when the bit length is unknown.
        """
        d = F(distance) if isinstance(distance, str) else distance
        one = Value(1.0, output_field=_FLOAT)
        expr: Any
        if self in (Distance.COSINE, Distance.JACCARD):
            expr = one - d
        elif self is Distance.INNER_PRODUCT:
            expr = d * Value(-1.0, output_field=_FLOAT)
        elif self is Distance.HAMMING and dimensions:
            expr = one - d / Value(float(dimensions), output_field=_FLOAT)
        else:
            expr = one / (one + d)
        return ExpressionWrapper(expr, output_field=_FLOAT)

    def score_of(self, distance: float, *, dimensions: int | None = None) -> float:
        """The same score as :meth:`score`, computed in Python."""
        if self in (Distance.COSINE, Distance.JACCARD):
            return 1.0 - distance
        if self is Distance.INNER_PRODUCT:
            return -distance
        if self is Distance.HAMMING and dimensions:
            return 1.0 - distance / dimensions
        return 1.0 / (1.0 + distance)

    @classmethod
    def parse(cls, value: Distance | str) -> Distance:
        """``value`` as a member, or ValueError listing the known distances."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"Unknown distance {value!r}; choose one of: {', '.join(d.value for d in cls)}."
            ) from None


# One output field for every score expression: building a Field is a measurable share of a
# fast search, and an expression's output field is never modified.
_FLOAT = FloatField()

_OPERATORS = {
    Distance.COSINE: "<=>",
    Distance.L2: "<->",
    Distance.INNER_PRODUCT: "<#>",
    Distance.L1: "<+>",
    Distance.HAMMING: "<~>",
    Distance.JACCARD: "<%>",
}
_FUNCTIONS: dict[Distance, type[Func]] = {
    Distance.COSINE: CosineDistance,
    Distance.L2: L2Distance,
    Distance.INNER_PRODUCT: MaxInnerProduct,
    Distance.L1: L1Distance,
    Distance.HAMMING: HammingDistance,
    Distance.JACCARD: JaccardDistance,
}
_OPCLASS_SUFFIXES = {
    Distance.COSINE: "cosine",
    Distance.L2: "l2",
    Distance.INNER_PRODUCT: "ip",
    Distance.L1: "l1",
    Distance.HAMMING: "hamming",
    Distance.JACCARD: "jaccard",
}
# The opclass name back to its distance, to read the distance of an index declared with
# explicit ``opclasses=`` (as pgvector.django's indexes are).
OPCLASS_DISTANCES = {
    f"{vtype}_{suffix}_ops": distance
    for distance, suffix in _OPCLASS_SUFFIXES.items()
    for vtype in distance.vector_types
}
