"""Static embeddings: one learned vector per token, averaged over the text (the ``static`` extra).

The default model is WordLlama ``l2_supercat`` (token embeddings taken from a large language model
and trained for sentence similarity), whose 256-dimension weights and tokenizer ship inside the
``wordllama`` package: nothing is downloaded, ever. The files are read directly with
``tokenizers`` and ``safetensors``, not through the package's loader, because that loader falls
back to a download when a file is missing. A Model2Vec model directory (``tokenizer.json`` and
``model.safetensors``) works too.

Measured on the demo corpus (docs/embeddings.md): thousands of passages a second on one core
and a query in well under a millisecond, with retrieval quality far above the
HashingEmbedder; a transformer model is better alone, but 20 to 50 times slower to embed.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..distances import Distance
from ..exceptions import InvalidEmbedderError
from .base import BaseEmbedder, Vectors

__all__ = ["StaticEmbedder"]

WORDLLAMA = "wordllama"
_WORDLLAMA_FILES = (
    "tokenizers/l2_supercat_tokenizer_config.json",
    "weights/l2_supercat_256.safetensors",
)
_TENSOR_KEYS = ("embedding.weight", "embeddings")  # WordLlama's, Model2Vec's
_INSTALL = "pip install 'django-vectorsearch[static]'"


class StaticEmbedder(BaseEmbedder):
    """The mean of the text's token vectors, L2-normalized: compare with cosine distance.

    ``OPTIONS``:

    - ``model``: ``"wordllama"`` (default; the bundled l2_supercat weights) or a directory with
      ``tokenizer.json`` and ``model.safetensors`` (a Model2Vec model saved locally).
    - ``dimensions``: keep the first N dimensions (WordLlama is trained so that its prefixes
      of 64, 128 and 256 work alone); default: all (256 for WordLlama).
    - ``max_tokens``: the truncation rule. A text is cut to its first ``max_tokens`` tokens
      (default 512, about 380 English words) before averaging, queries and passages alike.
      Static vectors have no window, but words past that add little to a mean and cost time.

    A text without a single token (the empty string, or only whitespace) gets the zero vector.
    Any other text, in any script or of emoji alone, gets a unit vector: the tokenizer is
    byte-level, so no character is unknown to it.
    """

    backend_name = "static"
    distance = Distance.COSINE
    normalized = True

    def __init__(
        self,
        *,
        alias: str = "default",
        model: str = WORDLLAMA,
        dimensions: int | None = None,
        max_tokens: int = 512,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 8
        ):
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'dimensions' must be a whole number of at least 8, "
                f"not {dimensions!r}."
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'max_tokens' must be a positive whole number, "
                f"not {max_tokens!r}."
            )
        self.model_path = str(model)
        self.max_tokens = max_tokens
        self._declared = dimensions
        self._tokenizer: Any = None
        self._matrix: np.ndarray[Any, Any] | None = None
        self._lock = threading.Lock()
        # The files are located now, so a missing package fails `manage.py check` at start-up
        # (with the command that fixes it) rather than the first search.
        self._files = self._locate()

    def _locate(self) -> tuple[Path, Path]:
        if self.model_path == WORDLLAMA:
            spec = importlib.util.find_spec("wordllama")
            if spec is None or not spec.origin:
                raise InvalidEmbedderError(
                    f"Embedder {self.alias!r} (StaticEmbedder, model 'wordllama') needs the "
                    f"wordllama package, which ships the model: {_INSTALL}."
                )
            root = Path(spec.origin).parent
            tokenizer, weights = (root / name for name in _WORDLLAMA_FILES)
        else:
            root = Path(self.model_path)
            tokenizer, weights = root / "tokenizer.json", root / "model.safetensors"
        for path in (tokenizer, weights):
            if not path.is_file():
                raise InvalidEmbedderError(
                    f"Embedder {self.alias!r} (StaticEmbedder) could not find {path}. Set "
                    "OPTIONS['model'] to 'wordllama' (and pip install it) or to a local "
                    "directory with tokenizer.json and model.safetensors; models are never "
                    "downloaded at run time."
                )
        return tokenizer, weights

    def _load(self) -> tuple[Any, np.ndarray[Any, Any]]:
        if self._matrix is None:
            with self._lock:
                if self._matrix is None:
                    self._tokenizer, self._matrix = self._read(*self._files)
        assert self._matrix is not None
        return self._tokenizer, self._matrix

    def _read(self, tokenizer_file: Path, weights_file: Path) -> tuple[Any, np.ndarray[Any, Any]]:
        try:
            tokenizers = importlib.import_module("tokenizers")
            safetensors = importlib.import_module("safetensors")
        except ImportError as e:
            raise InvalidEmbedderError(
                f"Embedder {self.alias!r} (StaticEmbedder) needs tokenizers and safetensors: "
                f"{_INSTALL}."
            ) from e
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
            with safetensors.safe_open(str(weights_file), framework="np") as f:
                key = next((k for k in _TENSOR_KEYS if k in f.keys()), None)  # noqa: SIM118
                if key is None:
                    raise ValueError(f"no tensor named {' or '.join(_TENSOR_KEYS)}")
                matrix = np.asarray(f.get_tensor(key), dtype=np.float32)
        except Exception as e:
            raise InvalidEmbedderError(
                f"Embedder {self.alias!r} (StaticEmbedder) could not read its model "
                f"({tokenizer_file}, {weights_file}): {e}"
            ) from e
        tokenizer.no_padding()
        tokenizer.no_truncation()  # the rule is max_tokens, applied below to the ids
        if self._declared is not None:
            if self._declared > matrix.shape[1]:
                raise InvalidEmbedderError(
                    f"Embedder {self.alias!r}: 'dimensions' is {self._declared} but the model "
                    f"has {matrix.shape[1]}."
                )
            matrix = np.ascontiguousarray(matrix[:, : self._declared])
        return tokenizer, matrix

    @property
    def dimensions(self) -> int:
        if self._declared is not None:
            return self._declared
        return int(self._load()[1].shape[1])

    @property
    def declared_dimensions(self) -> int | None:
        if self._declared is not None or self._matrix is not None:
            return self.dimensions
        return 256 if self.model_path == WORDLLAMA else None

    @property
    def model_name(self) -> str:
        name = (
            "wordllama-l2_supercat" if self.model_path == WORDLLAMA else Path(self.model_path).name
        )
        return f"{name}-t{self.max_tokens}"

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        tokenizer, matrix = self._load()
        # Stripped: surrounding whitespace has tokens of its own, which carry no meaning.
        encodings = tokenizer.encode_batch([t.strip() for t in texts], add_special_tokens=False)
        out = np.zeros((len(texts), matrix.shape[1]), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids = encoding.ids[: self.max_tokens]
            if ids:
                out[row] = matrix[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out
