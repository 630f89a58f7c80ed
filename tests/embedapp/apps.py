from django.apps import AppConfig


class EmbedAppConfig(AppConfig):
    name = "tests.embedapp"
    label = "embedapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import vectorsearch

        from .models import Article, Note, Post, Tag

        vectorsearch.register(Article, fields=["title", "body"], vector_field="embedding")
        vectorsearch.register(Note, fields=["title", "body"], filters=["category"])
        vectorsearch.register(Post, fields=["title"])
        vectorsearch.register(Tag, fields=lambda tag: f"{tag.slug}: {tag.label}", embedder="small")
