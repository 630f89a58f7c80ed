"""The one way vectors go into PostgreSQL in bulk: ``COPY ... FROM STDIN (FORMAT BINARY)``.

:func:`copy_binary` writes columns given whole (a numpy array of vectors, a list of ids, a value
shared by every row) in PostgreSQL's binary COPY format ("Binary Format" under COPY in its
documentation; pgvector's ``vector_recv`` for vectors: int16 dimensions, int16 unused, float4s).
The rows are laid out by numpy, a chunk of thousands at a time, with no Python work per row.
psycopg's own ``Copy.write_row()`` with pgvector's binary dumper encodes every field of every
row in Python: copying 399,000 GloVe rows (bigint id, 50-d vector) into a temporary table took
it 1.4 s of client CPU against 0.12 s here (8.5 s against 2.3 s wall, on the shared 2-core
machine; the server's CPU, 0.3-0.4 s, is the same). For large loads the chunks are sent from a
background thread (psycopg's ``QueuedLibpqWriter``) while the next one is built.

On it: :func:`write_vectors` (sync's batches: the backfill, saves, the admin's re-embed) and
:func:`import_vectors` (``vectorsearch_import``). Both are all or nothing inside the caller's
transaction and keep the bookkeeping rows of the Embedding table (identity, source hash) right.
(A little over 400 lines: the encoder and the two writers on it are read together; the import's
part is the one to split off should it grow.)
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.copy import QueuedLibpqWriter

from .exceptions import VectorSearchError
from .fields import dense_text
from .registry import Registration

__all__ = ["Column", "ImportConflict", "copy_binary", "import_vectors", "write_vectors"]

STAGING = "vectorsearch_staging"
IMPORT_STAGING = "vectorsearch_import"
#: Rows per chunk of the COPY stream (a few MB at 384 dimensions).
CHUNK_ROWS = 5_000
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
# Binary integer layouts by the column type they are copied into.
INTEGER_TYPES = {"smallint": ">i2", "integer": ">i4", "bigint": ">i8"}


@dataclass(frozen=True)
class Column:
    """One column of a binary COPY. Build it with :meth:`value`, :meth:`texts`,
    :meth:`integers` or :meth:`vectors`."""

    name: str
    kind: str  # "value": the same encoded field in every row; "text", "integer", "vector"
    data: Any

    @classmethod
    def value(cls, name: str, value: str | int | datetime | None, *, db_type: str = "") -> Column:
        """The same value in every row: text, an integer of ``db_type``, a timestamptz, NULL."""
        if value is None:
            return cls(name, "value", struct.pack(">i", -1))
        if isinstance(value, str):
            encoded = value.encode()
            return cls(name, "value", struct.pack(">i", len(encoded)) + encoded)
        if isinstance(value, datetime):
            delta = value - PG_EPOCH
            micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            return cls(name, "value", struct.pack(">iq", 8, micro))
        layout = np.dtype(INTEGER_TYPES[db_type or "integer"])
        return cls(
            name, "value", struct.pack(">i", layout.itemsize) + np.array(value, layout).tobytes()
        )

    @classmethod
    def texts(cls, name: str, values: Sequence[str]) -> Column:
        return cls(name, "text", list(map(str.encode, values)))

    @classmethod
    def integers(cls, name: str, values: Any, db_type: str) -> Column:
        """Whole numbers for a ``smallint``, ``integer`` or ``bigint`` column (range-checked by
        the caller: numpy wraps around where PostgreSQL would refuse)."""
        return cls(name, "integer", np.asarray(values).astype(INTEGER_TYPES[db_type]))

    @classmethod
    def vectors(cls, name: str, values: np.ndarray[Any, Any]) -> Column:
        """A 2-D array, one ``vector`` per row (float32 on the wire)."""
        if values.ndim != 2:
            raise ValueError(f"Expected a 2-D array of vectors, got shape {values.shape}.")
        return cls(name, "vector", values)


def encode(columns: Sequence[Column], rows: int) -> Iterator[tuple[int, Any]]:
    """The binary COPY stream of ``rows`` rows: yields ``(rows in this piece, buffer)``.

    Rows whose text fields have the same lengths have the same layout: each such group is one
    numpy structured array per chunk, whose bytes are the rows. The groups may reorder rows.
    """
    yield 0, _HEADER
    texts = [c for c in columns if c.kind == "text"]
    if texts:
        lengths = [np.fromiter(map(len, c.data), np.int64, count=rows) for c in texts]
        key = np.zeros(rows, np.int64)
        for length in lengths:
            key = key * (int(length.max(initial=0)) + 1) + length
        groups, inverse = np.unique(key, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        bounds = np.searchsorted(inverse.reshape(-1)[order], np.arange(len(groups) + 1))
        parts = [order[bounds[g] : bounds[g + 1]] for g in range(len(groups))]
    else:
        parts = [np.arange(rows)]
    for positions in parts:
        first = positions[0]
        widths = {c.name: len(c.data[first]) for c in texts}
        layout = _row_layout(columns, widths)
        for start in range(0, len(positions), CHUNK_ROWS):
            chunk = positions[start : start + CHUNK_ROWS]
            out = np.empty(len(chunk), layout)
            out["count"] = len(columns)
            # Positions in order and contiguous (the usual case): a slice is a view, where
            # fancy indexing would copy every vector once more.
            contiguous = int(chunk[-1]) - int(chunk[0]) == len(chunk) - 1
            pick = slice(int(chunk[0]), int(chunk[-1]) + 1) if contiguous else chunk
            for i, column in enumerate(columns):
                if column.kind == "value":
                    out[f"f{i}"] = np.void(column.data)
                elif column.kind == "text":
                    out[f"l{i}"] = widths[column.name]
                    if widths[column.name]:
                        picked = (
                            column.data[pick] if contiguous else [column.data[p] for p in chunk]
                        )
                        out[f"f{i}"] = picked
                elif column.kind == "integer":
                    out[f"l{i}"] = column.data.itemsize
                    out[f"f{i}"] = column.data[pick]
                else:
                    dimensions = column.data.shape[1]
                    out[f"l{i}"] = np.void(struct.pack(">iHH", 4 + 4 * dimensions, dimensions, 0))
                    out[f"f{i}"] = column.data[pick]
            # A byte view, not tobytes(): psycopg sends any buffer, and this saves a copy.
            yield len(chunk), out.view(np.uint8).data
    yield 0, _TRAILER


def _row_layout(columns: Sequence[Column], widths: dict[str, int]) -> np.dtype[Any]:
    fields: list[Any] = [("count", ">i2")]
    for i, column in enumerate(columns):
        if column.kind == "value":
            fields.append((f"f{i}", f"V{len(column.data)}"))
        elif column.kind == "text":
            fields.append((f"l{i}", ">i4"))
            if widths[column.name]:
                fields.append((f"f{i}", f"S{widths[column.name]}"))
        elif column.kind == "integer":
            fields += [(f"l{i}", ">i4"), (f"f{i}", column.data.dtype)]
        else:
            fields += [(f"l{i}", "V8"), (f"f{i}", ">f4", (column.data.shape[1],))]
    return np.dtype(fields)


def copy_binary(
    connection: BaseDatabaseWrapper,
    cursor: Any,
    table: str,
    columns: Sequence[Column],
    rows: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT BINARY)`` of ``rows`` rows, through Django's
    ``cursor`` (so in its transaction), with Django's error translation (IntegrityError...)."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(c.name) for c in columns)
    sql = f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT BINARY)"
    raw = cursor.cursor
    # From a thread, the server parses one chunk while numpy builds the next; not worth a
    # thread for a save's single row.
    writer = QueuedLibpqWriter(raw) if rows > CHUNK_ROWS else None
    with connection.wrap_database_errors, raw.copy(sql, writer=writer) as copy:
        for count, chunk in encode(columns, rows):
            copy.write(chunk)
            if progress is not None and count:
                progress(count)


class SourceItem(Protocol):
    """What :func:`write_vectors` reads of an item (``sync.Item`` is one)."""

    @property
    def object_id(self) -> str: ...

    @property
    def source_hash(self) -> str: ...


def write_vectors(
    registration: Registration,
    items: Sequence[SourceItem | tuple[str, str]],
    vectors: np.ndarray[Any, Any],
    *,
    identity: str | None = None,
    using: str = "default",
) -> int:
    """Store ``vectors[i]`` as the vector of ``items[i]``, all or nothing, in one transaction.

    ``items`` are :class:`vectorsearch.sync.Item` or ``(object_id, source_hash)`` pairs (an
    empty hash: the source is unknown). Objects deleted meanwhile are skipped (no orphan is
    written). Returns how many objects got a vector.
    """
    if len(items) != len(vectors):
        raise ValueError(f"{len(items)} items but {len(vectors)} vectors.")
    if not len(items):
        return 0
    identity = identity or registration.embedder.identity
    pairs = [i if isinstance(i, tuple) else (i.object_id, i.source_hash) for i in items]
    model = registration.model
    connection = connections[using]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_column = quote(str(model._meta.pk.column))
    pk_type = model._meta.pk.cast_db_type(connection) or "text"
    embedding_table = quote(_embedding_table())
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if len(pairs) <= SMALL_BATCH:
            # A save's one or few rows: the rows inline, as VALUES. A temporary table per save
            # would write the system catalogs on every request that saves (CONN_MAX_AGE = 0
            # opens a new session each time), for rows a COPY has no time to pay off on.
            values = ", ".join(["(%s, %s, %s::vector)"] * len(pairs))
            source = f"(VALUES {values}) AS s (object_id, source_hash, vector)"
            params: list[Any] = [
                value
                for (oid, source_hash), vector in zip(pairs, np.asarray(vectors), strict=True)
                for value in (oid, source_hash, dense_text(vector))
            ]
        else:
            # ON COMMIT DROP would not do inside a caller's transaction (a save in a request
            # wrapped in ATOMIC_REQUESTS): the rows are deleted explicitly below instead.
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} "
                "(object_id text, source_hash text, vector vector)"
            )
            copy_binary(
                connection,
                cursor,
                STAGING,
                [
                    Column.texts("object_id", [oid for oid, _ in pairs]),
                    Column.texts("source_hash", [source_hash for _, source_hash in pairs]),
                    Column.vectors("vector", np.asarray(vectors)),
                ],
                len(pairs),
            )
            source, params = f"{STAGING} s", []
        if registration.vector_field is not None:
            column = quote(str(registration.model_field().column))
            cursor.execute(
                f"UPDATE {table} SET {column} = s.vector::{_cast(registration)} FROM {source} "
                f"WHERE {table}.{pk_column} = s.object_id::{pk_type}",
                params,
            )
            written = cursor.rowcount
        vector_sql = "NULL" if registration.vector_field is not None else "s.vector"
        cursor.execute(
            f"INSERT INTO {embedding_table} "
            "(content_type_id, object_id, key, identity, source_hash, vector, updated_at) "
            f"SELECT %s, s.object_id, %s, %s, s.source_hash, {vector_sql}, now() "
            f"FROM {source} JOIN {table} m ON m.{pk_column} = s.object_id::{pk_type} "
            f"{_UPSERT}",
            [registration.content_type_id(using), registration.key, identity, *params],
        )
        if registration.vector_field is None:
            written = cursor.rowcount
        if not params:
            cursor.execute(f"DELETE FROM {STAGING}")
    return int(written)


#: Up to this many rows (a save, a small task) are written inline, without the COPY staging.
SMALL_BATCH = 16


_UPSERT = (
    "ON CONFLICT (content_type_id, object_id, key) DO UPDATE SET "
    "identity = EXCLUDED.identity, source_hash = EXCLUDED.source_hash, "
    "vector = EXCLUDED.vector, updated_at = EXCLUDED.updated_at"
)


def _embedding_table() -> str:
    from .models import Embedding

    return Embedding._meta.db_table


def _cast(registration: Registration) -> str:
    return "halfvec" if registration.vector_type() == "halfvec" else "vector"


# -- vectorsearch_import --------------------------------------------------------------------------


class ImportConflict(VectorSearchError):
    """An import that would leave objects unmatched or overwrite vectors: raised inside the
    transaction (so nothing stays written), the command turns it into its message."""

    def __init__(self, missing: list[str], missing_count: int, taken: int) -> None:
        self.missing, self.missing_count, self.taken = missing, missing_count, taken
        super().__init__(f"{missing_count} id(s) match no object; {taken} have a vector already.")


def import_vectors(
    registration: Registration,
    object_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    identity: str,
    replace: bool = False,
    using: str = "default",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store ``vectors[i]`` for the object whose primary key reads ``object_ids[i]``, as
    vectors of unknown source made by ``identity``; all or nothing, in the caller's transaction.

    ``object_ids`` are unique, canonical (as the primary key field reads them back) and in range
    of the primary key's type, and the vectors finite: the caller checks. Into a generic
    registration the rows are copied straight into the Embedding table (IntegrityError when some
    exist and not ``replace``: the caller checks that the objects exist). Into a model's own
    column, the vectors are copied into a temporary table, keyed by the primary key's own type,
    and set by one ``UPDATE ... FROM``, then the bookkeeping rows are copied in;
    :class:`ImportConflict` when some id matches no object, or (not ``replace``) some object has
    a vector already.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    content_type_id = registration.content_type_id(using)
    embedding_table = _embedding_table()
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if registration.is_generic:
            if replace:
                cursor.execute(
                    f"DELETE FROM {quote(embedding_table)} WHERE content_type_id = %s "
                    "AND key = %s AND object_id = ANY(%s::text[])",
                    [content_type_id, registration.key, list(object_ids)],
                )
            columns = [
                Column.value("content_type_id", content_type_id),
                Column.texts("object_id", object_ids),
                Column.value("key", registration.key),
                Column.value("identity", identity),
                Column.value("source_hash", ""),  # unknown source
                Column.vectors("vector", vectors),
                Column.value("updated_at", datetime.now(UTC)),
            ]
            copy_binary(connection, cursor, embedding_table, columns, len(object_ids), progress)
            return len(object_ids)
        return _import_into_column(
            registration,
            connection,
            cursor,
            object_ids,
            vectors,
            identity=identity,
            replace=replace,
            progress=progress,
        )


def _import_into_column(
    registration: Registration,
    connection: BaseDatabaseWrapper,
    cursor: Any,
    object_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    identity: str,
    replace: bool,
    progress: Callable[[int], None] | None,
) -> int:
    model: type[models.Model] = registration.model
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk_column = quote(str(model._meta.pk.column))
    pk_type = model._meta.pk.cast_db_type(connection) or "text"
    column = quote(str(registration.model_field().column))
    if pk_type in INTEGER_TYPES:
        # Keyed by the primary key's own type: no cast per row in the join, and true statistics.
        numbers = np.fromiter(map(int, object_ids), np.int64, count=len(object_ids))
        ids = Column.integers("id", numbers, pk_type)
        staged_type, staged_id = pk_type, "s.id"
    else:
        ids, staged_type, staged_id = Column.texts("id", object_ids), "text", f"s.id::{pk_type}"
    cursor.execute(f"DROP TABLE IF EXISTS {IMPORT_STAGING}")
    cursor.execute(f"CREATE TEMPORARY TABLE {IMPORT_STAGING} (id {staged_type}, vector vector)")
    copy_binary(
        connection,
        cursor,
        IMPORT_STAGING,
        [ids, Column.vectors("vector", vectors)],
        len(object_ids),
        progress,
    )
    free_only = "" if replace else f" AND {table}.{column} IS NULL"
    cursor.execute(
        f"UPDATE {table} SET {column} = s.vector::{_cast(registration)} "
        f"FROM {IMPORT_STAGING} s WHERE {table}.{pk_column} = {staged_id}{free_only}"
    )
    updated = int(cursor.rowcount)
    if updated != len(object_ids):
        cursor.execute(
            f"SELECT s.id::text FROM {IMPORT_STAGING} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {table} m WHERE m.{pk_column} = {staged_id})"
        )
        unmatched = {row[0] for row in cursor.fetchall()}
        missing = [oid for oid in object_ids if oid in unmatched]
        raise ImportConflict(missing[:10], len(missing), len(object_ids) - updated - len(missing))
    # The bookkeeping rows: the old ones of these objects (if any) go, then the new ones are
    # copied in. A COPY fills whole pages per WAL record, where INSERT ... SELECT (and more so
    # INSERT ... ON CONFLICT, or UPDATE ... RETURNING feeding one) logs and checks row by row.
    content_type_id = registration.content_type_id(connection.alias)
    cursor.execute(
        f"DELETE FROM {quote(_embedding_table())} e USING {IMPORT_STAGING} s "
        "WHERE e.content_type_id = %s AND e.key = %s AND e.object_id = s.id::text",
        [content_type_id, registration.key],
    )
    copy_binary(
        connection,
        cursor,
        _embedding_table(),
        [
            Column.value("content_type_id", content_type_id),
            Column.texts("object_id", object_ids),
            Column.value("key", registration.key),
            Column.value("identity", identity),
            Column.value("source_hash", ""),
            Column.value("updated_at", datetime.now(UTC)),
        ],
        len(object_ids),
    )
    cursor.execute(f"DROP TABLE {IMPORT_STAGING}")
    return updated
