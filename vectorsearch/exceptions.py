"""Exceptions raised by vectorsearch."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

__all__ = ["InvalidQuery", "VectorExtensionError", "VectorSearchError"]


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
