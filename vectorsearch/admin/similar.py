"""The "Similar items" panel of the change page."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import quote
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext

from ..conf import get_settings
from ..exceptions import InvalidEmbedderError, InvalidQuery
from ..ranking.search import search
from .base import VectorSearchAdminBase
from .display import SimilarItem, as_array, stored_vector


class SimilarItemsMixin(VectorSearchAdminBase):
    """The change page lists the objects most similar to this one that the viewer may view."""

    #: How many similar items the change page lists; 0 hides the panel.
    vectorsearch_similar_k: int = 10

    change_form_template = "admin/vectorsearch/mixin/change_form.html"

    def get_similar_items(
        self, request: HttpRequest, obj: models.Model
    ) -> tuple[list[SimilarItem], str | None]:
        """The objects most similar to ``obj`` that the viewer may view, and an error message.

        Candidates come from this admin's ``get_queryset(request)`` (so its row restrictions
        hold) and each must pass ``has_view_permission(request, obj)``; more are fetched than
        shown so that refusing some still fills the list.
        """
        registration = self._registration_or_none()
        if registration is None:
            return [], gettext("This model is not registered with vectorsearch.")
        using = obj._state.db or "default"
        vector = stored_vector(registration, obj, using)
        if vector is None:
            return [], gettext(
                "This object has no vector yet: save it or use the action “Re-embed selected”."
            )
        wanted = int(self.vectorsearch_similar_k)
        fetch = max(1, min(wanted * 3, int(get_settings()["MAX_K"])))
        candidates = self.get_queryset(request).using(using).exclude(pk=obj.pk)
        try:
            ranked = list(
                search(
                    candidates,
                    as_array(vector),
                    k=fetch,
                    vector_field=registration.vector_field,
                    embedder=registration.embedder_alias,
                    mode="semantic",
                )
            )
        except (InvalidQuery, InvalidEmbedderError) as e:
            return [], gettext("Similar items could not be found: %s") % e
        items = []
        for candidate in ranked:
            if not self.has_view_permission(request, candidate):
                continue
            items.append(
                SimilarItem(
                    obj=candidate,
                    label=str(candidate),
                    url=self._change_url(candidate),
                    score=getattr(candidate, "score", None),
                )
            )
            if len(items) >= wanted:
                break
        return items, None

    def _change_url(self, obj: models.Model) -> str | None:
        opts = obj._meta
        try:
            return reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change",
                args=(quote(obj.pk),),
                current_app=self.admin_site.name,
            )
        except NoReverseMatch:
            return None

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # Here rather than in change_view: only when the page is shown, not on a save that
        # redirects.
        if obj is not None and not add and self.vectorsearch_similar_k > 0:
            items, error = self.get_similar_items(request, obj)
            context["vectorsearch_similar"] = {"items": items, "error": error}
        return super().render_change_form(request, context, add, change, form_url, obj)
