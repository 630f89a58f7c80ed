from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

import vectorsearch

from .models import Passage


def passage(request: HttpRequest, pk: int) -> HttpResponse:
    """One passage, its neighbours in the page it comes from, and the most similar others."""
    shown = get_object_or_404(Passage, pk=pk)
    siblings = Passage.objects.filter(title=shown.title, module=shown.module).order_by("section")
    similar = vectorsearch.search(
        Passage.objects.exclude(title=shown.title), f"{shown.title}\n\n{shown.body}", k=5
    )
    return render(
        request,
        "demo/passage.html",
        {"passage": shown, "siblings": siblings[:50], "similar": similar},
    )
