from django.apps import AppConfig


class GloveAppConfig(AppConfig):
    name = "benchmarks.gloveapp"
    label = "gloveapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import vectorsearch

        from .models import Word

        vectorsearch.register(Word, fields=["word"], vector_field="embedding")
