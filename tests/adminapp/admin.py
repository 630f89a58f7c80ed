"""ModelAdmins with VectorSearchAdminMixin for the admin tests, over tests.embedapp's models.

NoteAdmin restricts rows the way real sites do: a non-superuser's changelist never has
category "secret" (``get_queryset``), and notes titled "Private ..." fail
``has_view_permission(request, obj)``. The Similar items panel must honour both.
"""

from django.contrib import admin

from tests.embedapp.models import Article, Note, Tag
from vectorsearch.admin import VectorSearchAdminMixin


@admin.register(Article)
class ArticleAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
    list_display = ["title", "vectorsearch_vector_summary"]
    search_fields = ["title"]
    # Names the vector field: the mixin shows its read-only display in that place.
    fields = ["title", "body", "embedding"]


@admin.register(Note)
class NoteAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
    list_display = ["title", "category", "vectorsearch_vector_summary"]
    list_filter = ["category"]
    search_fields = ["title", "body"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not request.user.is_superuser:
            queryset = queryset.exclude(category="secret")
        return queryset

    def has_view_permission(self, request, obj=None):
        if obj is not None and obj.title.startswith("Private") and not request.user.is_superuser:
            return False
        return super().has_view_permission(request, obj)


@admin.register(Tag)
class TagAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
    # No search_fields: the search box searches by meaning only.
    list_display = ["slug", "label"]
