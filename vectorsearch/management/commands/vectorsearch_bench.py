"""``manage.py vectorsearch_bench app_label.Model``: recall and latency on the site's own data."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction

from ...db import apply_settings
from ...ranking.search import as_vector_queryset
from ...registry import Registration
from ..utils import fraction, int_list, positive_int, registration_indexes, select_registrations

DEFAULT_EF_SEARCH = "10,20,40,80,160,320"
MAX_EF_SEARCH = 1000  # pgvector's bound for hnsw.ef_search


class Command(BaseCommand):
    help = (
        "Measure recall@k of the HNSW index against exact search, and latency, using stored "
        "vectors as queries; suggest the smallest hnsw.ef_search reaching --target-recall."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "label",
            metavar="app_label.Model",
            nargs="?",
            help="The registration to benchmark; optional when only one is registered.",
        )
        parser.add_argument("--k", type=positive_int, default=10, help="Results per query (10).")
        parser.add_argument(
            "--queries", type=positive_int, default=50, help="Stored vectors used as queries (50)."
        )
        parser.add_argument(
            "--ef-search",
            type=int_list,
            default=int_list(DEFAULT_EF_SEARCH),
            help=f"hnsw.ef_search values to try, comma-separated ({DEFAULT_EF_SEARCH}).",
        )
        parser.add_argument(
            "--target-recall",
            type=fraction,
            default=0.95,
            help="The recall@k the suggested ef_search must reach (0.95).",
        )
        parser.add_argument("--seed", type=int, default=0, help="Query sample seed (0).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")

    def handle(
        self,
        *args: str,
        label: str | None,
        k: int,
        queries: int,
        ef_search: list[int],
        target_recall: float,
        seed: int,
        as_json: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        if any(ef > MAX_EF_SEARCH for ef in ef_search):
            raise CommandError(f"--ef-search values must be at most {MAX_EF_SEARCH}.")
        registrations = select_registrations([label] if label else [])
        if len(registrations) != 1:
            raise CommandError(
                f"{label or 'The site'} has several registrations "
                f"({', '.join(r.label for r in registrations)}); name one, e.g. "
                "app_label.Model, app_label.Model.field or app_label.Model@alias."
            )
        registration = registrations[0]
        vectors = self.sample(registration, queries, seed, database)
        if not len(vectors):
            raise CommandError(
                f"{registration.label} has no stored vectors to benchmark; run "
                "vectorsearch_backfill first."
            )
        exact_ids, exact_times = self.run_queries(registration, vectors, k, None, database)
        rows = []
        uses_index = self.uses_index(registration, vectors[0], k, database)
        for ef in ef_search:
            ids, times = self.run_queries(registration, vectors, k, ef, database)
            recalls = [recall(a, e) for a, e in zip(ids, exact_ids, strict=True)]
            rows.append(
                {
                    "ef_search": ef,
                    "recall": float(np.mean(recalls)),
                    "min_recall": float(np.min(recalls)),
                    "p50_ms": _ms(np.percentile(times, 50)),
                    "p95_ms": _ms(np.percentile(times, 95)),
                }
            )
        suggested = next((r["ef_search"] for r in rows if r["recall"] >= target_recall), None)
        report = {
            "model": registration.label,
            "queries": len(vectors),
            "k": k,
            "index_used": uses_index,
            "exact": {
                "p50_ms": _ms(np.percentile(exact_times, 50)),
                "p95_ms": _ms(np.percentile(exact_times, 95)),
            },
            "hnsw": rows,
            "target_recall": target_recall,
            "suggested_ef_search": suggested,
        }
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.print_report(report)

    def print_report(self, report: dict[str, Any]) -> None:
        self.stdout.write(
            f"{report['model']}: {report['queries']} queries, recall@{report['k']} against exact "
            "search"
        )
        if not report["index_used"]:
            self.stdout.write(
                self.style.WARNING(
                    "  No HNSW index serves these queries, so every run below is an exact scan. "
                    "Run vectorsearch_index first."
                )
            )
        exact = report["exact"]
        self.stdout.write(
            f"  exact       p50 {exact['p50_ms']:8.2f} ms  p95 {exact['p95_ms']:8.2f} ms"
        )
        for row in report["hnsw"]:
            self.stdout.write(
                f"  ef={row['ef_search']:<5}  recall {row['recall']:.3f} "
                f"(min {row['min_recall']:.2f})  p50 {row['p50_ms']:8.2f} ms  "
                f"p95 {row['p95_ms']:8.2f} ms"
            )
        if report["suggested_ef_search"] is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Suggested ef_search: {report['suggested_ef_search']} (the smallest reaching "
                    f"recall {report['target_recall']:.2f})."
                )
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"No ef_search tried reaches recall {report['target_recall']:.2f}: try larger "
                    "values (up to 1000), or rebuild the index with a larger m / ef_construction."
                )
            )

    # -- queries ----------------------------------------------------------------------------

    def base(self, registration: Registration, using: str) -> tuple[models.QuerySet[Any], str]:
        """The rows searched, and the name of their object id."""
        if registration.is_generic:
            return registration.embedding_rows(using, current=True), "object_id"
        name = registration.vector_field
        manager = registration.model._base_manager.using(using)
        return manager.filter(**{f"{name}__isnull": False}), "pk"

    def sample(
        self, registration: Registration, count: int, seed: int, using: str
    ) -> np.ndarray[Any, Any]:
        queryset, _ = self.base(registration, using)
        column = registration.vector_field or "vector"
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [(seed % 1000) / 1000])
            values = list(queryset.order_by("?").values_list(column, flat=True)[:count])
        return np.asarray([np.asarray(v, dtype=np.float32) for v in values])

    def ranked(
        self,
        registration: Registration,
        vector: np.ndarray[Any, Any],
        k: int,
        using: str,
        ef_search: int | None = None,
    ) -> Any:
        """The search as the site runs it (the one planner): exact, or by index at ef_search."""
        rows = as_vector_queryset(registration.model._base_manager.using(using).all())
        options: dict[str, Any] = (
            {"exact": True} if ef_search is None else {"exact": False, "ef_search": ef_search}
        )
        if registration.vector_field is None:
            options["embedder"] = registration.embedder_alias
        else:
            options["field"] = registration.vector_field
        return rows.similar_to(vector, k=k, **options).values_list("pk", "distance")

    def run_queries(
        self,
        registration: Registration,
        vectors: np.ndarray[Any, Any],
        k: int,
        ef_search: int | None,
        using: str,
    ) -> tuple[list[list[Any]], list[float]]:
        results, times = [], []
        for vector in vectors:
            started = time.perf_counter()
            results.append(list(self.ranked(registration, vector, k, using, ef_search)))
            times.append(time.perf_counter() - started)
        return results, times

    def uses_index(
        self, registration: Registration, vector: np.ndarray[Any, Any], k: int, using: str
    ) -> bool:
        names = registration_indexes(registration, using)
        # As on a table too big to scan: whether an index can serve the search at all.
        with apply_settings(using, {"enable_seqscan": "off"}):
            plan = self.ranked(registration, vector, k, using, ef_search=40).explain()
        return any(name in plan for name in names)


def recall(found: list[tuple[Any, float]], exact: list[tuple[Any, float]]) -> float:
    """Recall@k that counts ties as hits: the share of ``found`` no farther than the k-th exact.

    Rows at exactly the k-th exact distance (duplicates, short texts) are interchangeable; a
    recall by ids would penalize the index for choosing other ones than the sequential scan.
    """
    if not exact:
        return 1.0
    kth = exact[-1][1]
    tolerance = 1e-6 * max(1.0, abs(kth))
    hits = sum(1 for _, distance in found if distance <= kth + tolerance)
    return min(hits, len(exact)) / len(exact)


def _ms(seconds: Any) -> float:
    return round(float(seconds) * 1000, 3)
