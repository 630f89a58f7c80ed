"""vectorsearch_backfill throughput with the default HashingEmbedder (384 dimensions).

    python benchmarks/bench_backfill.py [--rows 20000] [--words 60] [--batch-size 256 1000]

The issue's target: >= 2,000 rows/s on 2 cores. Rows are embedapp.Note objects (generic
Embedding table) with --words random words each, created without signals, so all are missing;
each run starts from an empty Embedding table and is timed end to end (reading, hashing the
source text, embedding, COPY + upsert, orphan sweep).
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
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256, 1000])
    args = parser.parse_args()
    setup(384)

    from django.core.management import call_command

    from tests.embedapp.models import Note
    from vectorsearch.models import Embedding

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

    def backfill(batch_size: int) -> None:
        call_command(
            "vectorsearch_backfill", "embedapp.Note", batch_size=batch_size, stdout=StringIO()
        )

    print(f"{args.rows:,} rows of ~{args.words + 6} words, HashingEmbedder(384)")
    for batch_size in args.batch_size:
        truncate("vectorsearch_embedding")
        started = time.perf_counter()
        call_command(
            "vectorsearch_backfill", "embedapp.Note", batch_size=batch_size, stdout=StringIO()
        )
        seconds = time.perf_counter() - started
        assert Embedding.objects.count() == args.rows
        print(
            f"  --batch-size {batch_size:5d}: {args.rows / seconds:8,.0f} rows/s ({seconds:.1f} s)"
        )
        started = time.perf_counter()
        call_command(
            "vectorsearch_backfill", "embedapp.Note", batch_size=batch_size, stdout=StringIO()
        )
        seconds = time.perf_counter() - started
        print(f"    rerun with nothing to do: {args.rows / seconds:8,.0f} rows/s checked")
    print("target: >= 2,000 rows/s")


if __name__ == "__main__":
    main()
