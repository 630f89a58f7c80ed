"""The search page and JSON API over the registered models (docs/search-page.md).

Django's own parts do the work: ``TemplateResponseMixin`` + ``ContextMixin`` + ``View`` render,
a :class:`~vectorsearch.forms.SearchForm` checks every parameter before any SQL runs, a
``Paginator`` pages the merged hits; :meth:`VectorSearchView.search_registration` is the one
place that ranks. Searches run under ``SEARCH_STATEMENT_TIMEOUT_MS``; a cancelled or failing
query is a 503 with a message, never a 500 nor the database's own text.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import signals
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, InterfaceError, OperationalError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, QueryDict
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.generic.base import ContextMixin, TemplateResponseMixin, View

from . import snippets
from .conf import get_settings
from .db import is_timeout, statement_timeout
from .exceptions import EmbeddingError, InvalidQuery
from .forms import TRACKING_PARAMETERS, SearchForm, checked_data, is_concrete, page_url, toggled_url
from .outages import log_error
from .ranking.fulltext import has_columns
from .ranking.search import query_vector as search_query_vector
from .ranking.search import search
from .registry import Registration, registry
from .snippets import Facet, FacetValue, SearchPaginator, SearchResult, finite, highlight

__all__ = [
    "CheckedSearch",
    "Facet",
    "FacetValue",
    "SearchError",
    "SearchPaginator",
    "SearchResult",
    "VectorSearchAPIView",
    "VectorSearchView",
    "highlight",
]

logger = logging.getLogger("vectorsearch.views")


class SearchError(Exception):
    """A request the search cannot answer: ``message`` is shown to the visitor as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class CheckedSearch:
    """A search its form accepted: the text, the registrations, filters, page and ranking."""

    query: str
    registrations: list[Registration]
    filters: dict[str, list[str]]
    page: int
    per_page: int
    mode: str = "hybrid"


class VectorSearchView(TemplateResponseMixin, ContextMixin, View):
    """A search page over registered models: form, results with scores and snippets, facets.

    Set ``model``/``queryset`` (one model, the queryset's filters kept) or ``models`` (several;
    none of them: every registered model), ``filters`` (default: each registration's),
    ``paginate_by``, ``template_name``, ``mode``. Override :meth:`get_queryset`,
    :meth:`get_title`, :meth:`get_url`, :meth:`get_text` or :meth:`make_result` to change what
    is searched and shown, :meth:`search_registration` to change how one model is ranked.
    """

    http_method_names = ["get", "head", "options"]
    template_name = "vectorsearch/search.html"
    form_class = SearchForm
    paginator_class = SearchPaginator
    model: type[Model] | None = None
    queryset: QuerySet[Any] | None = None
    models: Sequence[type[Model] | str] | None = None
    filters: Sequence[str] | None = None
    paginate_by: int | None = None
    #: Whether a request without ``q`` is an error (the API) or the page before a search.
    query_required: bool = False
    #: The ranking when the request gives no ``mode``: "hybrid", "semantic" or "keyword".
    mode: str = "hybrid"
    #: Whether the page counts facet values (one more search per filter); the API does not.
    facets: bool = True
    #: The snippet's length in characters.
    snippet_length: int = 240
    #: Parameters that links from newsletters, ads and social sites add, ignored rather than
    #: refused (shell-style patterns; a filter of the same name still applies).
    ignored_parameters: Sequence[str] = TRACKING_PARAMETERS

    # -- what is searched ----------------------------------------------------------------------

    def get_registrations(self) -> list[Registration]:
        """The registrations this view searches: one per model, the model's first one."""
        if self.queryset is not None:
            chosen: Iterable[type[Model] | str] = [self.queryset.model]
        elif self.model is not None:
            chosen = [self.model]
        else:
            chosen = self.models if self.models is not None else [r.model for r in registry]
        found = [registry.for_model(apps.get_model(m) if isinstance(m, str) else m) for m in chosen]
        return list({r[0].model: r[0] for r in found if r}.values())

    @cached_property
    def registrations(self) -> list[Registration]:
        """:meth:`get_registrations`, once per request."""
        return self.get_registrations()

    def get_queryset(self, model: type[Model]) -> QuerySet[Any]:
        """The objects of ``model`` a visitor may find (``queryset`` when it is that model's)."""
        if self.queryset is not None and self.queryset.model is model:
            return self.queryset.all()
        return model._default_manager.all()

    def get_filters(self, registration: Registration) -> tuple[str, ...]:
        """The filter names accepted for ``registration``'s model: the view's ``filters`` that
        are its fields (a view over several models may name each one's), else the registration's."""
        names = registration.filters if self.filters is None else self.filters
        return tuple(name for name in names if is_concrete(registration.model, name))

    def ignores_parameter(self, name: str) -> bool:
        """Whether GET parameter ``name`` is tracking noise (:attr:`ignored_parameters`)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignored_parameters)

    # -- the form ------------------------------------------------------------------------------

    def get_form_kwargs(self) -> dict[str, Any]:
        """The arguments of :attr:`form_class` but ``data``."""
        return {
            "models": {r.model: self.get_filters(r) for r in self.registrations},
            "per_page": self.paginate_by,
            "mode": self.mode,
            "ignore": self.ignores_parameter,
            "query_required": self.query_required,
        }

    def get_form(self, data: QueryDict | None = None) -> SearchForm:
        """The search form, bound to ``data`` (the request's GET parameters)."""
        return self.form_class(data, **self.get_form_kwargs())

    def get_search(self, form: SearchForm) -> CheckedSearch | None:
        """The search ``form`` asks for; None before a search (no ``q`` on the page)."""
        if not form.is_valid():
            raise SearchError(form.error_message())
        data = form.cleaned_data
        if not data["q"]:
            return None
        if not self.registrations:
            raise SearchError(_("There is nothing to search here yet."), 503)
        by_model = {r.model: r for r in self.registrations}
        searched = [by_model[model] for model in data["models"]]
        return CheckedSearch(
            data["q"], searched, data["filters"], data["page"], data["per_page"], data["mode"]
        )

    # -- ranking -------------------------------------------------------------------------------

    def search_registration(
        self,
        registration: Registration,
        queryset: QuerySet[Any],
        query_or_vector: Any,
        k: int,
        mode: str,
    ) -> QuerySet[Any]:
        """The ``k`` objects of ``queryset`` nearest ``query_or_vector`` (the visitor's text, or
        a vector) ranked in ``mode``, with ``distance`` and ``score``: the one place the view
        ranks (each model's results, each facet's counts). A text is embedded once per request
        and embedder (with an HTTP embedder, one call per page)."""
        text = query_or_vector if isinstance(query_or_vector, str) else None
        if mode == "keyword" and not has_columns(registration):
            return queryset.none()  # its text comes from a callable: no words to match here
        if text is not None and mode != "keyword":
            vectors = self.__dict__.setdefault("_query_vectors", {})
            key = (registration.embedder_alias, registration.vector_type(), text)
            if key not in vectors:
                vectors[key] = search_query_vector(registration, text)
            query_or_vector = vectors[key]
        return search(
            queryset,
            query_or_vector,
            k=k,
            vector_field=registration.vector_field,
            embedder=registration.embedder_alias,
            mode=mode,
            text=text,
        )

    @staticmethod
    def rank_key(obj: Any, mode: str) -> float:
        """How ``obj`` sorts among the results of several models (smaller first): by distance,
        or by the hybrid or text score, best first."""
        name = {"hybrid": "hybrid_score", "keyword": "text_score"}.get(mode, "distance")
        value = finite(getattr(obj, name, None))
        if value is None:
            return math.inf
        return value if name == "distance" else -value

    def get_paginator(self, hits: Sequence[Any], per_page: int) -> Paginator[Any]:
        """A :attr:`paginator_class` over ``hits``, the (distance, object, registration) found,
        nearest first; the page's become :class:`SearchResult` (:meth:`make_result`)."""
        return self.paginator_class(hits, per_page)

    def run(self, checked: CheckedSearch, params: QueryDict) -> tuple[Page[Any], list[Facet]]:
        """Search, under the statement timeout; a database problem becomes a 503 SearchError."""
        conf = get_settings()
        # One more than the page tells whether there is a next page, within the deepest result a
        # visitor may reach (the form allowed this page): past it there is no next page.
        deepest = min(conf["SEARCH_MAX_RESULTS"], conf["MAX_K"])
        k = min(checked.page * checked.per_page + 1, deepest)
        try:
            with statement_timeout(conf["SEARCH_STATEMENT_TIMEOUT_MS"]):
                hits: list[tuple[float, Any, Registration]] = []
                for registration in checked.registrations:
                    queryset = self._filtered(registration, checked.filters)
                    found = self.search_registration(
                        registration, queryset, checked.query, k, checked.mode
                    )
                    for obj in found:
                        hits.append((self.rank_key(obj, checked.mode), obj, registration))
                # Best first across models: their scores are on the same scale when their
                # registrations share a distance (the default, cosine). Only the page's rows
                # become results (snippets, links).
                hits.sort(key=lambda hit: hit[0])
                page = self.get_paginator(hits[:deepest], checked.per_page).page(checked.page)
                page.object_list = [
                    self.make_result(obj, registration, checked.query)
                    for _, obj, registration in page.object_list
                ]
                facets = self.get_facets(checked, params) if self.facets else []
        except InvalidQuery as e:
            raise SearchError(str(e)) from None
        except EmbeddingError as e:
            # Once per cause and interval: an embedder that is down fails every request alike.
            log_error(logger, "The embedder failed on a search", e)
            raise SearchError(_("Search is unavailable right now; try again later."), 503) from None
        except OperationalError as e:
            if is_timeout(e):
                raise SearchError(
                    _("The search took too long; try fewer words or a filter."), 503
                ) from None
            log_error(logger, "A search failed in the database", e)
            raise SearchError(_("Search is unavailable right now; try again later."), 503) from None
        except (DatabaseError, InterfaceError) as e:  # InterfaceError: a connection found closed
            log_error(logger, "A search failed in the database", e)
            raise SearchError(_("Search is unavailable right now; try again later."), 503) from None
        return page, facets

    def _filtered(
        self, registration: Registration, filters: dict[str, list[str]], *, without: str = ""
    ) -> QuerySet[Any]:
        queryset = self.get_queryset(registration.model)
        for name, values in filters.items():
            if name != without:
                queryset = queryset.filter(**{f"{name}__in": values})
        return queryset

    def get_facets(self, checked: CheckedSearch, params: QueryDict) -> list[Facet]:
        """Counts of each filter's values among the ``SEARCH_FACET_DEPTH`` nearest results.

        Only when one model is searched (filters belong to a model). A filter's counts ignore
        that filter itself, so choosing one value still shows the others to switch to.
        """
        if len(checked.registrations) != 1:
            return []
        registration = checked.registrations[0]
        depth, facets = min(get_settings()["SEARCH_FACET_DEPTH"], get_settings()["MAX_K"]), []
        for name in self.get_filters(registration):
            queryset = self._filtered(registration, checked.filters, without=name)
            nearest = self.search_registration(
                registration, queryset, checked.query, depth, checked.mode
            )
            label = str(getattr(registration.model._meta.get_field(name), "verbose_name", name))
            found, url = nearest.values_list(name, flat=True), partial(toggled_url, params, name)
            facets.append(Facet.count(name, label, found, checked.filters.get(name, []), url))
        return facets

    # -- what is shown -------------------------------------------------------------------------

    def get_title(self, obj: Any) -> str:
        """A result's title: ``str(obj)``."""
        return str(obj)

    def get_url(self, obj: Any) -> str | None:
        """A result's link: ``obj.get_absolute_url()`` when the model has it, else None."""
        get_absolute_url = getattr(obj, "get_absolute_url", None)
        return str(get_absolute_url()) if callable(get_absolute_url) else None

    def get_text(self, obj: Any, registration: Registration) -> str:
        """The text the snippet is cut from: the text the vector was made from."""
        return registration.get_text(obj)

    def make_result(self, obj: Any, registration: Registration, query: str) -> SearchResult:
        """What the page and the API show of ``obj``, found for ``query``."""
        title = self.get_title(obj)
        text = snippets.snippet(
            self.get_text(obj, registration), title, query, length=self.snippet_length
        )
        label = registration.model._meta.label_lower
        score = finite(getattr(obj, "score", None))
        return SearchResult(label, obj.pk, title, self.get_url(obj), score, text, object=obj)

    # -- the request and the responses ---------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Check the request, search, answer; a refused search is answered by render_error()."""
        try:
            form = self.get_form(checked_data(request))
        except ValidationError as e:
            return self.render_error(e.messages[0], 400, form=self.get_form())
        try:
            checked = self.get_search(form)
            if checked is None:  # the page before a search
                return self.render_empty(form)
            page, facets = self.run(checked, request.GET)
        except SearchError as e:
            return self.render_error(e.message, e.status, form=form)
        return self.render_results(checked, form, page, facets)

    def render_empty(self, form: SearchForm) -> HttpResponse:
        """The page before a search: the form alone."""
        return self.render_to_response(self.get_context_data(form=form, searched=False))

    def render_error(self, message: str, status: int, *, form: SearchForm) -> HttpResponse:
        """A refused search: the form and ``message``, with ``status`` (400 or 503)."""
        context = self.get_context_data(form=form, error=message, searched=False)
        return self.render_to_response(context, status=status)

    def render_results(
        self, checked: CheckedSearch, form: SearchForm, page: Page[Any], facets: list[Facet]
    ) -> HttpResponse:
        """The results: ``page`` is the paginator's page of :class:`SearchResult` (see
        :func:`~vectorsearch.snippets.page_context` for the names the template gets)."""
        params = self.request.GET
        context = self.get_context_data(
            form=form,
            searched=True,
            query=checked.query,
            mode=checked.mode,
            facets=facets,
            **snippets.page_context(
                page, checked.per_page, lambda number: page_url(params, number)
            ),
        )
        return self.render_to_response(context)


class VectorSearchAPIView(VectorSearchView):
    """The same search as JSON: ``{"query", "results", "page", "per_page", "has_next"}``.

    Each result is :meth:`SearchResult.as_json`. Every error is ``{"error": message}``: 400,
    405 (any method but GET and HEAD, OPTIONS included), 503 for a timeout or failing database,
    500 for an unexpected failure (DEBUG off; Django's technical page with DEBUG on).
    """

    http_method_names = ["get", "head"]
    facets = False
    query_required = True

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # A read-only GET API: nothing for CSRF to protect, and a client sending POST should get
        # the JSON 405 below, not the HTML page of a CSRF failure.
        return csrf_exempt(super().as_view(**initkwargs))

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        except Exception:
            if settings.DEBUG:
                raise
            # As Django's handler does for a 500 (error reporters listen), but answered in JSON.
            signals.got_request_exception.send(sender=None, request=request)
            logger.exception("The search API failed on %s", request.get_full_path())
            return JsonResponse({"error": _("The search failed; try again later.")}, status=500)

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        message = f"{request.method} is not allowed here; search with GET."
        response = JsonResponse({"error": message}, status=405)
        response["Allow"] = ", ".join(m.upper() for m in self.http_method_names if hasattr(self, m))
        return response

    def render_to_response(self, context: dict[str, Any], **response_kwargs: Any) -> HttpResponse:
        """The context as JSON (:meth:`get_json_data`), as Django's docs mix JSON into views."""
        data = self.get_json_data(context)
        # A NaN that slipped through would be invalid JSON; fail loudly rather than emit it.
        return JsonResponse(data, json_dumps_params={"allow_nan": False}, **response_kwargs)

    def get_json_data(self, context: dict[str, Any]) -> dict[str, Any]:
        """What the answer holds of the context: the error, or the query and its results."""
        if "error" in context:
            return {"error": context["error"]}
        return {
            "query": context["query"],
            "results": [result.as_json() for result in context["results"]],
            **{key: context[key] for key in ("page", "per_page", "has_next")},
        }
