"""Keeping stored vectors in step with the text they came from.

Every stored vector records the embedder's ``identity`` and the SHA-256 of its source text. A row
is then one of:

- **current**: the vector was made by the registered embedder from the object's present text;
- **stale**: the text changed since, or the embedder did (its identity differs);
- **missing**: no vector yet;
- **unknown**: a vector whose source text is unknown (imported, or written by the site's own code
  before registration); kept by the backfill, replaced on the object's next save.

Every writer shares two pieces: :func:`embed_and_write`, one batch embedded and stored in one
transaction, and :func:`embed_rows`, the loop over a queryset a batch at a time that the backfill,
the admin's "Re-embed selected" and the background task (:mod:`vectorsearch.tasks`) run; a save
(:mod:`vectorsearch.signals`) calls :func:`sync_objects`. Writes go through ``COPY ... (FORMAT
BINARY)`` into a temporary table and one ``INSERT ... ON CONFLICT`` (or ``UPDATE``) statement,
inside one transaction per batch: a batch is written whole or not at all, which is what makes the
backfill safe to kill and rerun.

This module knows nothing of signals or tasks: they call it, never the reverse. It is longer than
400 lines while the COPY writer (``_copy_cursor``, ``copy_rows``, ``write_vectors``, ~110 lines)
still lives here; that writer is moving to ``vectorsearch/bulk.py``, shared with the import.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import get_settings
from .exceptions import EmbeddingError
from .registry import Registration, registry

__all__ = [
    "BackfillResult",
    "Batch",
    "Item",
    "backfill",
    "classify",
    "delete_orphans",
    "delete_vectors",
    "embed_and_write",
    "embed_rows",
    "iter_items",
    "status",
    "sync_mode",
    "sync_objects",
    "write_vectors",
]

CURRENT, STALE, MISSING, UNKNOWN = "current", "stale", "missing", "unknown"
STAGING = "vectorsearch_staging"


@dataclass(frozen=True)
class Item:
    """An object as the sync sees it: id as text, source text, whether it has a vector."""

    object_id: str
    text: str
    source_hash: str
    has_vector: bool | None = None  # for a model column; None: ask the Embedding table


@dataclass(frozen=True)
class State:
    identity: str
    source_hash: str
    has_vector: bool


def classify(
    registration: Registration,
    item: Item,
    state: State | None,
    identity: str,
    *,
    trust_unknown: bool = True,
) -> str:
    """``current``, ``stale``, ``missing`` or ``unknown`` (see the module docstring).

    With ``trust_unknown=False`` (a save, where the old text is not known) an unknown vector is
    reported ``stale`` so it is replaced.
    """
    has_vector = (
        item.has_vector if item.has_vector is not None else bool(state and state.has_vector)
    )
    if not has_vector:
        return MISSING
    if state is None or not state.source_hash:
        if state is not None and state.identity != identity:
            return STALE
        return UNKNOWN if trust_unknown else STALE
    if state.identity != identity or state.source_hash != item.source_hash:
        return STALE
    return CURRENT


def stored_states(
    registration: Registration, object_ids: Sequence[str], using: str
) -> dict[str, State]:
    """The Embedding rows of ``object_ids`` for this registration."""

    rows = (
        registration.embedding_rows(using)
        .filter(object_id__in=list(object_ids))
        .annotate(
            has_vector=models.ExpressionWrapper(
                models.Q(vector__isnull=False), output_field=models.BooleanField()
            )
        )
        .values_list("object_id", "identity", "source_hash", "has_vector")
    )
    return {
        oid: State(identity, source_hash, has_vector)
        for oid, identity, source_hash, has_vector in rows
    }


def items_of(
    registration: Registration, objects: Iterable[Any], *, column_known: bool
) -> list[Item]:
    out = []
    for obj in objects:
        text = registration.get_text(obj)
        has_vector = None
        if registration.vector_field is not None and column_known:
            has_vector = getattr(obj, "_vs_has_vector", None)
            if has_vector is None:
                has_vector = getattr(obj, registration.vector_field) is not None
        out.append(Item(str(obj.pk), text, registration.hash_text(text), has_vector))
    return out


def reading_sources(registration: Registration, queryset: models.QuerySet[Any]) -> Any:
    """``queryset`` reading what embedding its objects needs: the source fields (a foreign key
    among them joined, as it is read as ``str(related object)``), never the vector itself."""
    model = registration.model
    only = registration.loaded_fields()
    if only is None:
        if registration.vector_field is not None:
            queryset = queryset.defer(registration.vector_field)
        return queryset
    queryset = queryset.only(*only)
    related = [
        name
        for name in registration.fields
        if getattr(model._meta.get_field(name), "many_to_one", False)
        or getattr(model._meta.get_field(name), "one_to_one", False)
    ]
    return queryset.select_related(*related) if related else queryset


def iter_items(
    registration: Registration,
    *,
    batch_size: int,
    using: str = "default",
    after: Any = None,
    queryset: models.QuerySet[Any] | None = None,
) -> Iterator[tuple[Any, list[Item]]]:
    """Every object of ``queryset`` (default: all of the model's in ``using``), in primary key
    order, a batch at a time (keyset pagination).

    Yields ``(last primary key, items)``; each batch is one query, so a table of any size is
    read in bounded memory and no cursor is held between batches.
    """
    if queryset is None:
        queryset = registration.model._base_manager.using(using)
    queryset = reading_sources(registration, queryset.order_by("pk"))
    if registration.vector_field is not None:
        queryset = queryset.annotate(
            _vs_has_vector=models.ExpressionWrapper(
                models.Q(**{f"{registration.vector_field}__isnull": False}),
                output_field=models.BooleanField(),
            )
        )
    last = after
    while True:
        page = queryset if last is None else queryset.filter(pk__gt=last)
        objects = list(page[:batch_size])
        if not objects:
            return
        last = objects[-1].pk
        yield last, items_of(registration, objects, column_known=True)


# -- writing ------------------------------------------------------------------------------------

_vector_type_infos: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _copy_cursor(connection: BaseDatabaseWrapper, cursor: Any) -> Any:
    """The psycopg cursor under Django's, knowing pgvector's types for ``COPY ... BINARY``.

    The types are registered on this cursor only: registered on the connection, they would make
    every later query return ``pgvector.Vector`` objects where Django code expects lists.
    """
    from pgvector.psycopg.vector import register_vector_info
    from psycopg.types import TypeInfo

    raw_connection = connection.connection
    raw_cursor = cursor.cursor
    info = _vector_type_infos.get(raw_connection)
    if info is None:
        info = TypeInfo.fetch(raw_connection, "vector")
        _vector_type_infos[raw_connection] = info
    register_vector_info(raw_cursor, info)
    return raw_cursor


def copy_rows(
    connection: BaseDatabaseWrapper,
    cursor: Any,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT BINARY)``: the fastest way in for vectors."""
    raw = _copy_cursor(connection, cursor)
    quote = connection.ops.quote_name
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN (FORMAT BINARY)"
    # The raw cursor bypasses Django's error translation; this restores it (IntegrityError...).
    with connection.wrap_database_errors, raw.copy(sql) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def write_vectors(
    registration: Registration,
    items: Sequence[Item | tuple[str, str]],
    vectors: np.ndarray[Any, Any],
    *,
    identity: str | None = None,
    using: str = "default",
) -> int:
    """Store ``vectors[i]`` as the vector of ``items[i]``, all or nothing, in one transaction.

    ``items`` are :class:`Item` or ``(object_id, source_hash)`` pairs (an empty hash: the
    source is unknown). Objects deleted
    meanwhile are skipped (no orphan is written). Returns how many objects got a vector.
    """
    if len(items) != len(vectors):
        raise ValueError(f"{len(items)} items but {len(vectors)} vectors.")
    if not len(items):
        return 0
    identity = identity or registration.embedder.identity
    pairs = [(i.object_id, i.source_hash) if isinstance(i, Item) else i for i in items]
    model = registration.model
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_column = quote(str(model._meta.pk.column))
    pk_type = model._meta.pk.cast_db_type(connection) or "text"
    from .models import Embedding

    embedding_table = quote(Embedding._meta.db_table)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        # ON COMMIT DROP would not do inside a caller's transaction (a save in a request
        # wrapped in ATOMIC_REQUESTS): the rows are deleted explicitly below instead.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} "
            "(object_id text, source_hash text, vector vector)"
        )
        copy_rows(
            connection,
            cursor,
            STAGING,
            ["object_id", "source_hash", "vector"],
            ["text", "text", "vector"],
            (
                (oid, source_hash, vector)
                for (oid, source_hash), vector in zip(pairs, vectors, strict=True)
            ),
        )
        if registration.vector_field is not None:
            field = registration.model_field()
            column = quote(str(field.column))
            cast = "halfvec" if registration.vector_type() == "halfvec" else "vector"
            cursor.execute(
                f"UPDATE {table} SET {column} = s.vector::{cast} FROM {STAGING} s "
                f"WHERE {table}.{pk_column} = s.object_id::{pk_type}"
            )
            written = cursor.rowcount
        vector_sql = "NULL" if registration.vector_field is not None else "s.vector"
        cursor.execute(
            f"INSERT INTO {embedding_table} "
            "(content_type_id, object_id, key, identity, source_hash, vector, updated_at) "
            f"SELECT %s, s.object_id, %s, %s, s.source_hash, {vector_sql}, now() "
            f"FROM {STAGING} s JOIN {table} m ON m.{pk_column} = s.object_id::{pk_type} "
            "ON CONFLICT (content_type_id, object_id, key) DO UPDATE SET "
            "identity = EXCLUDED.identity, source_hash = EXCLUDED.source_hash, "
            "vector = EXCLUDED.vector, updated_at = EXCLUDED.updated_at",
            [registration.content_type_id(using), registration.key, identity],
        )
        if registration.vector_field is None:
            written = cursor.rowcount
        cursor.execute(f"DELETE FROM {STAGING}")
    return int(written)


def delete_vectors(
    model: type[models.Model], object_ids: Sequence[str], using: str = "default"
) -> int:
    """Remove every vector and bookkeeping row of these objects (all registrations)."""
    from .models import Embedding

    if model not in registry:
        return 0
    ct_id = registry.for_model(model)[0].content_type_id(using)
    deleted, _ = (
        Embedding.objects.using(using)
        .filter(content_type_id=ct_id, object_id__in=list(object_ids))
        .delete()
    )
    return deleted


def _orphans(registration: Registration, using: str, verb: str) -> int:
    from .models import Embedding

    connection = connections[using]
    quote = connection.ops.quote_name
    model = registration.model
    pk_type = model._meta.pk.cast_db_type(connection) or "text"
    head = "SELECT count(*)" if verb == "count" else "DELETE"
    with connection.cursor() as cursor:
        cursor.execute(
            f"{head} FROM {quote(Embedding._meta.db_table)} e "
            "WHERE e.content_type_id = %s AND e.key = %s AND NOT EXISTS ("
            f"SELECT 1 FROM {quote(model._meta.db_table)} m "
            f"WHERE m.{quote(str(model._meta.pk.column))} = e.object_id::{pk_type})",
            [registration.content_type_id(using), registration.key],
        )
        return int(cursor.fetchone()[0]) if verb == "count" else int(cursor.rowcount)


def delete_orphans(registration: Registration, using: str = "default") -> int:
    """Delete this registration's Embedding rows whose object is gone (e.g. a raw SQL delete)."""
    return _orphans(registration, using, "delete")


def count_orphans(registration: Registration, using: str = "default") -> int:
    """How many of this registration's Embedding rows belong to no object."""
    return _orphans(registration, using, "count")


# -- embedding ----------------------------------------------------------------------------------


@dataclass
class Failure:
    object_id: str
    error: str


def embed_items(
    registration: Registration, items: Sequence[Item]
) -> tuple[list[Item], np.ndarray[Any, Any], list[Failure]]:
    """Embed ``items``; when the batch fails, find the failing items one by one.

    Returns the items that got vectors, their vectors, and the failures (with the error text).
    """
    embedder = registration.embedder
    try:
        return list(items), embedder.embed([i.text for i in items]), []
    except Exception as batch_error:
        if len(items) == 1 or getattr(batch_error, "transient", False):
            # An unavailable embedder fails every row alike: one by one, each row would only
            # wait for its own timeouts and retries.
            return (
                [],
                np.zeros((0, embedder.dimensions), np.float32),
                [Failure(item.object_id, _describe(batch_error)) for item in items],
            )
    good: list[Item] = []
    vectors: list[np.ndarray[Any, Any]] = []
    failures: list[Failure] = []
    for item in items:
        try:
            vectors.append(embedder.embed([item.text])[0])
            good.append(item)
        except Exception as error:
            failures.append(Failure(item.object_id, _describe(error)))
    stacked = np.stack(vectors) if vectors else np.zeros((0, embedder.dimensions), np.float32)
    return good, stacked, failures


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class Batch:
    """What :func:`embed_and_write` did with one batch."""

    items: list[Item]  # those that got a vector
    vectors: np.ndarray[Any, Any]
    failures: list[Failure]
    written: int  # objects whose vector was stored (one deleted meanwhile is not)


def embed_and_write(
    registration: Registration,
    items: Sequence[Item],
    *,
    identity: str | None = None,
    using: str = "default",
    on_error: str = "stop",
    hint: str = "",
) -> Batch:
    """Embed ``items`` and store their vectors in one transaction: the step every writer shares.

    When the embedder fails for some items, ``on_error="stop"`` raises :class:`EmbeddingError`
    naming them (the first five), followed by ``hint``, and writes nothing; ``"skip"`` writes
    the others and returns the failures.
    """
    identity = identity or registration.embedder.identity
    good, vectors, failures = embed_items(registration, items)
    if failures and on_error == "stop":
        raise EmbeddingError(
            f"{registration.label}: the embedder failed for {len(failures)} row(s) "
            f"({failure_summary(failures)}); this batch was not written{hint}",
        )
    written = write_vectors(registration, good, vectors, identity=identity, using=using)
    return Batch(good, vectors, failures, written)


def sync_objects(
    registration: Registration,
    objects: Sequence[Any],
    *,
    using: str = "default",
    trust_unknown: bool = False,
) -> int:
    """Embed and store the objects whose vector is missing or stale; return how many were.

    For objects in memory (a save): their text is read from the instances, and a model's own
    vector column is set on them too. All or nothing: a failure raises :class:`EmbeddingError`.
    """
    items = items_of(registration, objects, column_known=True)
    states = stored_states(registration, [i.object_id for i in items], using)
    identity = registration.embedder.identity
    todo = [
        i
        for i in items
        if classify(registration, i, states.get(i.object_id), identity, trust_unknown=trust_unknown)
        in (MISSING, STALE)
    ]
    if not todo:
        return 0
    batch = embed_and_write(registration, todo, identity=identity, using=using, hint=".")
    if registration.vector_field is not None:
        # The column was written with SQL; give the instances the same value, or their next
        # save() would write the old one back over it.
        by_id = {str(obj.pk): obj for obj in objects}
        attname = registration.model_field().attname
        for item, vector in zip(batch.items, batch.vectors, strict=True):
            if item.object_id in by_id:
                setattr(by_id[item.object_id], attname, vector.tolist())
    return batch.written


def sync_mode(registration: Registration) -> str:
    """What a save of this registration's model does: ``register(sync=...)``, else ``SYNC``."""
    mode: str = registration.sync or get_settings()["SYNC"]
    return mode


# -- backfill and status ------------------------------------------------------------------------


@dataclass
class BackfillResult:
    """What one run of :func:`embed_rows` (a backfill, a re-embed, a task) did, or, with
    ``dry_run``, would do, for one registration."""

    registration: Registration
    rows: int = 0  # objects read
    missing: int = 0
    stale: int = 0
    embedded: int = 0
    orphans_deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: False when the run stopped at its deadline with objects left to read.
    complete: bool = True


def embed_rows(
    registration: Registration,
    queryset: models.QuerySet[Any] | None = None,
    *,
    force: bool = False,
    stale_only: bool = False,
    trust_unknown: bool = True,
    batch_size: int = 256,
    dry_run: bool = False,
    on_error: str = "stop",
    using: str | None = None,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
    result: BackfillResult | None = None,
) -> BackfillResult:
    """Embed the objects of ``queryset`` that need it, a batch per transaction: the one loop
    of the backfill, the admin's "Re-embed selected" and the background task.

    ``queryset`` defaults to every object of the model in ``using`` (default: the queryset's
    database, else ``"default"``); it is read in primary key order, ``batch_size`` objects a
    query. Embedded are the missing and stale objects (only the stale ones with ``stale_only``),
    or every object with ``force``. ``trust_unknown=False`` also replaces vectors of unknown
    source (a save's task does, the backfill doesn't). ``on_error`` is :func:`embed_and_write`'s:
    ``"stop"`` raises at the first failing batch (earlier batches stay written), ``"skip"``
    returns the failures. ``deadline`` (a :func:`time.monotonic` value) stops the loop between
    batches once passed, with ``complete=False`` in the result.

    The counts go into ``result`` (a new :class:`BackfillResult` by default) batch by batch, so
    a caller that passes its own still knows what was written when a later batch raises.
    """
    if using is None:
        using = queryset.db if queryset is not None else "default"
    if result is None:
        result = BackfillResult(registration)
    identity = registration.embedder.identity
    hint = (
        ", earlier ones were. Fix the cause and run again to resume, or pass on_error='skip' "
        "(vectorsearch_backfill --on-error skip) to embed the other rows."
    )
    batches = iter_items(registration, batch_size=batch_size, using=using, queryset=queryset)
    for _last, items in batches:
        result.rows += len(items)
        states = stored_states(registration, [i.object_id for i in items], using)
        todo = []
        for item in items:
            state = states.get(item.object_id)
            kind = classify(registration, item, state, identity, trust_unknown=trust_unknown)
            if kind == MISSING:
                result.missing += 1
                if not stale_only:
                    todo.append(item)
            elif kind == STALE:
                result.stale += 1
                todo.append(item)
            elif force:
                todo.append(item)
        if todo and not dry_run:
            batch = embed_and_write(
                registration, todo, identity=identity, using=using, on_error=on_error, hint=hint
            )
            result.failures.extend(batch.failures)
            result.embedded += batch.written
        if progress is not None:
            progress(len(items))
        if deadline is not None and len(items) == batch_size and time.monotonic() >= deadline:
            result.complete = False
            break
    return result


def backfill(
    registration: Registration,
    *,
    batch_size: int = 256,
    dry_run: bool = False,
    stale_only: bool = False,
    all_rows: bool = False,
    on_error: str = "stop",
    using: str = "default",
    progress: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Embed the missing and stale objects of one registration (every object with
    ``all_rows``), a batch per transaction, then delete its orphan vectors.

    Resumable by construction: every batch is written whole or not at all, and a rerun skips
    what is current, so a run killed at any point and started again ends in exactly the state of
    an uninterrupted run. With ``on_error="stop"`` the first failing batch raises
    :class:`EmbeddingError` naming its failing rows (nothing of that batch is written); with
    ``"skip"`` the other rows are written and the failures returned.
    """
    result = embed_rows(
        registration,
        force=all_rows,
        stale_only=stale_only,
        batch_size=batch_size,
        dry_run=dry_run,
        on_error=on_error,
        using=using,
        progress=progress,
    )
    if not dry_run:
        result.orphans_deleted = delete_orphans(registration, using)
    return result


def failure_summary(failures: Sequence[Failure], limit: int = 5) -> str:
    """The first ``limit`` failures, "pk=...: error" each, and how many more."""
    shown = "; ".join(f"pk={f.object_id}: {f.error}" for f in failures[:limit])
    more = f"; and {len(failures) - limit} more" if len(failures) > limit else ""
    return shown + more


@dataclass
class Status:
    """Counts for one registration, as ``vectorsearch_status`` prints them."""

    registration: Registration
    rows: int = 0
    current: int = 0
    stale: int = 0
    missing: int = 0
    unknown: int = 0
    orphans: int = 0

    @property
    def embedded(self) -> int:
        return self.current + self.stale + self.unknown


def status(registration: Registration, *, batch_size: int = 2000, using: str = "default") -> Status:
    """Count rows that are current, stale, missing or of unknown source, and orphan vectors."""
    result = Status(registration)
    identity = registration.embedder.identity
    for _last, items in iter_items(registration, batch_size=batch_size, using=using):
        states = stored_states(registration, [i.object_id for i in items], using)
        for item in items:
            kind = classify(registration, item, states.get(item.object_id), identity)
            setattr(result, kind, getattr(result, kind) + 1)
            result.rows += 1
    result.orphans = count_orphans(registration, using)
    return result
