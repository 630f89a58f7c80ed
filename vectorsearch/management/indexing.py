"""What the index commands share: index names and SQL, facts and health, builds with progress,
and deferring an index over a big load (vectorsearch_index, _status, _backfill)."""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.management.base import OutputWrapper
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ..index_health import drop_index, index_health, leftover_indexes
from ..registry import Registration

__all__ = [
    "DEFER_INDEX_FRACTION",
    "BuildProgress",
    "DeferredIndex",
    "IndexInfo",
    "build_after_load",
    "describe_size",
    "drop_for_load",
    "existing_indexes",
    "generic_index_name",
    "generic_index_sql",
    "human_size",
    "index_info",
    "index_report",
    "registration_indexes",
    "run_index_ddl",
    "vector_count",
    "work_mem_mb",
]


# -- indexes ------------------------------------------------------------------------------------


def generic_index_name(registration: Registration) -> str:
    """A stable name per (model, key, embedder identity, distance), within Django's 30 chars."""
    digest = hashlib.sha1(
        "|".join(
            [
                registration.model._meta.label_lower,
                registration.key,
                registration.embedder.identity,
                registration.query_distance().value,
            ]
        ).encode(),
        usedforsecurity=False,
    ).hexdigest()
    return f"vs_{str(registration.model._meta.model_name)[:12]}_{digest[:12]}"


def generic_index_sql(
    registration: Registration, using: str = "default", *, concurrently: bool
) -> str:
    """``CREATE INDEX`` for the partial HNSW expression index serving one generic registration.

    ``vector::vector(N)`` over the rows of this model, key and embedder identity only: the
    expression and the predicate are what :func:`vectorsearch.search` ranks and filters on, so
    the planner can use the index. Written as SQL rather than an ``HnswIndex`` expression index:
    Django parenthesizes the operator class correctly only with ``django.contrib.postgres``
    installed, which this app does not require.
    """
    from ..models import Embedding

    connection = connections[using]
    quote = connection.ops.quote_name
    vtype = registration.vector_type()
    opclass = registration.query_distance().opclass(vtype)
    dimensions = registration.embedder.dimensions
    with connection.schema_editor(atomic=False, collect_sql=True) as editor:
        literal = editor.quote_value
        predicate = (
            f"content_type_id = {int(registration.content_type_id(using))} "
            f"AND {quote('key')} = {literal(registration.key)} "
            f"AND identity = {literal(registration.embedder.identity)}"
        )
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}"
        f"{quote(generic_index_name(registration))} ON {quote(Embedding._meta.db_table)} "
        f"USING hnsw ((vector::{vtype}({dimensions})) {opclass}) WHERE {predicate}"
    )


@dataclass
class IndexInfo:
    name: str
    exists: bool
    valid: bool
    size_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.exists,
            "valid": self.valid,
            "size_bytes": self.size_bytes,
        }


def index_info(name: str, using: str = "default") -> IndexInfo:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT x.indisvalid, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    if row is None:
        return IndexInfo(name, False, False, 0)
    return IndexInfo(name, True, bool(row[0]), int(row[1]))


def registration_indexes(registration: Registration, using: str = "default") -> list[str]:
    """Names of the vector indexes serving a registration's searches."""
    if registration.is_generic:
        return [generic_index_name(registration)]
    from ..indexes import index_field_names, vector_indexes

    return [
        index.name
        for index in vector_indexes(registration.model)
        if registration.vector_field in index_field_names(index, registration.model)
    ]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def index_report(name: str, using: str = "default") -> dict[str, Any]:
    """:func:`index_info` plus the bloat figures and the leftovers beside the index."""
    report = index_info(name, using).as_dict()
    health = index_health(connections[using], name) if report["exists"] else None
    report["rows"] = None if health is None else health.rows
    report["estimate_bytes"] = None if health is None else health.estimate_bytes
    ratio = None if health is None else health.ratio
    report["ratio"] = None if ratio is None else round(ratio, 2)
    report["bloated"] = bool(health and health.bloated)
    report["leftovers"] = [
        {
            "name": leftover.name,
            "valid": leftover.valid,
            "size_bytes": leftover.size_bytes,
            "why": leftover.why,
            "building": leftover.building,
        }
        for leftover in (leftover_indexes(connections[using], name) if report["exists"] else [])
    ]
    return report


def describe_size(report: dict[str, Any]) -> str:
    """``40.0 MB`` and, for HNSW, how it compares with a fresh build of its rows."""
    text = human_size(report["size_bytes"])
    if report.get("estimate_bytes"):
        text += (
            f", {report['ratio']:.2f}x the {human_size(report['estimate_bytes'])} a fresh build "
            f"of its {report['rows']:,} vectors takes"
        )
    return text


# -- building ------------------------------------------------------------------------------------

# Bytes of maintenance_work_mem per indexed vector beyond its floats: HNSW's neighbour lists
# (2 * m = 32 links of 6 bytes on layer 0) and tuple overhead, with room to spare.
PER_ROW_OVERHEAD = 300
MIN_WORK_MEM_MB = 64


def work_mem_mb(rows: int, dimensions: int, ceiling: int) -> int:
    """A ``maintenance_work_mem`` (MB) that holds the whole graph, so the build never spills.

    pgvector builds HNSW much faster while the graph fits in maintenance_work_mem; beyond it, it
    falls back to inserting into the on-disk index.
    """
    needed = rows * (dimensions * 4 + PER_ROW_OVERHEAD) * 1.3 / 2**20
    return max(MIN_WORK_MEM_MB, min(ceiling, math.ceil(needed)))


class BuildProgress:
    """Shows a running CREATE INDEX / REINDEX's progress, read from
    ``pg_stat_progress_create_index`` by a second connection every half second.

    One statement builds the index, so there is nothing to count in Python: a thread polls the
    server's own progress report for the building backend's pid. A build that ends within the
    first half second prints nothing.
    """

    INTERVAL = 0.5

    def __init__(
        self, connection: BaseDatabaseWrapper, out: OutputWrapper | None, label: str
    ) -> None:
        self.connection = connection
        self.out = out
        self.label = label
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = ""

    def __enter__(self) -> BuildProgress:
        if self.out is not None:
            self.connection.ensure_connection()
            pid = self.connection.connection.info.backend_pid
            self._thread = threading.Thread(target=self._poll, args=(pid,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self._last and self.out is not None and self.out.isatty():
                self.out.write("")

    def _poll(self, pid: int) -> None:
        watcher = connections.create_connection(self.connection.alias)
        try:
            while not self._stop.wait(self.INTERVAL):
                with watcher.cursor() as cursor:
                    cursor.execute(
                        "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                        "FROM pg_stat_progress_create_index WHERE pid = %s",
                        [pid],
                    )
                    row = cursor.fetchone()
                if row is not None:
                    self._show(*row)
        except Exception:
            pass  # progress is a nicety: the build itself goes on
        finally:
            watcher.close()

    def _show(self, phase: str, tuples: int, tuples_total: int, blocks: int, total: int) -> None:
        assert self.out is not None
        done, of = (tuples, tuples_total) if tuples_total else (blocks, total)
        decile = f" {10 * done // of * 10}%" if of else ""
        line = f"  {self.label}: {phase}{decile}"
        if line == self._last:
            return
        self._last = line
        if self.out.isatty():
            share = f" {done:,}/{of:,} ({done / of:.0%})" if of else ""
            self.out.write(f"\r  {self.label}: {phase}{share}\033[K", ending="")
            self.out.flush()
        else:
            self.out.write(line)


def run_index_ddl(
    connection: BaseDatabaseWrapper,
    sql: str,
    *,
    mem_mb: int,
    out: OutputWrapper | None = None,
    label: str = "",
) -> None:
    """Run a CREATE INDEX / REINDEX with ``maintenance_work_mem`` set for it, showing progress
    on ``out``. Session-level outside a transaction (CONCURRENTLY runs outside any), reset after.
    """
    in_transaction = connection.in_atomic_block
    with connection.cursor() as cursor:
        if in_transaction:
            # Deferred foreign-key checks pending in this transaction would make CREATE INDEX
            # refuse to run.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"SET LOCAL maintenance_work_mem = '{int(mem_mb)}MB'")
        else:
            cursor.execute(f"SET maintenance_work_mem = '{int(mem_mb)}MB'")
    try:
        with BuildProgress(connection, out, label), connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        if not in_transaction:
            with connection.cursor() as cursor:
                cursor.execute("RESET maintenance_work_mem")


def vector_count(registration: Registration, using: str = "default") -> int:
    """How many stored vectors a registration's index covers (what a build reads)."""
    if registration.is_generic:
        return registration.embedding_rows(using, current=True).count()
    manager = registration.model._base_manager.using(using)
    return int(manager.filter(**{f"{registration.vector_field}__isnull": False}).count())


# -- deferring the index over a big load -------------------------------------------------------

# A backfill that (re-)embeds more than this share of an indexed registration's rows runs faster
# with its HNSW index dropped during the load and built once after. Measured on 20,000 x 384
# (benchmarks/bench_defer_index.py, end to end, the build included): 1.36x faster at 10%, 2.83x
# at 25%; below about 5% the fixed cost of the build outweighs what it saves.
DEFER_INDEX_FRACTION = 0.1


@dataclass(frozen=True)
class DeferredIndex:
    """An index dropped for a load, with the statement that builds it again."""

    name: str
    definition: str  # pg_get_indexdef(): CREATE INDEX name ON table USING ...


def existing_indexes(registration: Registration, using: str = "default") -> list[DeferredIndex]:
    """The registration's vector indexes present in the database, with their definitions."""
    names = registration_indexes(registration, using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_class c "
            "JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1",
            [names],
        )
        return [DeferredIndex(name, definition) for name, definition in cursor.fetchall()]


def drop_for_load(connection: BaseDatabaseWrapper, indexes: Sequence[DeferredIndex]) -> None:
    """Drop the indexes before a load (concurrently outside a transaction)."""
    for index in indexes:
        drop_index(connection, connection.ops.quote_name(index.name))


def build_after_load(
    connection: BaseDatabaseWrapper,
    registration: Registration,
    indexes: Sequence[DeferredIndex],
    *,
    max_mem_mb: int,
    out: OutputWrapper | None = None,
) -> None:
    """Build the dropped indexes again, as vectorsearch_index does: CONCURRENTLY outside a
    transaction, with maintenance_work_mem sized to the data."""
    rows = vector_count(registration, connection.alias)
    mem = work_mem_mb(rows, registration.embedder.dimensions, max_mem_mb)
    for index in indexes:
        sql = index.definition
        if not connection.in_atomic_block:
            sql = sql.replace("CREATE INDEX ", "CREATE INDEX CONCURRENTLY ", 1)
        run_index_ddl(connection, sql, mem_mb=mem, out=out, label=index.name)
