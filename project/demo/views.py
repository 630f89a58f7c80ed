import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

import vectorsearch
from vectorsearch.conf import get_settings
from vectorsearch.db import is_timeout, statement_timeout
from vectorsearch.outages import is_database_away, log_error

from .models import Passage

logger = logging.getLogger(__name__)


def passage(request: HttpRequest, pk: int) -> HttpResponse:
    """One passage, its neighbours in the page it comes from, and the most similar others.

    While the database is away: a short 503, logged once per cause and interval.
    """
    try:
        return _passage(request, pk)
    except (DatabaseError, InterfaceError) as e:
        if not is_database_away(e):
            raise
        log_error(logger, "The passage page could not reach the database", e)
        return HttpResponse(
            "The documentation is unavailable right now; try again in a moment.",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": "5"},
        )


def _passage(request: HttpRequest, pk: int) -> HttpResponse:
    shown = get_object_or_404(Passage, pk=pk)
    siblings = Passage.objects.filter(title=shown.title, module=shown.module).order_by("section")
    similar: list[Passage] = []
    try:
        # A public page: its search runs under the same statement timeout as the search page.
        with statement_timeout(get_settings()["SEARCH_STATEMENT_TIMEOUT_MS"]):
            # "More like this": the passage's stored vector, not its text embedded again; the
            # page's own parts are left out in SQL (an iterative index scan steps over them).
            others = Passage.objects.exclude(title=shown.title)
            similar = list(vectorsearch.search(others, shown, k=5, mode="semantic"))
    except vectorsearch.InvalidQuery:
        pass  # a passage with nothing to search by has no similar ones
    except OperationalError as e:
        if not is_timeout(e):
            raise
        logger.warning("Similar passages of %s took too long; shown without them", pk)
    # Rendered here, inside passage()'s handler: the siblings are read while rendering.
    return render(
        request,
        "demo/passage.html",
        {"passage": shown, "siblings": siblings[:50], "similar": similar},
    )
