"""A dependency-free embedder: signed feature hashing of words, word pairs and character n-grams.

No model, no download and no randomness: the same text gives the same vector on every machine and
in every process (Python's own ``hash()`` is salted per process, so it is not used). Lexical, not
semantic: "reset password" finds "password reset" and "passwords", not "log-in trouble".
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..distances import Distance
from ..exceptions import InvalidEmbedderError
from .base import BaseEmbedder, Vectors

__all__ = ["HashingEmbedder"]

_WORD = re.compile(r"\w+")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Constants of MurmurHash3's 64-bit finalizer, which spreads similar inputs over all bits.
_FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_PRIME = np.uint64(1_099_511_628_211)  # FNV's 64-bit prime, as the rolling-hash base
_S33 = np.uint64(33)
_S63 = np.uint64(63)
_BIGRAM_SALT = np.uint64(0x9E3779B97F4A7C15)


def _fmix(h: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    h = h ^ (h >> _S33)
    h = h * _FMIX1
    h = h ^ (h >> _S33)
    h = h * _FMIX2
    mixed: np.ndarray[Any, Any] = h ^ (h >> _S33)
    return mixed


class HashingEmbedder(BaseEmbedder):
    """Hashed word unigrams and bigrams plus character n-grams, sublinear tf, L2-normalized.

    ``OPTIONS``: ``dimensions`` (default 384), ``ngram_range`` (characters, default ``(3, 5)``),
    ``word_weight`` (the share of word features against character ones, default 0.5).
    """

    backend_name = "hashing"
    distance = Distance.COSINE
    normalized = True

    def __init__(
        self,
        *,
        alias: str = "default",
        dimensions: int = 384,
        ngram_range: Sequence[int] = (3, 5),
        word_weight: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 8 <= dimensions <= 16_000
        ):
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'dimensions' must be a whole number from 8 to 16000, "
                f"not {dimensions!r}."
            )
        pair = tuple(ngram_range) if isinstance(ngram_range, Sequence) else ()
        low, high = pair if len(pair) == 2 else (0, 0)
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high <= 10):
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'ngram_range' must be two whole numbers (min, max) with "
                f"1 <= min <= max <= 10, not {ngram_range!r}."
            )
        if not 0.0 <= float(word_weight) <= 1.0:
            raise InvalidEmbedderError(
                f"Embedder {alias!r}: 'word_weight' must be from 0 to 1, not {word_weight!r}."
            )
        self._dimensions = dimensions
        self.ngram_range = (low, high)
        self.word_weight = float(word_weight)

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def model_name(self) -> str:
        # Every option that changes the vectors is in the identity, so changing one marks the
        # stored vectors stale instead of mixing two vector spaces.
        low, high = self.ngram_range
        return f"v1-w12-c{low}{high}-ww{self.word_weight:g}"

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._embed(text)
        return out

    def _embed(self, text: str) -> np.ndarray[Any, Any]:
        words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
        vector = np.zeros(self._dimensions, dtype=np.float64)
        if not words:
            return vector
        word_part = self._hashed(self._word_hashes(words))
        char_part = self._hashed(self._char_hashes(words))
        vector = self.word_weight * _unit(word_part) + (1.0 - self.word_weight) * _unit(char_part)
        return _unit(vector)

    def _word_hashes(self, words: list[str]) -> np.ndarray[Any, Any]:
        crcs = np.fromiter(
            (zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words)
        )
        unigrams = _fmix(crcs)
        if len(words) < 2:
            return unigrams
        bigrams = _fmix(unigrams[:-1] * _PRIME + (crcs[1:] ^ _BIGRAM_SALT))
        return np.concatenate([unigrams, bigrams])

    def _char_hashes(self, words: list[str]) -> np.ndarray[Any, Any]:
        # " word1 word2 ": spaces mark word boundaries, so "pass" at a word start differs from
        # "pass" inside "bypass", as in scikit-learn's char_wb analyzer.
        padded = " " + " ".join(words) + " "
        codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        low, high = self.ngram_range
        parts = []
        for n in range(low, high + 1):
            if len(codes) < n:
                break
            count = len(codes) - n + 1
            h = np.full(count, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _PRIME + codes[k : k + count]
            parts.append(h)
        if not parts:
            return np.zeros(0, dtype=np.uint64)
        return _fmix(np.concatenate(parts))

    def _hashed(self, hashes: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Signed feature hashing with sublinear term frequency: 1 + log(count)."""
        vector = np.zeros(self._dimensions, dtype=np.float64)
        if hashes.size == 0:
            return vector
        unique, counts = np.unique(hashes, return_counts=True)
        weights = 1.0 + np.log(counts)
        signs = np.where((unique >> _S63) == 1, -1.0, 1.0)
        buckets = (unique % np.uint64(self._dimensions)).astype(np.intp)
        return np.bincount(buckets, weights=signs * weights, minlength=self._dimensions)


def _unit(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
