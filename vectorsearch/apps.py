from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import pre_migrate, pre_save


class VectorSearchConfig(AppConfig):
    name = "vectorsearch"
    verbose_name = "Vector search"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.postgres.indexes import OpClass
        from django.db.models import OrderBy
        from django.db.models.functions import Collate
        from django.db.models.indexes import IndexExpression

        from . import checks  # noqa: F401  (registers the system checks)
        from .fields import check_vectors_before_save
        from .operations import create_extension_before_migrate
        from .signals import connect as connect_sync_signals

        # Operator classes on index expressions (HnswIndex(Cast(...), distance=...)) need
        # OpClass registered as a wrapper, which django.contrib.postgres does only when it is
        # installed; same call, same order as its AppConfig.
        IndexExpression.register_wrappers(OrderBy, OpClass, Collate)

        pre_save.connect(check_vectors_before_save, dispatch_uid="vectorsearch.check_vectors")
        # Sent once per migrate run with this app as sender, before any migration is applied.
        pre_migrate.connect(
            create_extension_before_migrate,
            sender=self,
            dispatch_uid="vectorsearch.create_extension",
        )
        # Saves and deletes of registered models, and of those registered later on.
        connect_sync_signals()
