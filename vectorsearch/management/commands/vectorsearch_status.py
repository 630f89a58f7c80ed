"""``manage.py vectorsearch_status [--json]``: how current each registered model's vectors are."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from ...calibration import describe
from ...index_health import BLOAT_RATIO
from ...registry import registry
from ...replicas import replica_status
from ...sync import status
from ..indexing import (
    describe_size,
    human_size,
    index_report,
    registration_indexes,
)
from ..utils import (
    select_registrations,
)


class Command(BaseCommand):
    help = (
        "Per registered model: rows, embedded, current, stale, missing, of unknown source "
        "(imported), orphan vectors, the embedder, and its vector indexes (valid, size)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("labels", nargs="*", metavar="app_label.Model")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print JSON instead of a table."
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self,
        *args: str,
        labels: list[str],
        as_json: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        reports = [self.report(r, database) for r in select_registrations(labels)]
        replicas = [asdict(s) for s in replica_status(database)]
        for report in reports:
            report["replicas"] = replicas
        if as_json:
            self.stdout.write(json.dumps(reports, indent=2))
            return
        for report in reports:
            self.stdout.write(self.style.MIGRATE_HEADING(report["model"]))
            self.stdout.write(f"  embedder  {report['embedder']} ({report['identity']})")
            self.stdout.write(f"  storage   {report['storage']}")
            self.stdout.write(
                f"  rows {report['rows']:,}: {report['embedded']:,} embedded "
                f"({report['current']:,} current, {report['stale']:,} stale, "
                f"{report['unknown']:,} of unknown source), {report['missing']:,} missing; "
                f"{report['orphans']:,} orphan vector(s)"
            )
            for index in report["indexes"]:
                self.write_index(index)
            for name in report["invalid_indexes"]:
                self.stdout.write(
                    self.style.WARNING(
                        f"  invalid   {name} on the same table: INVALID, queries ignore it yet "
                        "writes update it (see check vectorsearch.W010)"
                    )
                )
            if not report["indexes"]:
                self.stdout.write("  index     none: searches scan every vector")
            calibration = report["calibration"]
            if calibration is not None:
                self.stdout.write(
                    f"  ef_search {calibration['ef_search']} calibrated "
                    f"{calibration['calibrated_at'][:10]} (recall {calibration['recall']:.3f}, "
                    f"target {calibration['target_recall']:.2f})"
                )
                if calibration["recalibrate"]:
                    self.stdout.write(self.style.WARNING("  " + calibration["recalibrate"]))
            if report["stale"] or report["missing"]:
                self.stdout.write(
                    self.style.WARNING(
                        f"  run: manage.py vectorsearch_backfill {report['model'].split('.')[0]}."
                        f"{report['model'].split('.')[1].split('@')[0]}"
                    )
                )
        self.write_replicas(replicas)

    def write_replicas(self, replicas: list[dict[str, Any]]) -> None:
        """Each search replica of the database (VECTORSEARCH["SEARCH_REPLICAS"]) and its lag."""
        if not replicas:
            return
        self.stdout.write(self.style.MIGRATE_HEADING(f"Replicas of {replicas[0]['primary']!r}"))
        for replica in replicas:
            lag = replica["lag_seconds"]
            text = f"  replica   {replica['alias']}: {replica['state']}"
            if lag is not None:
                text += f", {lag:.1f} s behind"
            if replica["error"]:
                text += f" ({replica['error']})"
            healthy = replica["state"] in ("streaming", "not a standby")
            self.stdout.write(text if healthy else self.style.WARNING(text))

    def write_index(self, index: dict[str, Any]) -> None:
        if not index["exists"]:
            state = "missing (run vectorsearch_index)"
        elif not index["valid"]:
            state = "INVALID (run vectorsearch_index to repair)"
        else:
            state = "valid"
        line = f"  index     {index['name']}: {state}, {describe_size(index)}"
        if index["bloated"]:
            self.stdout.write(
                self.style.WARNING(
                    f"{line}: bloated, over {BLOAT_RATIO}x (run vectorsearch_index --rebuild)"
                )
            )
        else:
            self.stdout.write(line)
        for leftover in index["leftovers"]:
            state = "valid" if leftover["valid"] else "INVALID"
            fix = "being built now" if leftover["building"] else "run vectorsearch_index to drop it"
            self.stdout.write(
                self.style.WARNING(
                    f"  leftover  {leftover['name']}: {state}, "
                    f"{human_size(leftover['size_bytes'])}, {leftover['why']} ({fix})"
                )
            )

    def report(self, registration: Any, using: str) -> dict[str, Any]:
        counts = status(registration, using=using)
        indexes = [index_report(name, using) for name in registration_indexes(registration, using)]
        return {
            "model": registration.label,
            "storage": (
                "vectorsearch.Embedding (generic table)"
                if registration.is_generic
                else f"column {registration.model._meta.db_table}.{registration.vector_field}"
            ),
            "embedder": registration.embedder_alias,
            "identity": registration.embedder.identity,
            "rows": counts.rows,
            "embedded": counts.embedded,
            "current": counts.current,
            "stale": counts.stale,
            "missing": counts.missing,
            "unknown": counts.unknown,
            "orphans": counts.orphans,
            "indexes": indexes,
            "invalid_indexes": self.other_invalid(indexes, using),
            "calibration": describe(registration.model, registration.key, counts.embedded, using),
        }

    def other_invalid(self, indexes: list[dict[str, Any]], using: str) -> list[str]:
        """INVALID indexes (any method) on the tables of these indexes that no registration
        owns and that are not already listed as leftovers."""
        if not indexes:
            return []
        known = {name for r in registry for name in registration_indexes(r, using)}
        known |= {left["name"] for index in indexes for left in index["leftovers"]}
        with connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT i.relname FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE NOT x.indisvalid AND x.indrelid IN ("
                "  SELECT y.indrelid FROM pg_index y JOIN pg_class c ON c.oid = y.indexrelid "
                "  WHERE c.relname = ANY(%s) AND pg_catalog.pg_table_is_visible(c.oid)) "
                "ORDER BY 1",
                [[index["name"] for index in indexes]],
            )
            return [name for (name,) in cursor.fetchall() if name not in known]
