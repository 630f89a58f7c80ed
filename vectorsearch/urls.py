"""``path("search/", include("vectorsearch.urls"))``: the search page and its JSON API.

- ``vectorsearch:search`` (``""``): the HTML page, :class:`~vectorsearch.views.VectorSearchView`;
- ``vectorsearch:api`` (``"api/"``): JSON, :class:`~vectorsearch.views.VectorSearchAPIView`.

Both search every registered model; subclass the views for anything narrower.
"""

from django.urls import path

from .views import VectorSearchAPIView, VectorSearchView

app_name = "vectorsearch"

urlpatterns = [
    path("", VectorSearchView.as_view(), name="search"),
    path("api/", VectorSearchAPIView.as_view(), name="api"),
]
