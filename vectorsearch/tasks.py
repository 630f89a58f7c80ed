"""Embedding in the background: ``VECTORSEARCH = {"SYNC": "task"}``, and the admin's re-embed of
large selections.

Saves then enqueue :data:`embed_objects` once the transaction commits (so the worker sees the
saved row), through Django's tasks framework (``django.tasks``, Django 6.0+) or the
``django-tasks`` package on Django 5.2 (the ``tasks`` extra). The task re-reads the objects and
embeds those still missing or stale (all of them with ``force``, the admin's re-embed), through
the same loop as the backfill (:func:`vectorsearch.sync.embed_rows`), so a task that runs twice,
late, or after a later save does no harm.

Without either package installed this module still imports: :data:`TASK_AVAILABLE` is False and
:func:`enqueue` raises.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .conf import get_settings
from .exceptions import EmbeddingError, InvalidEmbedderError
from .registry import Registration, registry
from .sync import embed_rows, failure_summary

__all__ = [
    "TASK_AVAILABLE",
    "background_backend",
    "embed_objects",
    "enqueue",
    "run_embed_objects",
    "task_decorator",
]

_FRAMEWORKS = ("django.tasks", "django_tasks")


def task_decorator() -> Any:
    """Django's ``task`` decorator, or django-tasks', or None when neither is installed."""
    for module in _FRAMEWORKS:
        try:
            return importlib.import_module(module).task
        except ImportError:
            continue
    return None


def embed_objects(
    model_label: str,
    key: str,
    object_ids: list[str],
    using: str = "default",
    force: bool = False,
) -> int:
    """Embed the missing or stale ones among these objects (all of them with ``force``).

    Returns how many were embedded. When the embedder fails for some, the others are written
    and :class:`EmbeddingError` names the failures, so the task's result says what was left.
    """
    model = apps.get_model(model_label)
    registration = next((r for r in registry.for_model(model) if r.key == key), None)
    if registration is None:
        return 0  # unregistered since the task was enqueued
    result = embed_rows(
        registration,
        model._base_manager.using(using).filter(pk__in=object_ids),
        force=force,
        trust_unknown=False,
        batch_size=int(get_settings()["BATCH_SIZE"]),
        on_error="skip",
        using=using,
    )
    if result.failures:
        raise EmbeddingError(
            f"{registration.label}: embedded {result.embedded} of {len(object_ids)} object(s); "
            f"the embedder failed for {len(result.failures)} "
            f"({failure_summary(result.failures)}). vectorsearch_backfill retries them."
        )
    return result.embedded


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


def background_backend() -> Any:
    """The task backend :data:`embed_objects` is enqueued on, when it runs tasks outside the
    request; None without a tasks framework, with a broken ``TASKS`` setting, or with the
    immediate backend (Django's default), which runs a task at once, in the request."""
    if not TASK_AVAILABLE:
        return None
    task: Any = embed_objects
    try:
        backend = task.get_backend()
    except ImproperlyConfigured:  # InvalidTaskBackendError
        return None
    for module in _FRAMEWORKS:
        try:
            immediate = importlib.import_module(f"{module}.backends.immediate").ImmediateBackend
        except ImportError:
            continue
        if isinstance(backend, immediate):
            return None
    return backend


def enqueue(
    registration: Registration,
    object_ids: Sequence[str],
    using: str = "default",
    *,
    force: bool = False,
    chunk_size: int | None = None,
) -> int:
    """Enqueue :data:`embed_objects` for these objects when the current transaction commits, in
    tasks of ``chunk_size`` objects (default: all in one). Returns how many tasks."""
    if not TASK_AVAILABLE:
        raise InvalidEmbedderError(
            "VECTORSEARCH['SYNC'] is 'task' but no tasks framework is installed: "
            "pip install 'django-vectorsearch[tasks]' (django-tasks) on Django 5.2, or use "
            "SYNC='immediate'."
        )
    ids = list(object_ids)
    size = chunk_size or max(len(ids), 1)
    chunks = [ids[start : start + size] for start in range(0, len(ids), size)]
    task: Any = embed_objects
    label, key = registration.model._meta.label, registration.key

    def send() -> None:
        for chunk in chunks:
            task.enqueue(label, key, chunk, using, force=force)

    # robust: a queue that is down must not make the caller's save fail after its commit (the
    # error is logged; vectorsearch_status shows the vector stale and the backfill repairs it).
    transaction.on_commit(send, using=using, robust=True)
    return len(chunks)
