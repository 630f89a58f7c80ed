from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from vectorsearch import InvalidQuery

from .models import Article

TOPICS = {"animals": [1.0, 0.1, 0.1], "vehicles": [0.1, 1.0, 0.1], "food": [0.1, 0.1, 1.0]}


def home(request: HttpRequest) -> HttpResponse:
    """Articles ranked by similarity to a vector typed in the form (or a topic's)."""
    raw = request.GET.get("v", "").strip()
    topic = request.GET.get("topic", "")
    error = ""
    vector: list[float] | str = raw or TOPICS.get(topic, TOPICS["animals"])
    articles = Article.objects.all()
    try:
        if raw:  # "[0.9, 0.2, 0.1]" typed in the form: parsed and checked like the model field
            vector = Article._meta.get_field("embedding").formfield().clean(raw)
        ranked = articles.similar_to(vector)
        page = Paginator(ranked, 10).get_page(request.GET.get("page"))
        status = 200
    except ValidationError as e:
        error, page, status = " ".join(e.messages), None, 400
    except InvalidQuery as e:
        error, page, status = str(e), None, 400
    return render(
        request,
        "demo/home.html",
        {"page": page, "error": error, "v": raw, "topic": topic, "topics": TOPICS},
        status=status,
    )
