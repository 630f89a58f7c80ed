"""``manage.py vectorsearch_backfill [app_label.Model ...]``: embed missing and stale rows."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ...conf import get_settings
from ...exceptions import EmbeddingError
from ...registry import Registration
from ...sync import backfill, status
from ..indexing import (
    DEFER_INDEX_FRACTION,
    DeferredIndex,
    build_after_load,
    drop_for_load,
    existing_indexes,
)
from ..utils import (
    Progress,
    positive_int,
    select_registrations,
)


class Command(BaseCommand):
    help = (
        "Embed the rows of registered models whose vector is missing or stale, in keyset-paginated "
        "batches of one transaction each. Safe to interrupt (even kill -9) and run again: it "
        "resumes where it stopped, with no duplicate and no lost row."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "labels",
            nargs="*",
            metavar="app_label.Model",
            help="Registered models to backfill (default: all). app_label.Model.field or "
            "app_label.Model@alias names one registration of a model registered twice.",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="Rows embedded and written per transaction "
            "(default: VECTORSEARCH['BATCH_SIZE'], 256).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count missing and stale rows; change nothing."
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--stale-only",
            action="store_true",
            help="Re-embed stale rows only; leave rows without a vector alone.",
        )
        which.add_argument(
            "--all-rows",
            action="store_true",
            help="Re-embed every row, current and imported ones too, as the admin's "
            "'Re-embed selected' action does.",
        )
        parser.add_argument(
            "--on-error",
            choices=["stop", "skip"],
            default="stop",
            help="When the embedder fails for some rows: stop (default; the failing batch is not "
            "written) or skip them, write the others and report the failures at the end.",
        )
        parser.add_argument(
            "--defer-index",
            action="store_true",
            help=f"When more than {DEFER_INDEX_FRACTION:.0%} of an indexed model's rows are to "
            "be embedded, drop its vector index(es) for the load and build them after "
            "(concurrently): much faster than updating the HNSW graph row by row. Searches "
            "scan every vector meanwhile.",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self,
        *args: str,
        labels: list[str],
        batch_size: int | None,
        dry_run: bool,
        stale_only: bool,
        all_rows: bool,
        on_error: str,
        database: str,
        verbosity: int,
        defer_index: bool = False,
        **options: Any,
    ) -> None:
        if batch_size is not None and batch_size < 1:  # call_command() bypasses argparse
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}.")
        if stale_only and all_rows:  # call_command() bypasses argparse
            raise CommandError("--stale-only and --all-rows exclude each other; pass one.")
        registrations = select_registrations(labels)
        batch_size = batch_size or get_settings()["BATCH_SIZE"]
        failed: list[str] = []
        for registration in registrations:
            deferred = (
                self.defer(registration, database, stale_only, verbosity, all_rows)
                if defer_index and not dry_run
                else []
            )
            show_progress = verbosity >= 1 and not dry_run
            # Counting a large table is a full scan: only for the progress bar that shows it.
            manager = registration.model._base_manager.using(database)
            total = manager.count() if show_progress else 0
            progress = Progress(self.stdout, total, registration.label, enabled=show_progress)
            indexed = bool(deferred) or (
                not dry_run and bool(existing_indexes(registration, database))
            )
            started = time.monotonic()
            try:
                result = backfill(
                    registration,
                    batch_size=batch_size,
                    dry_run=dry_run,
                    stale_only=stale_only,
                    all_rows=all_rows,
                    on_error=on_error,
                    using=database,
                    progress=progress.update,
                )
            except EmbeddingError as e:
                progress.close()
                raise CommandError(str(e)) from e
            else:
                progress.close()
            finally:
                if deferred:
                    self.build_again(registration, database, deferred, verbosity)
            elapsed = time.monotonic() - started
            if verbosity >= 1:
                if dry_run:
                    todo = result.stale + (0 if stale_only else result.missing)
                    todo = result.rows if all_rows else todo
                    self.stdout.write(
                        f"{registration.label}: {result.rows:,} rows, {result.missing:,} missing, "
                        f"{result.stale:,} stale; would embed {todo:,} (dry run, nothing changed)."
                    )
                else:
                    rate = result.rows / elapsed if elapsed > 0 else 0.0
                    self.stdout.write(
                        self.style.SUCCESS(
                            f"{registration.label}: embedded {result.embedded:,} "
                            f"({result.missing:,} missing, {result.stale:,} stale) of "
                            f"{result.rows:,} rows in {elapsed:.1f} s ({rate:,.0f} rows/s); "
                            f"{result.orphans_deleted:,} orphan vector(s) removed."
                        )
                    )
            share = result.embedded / result.rows if result.rows else 0.0
            if indexed and not deferred and share > DEFER_INDEX_FRACTION and verbosity >= 1:
                self.stdout.write(
                    self.style.WARNING(
                        f"  {share:.0%} of the rows were embedded with the vector index live, "
                        "which updates the HNSW graph row by row. Next time, pass --defer-index "
                        "to build it once after the load instead (several times faster), and "
                        "run vectorsearch_status to see whether the index is now bloated."
                    )
                )
            for failure in result.failures:
                failed.append(f"{registration.label} pk={failure.object_id}: {failure.error}")
                if verbosity >= 2:
                    self.stderr.write(f"  failed: pk={failure.object_id}: {failure.error}")
        if failed:
            shown = "\n  ".join(failed[:20])
            more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
            raise CommandError(
                f"The embedder failed for {len(failed)} row(s); they keep their old vector or "
                f"none:\n  {shown}{more}\nFix the cause and run vectorsearch_backfill again: "
                "it embeds only what is still missing or stale."
            )

    def defer(
        self,
        registration: Registration,
        using: str,
        stale_only: bool,
        verbosity: int,
        all_rows: bool = False,
    ) -> list[DeferredIndex]:
        """Drop the registration's vector indexes when the run will embed enough rows."""
        indexes = existing_indexes(registration, using)
        if not indexes:
            return []
        counts = status(registration, using=using)
        # --all-rows re-embeds every row, current ones included.
        todo = counts.rows if all_rows else counts.stale + (0 if stale_only else counts.missing)
        share = todo / counts.rows if counts.rows else 0.0
        names = ", ".join(index.name for index in indexes)
        if share <= DEFER_INDEX_FRACTION:
            if verbosity >= 1:
                self.stdout.write(
                    f"{registration.label}: {todo:,} of {counts.rows:,} rows to embed "
                    f"({share:.0%}, not over {DEFER_INDEX_FRACTION:.0%}): keeping {names}."
                )
            return []
        connection = connections[using]
        try:
            drop_for_load(connection, indexes)
        except DatabaseError as e:
            raise CommandError(
                f"{registration.label}: could not drop {names} for the load: {e}. Run again "
                "without --defer-index."
            ) from e
        if verbosity >= 1:
            self.stdout.write(
                f"{registration.label}: {todo:,} of {counts.rows:,} rows to embed ({share:.0%}): "
                f"dropped {names} for the load; it is built again after. Should this run be "
                f"interrupted, run: manage.py vectorsearch_index {registration.label}"
            )
        return indexes

    def build_again(
        self, registration: Registration, using: str, indexes: list[DeferredIndex], verbosity: int
    ) -> None:
        started = time.monotonic()
        names = ", ".join(index.name for index in indexes)
        try:
            build_after_load(
                connections[using],
                registration,
                indexes,
                max_mem_mb=get_settings()["INDEX_MAX_MAINTENANCE_WORK_MEM_MB"],
                out=self.stdout if verbosity >= 1 else None,
            )
        except DatabaseError as e:
            raise CommandError(
                f"{registration.label}: the load is done but building {names} again failed: "
                f"{e}. Run: manage.py vectorsearch_index {registration.label}"
            ) from e
        if verbosity >= 1:
            self.stdout.write(
                f"{registration.label}: built {names} again in {time.monotonic() - started:.1f} s."
            )
