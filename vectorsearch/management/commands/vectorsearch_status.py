"""``manage.py vectorsearch_status [--json]``: how current each registered model's vectors are."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS

from ...replicas import replica_status
from ...sync import status
from ..utils import human_size, index_info, registration_indexes, select_registrations


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
                state = (
                    "missing (run vectorsearch_index)"
                    if not index["exists"]
                    else "valid"
                    if index["valid"]
                    else "INVALID (run vectorsearch_index to repair)"
                )
                self.stdout.write(
                    f"  index     {index['name']}: {state}, {human_size(index['size_bytes'])}"
                )
            if not report["indexes"]:
                self.stdout.write("  index     none: searches scan every vector")
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

    def report(self, registration: Any, using: str) -> dict[str, Any]:
        counts = status(registration, using=using)
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
            "indexes": [
                index_info(name, using).as_dict()
                for name in registration_indexes(registration, using)
            ],
        }
