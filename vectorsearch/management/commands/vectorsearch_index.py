"""``manage.py vectorsearch_index``: build, rebuild and repair registered models' vector indexes."""

from __future__ import annotations

import time
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from ...conf import get_settings
from ...index_health import BLOAT_RATIO, drop_index, invalid_vector_indexes, leftover_indexes
from ...indexes import vector_indexes
from ...ranking.fulltext import create_text_index, text_index
from ...registry import Registration
from ..indexing import (
    describe_size,
    generic_index_name,
    generic_index_sql,
    human_size,
    index_report,
    registration_indexes,
    run_index_ddl,
    vector_count,
    work_mem_mb,
)
from ..utils import (
    select_registrations,
)

__all__ = ["Command", "work_mem_mb"]


class Command(BaseCommand):
    help = (
        "Build the HNSW index of each generic registration (a partial expression index per "
        "model and embedder), repair INVALID vector indexes left by an interrupted build, drop "
        "the _ccnew/_ccold leftovers of an interrupted REINDEX and duplicates, report bloat, "
        "and with --rebuild rebuild them all (which also undoes bloat). Runs CONCURRENTLY, so "
        "writes go on meanwhile, with maintenance_work_mem sized to the data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("labels", nargs="*", metavar="app_label.Model")
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Rebuild existing indexes too (REINDEX): gives back the space of a bloated one.",
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
            self.ensure_text_index(registration, database)
        if prune:
            self.prune(database)

    def ensure(
        self, registration: Registration, name: str, using: str, *, rebuild: bool, invalid: bool
    ) -> None:
        self.drop_leftovers(registration, name, using)
        info = index_report(name, using)
        if (
            not info["exists"]
            and not registration.is_generic
            and self.migrations_pending(registration, using)
        ):
            raise CommandError(
                f"{registration.label}: index {name!r} is declared in Meta.indexes but missing "
                "from the database. Run manage.py migrate to create it."
            )
        if info["exists"] and not info["valid"] and not invalid:
            # Not valid, yet not among the INVALID ones: another session is building it now
            # (CREATE INDEX CONCURRENTLY). A REINDEX would wait for it, then build it again.
            raise CommandError(
                f"{registration.label}: index {name} is being built by another session; wait "
                "for that build to finish (pg_stat_progress_create_index shows it) or cancel it."
            )
        action = (
            "build"
            if not info["exists"]
            else "repair"
            if invalid
            else "rebuild"
            if rebuild
            else None
        )
        if action is None:
            self.say(1, f"{registration.label}: index {name} is valid ({describe_size(info)}).")
            if info["bloated"]:
                self.say(
                    1,
                    self.style.WARNING(
                        f"  Bloated: more than {BLOAT_RATIO}x its fresh size (updates leave old "
                        "versions behind). Run vectorsearch_index --rebuild to give the space "
                        "back."
                    ),
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
        if action == "build" and registration.is_generic:
            sql = generic_index_sql(registration, using, concurrently=self.concurrently)
        elif action == "build":
            # Migrations are applied, yet the index is gone: dropped by hand, or by a
            # vectorsearch_backfill --defer-index that was killed. Build it from Meta.indexes.
            sql = self.declared_index_sql(registration, name, using)
        else:
            concurrently = "CONCURRENTLY " if self.concurrently else ""
            sql = f"REINDEX INDEX {concurrently}{connection.ops.quote_name(name)}"
        started = time.monotonic()
        try:
            run_index_ddl(
                connection,
                sql,
                mem_mb=mem,
                out=self.stdout if self.verbosity >= 1 else None,
                label=name,
            )
        except DatabaseError as e:
            raise CommandError(
                f"{registration.label}: could not {action} index {name}: {e}. If the build was "
                "interrupted, run vectorsearch_index again: it repairs INVALID indexes and drops "
                "what an interrupted REINDEX left behind."
            ) from e
        # An interrupted REINDEX CONCURRENTLY leaves its _ccnew behind; a failed one too.
        self.drop_leftovers(registration, name, using)
        after = index_report(name, using)
        self.say(
            1,
            self.style.SUCCESS(
                f"{registration.label}: index {name} {'valid' if after['valid'] else 'INVALID'}, "
                f"{describe_size(after)}, in {time.monotonic() - started:.1f} s."
            ),
        )

    def ensure_text_index(self, registration: Registration, using: str) -> None:
        """The GIN index of the registration's full text (keyword and hybrid search)."""
        if not registration.fields:
            return  # text from a callable: no columns to index
        started = time.monotonic()
        name = create_text_index(registration, using, concurrently=self.concurrently)
        if name is None:
            self.say(
                2, f"{registration.label}: full-text index {text_index(registration).name} exists."
            )
        else:
            self.say(
                1,
                f"{registration.label}: built full-text index {name} in "
                f"{time.monotonic() - started:.1f}s.",
            )

    def drop_leftovers(self, registration: Registration, name: str, using: str) -> None:
        """Drop the ``_ccnew``/``_ccold`` leftovers and duplicates of index ``name``."""
        connection = connections[using]
        declared = self.declared_index_names()
        for leftover in leftover_indexes(connection, name):
            if leftover.building:
                raise CommandError(
                    f"{registration.label}: index {leftover.name} ({leftover.why}) is being "
                    "built right now by another session. Wait for it to finish (see "
                    "pg_stat_progress_create_index), or cancel it with pg_cancel_backend(pid), "
                    "then run vectorsearch_index again."
                )
            if leftover.name in declared:
                self.say(
                    1,
                    self.style.WARNING(
                        f"{registration.label}: index {leftover.name} is {leftover.why}, but is "
                        "declared in a model's Meta.indexes: remove one of them and migrate."
                    ),
                )
                continue
            try:
                drop_index(connection, leftover.qualified_name)
            except DatabaseError as e:
                raise CommandError(
                    f"{registration.label}: could not drop {leftover.name} ({leftover.why}): "
                    f"{e}. Drop it by hand: {leftover.drop_sql}"
                ) from e
            self.say(
                1,
                f"{registration.label}: dropped index {leftover.name} "
                f"({'valid' if leftover.valid else 'INVALID'}, "
                f"{human_size(leftover.size_bytes)}), {leftover.why}.",
            )

    def migrations_pending(self, registration: Registration, using: str) -> bool:
        executor = MigrationExecutor(connections[using])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        return any(m.app_label == registration.model._meta.app_label for m, _ in plan)

    def declared_index_sql(self, registration: Registration, name: str, using: str) -> str:
        model = registration.model
        (index,) = [i for i in vector_indexes(model) if i.name == name]
        with connections[using].schema_editor(atomic=False, collect_sql=True) as editor:
            return str(index.create_sql(model, editor, concurrently=self.concurrently))

    def declared_index_names(self) -> set[str]:
        return {index.name for model in apps.get_models() for index in vector_indexes(model)}

    def data_size(self, registration: Registration, using: str) -> tuple[int, int]:
        return vector_count(registration, using), registration.embedder.dimensions

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
