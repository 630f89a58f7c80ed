"""``manage.py vectorsearch_bench app_label.Model [--apply]``: recall and latency on the site's
own data, and the ef_search calibrated for ``VECTORSEARCH["TARGET_RECALL"]``.

A little over 400 lines: sampling, measuring, bisecting and storing are one flow over the same
queries and exact answers; the stored calibration itself lives in :mod:`vectorsearch.calibration`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction

from ... import calibration
from ...conf import get_settings
from ...db import apply_settings
from ...exceptions import InvalidQuery
from ...ranking.search import as_vector_queryset
from ...registry import Registration
from ..utils import (
    Progress,
    fraction,
    int_list,
    positive_int,
    registration_indexes,
    select_registrations,
)

DEFAULT_EF_SEARCH = "10,20,40,80,160,320"
MAX_EF_SEARCH = 1000  # pgvector's bound for hnsw.ef_search
# --apply narrows the gap between the largest ef_search below the target and the smallest
# reaching it by bisection, until it is at most this share of the latter (or REFINE_STEPS runs).
REFINE_GAP, REFINE_STEPS = 0.1, 6


class Command(BaseCommand):
    help = (
        "Measure recall@k of the HNSW index against exact search, and latency, using stored "
        "vectors as queries; suggest the smallest hnsw.ef_search reaching --target-recall, "
        "and with --apply store it as the index's calibration, which searches then use."
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
            default=None,
            help='The recall@k the suggested ef_search must reach (VECTORSEARCH["TARGET_RECALL"], '
            "0.95).",
        )
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Store the smallest ef_search reaching the target as the index's calibration "
            "(searches that do not pass ef_search= use it), after narrowing it by bisection.",
        )
        parser.add_argument(
            "--queries-file",
            type=Path,
            default=None,
            help="A .npy file of query vectors (e.g. embeddings of logged searches) to use instead "
            "of stored vectors, which are nodes of the HNSW graph and easier for it than new "
            "queries.",
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
        target_recall: float | None,
        apply: bool,
        seed: int,
        queries_file: Path | None,
        as_json: bool,
        database: str,
        verbosity: int,
        **options: Any,
    ) -> None:
        if any(ef > MAX_EF_SEARCH for ef in ef_search):
            raise CommandError(f"--ef-search values must be at most {MAX_EF_SEARCH}.")
        if target_recall is None:
            target_recall = float(get_settings()["TARGET_RECALL"])
        # A search never walks fewer candidates than the rows it asks (k, plus the query's own
        # row left out here): smaller values would be measured as k + 1 and stored as less.
        ef_search = sorted({max(ef, k + 1) for ef in ef_search})
        registrations = select_registrations([label] if label else [])
        if len(registrations) != 1:
            raise CommandError(
                f"{label or 'The site'} has several registrations "
                f"({', '.join(r.label for r in registrations)}); name one, e.g. "
                "app_label.Model, app_label.Model.field or app_label.Model@alias."
            )
        registration = registrations[0]
        if queries_file is not None:
            ids, vectors = self.read_queries(queries_file, queries)
        else:
            ids, vectors = self.sample(registration, queries, seed, database)
        if not len(vectors):
            raise CommandError(
                f"{registration.label} has no stored vectors to benchmark; run "
                "vectorsearch_backfill first."
            )
        try:
            index = self.used_index(registration, vectors[0], k, database)
        except InvalidQuery as e:  # e.g. a --queries-file of another size than the field
            raise CommandError(f"{registration.label}: {e}") from None
        if apply and index is None:
            raise CommandError(
                f"No HNSW index serves the searches of {registration.label}, so there is no "
                "ef_search to calibrate: run manage.py vectorsearch_index first, then --apply."
            )
        self.progress = Progress(
            self.stdout,
            len(vectors) * (1 + len(ef_search)),
            "Measuring",
            enabled=verbosity >= 1 and not as_json,
        )
        exact_ids, exact_times = self.run_queries(registration, ids, vectors, k, None, database)
        rows = [
            self.measure(registration, ids, vectors, k, ef, database, exact_ids) for ef in ef_search
        ]
        if apply:
            rows = self.refine(
                rows, target_recall, registration, ids, vectors, k, database, exact_ids
            )
        self.progress.close()
        suggested = calibration.choose_ef_search(rows, target_recall)
        report = {
            "model": registration.label,
            "queries": len(vectors),
            "k": k,
            "index_used": index is not None,
            "index": index,
            "exact": {
                "p50_ms": _ms(np.percentile(exact_times, 50)),
                "p95_ms": _ms(np.percentile(exact_times, 95)),
            },
            "hnsw": rows,
            "target_recall": target_recall,
            "suggested_ef_search": suggested,
            "applied": None,
        }
        if apply and suggested is not None:
            assert index is not None
            chosen = next(r for r in rows if r["ef_search"] == suggested)
            queryset, _ = self.base(registration, database)
            stored = calibration.store(
                index_name=index,
                model=registration.model,
                field_name=registration.key,
                using=database,
                ef_search=suggested,
                target_recall=target_recall,
                recall=chosen["recall"],
                k=k,
                queries=len(vectors),
                rows=queryset.count(),
                curve=rows,
            )
            report["applied"] = {
                "index": index,
                "ef_search": suggested,
                "recall": chosen["recall"],
                "rows": stored.rows,
                "calibrated_at": stored.calibrated_at.isoformat(),
            }
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        elif verbosity >= 1:
            self.print_report(report)
        if apply and suggested is None:
            raise CommandError(
                f"No ef_search tried reaches recall@{k} {target_recall:.2f} on "
                f"{registration.label}, so no calibration was stored: try larger values, e.g. "
                "--ef-search 200,400,800 (at most 1000), or rebuild the index with a larger m / "
                "ef_construction (HnswIndex(m=..., ef_construction=...), then vectorsearch_index "
                "--rebuild)."
            )

    def measure(
        self,
        registration: Registration,
        ids: list[str],
        vectors: np.ndarray[Any, Any],
        k: int,
        ef: int,
        database: str,
        exact_ids: list[list[Any]],
    ) -> dict[str, Any]:
        """Recall and latency of the searches at one ef_search."""
        found, times = self.run_queries(registration, ids, vectors, k, ef, database)
        recalls = [recall(a, e) for a, e in zip(found, exact_ids, strict=True)]
        return {
            "ef_search": ef,
            "recall": float(np.mean(recalls)),
            "min_recall": float(np.min(recalls)),
            # The standard error of the mean recall: the margin the choice keeps.
            "stderr": float(np.std(recalls, ddof=1) / np.sqrt(len(recalls)))
            if len(recalls) > 1
            else 0.0,
            "p50_ms": _ms(np.percentile(times, 50)),
            "p95_ms": _ms(np.percentile(times, 95)),
        }

    def refine(
        self,
        rows: list[dict[str, Any]],
        target: float,
        registration: Registration,
        ids: list[str],
        vectors: np.ndarray[Any, Any],
        k: int,
        database: str,
        exact_ids: list[list[Any]],
    ) -> list[dict[str, Any]]:
        """``rows`` with ef_search values bisected between the largest below ``target`` and the
        smallest reaching it: the ladder's doubling steps overshoot by up to 2x."""
        for _ in range(REFINE_STEPS):
            reaching = calibration.choose_ef_search(rows, target)
            below = [r["ef_search"] for r in rows if reaching and r["ef_search"] < reaching]
            if reaching is None or not below:
                break
            low = max(below)
            if reaching - low <= max(1, REFINE_GAP * reaching):
                break
            middle = (low + reaching) // 2
            self.progress.total += len(vectors)
            rows.append(self.measure(registration, ids, vectors, k, middle, database, exact_ids))
            rows.sort(key=lambda r: r["ef_search"])
        return rows

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
                f"  ef={row['ef_search']:<5}  recall {row['recall']:.3f} ±{row['stderr']:.3f} "
                f"(min {row['min_recall']:.2f})  p50 {row['p50_ms']:8.2f} ms  "
                f"p95 {row['p95_ms']:8.2f} ms"
            )
        applied = report["applied"]
        if applied is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Stored ef_search {applied['ef_search']} for index {applied['index']} "
                    f"(recall {applied['recall']:.3f} >= {report['target_recall']:.2f} on "
                    f"{applied['rows']:,} rows): searches without ef_search= use it from now on."
                )
            )
        elif report["suggested_ef_search"] is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Suggested ef_search: {report['suggested_ef_search']} (the smallest reaching "
                    f"recall {report['target_recall']:.2f} with one standard error to spare)."
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
    ) -> tuple[list[str], np.ndarray[Any, Any]]:
        """``count`` stored vectors chosen at random, and the ids of their objects (as text)."""
        queryset, id_name = self.base(registration, using)
        column = registration.vector_field or "vector"
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [(seed % 1000) / 1000])
            values = list(queryset.order_by("?").values_list(id_name, column)[:count])
        ids = [str(pk) for pk, _ in values]
        return ids, np.asarray([np.asarray(v, dtype=np.float32) for _, v in values])

    def read_queries(self, path: Path, count: int) -> tuple[list[str], np.ndarray[Any, Any]]:
        """The first ``count`` vectors of a .npy file (no stored row is theirs: ids are "")."""
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CommandError(
                f"--queries-file {path}: cannot read it as a .npy array ({e}); save query "
                "vectors with numpy.save(path, array_of_shape_queries_x_dimensions)."
            ) from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or not len(array):
            raise CommandError(
                f"--queries-file {path}: expected a non-empty 2-D numeric array (queries x "
                f"dimensions), got shape {array.shape} of {array.dtype}."
            )
        vectors = np.asarray(array[:count], dtype=np.float32)
        return [""] * len(vectors), vectors

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
        ids: list[str],
        vectors: np.ndarray[Any, Any],
        k: int,
        ef_search: int | None,
        using: str,
    ) -> tuple[list[list[Any]], list[float]]:
        """Each vector's k nearest rows other than its own object (a stored vector finds
        itself at distance 0, which would flatter the index as no real query does)."""
        results, times = [], []
        asked = min(k + 1, get_settings()["MAX_K"])
        for own, vector in zip(ids, vectors, strict=True):
            started = time.perf_counter()
            found = list(self.ranked(registration, vector, asked, using, ef_search))
            times.append(time.perf_counter() - started)
            others = [row for row in found if str(row[0]) != own]
            results.append(others[:k])
            if hasattr(self, "progress"):
                self.progress.update(1)
        return results, times

    def used_index(
        self, registration: Registration, vector: np.ndarray[Any, Any], k: int, using: str
    ) -> str | None:
        """The name of the vector index the searches walk, or None when none serves them."""
        names = registration_indexes(registration, using)
        # As on a table too big to scan: whether an index can serve the search at all.
        with apply_settings(using, {"enable_seqscan": "off"}):
            plan = self.ranked(registration, vector, k, using, ef_search=40).explain()
        return next((name for name in names if name in plan), None)


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
