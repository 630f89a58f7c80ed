"""The Django admin for registered models: compact vectors, search by meaning, similar items.

Mix :class:`VectorSearchAdminMixin` into the ``ModelAdmin`` of any model registered with
:func:`vectorsearch.register` (vectors in its own column or in the generic Embedding table)::

    from django.contrib import admin
    from vectorsearch.admin import VectorSearchAdminMixin

    @admin.register(Product)
    class ProductAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
        search_fields = ["name"]

The generic :class:`~vectorsearch.models.Embedding` table gets a read-only admin of its own,
registered on the default admin site when this package is imported (``admin.autodiscover()``).
See ``docs/admin.md``.

The modules: ``display`` (the compact vector display, no ModelAdmin), ``base`` (the registration
lookup every part shares), the parts ``search`` (search by meaning in the changelist),
``similar`` (the similar-items panel) and ``reembed`` (the re-embed action), ``mixin`` (the
vector field, checks, media, and ``VectorSearchAdminMixin`` composing the parts) and
``embedding`` (``EmbeddingAdmin``). Imports run one way: display and base -> the parts -> mixin;
embedding uses display only.
"""

# The names of the module this package replaced (vectorsearch/admin.py): the public ones in
# __all__, the helpers a site's own admin may use re-exported as they were.
from .display import (
    SEMANTIC_VAR,
    SimilarItem,
    VectorSearchChangeList,
    render_vector,
    sparkline_points,
)
from .display import STATE_LABELS as STATE_LABELS
from .display import embedding_state as embedding_state
from .display import stored_vector as stored_vector
from .embedding import EmbeddingAdmin
from .indexes import VectorIndexAdmin as VectorIndexAdmin  # registers the Vector indexes page
from .mixin import VectorSearchAdminMixin
from .reembed import REEMBED_MAX_TASKS as REEMBED_MAX_TASKS
from .reembed import backfill_command as backfill_command

__all__ = [
    "SEMANTIC_VAR",
    "EmbeddingAdmin",
    "SimilarItem",
    "VectorSearchAdminMixin",
    "VectorSearchChangeList",
    "render_vector",
    "sparkline_points",
]
