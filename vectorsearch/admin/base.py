"""The base of every part of :class:`~vectorsearch.admin.VectorSearchAdminMixin`.

The parts (search by meaning, similar items, the re-embed action, the vector field) each need the
model's registration, so its lookup lives here, once. For the type checker the base is a
``ModelAdmin`` (the parts' ``super()`` calls and ``self.model`` are checked); at run time it is a
plain ``object``, so each part stays a mixin that goes before ``admin.ModelAdmin`` in a site's class
and every ``super()`` call reaches the next class in the site's MRO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin

from ..exceptions import NotRegistered
from ..registry import Registration, registry

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[Any]
else:
    # ModelAdmin is generic for the type checker only (django-stubs), not at run time.
    _Base = object


class VectorSearchAdminBase(_Base):
    """Finds the model's registration for the admin parts that derive from it."""

    #: Which registration, when the model has several (see ``registry.get``).
    vectorsearch_vector_field: str | None = None
    vectorsearch_embedder: str | None = None

    def get_vectorsearch_registration(self) -> Registration:
        """The model's registration; raises :class:`NotRegistered` when there is none."""
        return registry.get(
            self.model,
            vector_field=self.vectorsearch_vector_field,
            embedder=self.vectorsearch_embedder,
        )

    def _registration_or_none(self) -> Registration | None:
        try:
            return self.get_vectorsearch_registration()
        except NotRegistered:
            return None
