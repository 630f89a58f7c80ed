from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "project.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import vectorsearch

        from .models import Passage

        # The generic Embedding table, as for a model whose table can't change; visitors may
        # filter on the module and the kind of object (the search page shows them as facets).
        vectorsearch.register(
            Passage, fields=["title", "heading", "body"], filters=["module", "kind"]
        )
