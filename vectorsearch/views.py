"""The search page and JSON API over the models registered with :func:`vectorsearch.register`.

Include them from a URLconf::

    path("search/", include("vectorsearch.urls")),  # vectorsearch:search and vectorsearch:api

or subclass :class:`VectorSearchView` for one model, a narrower queryset or other templates::

    class ProductSearch(VectorSearchView):
        queryset = Product.objects.filter(published=True)
        filters = ["category"]
        paginate_by = 20
        template_name = "shop/search.html"

Every request is checked before any SQL runs: only ``q``, ``model``, ``page``, ``per_page`` and
the whitelisted filters are accepted, anything else is a 400 with a message. Searches run in a
transaction under ``SEARCH_STATEMENT_TIMEOUT_MS``; a cancelled or failing query is a 503 with a
message, never a 500 and never the database's own error text.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import FieldDoesNotExist, TooManyFieldsSent, ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.template.response import TemplateResponse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .conf import get_settings
from .db import is_timeout, statement_timeout
from .exceptions import EmbeddingError, InvalidQuery
from .forms import SearchForm
from .outages import log_error
from .ranking.search import query_vector as search_query_vector
from .ranking.search import search
from .registry import Registration, registry

__all__ = [
    "CheckedSearch",
    "Facet",
    "FacetValue",
    "SearchError",
    "SearchResult",
    "VectorSearchAPIView",
    "VectorSearchView",
    "highlight",
]

logger = logging.getLogger("vectorsearch.views")

#: The parameters every search accepts; any other must be a whitelisted filter.
PARAMETERS = ("q", "model", "page", "per_page")
# The facet values shown per filter (the selected ones are always shown as well).
FACET_VALUES = 12
# A word of the query, for highlighting: letters and digits, at least two of them.
_WORD = re.compile(r"\w{2,}")


class SearchError(Exception):
    """A request the search cannot answer: ``message`` is shown to the visitor as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SearchResult:
    """One hit: what the page and the API show of it. ``snippet`` is escaped HTML with ``<mark>``."""

    model: str
    pk: Any
    title: str
    url: str | None
    score: float | None
    snippet: SafeString
    object: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class FacetValue:
    """A value of a filter among the results, how many results have it, and the URL toggling it."""

    value: str
    count: int
    selected: bool
    url: str


@dataclass(frozen=True)
class Facet:
    """A whitelisted filter with the values found among the nearest results."""

    name: str
    label: str
    values: list[FacetValue]


@dataclass
class CheckedSearch:
    """A request that passed :meth:`VectorSearchView.check`: what to search, where, which page."""

    query: str
    registrations: list[Registration]
    filters: dict[str, list[str]]
    page: int
    per_page: int


def highlight(text: str, query: str, *, length: int = 240) -> SafeString:
    """A snippet of ``text`` around the first word of ``query`` it contains, as safe HTML.

    The text is escaped before anything is marked: the matches are found in the plain text and
    each piece, matched or not, goes through :func:`~django.utils.html.escape`; only the
    ``<mark>`` tags added around matches are trusted. (Marking words inside already-escaped text
    could put a tag in the middle of an entity: a query for "amp" in ``&amp;``.) Words match
    case-insensitively, those of four letters or more with up to three more letters, as a
    search for "password" should mark "Passwords".
    """
    text = " ".join(text.split())
    words = sorted({w.lower() for w in _WORD.findall(query)}, key=len, reverse=True)[:32]
    # Words of 4+ letters also match with a short ending (password: passwords, file: filed);
    # shorter ones only whole, or "by" would mark "bytes".
    alternatives = [re.escape(w) + (r"\w{0,3}" if len(w) >= 4 else "") for w in words]
    pattern = (
        re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE) if words else None
    )
    start = 0
    first = pattern.search(text) if pattern else None
    if first and first.start() > length // 3:
        # Some words of context before the first match, starting at a word.
        start = text.rfind(" ", 0, first.start() - length // 4) + 1
    end = start + length
    if end < len(text):
        end = text.rfind(" ", start, end) if text.rfind(" ", start, end) > start else end
    window = text[start:end]
    pieces: list[str] = ["\u2026 " if start > 0 else ""]
    position = 0
    for match in pattern.finditer(window) if pattern else ():
        pieces.append(escape(window[position : match.start()]))
        pieces.append(f"<mark>{escape(match.group())}</mark>")
        position = match.end()
    pieces.append(escape(window[position:]))
    if end < len(text):
        pieces.append(" \u2026")
    # Safe: every piece of text was escaped above; only the <mark> tags are ours.
    return mark_safe("".join(pieces))


def _finite(value: Any) -> float | None:
    """A score for JSON: NaN and infinity (a zero vector's cosine) become None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class VectorSearchView(View):
    """A search page over registered models: form, results with scores and snippets, facets.

    Subclass and set:

    - ``model`` or ``queryset`` to search one model (the queryset's filters are kept, e.g.
      published rows only); ``models`` (model classes or ``"app_label.model_name"``) to search
      several; neither: every registered model.
    - ``filters``: the filter names accepted from GET (default: each registration's
      ``filters=[...]``); only exact matches, several values of one name meaning "any of".
    - ``paginate_by`` (default ``SEARCH_PER_PAGE``) and ``template_name``.

    Override :meth:`get_queryset`, :meth:`get_title`, :meth:`get_url` or :meth:`get_text` to
    change what is searched and shown.
    """

    http_method_names = ["get", "head", "options"]
    template_name = "vectorsearch/search.html"
    model: type[Model] | None = None
    queryset: QuerySet[Any] | None = None
    models: Sequence[type[Model] | str] | None = None
    filters: Sequence[str] | None = None
    paginate_by: int | None = None
    #: Whether the page counts facet values (two queries more per filter); the API does not.
    facets: bool = True
    #: The snippet's length in characters.
    snippet_length: int = 240
    #: Parameters that links from newsletters, ads and social sites add, ignored rather than
    #: refused (shell-style patterns; a filter of the same name still applies).
    ignored_parameters: Sequence[str] = (
        "utm_*",
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
    )

    # -- what is searched ----------------------------------------------------------------------

    def get_registrations(self) -> list[Registration]:
        """The registrations this view searches: one per model, the model's first one."""
        if self.queryset is not None:
            chosen: Iterable[type[Model] | str] = [self.queryset.model]
        elif self.model is not None:
            chosen = [self.model]
        elif self.models is not None:
            chosen = self.models
        else:
            chosen = list(dict.fromkeys(r.model for r in registry))
        registrations = []
        for model in chosen:
            if isinstance(model, str):
                from django.apps import apps

                model = apps.get_model(model)
            found = registry.for_model(model)
            if found:
                registrations.append(found[0])
        return registrations

    def get_queryset(self, model: type[Model]) -> QuerySet[Any]:
        """The objects of ``model`` a visitor may find (``queryset`` when it is that model's)."""
        if self.queryset is not None and self.queryset.model is model:
            return self.queryset.all()
        return model._default_manager.all()

    def get_filters(self, registration: Registration) -> tuple[str, ...]:
        """The filter names accepted for ``registration``'s model: the view's ``filters`` that
        are fields of that model (a view over several models may name each one's), else the
        registration's ``filters=``."""
        if self.filters is None:
            return registration.filters
        return tuple(
            name for name in self.filters if _concrete_field(registration.model, name) is not None
        )

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
        text = self.get_text(obj, registration)
        # The embedded text often starts with the title (fields=["title", "body"]); the
        # snippet sits under the title, so it would say it twice.
        first, _, rest = text.partition("\n\n")
        if title and text.startswith(title):
            text = text[len(title) :].lstrip()
        elif first.strip() and rest and title.startswith(first.strip()):
            text = rest
        return SearchResult(
            model=registration.model._meta.label_lower,
            pk=obj.pk,
            title=title,
            url=self.get_url(obj),
            score=_finite(getattr(obj, "score", None)),
            snippet=highlight(text, query, length=self.snippet_length),
            object=obj,
        )

    # -- the request ---------------------------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Check the request, search, answer; a refused search is answered by render_error()."""
        registrations = self.get_registrations()
        choices = [
            (r.model._meta.label_lower, str(r.model._meta.verbose_name_plural))
            for r in registrations
        ]
        try:
            # Parsed on first access; more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters raise.
            params = request.GET
        except TooManyFieldsSent:
            return self.render_error(
                _("Too many parameters: a search takes a few, not thousands."),
                400,
                form=SearchForm(models=choices),
            )
        form = SearchForm(params, models=choices)
        try:
            checked = self.check(params, form, registrations)
            if checked is None:  # the page before a search
                return self.render_empty(form)
            results, has_next, facets = self.run(checked, params)
        except SearchError as e:
            return self.render_error(e.message, e.status, form=form)
        return self.render_results(checked, form, results, has_next, facets)

    def ignores_parameter(self, name: str) -> bool:
        """Whether GET parameter ``name`` is tracking noise (:attr:`ignored_parameters`)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignored_parameters)

    def check(
        self, params: QueryDict, form: SearchForm, registrations: list[Registration]
    ) -> CheckedSearch | None:
        """The request, checked; None when there is no ``q`` at all (the empty page)."""
        for key, values in params.lists():
            for text in (key, *values):
                if "\x00" in text:
                    raise SearchError(_("The request contains a NUL character."))
                # Django decodes a query string with errors="replace".
                if "\ufffd" in text:
                    raise SearchError(_("The request is not valid UTF-8."))
        unknown = [key for key in params if key not in PARAMETERS]
        by_label = {r.model._meta.label_lower: r for r in registrations}
        allowed = {name for r in registrations for name in self.get_filters(r)}
        ignored = {key for key in unknown if key not in allowed and self.ignores_parameter(key)}
        unknown = [key for key in unknown if key not in ignored]
        for key in unknown:
            if key not in allowed:
                accepted = ", ".join([*PARAMETERS, *sorted(allowed)])
                raise SearchError(
                    _("Unknown parameter %(name)s: this search accepts %(accepted)s.")
                    % {"name": _quote(key), "accepted": accepted}
                )
        if "q" not in params and self.empty_page_allowed():
            form.is_valid()
            errors = {k: v for k, v in form.errors.items() if k != "q"}
            if errors:
                raise SearchError(_first_error(errors))
            return None
        if not registrations:
            raise SearchError(_("There is nothing to search here yet."), 503)
        if not form.is_valid():
            raise SearchError(_first_error(form.errors))
        data = form.cleaned_data
        per_page = data["per_page"] or self.paginate_by or get_settings()["SEARCH_PER_PAGE"]
        per_page = min(per_page, get_settings()["SEARCH_MAX_PER_PAGE"])
        page = data["page"] or 1
        try:
            form.check_depth(page, per_page)
        except forms.ValidationError as e:
            raise SearchError(" ".join(e.messages)) from None
        if data["model"]:
            registrations = [by_label[data["model"]]]
        filters = {key: params.getlist(key) for key in unknown}
        # Models that do not have every filter asked for cannot match it.
        registrations = [r for r in registrations if set(filters) <= set(self.get_filters(r))]
        if not registrations:
            raise SearchError(
                _("No model here can be filtered on %(names)s.")
                % {"names": ", ".join(_quote(k) for k in filters)}
            )
        for registration in registrations:
            for name, values in filters.items():
                _check_values(registration.model, name, values)
        return CheckedSearch(data["q"], registrations, filters, page, per_page)

    def empty_page_allowed(self) -> bool:
        """Whether a request without ``q`` shows the form (the page) or is an error (the API)."""
        return True

    def run(
        self, checked: CheckedSearch, params: QueryDict
    ) -> tuple[list[SearchResult], bool, list[Facet]]:
        """Search, under the statement timeout; a database problem becomes a 503 SearchError."""
        conf = get_settings()
        offset = (checked.page - 1) * checked.per_page
        # One more than the page tells whether there is a next page, within the deepest result a
        # visitor may reach (check_depth allowed this page): past it there is no next page.
        deepest = min(conf["SEARCH_MAX_RESULTS"], conf["MAX_K"])
        k = min(offset + checked.per_page + 1, deepest)
        try:
            with statement_timeout(conf["SEARCH_STATEMENT_TIMEOUT_MS"]):
                hits: list[tuple[float, Any, Registration]] = []
                for registration in checked.registrations:
                    queryset = self._filtered(registration, checked.filters)
                    found = search(
                        queryset,
                        self.query_vector(registration, checked.query),
                        k=k,
                        vector_field=registration.vector_field,
                        embedder=registration.embedder_alias,
                        mode="semantic",
                    )
                    for obj in found:
                        distance = _finite(getattr(obj, "distance", None))
                        hits.append((math.inf if distance is None else distance, obj, registration))
                # Nearest first across models: their distances are on the same scale when
                # their registrations share a distance (the default, cosine). Only the page's
                # rows become results (snippets, links).
                hits.sort(key=lambda hit: hit[0])
                results = [
                    self.make_result(obj, registration, checked.query)
                    for _, obj, registration in hits[offset : offset + checked.per_page]
                ]
                has_next = len(hits) > offset + checked.per_page and (
                    offset + checked.per_page < deepest
                )
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
        return results, has_next, facets

    def _filtered(
        self, registration: Registration, filters: dict[str, list[str]], *, without: str = ""
    ) -> QuerySet[Any]:
        queryset = self.get_queryset(registration.model)
        for name, values in filters.items():
            if name != without:
                queryset = queryset.filter(**{f"{name}__in": values})
        return queryset

    def query_vector(self, registration: Registration, text: str) -> Any:
        """``text`` embedded by ``registration``'s embedder, once per request and embedder (the
        results of each model and each facet search by it: with an HTTP embedder, one call)."""
        vectors = self.__dict__.setdefault("_query_vectors", {})
        key = (registration.embedder_alias, registration.vector_type())
        if key not in vectors:
            vectors[key] = search_query_vector(registration, text)
        return vectors[key]

    def get_facets(self, checked: CheckedSearch, params: QueryDict) -> list[Facet]:
        """Counts of each filter's values among the ``SEARCH_FACET_DEPTH`` nearest results.

        Only when one model is searched (filters belong to a model). A filter's counts ignore
        that filter itself, so choosing one value still shows the others to switch to.
        """
        if len(checked.registrations) != 1:
            return []
        registration = checked.registrations[0]
        depth = min(get_settings()["SEARCH_FACET_DEPTH"], get_settings()["MAX_K"])
        facets = []
        for name in self.get_filters(registration):
            queryset = self._filtered(registration, checked.filters, without=name)
            nearest = search(
                queryset,
                self.query_vector(registration, checked.query),
                k=depth,
                vector_field=registration.vector_field,
                embedder=registration.embedder_alias,
                mode="semantic",
            )
            counts = Counter(
                str(v) for v in nearest.values_list(name, flat=True) if v not in (None, "")
            )
            selected = set(checked.filters.get(name, []))
            shown = [v for v, _ in counts.most_common(FACET_VALUES)]
            shown += sorted(selected - set(shown))
            values = [
                FacetValue(
                    value=value,
                    count=counts.get(value, 0),
                    selected=value in selected,
                    url=_toggle(params, name, value),
                )
                for value in shown
            ]
            field = registration.model._meta.get_field(name)
            label = str(getattr(field, "verbose_name", name))
            facets.append(Facet(name=name, label=label, values=values))
        return facets

    # -- responses -----------------------------------------------------------------------------

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """The template context: ``view`` and what the caller passes."""
        return {"view": self, **kwargs}

    def render_empty(self, form: SearchForm) -> HttpResponse:
        """The page before a search: the form alone."""
        return TemplateResponse(
            self.request, self.template_name, self.get_context_data(form=form, searched=False)
        )

    def render_error(self, message: str, status: int, *, form: SearchForm) -> HttpResponse:
        """A refused search: the form and ``message``, with ``status`` (400 or 503)."""
        return TemplateResponse(
            self.request,
            self.template_name,
            self.get_context_data(form=form, error=message, searched=False),
            status=status,
        )

    def render_results(
        self,
        checked: CheckedSearch,
        form: SearchForm,
        results: list[SearchResult],
        has_next: bool,
        facets: list[Facet],
    ) -> HttpResponse:
        """The results page."""
        params = self.request.GET
        context = self.get_context_data(
            form=form,
            searched=True,
            query=checked.query,
            results=results,
            facets=facets,
            page=checked.page,
            per_page=checked.per_page,
            has_next=has_next,
            has_previous=checked.page > 1,
            next_url=_with_page(params, checked.page + 1) if has_next else None,
            previous_url=_with_page(params, checked.page - 1) if checked.page > 1 else None,
            first_number=(checked.page - 1) * checked.per_page + 1,
            last_number=(checked.page - 1) * checked.per_page + len(results),
        )
        return TemplateResponse(self.request, self.template_name, context)


class VectorSearchAPIView(VectorSearchView):
    """The same search as JSON: ``{"query", "results", "page", "per_page", "has_next"}``.

    Each result is ``{"model", "pk", "title", "url", "score", "snippet"}``; ``title`` is plain
    text (escape it where you show it), ``snippet`` escaped HTML with ``<mark>`` around matches.
    Errors are ``{"error": message}`` with status 400 (503 for a timeout or failing database).
    """

    facets = False

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # A read-only GET API: nothing for CSRF to protect, and a client sending POST should get
        # the JSON 405 below, not the HTML page of a CSRF failure.
        return csrf_exempt(super().as_view(**initkwargs))

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = JsonResponse(
            {"error": f"{request.method} is not allowed here; search with GET."}, status=405
        )
        response["Allow"] = ", ".join(m.upper() for m in self.http_method_names if hasattr(self, m))
        return response

    def empty_page_allowed(self) -> bool:
        return False

    def render_error(self, message: str, status: int, *, form: SearchForm) -> HttpResponse:
        return JsonResponse({"error": message}, status=status)

    def render_results(
        self,
        checked: CheckedSearch,
        form: SearchForm,
        results: list[SearchResult],
        has_next: bool,
        facets: list[Facet],
    ) -> HttpResponse:
        return JsonResponse(
            {
                "query": checked.query,
                "results": [
                    {
                        "model": r.model,
                        "pk": r.pk if isinstance(r.pk, int | str) else str(r.pk),
                        "title": r.title,
                        "url": r.url,
                        "score": r.score,
                        "snippet": str(r.snippet),
                    }
                    for r in results
                ],
                "page": checked.page,
                "per_page": checked.per_page,
                "has_next": has_next,
            },
            # A NaN that slipped through would be invalid JSON; fail loudly rather than emit it.
            json_dumps_params={"allow_nan": False},
        )


def _quote(name: str) -> str:
    """A parameter name for a message: quoted, and cut short (it could be 10 kB)."""
    return repr(name if len(name) <= 40 else name[:40] + "\u2026")


def _first_error(errors: Any) -> str:
    for field_errors in errors.values():
        for message in field_errors:
            return str(message)
    return _("Invalid search.")


def _check_values(model: type[Model], name: str, values: list[str]) -> None:
    """Each filter value must be one the field can hold, or the database would error."""
    field = model._meta.get_field(name)
    for value in values:
        try:
            field.to_python(value)  # type: ignore[union-attr]
        except ValidationError:
            raise SearchError(
                _("%(value)s is not a valid value for %(name)s.")
                % {"value": _quote(value), "name": _quote(name)}
            ) from None
        max_length = getattr(field, "max_length", None)
        if max_length is not None and len(value) > max_length:
            raise SearchError(
                _("%(value)s is not a valid value for %(name)s.")
                % {"value": _quote(value), "name": _quote(name)}
            )


def _with_page(params: QueryDict, page: int) -> str:
    copy = params.copy()
    copy["page"] = str(page)
    return "?" + copy.urlencode()


def _toggle(params: QueryDict, name: str, value: str) -> str:
    """The query string with ``name=value`` added, or removed when present; back to page 1."""
    copy = params.copy()
    values = copy.getlist(name)
    copy.setlist(name, [v for v in values if v != value] if value in values else [*values, value])
    copy.pop("page", None)
    return "?" + copy.urlencode()


def _concrete_field(model: type[Model], name: str) -> Any:
    """The concrete field ``name`` of ``model``, or None (unknown, a relation path, reverse)."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return field if getattr(field, "concrete", False) else None
