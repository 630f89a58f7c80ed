"""Embedding in the background: ``VECTORSEARCH = {"SYNC": "task"}``.

Saves then enqueue :data:`embed_objects` once the transaction commits (so the worker sees the
saved row), through Django's tasks framework (``django.tasks``, Django 6.0+) or the
``django-tasks`` package on Django 5.2 (the ``tasks`` extra). The task re-reads the objects and
embeds those still missing or stale, so a task that runs twice, late, or after a later save
does no harm.

This module is imported only when a save enqueues, so sites that embed immediately need neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.db import transaction

from .exceptions import InvalidEmbedderError
from .registry import Registration, registry

__all__ = ["embed_objects", "enqueue", "run_embed_objects", "task_decorator"]


def task_decorator() -> Any:
    """Django's ``task`` decorator, or django-tasks', or None when neither is installed."""
    import importlib

    for module in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(module).task
        except ImportError:
            continue
    return None


def embed_objects(model_label: str, key: str, object_ids: list[str], using: str = "default") -> int:
    """Embed the missing or stale ones among these objects; returns how many were embedded."""
    from .sync import sync_objects

    model = apps.get_model(model_label)
    registration = next((r for r in registry.for_model(model) if r.key == key), None)
    if registration is None:
        return 0  # unregistered since the task was enqueued
    objects = list(model._base_manager.using(using).filter(pk__in=object_ids))
    return sync_objects(registration, objects, using=using)


#: The plain function, for direct calls and for sites without a tasks framework.
run_embed_objects = embed_objects

_task = task_decorator()
if _task is not None:
    # Rebind the name as ``@task`` would: a worker finds the task by the function's module and
    # name, and must find the Task object there, not the bare function.
    embed_objects = _task()(embed_objects)
    TASK_AVAILABLE = True
else:
    TASK_AVAILABLE = False


def enqueue(registration: Registration, object_ids: Sequence[str], using: str = "default") -> None:
    """Enqueue :data:`embed_objects` for these objects when the current transaction commits."""
    if not TASK_AVAILABLE:
        raise InvalidEmbedderError(
            "VECTORSEARCH['SYNC'] is 'task' but no tasks framework is installed: "
            "pip install 'django-vectorsearch[tasks]' (django-tasks) on Django 5.2, or use "
            "SYNC='immediate'."
        )
    args = (registration.model._meta.label, registration.key, list(object_ids), using)
    task: Any = embed_objects
    transaction.on_commit(lambda: task.enqueue(*args), using=using)
