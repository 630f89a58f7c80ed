"""Exceptions raised by vectorsearch."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

__all__ = [
    "EmbeddingError",
    "InvalidEmbedderError",
    "InvalidQuery",
    "NotRegistered",
    "VectorExtensionError",
    "VectorSearchError",
]


class VectorSearchError(Exception):
    """Base class of this app's exceptions."""


class InvalidQuery(VectorSearchError, ValueError):
    """A similarity query that cannot run: bad vector, unknown field or distance, bad option.

    Raised before any SQL runs; the message says what was wrong and what is allowed.
    """


class VectorExtensionError(VectorSearchError, CommandError):
    """The ``vector`` extension is missing and could not be created.

    A ``CommandError``, so ``migrate`` prints the message (with the SQL a superuser must run)
    instead of a traceback.
    """


class ImproperlyConfiguredVectorSearch(VectorSearchError, ImproperlyConfigured):
    """The ``VECTORSEARCH`` setting is wrong."""


class InvalidEmbedderError(VectorSearchError, ImproperlyConfigured):
    """An embedder alias, backend or option in ``VECTORSEARCH_EMBEDDERS`` is wrong."""


class EmbeddingError(VectorSearchError):
    """An embedder failed: it raised, timed out, or returned the wrong shape, NaN or infinity.

    ``positions`` are the failing texts' positions in the batch, when the embedder knows them.
    ``transient`` says the embedder itself is unavailable (unreachable, timing out, overloaded)
    rather than failing on these texts, so retrying them one by one would only wait longer.
    Nothing of the failing batch is stored.
    """

    def __init__(
        self, message: str, *, positions: list[int] | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.positions = positions or []
        self.transient = transient


class NotRegistered(VectorSearchError, LookupError):
    """A model (or model and vector field) that ``vectorsearch.register`` was not called for."""
