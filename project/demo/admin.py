from django.contrib import admin

from .models import Passage


@admin.register(Passage)
class PassageAdmin(admin.ModelAdmin):
    list_display = ["title", "section", "module", "kind"]
    list_filter = ["kind"]
    search_fields = ["title", "module"]
    show_full_result_count = False  # counting 20,000 rows on every page is wasted work
