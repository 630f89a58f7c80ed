"""Embeddings from a locally installed sentence-transformers model (the ``sentence-transformers``
extra). Nothing is downloaded: the model is loaded from a path, or from the Hugging Face cache with
``HF_HUB_OFFLINE=1`` honoured by the library.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import InvalidEmbedderError
from .base import BaseEmbedder, Vectors

__all__ = ["SentenceTransformerEmbedder"]


class SentenceTransformerEmbedder(BaseEmbedder):
    """``OPTIONS``: ``model`` (a local path or a cached model name, required), ``device``
    (default ``"cpu"``), ``batch_size`` (32), ``normalize`` (True), ``query_prefix`` and
    ``document_prefix`` (for models trained with them, e.g. E5's ``"query: "``), ``dimensions``
    (optional: declares the size so start-up checks need not load the model).

    The model is loaded on first use, once per process.
    """

    backend_name = "sentence-transformers"

    def __init__(
        self,
        *,
        alias: str = "default",
        model: str = "",
        device: str = "cpu",
        batch_size: int = 32,
        normalize: bool = True,
        query_prefix: str = "",
        document_prefix: str = "",
        dimensions: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if not model:
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: SentenceTransformerEmbedder needs OPTIONS['model'], a local "
                "model directory or the name of a model in the Hugging Face cache."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'batch_size' must be a positive whole number."
            )
        try:
            # Imported by name: the package is an optional extra, and mypy must pass without it.
            self._library: Any = importlib.import_module("sentence_transformers")
        except ImportError as e:
            raise InvalidEmbedderError(
                f"Embedder {alias!r} needs the sentence-transformers package: "
                "pip install 'django-vectorsearch[sentence-transformers]'."
            ) from e
        self.model_path = str(model)
        self.device = device
        self.batch_size = batch_size
        self.normalize = bool(normalize)
        self.normalized = self.normalize
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self._declared = dimensions
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        self._model = self._library.SentenceTransformer(
                            self.model_path, device=self.device
                        )
                    except (OSError, ValueError) as e:
                        raise InvalidEmbedderError(
                            f"Embedder {self.alias!r} could not load the model "
                            f"{self.model_path!r}: {e}. Point OPTIONS['model'] at an installed "
                            "model directory; models are never downloaded at run time."
                        ) from e
        return self._model

    @property
    def dimensions(self) -> int:
        if self._declared is not None:
            return self._declared
        model = self.model
        # Renamed in sentence-transformers 5; the old name still works on older releases.
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter())

    @property
    def declared_dimensions(self) -> int | None:
        return self._declared if self._model is None else self.dimensions

    @property
    def model_name(self) -> str:
        # The directory name, not the full path: moving the install must not make vectors stale.
        name = self.model_path.rstrip("/").rsplit("/", 1)[-1]
        if name == "model":  # e.g. site-packages/<package>/model
            name = self.model_path.rstrip("/").rsplit("/", 2)[-2]
        return f"{name}{'-n' if self.normalize else ''}"

    def _encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._encode([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> Vectors:
        vectors: Vectors = self._encode([self.query_prefix + text])
        return np.asarray(vectors[0], dtype=np.float32)
