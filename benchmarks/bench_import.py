"""vectorsearch_import against raw psycopg COPY BINARY and Django's bulk_create.

    python benchmarks/bench_import.py [--rows 100000] [--dimensions 384] [--repeat 3]

The issue's targets: vectorsearch_import >= 0.8x raw COPY BINARY and >= 20x bulk_create.
All three load the same rows into vectorsearch_embedding (generic registration embedapp.Note);
the import is timed end to end (reading the .npy files, checking every vector and id, COPY).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import numpy as np
import psycopg
from _setup import setup, truncate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimensions", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bulk-create-rows", type=int, default=20_000)
    args = parser.parse_args()
    setup(args.dimensions)

    from django.core.management import call_command
    from django.db import connection
    from pgvector.psycopg import register_vector

    from tests.embedapp.models import Note
    from vectorsearch.models import Embedding
    from vectorsearch.registry import registry

    truncate("vectorsearch_embedding", "embedapp_note")
    Note.objects.bulk_create((Note(title=f"n{i}") for i in range(args.rows)), batch_size=10_000)
    ids = list(Note.objects.order_by("pk").values_list("pk", flat=True))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, args.dimensions), dtype=np.float32)
    registration = registry.get(Note)
    ct = registration.content_type_id()
    identity = registration.embedder.identity
    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "vectors.npy", vectors)
    np.save(tmp / "ids.npy", np.asarray(ids))
    print(f"{args.rows:,} vectors x {args.dimensions} dimensions into vectorsearch_embedding")

    settings = connection.settings_dict
    raw = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
        password=settings["PASSWORD"] or None,
    )
    register_vector(raw)  # as pgvector-python's README does for COPY

    def raw_copy() -> float:
        started = time.perf_counter()
        now = datetime.now(UTC)
        with (
            raw.transaction(),
            raw.cursor() as cursor,
            cursor.copy(
                "COPY vectorsearch_embedding (content_type_id, object_id, key, identity, "
                "source_hash, vector, updated_at) FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["int4", "text", "text", "text", "text", "vector", "timestamptz"])
            for pk, vector in zip(ids, vectors, strict=True):
                copy.write_row((ct, str(pk), "@default", identity, "", vector, now))
        return time.perf_counter() - started

    def command() -> float:
        started = time.perf_counter()
        call_command(
            "vectorsearch_import",
            "embedapp.Note",
            str(tmp / "vectors.npy"),
            ids=str(tmp / "ids.npy"),
            verbosity=0,
            stdout=StringIO(),
        )
        return time.perf_counter() - started

    def bulk_create() -> float:
        n = args.bulk_create_rows
        started = time.perf_counter()
        Embedding.objects.bulk_create(
            (
                Embedding(
                    content_type_id=ct,
                    object_id=str(pk),
                    key="@default",
                    identity=identity,
                    vector=vector,
                )
                for pk, vector in zip(ids[:n], vectors[:n], strict=True)
            ),
            batch_size=1000,
        )
        return time.perf_counter() - started

    connection.ensure_connection()
    rates: dict[str, list[float]] = {
        "raw COPY BINARY": [],
        "vectorsearch_import": [],
        "bulk_create": [],
    }
    for round_ in range(args.repeat):
        # Alternate the order so neither side always meets a freshly checkpointed table.
        order = [("raw COPY BINARY", raw_copy), ("vectorsearch_import", command)]
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            truncate("vectorsearch_embedding")
            seconds = run()
            assert Embedding.objects.count() == args.rows
            rates[name].append(args.rows / seconds)
            print(f"  round {round_ + 1}: {name:20s} {args.rows / seconds:10,.0f} vectors/s")
    truncate("vectorsearch_embedding")
    seconds = bulk_create()
    rates["bulk_create"].append(args.bulk_create_rows / seconds)
    print(
        f"  bulk_create ({args.bulk_create_rows:,} rows, batch_size=1000): "
        f"{rates['bulk_create'][0]:,.0f} vectors/s"
    )
    truncate("vectorsearch_embedding")

    raw = statistics.median(rates["raw COPY BINARY"])
    imported = statistics.median(rates["vectorsearch_import"])
    bulk = rates["bulk_create"][0]
    print(f"median raw COPY BINARY      {raw:10,.0f} vectors/s")
    print(f"median vectorsearch_import  {imported:10,.0f} vectors/s")
    print(f"bulk_create                 {bulk:10,.0f} vectors/s")
    print(f"import / raw COPY = {imported / raw:.2f}x (target >= 0.8x)")
    print(f"import / bulk_create = {imported / bulk:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
