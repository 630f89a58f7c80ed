"""The embedder protocol every backend implements.

An embedder turns texts into vectors of a fixed number of dimensions. Its :attr:`identity`
(backend, model and dimensions) is stored with every vector it makes, so vectors of two embedders
are never compared with each other and a change of embedder makes the old vectors stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..distances import Distance
from ..exceptions import EmbeddingError, InvalidEmbedderError

__all__ = ["BaseEmbedder"]

Vectors = npt.NDArray[np.float32]


class BaseEmbedder:
    """Subclass and implement :meth:`embed_documents` (and usually :attr:`dimensions`).

    Backends are built from the ``VECTORSEARCH_EMBEDDERS`` setting as
    ``Backend(alias=alias, **OPTIONS)``; unknown options raise :class:`InvalidEmbedderError`.
    Callers use :meth:`embed` and :meth:`embed_one`, which check what the backend returned.
    """

    #: A short name for the backend, the first part of :attr:`identity`.
    backend_name: str = "base"

    #: The distance the model's vectors are meant to be compared with. A search over vectors
    #: of this embedder that is given no ``distance=`` and has no index to take it from uses
    #: this one. Backends whose model was trained for another metric override it.
    distance: Distance = Distance.COSINE

    #: True when every vector has unit length (L2 norm 1), so cosine distance, inner product and
    #: Euclidean distance rank alike and the cheaper inner product may be used. The zero vector
    #: of a text without a single token (the empty string) is the one exception; see
    #: :meth:`embed_documents` of each backend.
    normalized: bool = False

    def __init__(self, *, alias: str = "default", **options: Any) -> None:
        if options:
            raise InvalidEmbedderError(
                f"Embedder {alias!r} ({type(self).__name__}) got unknown OPTIONS: "
                f"{', '.join(sorted(options))}."
            )
        self.alias = alias

    # -- what backends provide ---------------------------------------------------------------

    @property
    def dimensions(self) -> int:
        """How many dimensions every vector has."""
        raise NotImplementedError

    @property
    def declared_dimensions(self) -> int | None:
        """:attr:`dimensions` when known without loading a model or calling a server."""
        return self.dimensions

    @property
    def model_name(self) -> str:
        """The model (or configuration) that makes the vectors; part of :attr:`identity`."""
        return ""

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One vector per text, as an array of shape ``(len(texts), dimensions)``."""
        raise NotImplementedError

    def embed_query(self, text: str) -> Vectors:
        """The vector for a search query; models with a query prefix override this."""
        vectors: Vectors = self.embed_documents([text])
        return np.asarray(vectors[0], dtype=np.float32)

    # -- what callers use --------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """``backend:model:dimensions``, stored with every vector this embedder makes."""
        return f"{self.backend_name}:{self.model_name}:{self.dimensions}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        """:meth:`embed_documents`, checked: right shape, finite numbers, float32."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.embed_documents(list(texts))
        return self._checked(vectors, len(texts))

    def embed_one(self, text: str) -> Vectors:
        """:meth:`embed_query`, checked like :meth:`embed`."""
        vectors: Vectors = self._checked(np.asarray(self.embed_query(text))[None, :], 1)
        return np.asarray(vectors[0], dtype=np.float32)

    def _checked(self, vectors: Any, count: int) -> Vectors:
        array = np.asarray(vectors, dtype=np.float32)
        expected = (count, self.dimensions)
        if array.shape != expected:
            raise EmbeddingError(
                f"Embedder {self.alias!r} ({self.identity}) returned vectors of shape "
                f"{array.shape} for {count} text(s); expected {expected}. Check its "
                "'dimensions' option against the model it calls."
            )
        bad = ~np.isfinite(array).all(axis=1)
        if bad.any():
            rows = [int(i) for i in np.flatnonzero(bad)[:10]]
            raise EmbeddingError(
                f"Embedder {self.alias!r} ({self.identity}) returned NaN or infinite numbers for "
                f"text(s) at position {rows} of the batch; nothing was stored.",
                positions=rows,
            )
        return array

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r} {self.identity}>"
