from django.contrib import admin

from vectorsearch.admin import VectorSearchAdminMixin

from .models import Passage


@admin.register(Passage)
class PassageAdmin(VectorSearchAdminMixin, admin.ModelAdmin):
    """Editors search the passages by meaning, see similar ones and re-embed after edits."""

    list_display = ["title", "section", "module", "kind"]
    list_filter = ["kind"]
    search_fields = ["title", "module"]
    show_full_result_count = False  # counting 20,000 rows on every page is wasted work
