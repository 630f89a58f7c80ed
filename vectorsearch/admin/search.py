"""Search by meaning in the changelist: the "By meaning" toggle of the search box.

The changelist ranks its filtered rows by similarity to the search text (``?q=...&semantic=1``),
through :func:`vectorsearch.search` so that the admin runs the same plan as the search page, under
the search page's statement timeout.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR, ChangeList
from django.db import InterfaceError, OperationalError, models
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..conf import get_settings
from ..db import is_timeout, statement_timeout
from ..exceptions import EmbeddingError, InvalidEmbedderError, InvalidQuery, NotRegistered
from ..ranking.search import query_vector, search
from .base import VectorSearchAdminBase
from .display import SEMANTIC_VAR, VectorSearchChangeList

_TRUE = ("1", "on", "true", "yes")


class SearchByMeaningMixin(VectorSearchAdminBase):
    """The changelist's search box searches by meaning too; a "similarity" column shows scores."""

    #: How many objects a search by meaning ranks (at most ``VECTORSEARCH["MAX_K"]``).
    vectorsearch_search_k: int = 100
    #: The longest search text a search by meaning accepts, in characters.
    vectorsearch_max_query_length: int = 2_000

    change_list_template = "admin/vectorsearch/mixin/change_list.html"

    @admin.display(description=_("similarity"), ordering="distance")
    def vectorsearch_score(self, obj: Any) -> str:
        """The similarity score of a row of a search by meaning."""
        score = getattr(obj, "score", None)
        return "—" if score is None else f"{score:.3f}"

    def vectorsearch_can_toggle(self) -> bool:
        """Whether the search box offers both kinds of search (it has ``search_fields``)."""
        return bool(self.search_fields)

    def is_semantic_search(self, request: HttpRequest) -> bool:
        """Whether this changelist request asks for search by meaning.

        Without ``search_fields`` the search box searches by meaning only.
        """
        if self._registration_or_none() is None:
            return False
        if not self.vectorsearch_can_toggle():
            return True
        return request.GET.get(SEMANTIC_VAR, "").lower() in _TRUE

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return VectorSearchChangeList

    def get_list_display(self, request: HttpRequest) -> Any:
        list_display = list(super().get_list_display(request))
        text = request.GET.get(SEARCH_VAR, "")
        if (
            self.is_semantic_search(request)
            and text.strip()
            and "\x00" not in text  # the search form refuses it: nothing is ranked
            and "vectorsearch_score" not in list_display
        ):
            list_display.append("vectorsearch_score")
        return list_display

    def get_search_results(
        self, request: HttpRequest, queryset: models.QuerySet[Any], search_term: str
    ) -> tuple[models.QuerySet[Any], bool]:
        if not self.is_semantic_search(request):
            results: tuple[models.QuerySet[Any], bool] = super().get_search_results(
                request, queryset, search_term
            )
            return results
        if not search_term.strip():
            return queryset, False
        vector = self._query_vector(request, search_term)
        if vector is None:
            return queryset.none(), False
        registration = self.get_vectorsearch_registration()
        k = max(1, min(int(self.vectorsearch_search_k), int(get_settings()["MAX_K"])))
        try:
            ranked = search(
                queryset,
                vector,
                k=k,
                vector_field=registration.vector_field,
                embedder=registration.embedder_alias,
                mode="semantic",
            )
        except InvalidQuery as e:
            self._message_once(request, gettext("Search by meaning failed: %s") % e, "invalid")
            return queryset.none(), False
        if request.GET.get(ORDER_VAR):
            # The user sorted by a column: the ChangeList ordered the queryset before the
            # search, whose similarity order replaced it. Sort the k results their way.
            ranked = ranked.order_by(*queryset.query.order_by)
        else:
            # Equal distances (duplicate texts) in a stable order, so pages never overlap.
            ranked = ranked.order_by("distance", "pk")
        return ranked, False

    def _query_vector(self, request: HttpRequest, text: str) -> Any:
        """The search text embedded once per request (facet counts rerun the search), or None
        after a message to the user."""
        cache: dict[str, Any] = request.__dict__.setdefault("_vectorsearch_query_vectors", {})
        if text in cache:
            return cache[text]
        vector = None
        limit = int(self.vectorsearch_max_query_length)
        if len(text) > limit:
            messages.error(
                request,
                gettext(
                    "The search text is %(length)s characters long; search by meaning takes "
                    "at most %(limit)s."
                )
                % {"length": len(text), "limit": limit},
            )
        else:
            try:
                vector = query_vector(self.get_vectorsearch_registration(), text)
            except (InvalidQuery, EmbeddingError, InvalidEmbedderError, NotRegistered) as e:
                messages.error(request, gettext("Search by meaning failed: %s") % e)
        cache[text] = vector
        return vector

    def _message_once(self, request: HttpRequest, message: str, key: str) -> None:
        sent: set[str] = request.__dict__.setdefault("_vectorsearch_messages", set())
        if key not in sent:
            sent.add(key)
            messages.error(request, message)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        registration = self._registration_or_none()
        context = {
            "vectorsearch": {
                "enabled": registration is not None,
                "can_toggle": self.vectorsearch_can_toggle(),
                "semantic": self.is_semantic_search(request),
                "search_var": SEARCH_VAR,
                "semantic_var": SEMANTIC_VAR,
                "k": self.vectorsearch_search_k,
            },
            **(extra_context or {}),
        }
        if not (self.is_semantic_search(request) and request.GET.get(SEARCH_VAR, "").strip()):
            return super().changelist_view(request, extra_context=context)
        # A search by meaning runs under the search page's statement timeout, rendered inside
        # it (the changelist's queries run while its template renders).
        using = self.get_queryset(request).db
        try:
            with statement_timeout(get_settings()["SEARCH_STATEMENT_TIMEOUT_MS"], using=using):
                response = super().changelist_view(request, extra_context=context)
                if hasattr(response, "render"):
                    response.render()
        except (OperationalError, InterfaceError) as e:
            message = (
                gettext("The search took too long; try fewer words or a filter.")
                if is_timeout(e)
                else gettext("Search is unavailable right now; try again later.")
            )
            return HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
        return response
