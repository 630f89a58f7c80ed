"""The ``VECTORSEARCH`` setting: a dict merged over the defaults below.

Read through :func:`get_settings`; the merged dict is cached and reset when a test changes the
setting (``override_settings``)::

    VECTORSEARCH = {"CREATE_EXTENSION": False}
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .exceptions import ImproperlyConfiguredVectorSearch

__all__ = ["DEFAULTS", "EF_SEARCH_RANGE", "SYNC_MODES", "get_settings"]

#: What saving a registered object does to its vector (``SYNC`` below, ``register(sync=...)``):
#: embed in ``post_save``, enqueue a background task, or leave it to the backfill.
SYNC_MODES = ("immediate", "task", "manual")
#: pgvector's bounds for hnsw.ef_search.
EF_SEARCH_RANGE = (1, 1000)

DEFAULTS: dict[str, Any] = {
    # Create the pgvector extension at the start of `migrate` when it is missing. Turn off where a
    # DBA manages extensions; migrations then fail early with the SQL the DBA must run.
    "CREATE_EXTENSION": True,
    # The largest k a similarity query may ask for.
    "MAX_K": 1000,
    # hnsw.ef_search for similarity queries that do not pass ef_search=, 1 to 1000. pgvector's
    # own 40 gives a recall@10 of 0.82 on the 100k x 384 benchmark; 200 gives 0.96.
    "EF_SEARCH": 200,
    # The same for filtered searches, which walk the index with an iterative scan: each batch
    # of it is one ef_search-wide search. On the benchmark's 300 queries under a 10% filter,
    # 400 gives recall@10 0.979 (0.985 on another 300), 500 gives 0.980 (0.988), 600 0.986 at
    # ~20% more time; 50% filters reach 0.987+ from 400.
    "FILTERED_EF_SEARCH": 500,
    # The recall@k `vectorsearch_bench --apply` calibrates each HNSW index for: it stores the
    # smallest ef_search reaching it, which unfiltered searches then use instead of EF_SEARCH
    # (vectorsearch.calibration). A number greater than 0 and at most 1.
    "TARGET_RECALL": 0.95,
    # Searches over a binary-quantized index (HnswIndex(quantization="binary")) find this many
    # times the rows asked by Hamming distance, then keep the nearest by the full distance.
    "BINARY_OVERFETCH": 4,
    # hnsw.max_scan_tuples of the iterative index scans of filtered searches: how many index
    # tuples a scan may visit before it gives up (pgvector: 20000); an exact scan then completes
    # a short answer.
    "MAX_SCAN_TUPLES": 20_000,
    # When a filtered search does not say exact= or not: None (default) lets the planner compare
    # the cost of an exact scan of the rows the filters keep with an iterative index scan
    # (vectorsearch.ranking.planner); a number scans exactly when it expects at most that many.
    "EXACT_SEARCH_MAX_ROWS": None,
    # The PostgreSQL text search configuration of keyword and hybrid search (to_tsvector's
    # first argument): the language of the site's text.
    "TEXT_SEARCH_CONFIG": "english",
    # Reciprocal rank fusion constant for hybrid search: 1 / (RRF_K + rank).
    "RRF_K": 60,
    # vectorsearch.search(mode="hybrid") (the search page): each list's candidates, how they
    # are fused ("wsum": w_vector * similarity + w_text * ts_rank; "rrf": w / (RRF_K + rank)) and
    # the weights; chosen by benchmarks/relevance.py (docs/embeddings.md).
    "HYBRID_CANDIDATES": 100,
    "HYBRID_FUSION": "wsum",
    "HYBRID_VECTOR_WEIGHT": 0.8,
    "HYBRID_TEXT_WEIGHT": 0.2,
    # What saving a registered object does to its vector: "immediate" (embed in post_save),
    # "task" (enqueue vectorsearch.tasks.embed_objects on commit, run by Django's tasks framework
    # or the django-tasks package) or "manual" (nothing; run vectorsearch_backfill from cron).
    # register(..., sync=...) overrides it per model.
    "SYNC": "immediate",
    # Rows a backfill embeds and writes per transaction (vectorsearch_backfill --batch-size).
    "BATCH_SIZE": 256,
    # The admin's "Re-embed selected" runs in the request for at most this many objects (1,000
    # notes took 2.5 s with the 384-dimension HashingEmbedder, benchmarks/bench_admin_reembed.py);
    # a larger selection is queued as background tasks, or refused with the vectorsearch_backfill
    # command to run when no task backend runs tasks in the background.
    "ADMIN_REEMBED_MAX_ROWS": 1000,
    # ...and stops between batches after this many seconds, saying how far it got, so a slow
    # embedder never holds the request past a worker timeout.
    "ADMIN_REEMBED_MAX_SECONDS": 10,
    # The ceiling, in MB, of the maintenance_work_mem vectorsearch_index sizes to the data.
    "INDEX_MAX_MAINTENANCE_WORK_MEM_MB": 2048,
    # The search page and JSON API (vectorsearch.views): results per page when the request does
    # not say, and the most it may ask for with per_page=.
    "SEARCH_PER_PAGE": 10,
    "SEARCH_MAX_PER_PAGE": 100,
    # How deep a visitor may page: page * per_page may not pass this (nor MAX_K).
    "SEARCH_MAX_RESULTS": 1000,
    # The longest search text, in characters; a longer one is a 400, not minutes of embedding.
    "SEARCH_MAX_QUERY_LENGTH": 500,
    # statement_timeout (ms) of each public search's queries, set transaction-locally: a search
    # that takes longer is cancelled by PostgreSQL and answered with a 503 and a message.
    "SEARCH_STATEMENT_TIMEOUT_MS": 3000,
    # Facet counts on the search page count the values among this many nearest results.
    "SEARCH_FACET_DEPTH": 100,
    # Read replicas (docs/scaling.md): aliases in DATABASES that searches run on. A list serves
    # the "default" database; a dict maps a primary alias to its replicas.
    "SEARCH_REPLICAS": [],
    # A replica further behind its primary than this (seconds) is passed over for the primary.
    "REPLICA_MAX_LAG_SECONDS": 5,
    # A replica that failed (connection refused, broken) is left alone this long (seconds).
    "REPLICA_RETRY_SECONDS": 5,
    # After a save or delete, the same request/thread (and, with ReadYourWritesMiddleware, the
    # same browser) searches the primary this long (seconds).
    "READ_YOUR_WRITES_SECONDS": 5,
}


def sync_modes_text() -> str:
    """The sync modes as an error message lists them: ``'immediate', 'task' or 'manual'``."""
    *first, last = (repr(mode) for mode in SYNC_MODES)
    return f"{', '.join(first)} or {last}"


@cache
def get_settings() -> dict[str, Any]:
    """The ``VECTORSEARCH`` setting merged over :data:`DEFAULTS`."""
    user = getattr(settings, "VECTORSEARCH", {}) or {}
    if not isinstance(user, dict):
        raise ImproperlyConfiguredVectorSearch("The VECTORSEARCH setting must be a dict.")
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfiguredVectorSearch(
            f"Unknown key(s) in the VECTORSEARCH setting: {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(DEFAULTS))}."
        )
    merged = {**DEFAULTS, **user}
    if merged["SYNC"] not in SYNC_MODES:
        raise ImproperlyConfiguredVectorSearch(
            f"VECTORSEARCH['SYNC'] must be {sync_modes_text()}, not {merged['SYNC']!r}."
        )
    if not isinstance(merged["TEXT_SEARCH_CONFIG"], str) or not merged["TEXT_SEARCH_CONFIG"]:
        raise ImproperlyConfiguredVectorSearch(
            "VECTORSEARCH['TEXT_SEARCH_CONFIG'] must name a text search configuration, e.g. "
            f"'english' or 'simple', not {merged['TEXT_SEARCH_CONFIG']!r}."
        )
    if merged["HYBRID_FUSION"] not in ("rrf", "wsum"):
        raise ImproperlyConfiguredVectorSearch(
            f"VECTORSEARCH['HYBRID_FUSION'] must be 'wsum' or 'rrf', not {merged['HYBRID_FUSION']!r}."
        )
    for key in ("HYBRID_VECTOR_WEIGHT", "HYBRID_TEXT_WEIGHT"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ImproperlyConfiguredVectorSearch(
                f"VECTORSEARCH[{key!r}] must be a number from 0 to 1, not {value!r}."
            )
    for key in ("CREATE_EXTENSION",):
        if not isinstance(merged[key], bool):
            raise ImproperlyConfiguredVectorSearch(
                f"VECTORSEARCH[{key!r}] must be True or False, not {merged[key]!r}."
            )
    for key in (
        "BATCH_SIZE",
        "ADMIN_REEMBED_MAX_ROWS",
        "ADMIN_REEMBED_MAX_SECONDS",
        "INDEX_MAX_MAINTENANCE_WORK_MEM_MB",
        "SEARCH_PER_PAGE",
        "SEARCH_MAX_PER_PAGE",
        "SEARCH_MAX_RESULTS",
        "SEARCH_MAX_QUERY_LENGTH",
        "SEARCH_STATEMENT_TIMEOUT_MS",
        "SEARCH_FACET_DEPTH",
    ):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ImproperlyConfiguredVectorSearch(
                f"VECTORSEARCH[{key!r}] must be a positive whole number, not {value!r}."
            )
    target = merged["TARGET_RECALL"]
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
        raise ImproperlyConfiguredVectorSearch(
            f"VECTORSEARCH['TARGET_RECALL'] must be a number greater than 0 and at most 1, "
            f"such as 0.95, not {target!r}."
        )
    for key, (low, high) in _RANGES.items():
        value = merged[key]
        if value is None and key in _OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ImproperlyConfiguredVectorSearch(
                f"VECTORSEARCH[{key!r}] must be a whole number from {low} to {high}, not {value!r}."
            )
    merged["SEARCH_REPLICAS"] = _replicas(merged["SEARCH_REPLICAS"])
    for key in ("REPLICA_MAX_LAG_SECONDS", "REPLICA_RETRY_SECONDS", "READ_YOUR_WRITES_SECONDS"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ImproperlyConfiguredVectorSearch(
                f"VECTORSEARCH[{key!r}] must be a number of seconds >= 0, not {value!r}."
            )
    return merged


# Settings whose None means "choose for me".
_OPTIONAL = {"EXACT_SEARCH_MAX_ROWS"}
# The integer settings with a range of their own (the others must be positive).
_RANGES = {
    "MAX_K": (1, 100_000),
    "EF_SEARCH": EF_SEARCH_RANGE,
    "FILTERED_EF_SEARCH": EF_SEARCH_RANGE,
    "MAX_SCAN_TUPLES": (1, 2**31 - 1),
    "EXACT_SEARCH_MAX_ROWS": (0, 2**63 - 1),
    "RRF_K": (0, 1_000_000),
    "BINARY_OVERFETCH": (1, 100),
    "HYBRID_CANDIDATES": (1, 10_000),
}


def _replicas(value: Any) -> dict[str, list[str]]:
    """``SEARCH_REPLICAS`` as {primary alias: [replica aliases]}; a bare list serves "default"."""
    if isinstance(value, list | tuple):
        value = {"default": list(value)} if value else {}
    if not isinstance(value, dict) or not all(
        isinstance(primary, str)
        and isinstance(aliases, list | tuple)
        and all(isinstance(a, str) and a != primary for a in aliases)
        for primary, aliases in value.items()
    ):
        raise ImproperlyConfiguredVectorSearch(
            "VECTORSEARCH['SEARCH_REPLICAS'] must be a list of database aliases (replicas of "
            "'default') or a dict {primary alias: [replica aliases]}, none naming its own "
            f"primary; got {value!r}."
        )
    return {primary: list(aliases) for primary, aliases in value.items() if aliases}


@receiver(setting_changed)
def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "VECTORSEARCH":
        get_settings.cache_clear()
