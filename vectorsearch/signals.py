"""Saves and deletes of registered models keep their vectors in step.

:func:`on_save` embeds the saved object now (``SYNC = "immediate"``, the default), enqueues
:data:`vectorsearch.tasks.embed_objects` when the transaction commits (``"task"``) or does nothing
(``"manual"``, for sites that only run the backfill); :func:`on_delete` removes the object's
vectors, so none is orphaned. Registrations made with ``register(..., connect_signals=False)``
are skipped by both.

The receivers are connected per sender, as in django-modelsearch's ``signal_handlers``: a
``post_delete`` receiver for every model would cost each unrelated model Django's fast delete
(a queryset ``delete()`` of it would load its rows to send the signal). Since models may be
registered and unregistered at any time (after start-up too, as tests do), :func:`connect` —
called once from ``AppConfig.ready()`` — connects the models registered so far and then follows
the registry's :data:`~vectorsearch.registry.registration_changed` signal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.db.models.signals import post_delete, post_save

from . import tasks
from .registry import Registration, registration_changed, registry
from .sync import delete_vectors, sync_mode, sync_objects

__all__ = ["connect", "on_delete", "on_save"]

logger = logging.getLogger("vectorsearch.sync")


def registrations_of(sender: type[models.Model]) -> list[Registration]:
    """The registrations a save of a ``sender`` object feeds: its model's and, for a multi-table
    child or a proxy, its parents' (saving a child saves the parent's row); without those
    registered with ``connect_signals=False``."""
    found = registry.for_model(sender)
    for parent in sender._meta.get_parent_list():
        found.extend(registry.for_model(parent))
    return [r for r in found if r.connect_signals]


def _deletes_vectors(sender: type[models.Model]) -> bool:
    # A proxy's rows are its concrete model's. A multi-table child's delete also sends the
    # post_delete of its parent's row, which is where the parent's vectors are removed.
    concrete = sender._meta.concrete_model or sender
    return any(r.connect_signals for r in registry.for_model(concrete))


def on_save(
    sender: type[models.Model],
    instance: Any,
    raw: bool = False,
    using: str = "default",
    update_fields: Iterable[str] | None = None,
    **kwargs: Any,
) -> None:
    """``post_save``: embed, enqueue or leave alone, by the registration's sync mode."""
    if raw:  # loaddata: the backfill embeds fixtures, which may not be consistent yet
        return
    for registration in registrations_of(sender):
        if (
            update_fields is not None
            and registration.text is None
            and not _field_names(sender, update_fields) & set(registration.fields)
        ):
            continue  # none of the source fields was saved: the text cannot have changed
        mode = sync_mode(registration)
        if mode == "manual":
            continue
        if mode == "task":
            tasks.enqueue(registration, [str(instance.pk)], using)
            continue
        try:
            # A savepoint, so a failure here never breaks the caller's transaction.
            with transaction.atomic(using=using):
                sync_objects(registration, [instance], using=using)
        except Exception:
            # The object is saved; its vector stays missing or stale, which
            # vectorsearch_status shows and vectorsearch_backfill repairs.
            logger.exception(
                "Could not embed %s pk=%s on save; run vectorsearch_backfill to retry.",
                registration.label,
                instance.pk,
            )


def on_delete(
    sender: type[models.Model], instance: Any, using: str = "default", **kwargs: Any
) -> None:
    """``post_delete``: remove the object's vectors (of every registration of its model)."""
    concrete = sender._meta.concrete_model or sender
    if _deletes_vectors(sender):
        delete_vectors(concrete, [str(instance.pk)], using)


def _senders(model: type[models.Model]) -> list[type[models.Model]]:
    """``model`` and the models whose saves also save its rows: multi-table children, proxies.

    Django sends ``post_save`` with the class of the object saved only.
    """
    return [model] + [
        other
        for other in apps.get_models()
        if other is not model and issubclass(other, model) and not other._meta.abstract
    ]


def connect_model(model: type[models.Model]) -> None:
    """Connect or disconnect the receivers of ``model`` and of its children and proxies, as
    their registrations now require."""
    for sender in _senders(model):
        uid = f"vectorsearch.signals.{sender._meta.label_lower}"
        if registrations_of(sender):
            post_save.connect(on_save, sender=sender, dispatch_uid=uid)
        else:
            post_save.disconnect(sender=sender, dispatch_uid=uid)
        if _deletes_vectors(sender):
            post_delete.connect(on_delete, sender=sender, dispatch_uid=uid)
        else:
            post_delete.disconnect(sender=sender, dispatch_uid=uid)


def _registration_changed(sender: Any, model: type[models.Model], **kwargs: Any) -> None:
    connect_model(model)


def connect() -> None:
    """Connect the receivers of the models registered so far, and follow the site registry's
    changes from now on. Called once, from ``VectorSearchConfig.ready()``."""
    for model in {r.model for r in registry}:
        connect_model(model)
    registration_changed.connect(
        _registration_changed, sender=registry, dispatch_uid="vectorsearch.signals"
    )


def _field_names(model: type[models.Model], names: Iterable[str]) -> set[str]:
    """``save(update_fields=...)`` as field names: Django also takes attnames (``author_id``)."""
    by_attname = {f.attname: f.name for f in model._meta.concrete_fields}
    return {by_attname.get(name, name) for name in names}
