"""``manage.py vectorsearch_index``: build, rebuild and repair registered models' vector indexes."""

from __future__ import annotations

import math
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ...conf import get_settings
from ...operations import invalid_vector_indexes, repair_index
from ...registry import Registration
from ..utils import (
    generic_index_name,
    generic_index_sql,
    human_size,
    index_info,
    registration_indexes,
    select_registrations,
)

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


class Command(BaseCommand):
    help = (
        "Build the HNSW index of each generic registration (a partial expression index per "
        "model and embedder), repair INVALID vector indexes left by an interrupted build, and "
        "with --rebuild rebuild them all. Runs CONCURRENTLY, so writes go on meanwhile, with "
        "maintenance_work_mem sized to the data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("labels", nargs="*", metavar="app_label.Model")
        parser.add_argument(
            "--rebuild", action="store_true", help="Rebuild existing indexes too (REINDEX)."
        )
        parser.add_argument(
            "--no-concurrently",
            action="store_true",
            help="Build without CONCURRENTLY: faster, but blocks writes to the table meanwhile.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Drop generic-table indexes of embedders no longer registered.",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self,
        *args: str,
        labels: list[str],
        rebuild: bool,
        no_concurrently: bool,
        prune: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        connection = connections[database]
        self.verbosity = verbosity
        self.concurrently = not no_concurrently and not connection.in_atomic_block
        registrations = select_registrations(labels)
        invalid = {index.name for index in invalid_vector_indexes(connection)}
        for registration in registrations:
            for name in registration_indexes(registration, database):
                self.ensure(registration, name, database, rebuild=rebuild, invalid=name in invalid)
        if prune:
            self.prune(database)

    def ensure(
        self, registration: Registration, name: str, using: str, *, rebuild: bool, invalid: bool
    ) -> None:
        info = index_info(name, using)
        if not info.exists and not registration.is_generic:
            raise CommandError(
                f"{registration.label}: index {name!r} is declared in Meta.indexes but missing "
                "from the database. Run manage.py migrate to create it."
            )
        action = (
            "build"
            if not info.exists
            else "repair"
            if invalid or not info.valid
            else "rebuild"
            if rebuild
            else None
        )
        if action is None:
            self.say(
                1, f"{registration.label}: index {name} is valid ({human_size(info.size_bytes)})."
            )
            return
        connection = connections[using]
        rows, dimensions = self.data_size(registration, using)
        mem = work_mem_mb(rows, dimensions, get_settings()["INDEX_MAX_MAINTENANCE_WORK_MEM_MB"])
        self.say(
            1,
            f"{registration.label}: {action} index {name} over {rows:,} vectors "
            f"({'concurrently, ' if self.concurrently else ''}maintenance_work_mem={mem}MB)...",
        )
        if rows == 0:
            self.say(
                1,
                self.style.WARNING(
                    "  No vectors yet: rows added later grow the index one by one, which is "
                    "slower than a build. Run vectorsearch_backfill, then --rebuild."
                ),
            )
        started = time.monotonic()
        in_transaction = connection.in_atomic_block
        try:
            with connection.cursor() as cursor:
                if in_transaction:
                    # Deferred foreign-key checks pending in this transaction would make
                    # CREATE INDEX refuse to run.
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cursor.execute(f"SET LOCAL maintenance_work_mem = '{mem}MB'")
                else:
                    # Session-level: CONCURRENTLY runs outside any transaction.
                    cursor.execute(f"SET maintenance_work_mem = '{mem}MB'")
            try:
                if action == "build":
                    sql = generic_index_sql(registration, using, concurrently=self.concurrently)
                    with connection.cursor() as cursor:
                        cursor.execute(sql)
                elif self.concurrently:
                    repair_index(connection, name)
                else:
                    with connection.cursor() as cursor:
                        cursor.execute(f"REINDEX INDEX {connection.ops.quote_name(name)}")
            finally:
                if not in_transaction:
                    with connection.cursor() as cursor:
                        cursor.execute("RESET maintenance_work_mem")
        except DatabaseError as e:
            raise CommandError(
                f"{registration.label}: could not {action} index {name}: {e}. If the build was "
                "interrupted, run vectorsearch_index again: it repairs INVALID indexes."
            ) from e
        after = index_info(name, using)
        self.say(
            1,
            self.style.SUCCESS(
                f"{registration.label}: index {name} {'valid' if after.valid else 'INVALID'}, "
                f"{human_size(after.size_bytes)}, in {time.monotonic() - started:.1f} s."
            ),
        )

    def data_size(self, registration: Registration, using: str) -> tuple[int, int]:

        dimensions = registration.embedder.dimensions
        if registration.is_generic:
            rows = registration.embedding_rows(using, current=True).count()
        else:
            manager = registration.model._base_manager.using(using)
            rows = manager.filter(**{f"{registration.vector_field}__isnull": False}).count()
        return rows, dimensions

    def prune(self, using: str) -> None:
        from ...models import Embedding
        from ...registry import registry

        connection = connections[using]
        expected = {generic_index_name(r) for r in registry if r.is_generic}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
                [Embedding._meta.db_table, "vs\\_%"],
            )
            found = [row[0] for row in cursor.fetchall()]
        for name in sorted(set(found) - expected):
            concurrently = "CONCURRENTLY " if self.concurrently else ""
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DROP INDEX {concurrently}IF EXISTS {connection.ops.quote_name(name)}"
                )
            self.say(1, f"Dropped obsolete index {name}.")

    def say(self, level: int, message: str) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)
