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

from . import embedders
from .distances import Distance
from .exceptions import (
    EmbeddingError,
    InvalidEmbedderError,
    InvalidQuery,
    NotRegistered,
    VectorExtensionError,
    VectorSearchError,
)
from .fields import (
    BitField,
    HalfVectorField,
    SparseVectorField,
    VectorField,
)
from .indexes import HnswIndex, IvfflatIndex
from .operations import VectorExtension
from .ranking.queryset import VectorManager, VectorQuerySet
from .ranking.search import search
from .registry import register, unregister

try:
    __version__ = version("django-vectorsearch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BitField",
    "CosineDistance",
    "Distance",
    "EmbeddingError",
    "HalfVectorField",
    "HammingDistance",
    "HnswIndex",
    "InvalidEmbedderError",
    "InvalidQuery",
    "IvfflatIndex",
    "JaccardDistance",
    "L1Distance",
    "L2Distance",
    "MaxInnerProduct",
    "NotRegistered",
    "SparseVectorField",
    "VectorExtension",
    "VectorExtensionError",
    "VectorField",
    "VectorManager",
    "VectorQuerySet",
    "VectorSearchError",
    "embedders",
    "register",
    "search",
    "unregister",
]
