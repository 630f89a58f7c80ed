"""Which models are searchable, from which text, into which vector.

The embedders and the registry arrive with the embeddings work; until a model is registered,
a text query has nothing to embed it with.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from .exceptions import InvalidQuery

__all__ = ["embed_query"]


def embed_query(model: type[models.Model], field: str, text: str) -> Any:
    """The query vector for ``text``, from the embedder registered for ``model.field``."""
    raise InvalidQuery(
        f"A text query needs an embedder, and none is registered for {model._meta.label}.{field}; "
        "pass a vector (a list of numbers or a numpy array)."
    )
