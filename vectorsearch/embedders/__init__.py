"""Pluggable embedders, configured like Django's storages.

``vectorsearch.embedders["default"]`` is the embedder for an alias of ``VECTORSEARCH_EMBEDDERS``;
``vectorsearch.embedders.HashingEmbedder`` etc. are the backends. This module answers both: it is
subscriptable (see the end of the file), so the dotted paths in settings and the handler share
one name, as the issue's API asks.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .base import BaseEmbedder
from .handler import DEFAULT_EMBEDDER_ALIAS, DEFAULT_EMBEDDERS, EmbedderHandler, embedders
from .hashing import HashingEmbedder

__all__ = [
    "DEFAULT_EMBEDDERS",
    "DEFAULT_EMBEDDER_ALIAS",
    "BaseEmbedder",
    "EmbedderHandler",
    "HashingEmbedder",
    "OpenAICompatibleEmbedder",
    "SentenceTransformerEmbedder",
    "StaticEmbedder",
    "embedders",
]


def __getattr__(name: str) -> Any:
    # The optional backends are imported on first use, so a missing optional dependency only
    # matters to the site that configures that backend.
    if name == "SentenceTransformerEmbedder":
        from .sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder
    if name == "StaticEmbedder":
        from .static import StaticEmbedder

        return StaticEmbedder
    if name == "OpenAICompatibleEmbedder":
        from .openai import OpenAICompatibleEmbedder

        return OpenAICompatibleEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _EmbeddersModule(types.ModuleType):
    """``vectorsearch.embedders[alias]``, delegating to the handler."""

    def __getitem__(self, alias: str) -> BaseEmbedder:
        return embedders[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in embedders

    def __iter__(self) -> Any:
        return iter(embedders)


sys.modules[__name__].__class__ = _EmbeddersModule
