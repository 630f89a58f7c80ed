from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import pre_migrate


class VectorSearchConfig(AppConfig):
    name = "vectorsearch"
    verbose_name = "Vector search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .operations import create_extension_before_migrate

        # Sent once per migrate run with this app as sender, before any migration is applied.
        pre_migrate.connect(
            create_extension_before_migrate,
            sender=self,
            dispatch_uid="vectorsearch.create_extension",
        )
