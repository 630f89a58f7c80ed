from django.contrib import admin

from .models import Article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "topic", "embedding"]
    list_filter = ["topic"]
    search_fields = ["title"]
