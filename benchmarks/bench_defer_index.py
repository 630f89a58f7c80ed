"""A big re-embed through the live HNSW index against vectorsearch_backfill --defer-index.

    python benchmarks/bench_defer_index.py [--rows 20000] [--words 60] [--fractions 0.1 0.25 1]

Rows are embedapp.Note objects (generic Embedding table, HashingEmbedder at 384 dimensions). The
first load runs with no index, then vectorsearch_index builds it. For each fraction f, f of the
rows get a new text and are re-embedded twice, each time from a freshly built index: once with
the index live (the graph updated row by row) and once with --defer-index (dropped, loaded,
built again concurrently). Times are end to end, the index build included; the index size after
each run shows the bloat a live re-embed leaves.
"""

from __future__ import annotations

import argparse
import random
import time
from io import StringIO

from _setup import setup, truncate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 1.0])
    args = parser.parse_args()
    setup(384)

    from django.core.management import call_command
    from django.db import connection
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    from tests.embedapp.models import Note
    from vectorsearch.management.commands import vectorsearch_backfill
    from vectorsearch.management.utils import generic_index_name, human_size, index_info
    from vectorsearch.registry import registry

    # Measure the deferred path at every fraction, including those the command would not defer.
    vectorsearch_backfill.DEFER_INDEX_FRACTION = 0.0

    rng = random.Random(0)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
        for _ in range(20_000)
    ]
    truncate("vectorsearch_embedding", "embedapp_note")
    Note.objects.bulk_create(
        (
            Note(
                title=" ".join(rng.choices(vocabulary, k=6)),
                body=" ".join(rng.choices(vocabulary, k=args.words)),
            )
            for _ in range(args.rows)
        ),
        batch_size=5_000,
    )
    name = generic_index_name(registry.get(Note))
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX IF EXISTS "{name}"')

    def command(*a: str, **kw: object) -> float:
        started = time.perf_counter()
        call_command(*a, stdout=StringIO(), stderr=StringIO(), **kw)
        return time.perf_counter() - started

    def retitle(fraction: float, round_: int) -> int:
        step = max(1, round(1 / fraction))
        changed = Note.objects.filter(id__in=range(1, args.rows + 1, step)).update(
            title=Concat(F("title"), Value(f" r{round_}"))
        )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE vectorsearch_embedding")
        return changed

    print(f"{args.rows:,} rows of ~{args.words + 6} words, HashingEmbedder(384), generic table")
    seconds = command("vectorsearch_backfill", "embedapp.Note", batch_size=256)
    print(f"first load, no index:   {args.rows / seconds:8,.0f} rows/s ({seconds:.1f} s)")
    seconds = command("vectorsearch_index", "embedapp.Note")
    fresh = index_info(name).size_bytes
    print(f"index build:            {seconds:8.1f} s, {human_size(fresh)}")
    print()
    print("fraction  rows    live index            --defer-index          speed-up")
    round_ = 0
    for fraction in args.fractions:
        results = []
        for defer in (False, True):
            command("vectorsearch_index", "embedapp.Note", rebuild=True)
            round_ += 1
            changed = retitle(fraction, round_)
            seconds = command(
                "vectorsearch_backfill", "embedapp.Note", batch_size=256, defer_index=defer
            )
            results.append((changed, seconds, index_info(name).size_bytes))
        (changed, live, live_size), (_, deferred, deferred_size) = results
        print(
            f"{fraction:8.0%}  {changed:6,}  "
            f"{changed / live:6,.0f} rows/s {live:5.1f} s  "
            f"{changed / deferred:6,.0f} rows/s {deferred:5.1f} s  {live / deferred:6.2f}x"
            f"   index after: live {human_size(live_size)}, deferred {human_size(deferred_size)}"
        )


if __name__ == "__main__":
    main()
