from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from project.demo import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="vectorsearch:search"), name="home"),
    path("search/", include("vectorsearch.urls")),
    path("docs/<int:pk>/", views.passage, name="passage"),
    path("admin/", admin.site.urls),
]
