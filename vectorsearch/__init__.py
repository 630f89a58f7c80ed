"""Vector fields, indexes and similarity search for Django on PostgreSQL + pgvector.

Everything a model module needs is importable from here, under the same names as
``pgvector.django``::

    from vectorsearch import HnswIndex, VectorField, VectorQuerySet
"""

from importlib.metadata import PackageNotFoundError, version

from pgvector.django import (
    CosineDistance,
    HammingDistance,
    JaccardDistance,
    L1Distance,
    L2Distance,
    MaxInnerProduct,
)

from .distances import Distance
from .exceptions import InvalidQuery, VectorExtensionError, VectorSearchError
from .fields import (
    BitField,
    HalfVectorField,
    SparseVectorField,
    VectorField,
)
from .indexes import HnswIndex, IvfflatIndex
from .operations import VectorExtension
from .query import VectorManager, VectorQuerySet

try:
    __version__ = version("django-vectorsearch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BitField",
    "CosineDistance",
    "Distance",
    "HalfVectorField",
    "HammingDistance",
    "HnswIndex",
    "InvalidQuery",
    "IvfflatIndex",
    "JaccardDistance",
    "L1Distance",
    "L2Distance",
    "MaxInnerProduct",
    "SparseVectorField",
    "VectorExtension",
    "VectorExtensionError",
    "VectorField",
    "VectorManager",
    "VectorQuerySet",
    "VectorSearchError",
]
