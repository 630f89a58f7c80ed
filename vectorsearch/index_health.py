"""Index health, for operators and the index commands.

- An index whose ``CREATE INDEX CONCURRENTLY`` was interrupted stays behind INVALID: ignored by
  queries yet still updated on every write. :func:`invalid_vector_indexes` finds such indexes and
  :func:`repair_index` rebuilds one.
- A ``REINDEX CONCURRENTLY`` that is interrupted leaves ``<name>_ccnew`` (or, killed after the
  swap, ``<name>_ccold``) beside the intact index: :func:`leftover_indexes` finds them, and
  duplicates of an index under another name, so they can be dropped rather than rebuilt.
- An HNSW index grows with every update and is only partly reused after VACUUM:
  :func:`index_health` compares its size with :func:`hnsw_size_estimate`, the size a fresh build
  of its live rows takes.

Plain catalog queries on a connection: nothing here knows about registrations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "BLOAT_MIN_BYTES",
    "BLOAT_RATIO",
    "IndexHealth",
    "InvalidIndex",
    "LeftoverIndex",
    "drop_index",
    "hnsw_size_estimate",
    "index_health",
    "invalid_vector_indexes",
    "leftover_indexes",
    "repair_index",
]


@dataclass(frozen=True)
class InvalidIndex:
    """A vector index left INVALID, as PostgreSQL's catalog reports it."""

    schema: str
    name: str
    table: str
    method: str
    # The index this one is a leftover of, when an interrupted REINDEX CONCURRENTLY of that index
    # left it (``<of>_ccnew`` / ``<of>_ccold``); then the fix is to drop it, never to rebuild it.
    leftover_of: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{_quote(self.schema)}.{_quote(self.name)}"

    @property
    def repair_sql(self) -> str:
        """Rebuild it in place: for an index that no migration is still meant to create."""
        return f"REINDEX INDEX CONCURRENTLY {self.qualified_name};"

    @property
    def drop_sql(self) -> str:
        """Drop it: for an index whose AddIndexConcurrently migration was interrupted (that
        migration was not recorded, so migrate will build the index again)."""
        return f"DROP INDEX CONCURRENTLY {self.qualified_name};"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def invalid_vector_indexes(connection: BaseDatabaseWrapper) -> list[InvalidIndex]:
    """HNSW and IVFFlat indexes marked INVALID in the connection's search path."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT n.nspname, i.relname, t.relname, am.amname,
              (SELECT o.relname FROM pg_index ox JOIN pg_class o ON o.oid = ox.indexrelid
               WHERE ox.indrelid = x.indrelid AND ox.indexrelid <> x.indexrelid
                 AND left(i.relname, length(o.relname)) = o.relname
                 AND substr(i.relname, length(o.relname) + 1) ~ '^_cc(new|old)[0-9]*$'
               ORDER BY length(o.relname) DESC LIMIT 1)
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_namespace n ON n.oid = i.relnamespace
            JOIN pg_am am ON am.oid = i.relam
            WHERE NOT x.indisvalid
              AND am.amname IN ('hnsw', 'ivfflat')
              AND pg_catalog.pg_table_is_visible(t.oid)
              -- an index still being built concurrently is not valid yet, and not broken
              AND NOT EXISTS (
                SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = x.indexrelid
              )
            ORDER BY t.relname, i.relname
            """
        )
        return [InvalidIndex(*row) for row in cursor.fetchall()]


def repair_index(connection: BaseDatabaseWrapper, name: str) -> None:
    """Rebuild index ``name`` in place, without blocking writes when outside a transaction."""
    quoted = connection.ops.quote_name(name)
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
    with connection.cursor() as cursor:
        cursor.execute(f"REINDEX INDEX {concurrently}{quoted}")


def drop_index(connection: BaseDatabaseWrapper, qualified_name: str) -> None:
    """Drop an index, without blocking writes when outside a transaction."""
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY "
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {concurrently}IF EXISTS {qualified_name}")


# -- leftovers of interrupted rebuilds, and duplicates -----------------------------------------


@dataclass(frozen=True)
class LeftoverIndex:
    """An index beside ``of`` that only costs: a REINDEX CONCURRENTLY leftover, or a duplicate."""

    schema: str
    name: str
    of: str
    valid: bool
    size_bytes: int
    building: bool  # a build or REINDEX is filling it right now: not a leftover yet
    interrupted_reindex: bool  # named <of>_ccnew / <of>_ccold; else an identical definition

    @property
    def qualified_name(self) -> str:
        return f"{_quote(self.schema)}.{_quote(self.name)}"

    @property
    def drop_sql(self) -> str:
        return f"DROP INDEX CONCURRENTLY {self.qualified_name};"

    @property
    def why(self) -> str:
        if self.interrupted_reindex:
            return f"left by an interrupted REINDEX CONCURRENTLY of {self.of}"
        return f"a duplicate of {self.of}"


_CC_SUFFIX = r"^_cc(new|old)[0-9]*$"


def leftover_indexes(connection: BaseDatabaseWrapper, name: str) -> list[LeftoverIndex]:
    """Indexes on ``name``'s table named ``<name>_ccnew[N]``/``<name>_ccold[N]`` or defined
    exactly as ``name`` is (``USING ...`` onwards), valid or not."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH target AS (
              SELECT x.indexrelid, x.indrelid, i.relname,
                     substring(pg_get_indexdef(x.indexrelid) from ' USING .*$') AS definition
              FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE i.relname = %s AND pg_catalog.pg_table_is_visible(i.oid)
            )
            SELECT n.nspname, i.relname, x.indisvalid, pg_relation_size(i.oid),
                   EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                           WHERE p.index_relid = x.indexrelid),
                   left(i.relname, length(t.relname)) = t.relname
                     AND substr(i.relname, length(t.relname) + 1) ~ %s
            FROM target t
            JOIN pg_index x ON x.indrelid = t.indrelid AND x.indexrelid <> t.indexrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_namespace n ON n.oid = i.relnamespace
            WHERE (left(i.relname, length(t.relname)) = t.relname
                   AND substr(i.relname, length(t.relname) + 1) ~ %s)
               OR substring(pg_get_indexdef(x.indexrelid) from ' USING .*$') = t.definition
            ORDER BY i.relname
            """,
            [name, _CC_SUFFIX, _CC_SUFFIX],
        )
        return [
            LeftoverIndex(schema, index, name, bool(valid), int(size), bool(busy), bool(cc))
            for schema, index, valid, size, busy, cc in cursor.fetchall()
        ]


# -- size against a fresh build: bloat ---------------------------------------------------------

# An HNSW index past this multiple of its estimated size is reported as bloated: a REINDEX gives
# back at least a third of it. A fresh build measures 1.00-1.03x the estimate.
BLOAT_RATIO = 1.5
# ... and wastes at least this much: a small index's few spare pages are no matter.
BLOAT_MIN_BYTES = 2**20

PAGE_SIZE = 8192
# A page's room for tuples: minus the 24-byte page header and HNSW's 8-byte special space.
PAGE_USABLE = PAGE_SIZE - 24 - 8
# pgvector's HnswElementTupleData before the vector: type, level, deleted and version bytes,
# 10 heap TIDs (6 bytes each), the neighbour tuple's TID and 2 bytes of padding.
ELEMENT_HEADER = 4 + 10 * 6 + 6 + 2
LINE_POINTER = 4
TID = 6


def _maxalign(size: float) -> int:
    return math.ceil(size / 8) * 8


def _vector_bytes(vector_type: str, dimensions: int) -> int | None:
    """On-disk size of one value: varlena header (4) + dimension count and padding (4) + data."""
    if vector_type == "vector":
        return 8 + 4 * dimensions
    if vector_type == "halfvec":
        return 8 + 2 * dimensions
    if vector_type == "bit":
        return 8 + math.ceil(dimensions / 8)
    return None  # sparsevec: the size depends on each value's non-zero count


def hnsw_size_estimate(
    rows: int, dimensions: int, *, m: int = 16, vector_type: str = "vector"
) -> int | None:
    """Bytes a freshly built pgvector HNSW index of ``rows`` vectors takes (pgvector 0.8).

    Each vector is an element tuple (a 72-byte header and the vector) plus a neighbour tuple of
    6-byte links: ``2m`` on layer 0 and ``m`` on each layer above, which a node reaches with
    probability ``m^-layer`` (so ``m / (m - 1)`` links on average above layer 0). The build keeps
    both tuples of an element on one page, so a page holds ``floor(8160 / (element + neighbours
    + 8))`` elements; an element too big to share its page takes two. Plus one metapage.
    Fresh builds measure exactly this at 256, 384, 768 (halfvec) and 1,536 dimensions, and up
    to 3% more at 32 (a node on an upper layer has a longer neighbour tuple, and small tuples
    pack a page less evenly). None for sparsevec, whose size varies per value.
    """
    vector = _vector_bytes(vector_type, dimensions)
    if vector is None or rows < 0:
        return None
    element = _maxalign(ELEMENT_HEADER + vector)
    neighbours = _maxalign(4 + TID * m * (2 + 1 / (m - 1)))
    per_element = element + neighbours + 2 * LINE_POINTER
    if per_element <= PAGE_USABLE:
        pages = math.ceil(rows / (PAGE_USABLE // per_element))
    else:
        pages = 2 * rows
    return (pages + 1) * PAGE_SIZE


@dataclass(frozen=True)
class IndexHealth:
    """An index's size against the size a fresh build of its live rows would take."""

    name: str
    table: str
    method: str
    valid: bool
    size_bytes: int
    rows: int
    estimate_bytes: int | None

    @property
    def ratio(self) -> float | None:
        if not self.estimate_bytes:
            return None
        return self.size_bytes / self.estimate_bytes

    @property
    def bloated(self) -> bool:
        return (
            self.estimate_bytes is not None
            and self.size_bytes > BLOAT_RATIO * self.estimate_bytes
            and self.size_bytes - self.estimate_bytes >= BLOAT_MIN_BYTES
        )


def index_health(connection: BaseDatabaseWrapper, name: str) -> IndexHealth | None:
    """Size, live rows and estimated size of HNSW index ``name``; None when it does not exist.

    Rows are counted with the index's own expression and predicate (``WHERE <expr> IS NOT NULL
    AND <predicate>``): a scan of the table. The estimate is for HNSW only (None for others).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT x.indrelid::regclass::text, am.amname, x.indisvalid, pg_relation_size(i.oid),
                   pg_get_indexdef(x.indexrelid, 1, false), pg_get_expr(x.indpred, x.indrelid),
                   t.typname, a.atttypmod, i.reloptions
            FROM pg_class i
            JOIN pg_index x ON x.indexrelid = i.oid
            JOIN pg_am am ON am.oid = i.relam
            JOIN pg_attribute a ON a.attrelid = i.oid AND a.attnum = 1
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE i.relname = %s AND pg_catalog.pg_table_is_visible(i.oid)
            """,
            [name],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        table, method, valid, size, expression, predicate, vtype, typmod, options = row
        where = f"({expression}) IS NOT NULL"
        if predicate:
            # CASE fixes the order: the expression (a cast to vector(N)) may fail on rows
            # outside the predicate, e.g. another embedder's vectors in the generic table.
            where = f"CASE WHEN ({predicate}) THEN {where} ELSE false END"
        cursor.execute(f"SELECT count(*) FROM {table} WHERE {where}")
        rows = int(cursor.fetchone()[0])
    settings = dict(option.split("=", 1) for option in options or ())
    estimate = (
        hnsw_size_estimate(rows, typmod, m=int(settings.get("m", 16)), vector_type=vtype)
        if method == "hnsw" and typmod and typmod > 0
        else None
    )
    return IndexHealth(name, table, method, bool(valid), int(size), rows, estimate)
