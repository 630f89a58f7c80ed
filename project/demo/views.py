from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

import vectorsearch

from .models import Passage


def passage(request: HttpRequest, pk: int) -> HttpResponse:
    """One passage, its neighbours in the page it comes from, and the most similar others."""
    shown = get_object_or_404(Passage, pk=pk)
    siblings = Passage.objects.filter(title=shown.title, module=shown.module).order_by("section")
    # Unfiltered, so the HNSW index serves it (excluding the page's own passages in SQL would
    # make PostgreSQL rank every passage); the page's own are dropped here instead.
    nearest = vectorsearch.search(Passage.objects.all(), f"{shown.title}\n\n{shown.body}", k=30)
    similar = [p for p in nearest if p.title != shown.title][:5]
    return render(
        request,
        "demo/passage.html",
        {"passage": shown, "siblings": siblings[:50], "similar": similar},
    )
