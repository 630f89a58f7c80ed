"""Full precision against halfvec and binary + re-rank HNSW indexes, through similar_to (#12).

    python -m benchmarks.data                 # once: 100k x 384 clustered vectors (the table)
    python -m benchmarks.bench_quantized [--queries 200] [--overfetch 4,10]

Builds, on the benchmark table, the two quantized expression indexes that
``HnswIndex(quantization="halfvec" | "binary")`` declares (m 16, ef_construction 64, like the
table's full-precision index), then searches through models whose ``Meta.indexes`` declare each
one, so ``similar_to()`` ranks by the expression that index serves. Prints each index's size and
build time, recall@10 against exact numpy truth and p50, and the table against shared_buffers.
The quantized indexes are dropped at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from benchmarks.data import generate, queries

TABLE = "queryapp_benchitem"
K = 10
INDEXES = {
    "halfvec": (
        "bench_half_hnsw",
        "((embedding::halfvec(384)) halfvec_cosine_ops)",
    ),
    "binary": (
        "bench_binary_hnsw",
        "((binary_quantize(embedding)::bit(384)) bit_hamming_ops)",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--overfetch", default="4,10")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()
    from django.db import connection, models

    from vectorsearch import HnswIndex, VectorField, VectorManager

    def model_with(name: str, quantization: str | None, index: str) -> type[models.Model]:
        meta = type(
            "Meta",
            (),
            {
                "app_label": "queryapp",
                "managed": False,
                "db_table": TABLE,
                "indexes": [
                    HnswIndex(
                        fields=["embedding"], distance="cosine", quantization=quantization,
                        name=index,
                    )
                ],
            },
        )  # fmt: skip
        attrs = {
            "__module__": __name__,
            "category": models.IntegerField(),
            "embedding": VectorField(dimensions=384),
            "objects": VectorManager(),
            "Meta": meta,
        }
        return type(name, (models.Model,), attrs)

    full = model_with("FullItem", None, "benchitem_embedding_hnsw")
    half = model_with("HalfBenchItem", "halfvec", INDEXES["halfvec"][0])
    binary = model_with("BinaryBenchItem", "binary", INDEXES["binary"][0])

    vectors, _ = generate()
    ids = np.arange(1, len(vectors) + 1)
    qs = queries(args.queries)
    truth = [ids[np.argsort(-(vectors @ q))[:K]] for q in qs]

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        built = {}
        for kind, (name, expression) in INDEXES.items():
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if cursor.fetchone()[0]:
                built[kind] = None
                continue
            started = time.perf_counter()
            cursor.execute(
                f"CREATE INDEX {name} ON {TABLE} USING hnsw {expression} "
                "WITH (m = 16, ef_construction = 64)"
            )
            built[kind] = time.perf_counter() - started
        cursor.execute(f"ANALYZE {TABLE}")

        def size(name: str) -> int:
            cursor.execute("SELECT pg_relation_size(%s)", [name])
            return int(cursor.fetchone()[0])

        sizes = {
            "full": size("benchitem_embedding_hnsw"),
            **{kind: size(name) for kind, (name, _) in INDEXES.items()},
        }
        cursor.execute("SELECT pg_relation_size(%s), current_setting('shared_buffers')", [TABLE])
        table_size, shared = cursor.fetchone()

    def measure(model: type[models.Model], **options: object) -> tuple[float, float]:
        times, recalls = [], []
        for q, expected in zip(qs, truth, strict=True):
            started = time.perf_counter()
            found = [row.pk for row in model.objects.similar_to(q, k=K, exact=False, **options)]
            times.append(time.perf_counter() - started)
            recalls.append(len(set(found) & set(expected.tolist())) / K)
        return statistics.median(times) * 1000, statistics.mean(recalls)

    for model in (full, half, binary):  # warm the caches
        measure(model)
    print(f"{len(vectors)} rows x 384, {len(qs)} queries, k={K}; table {table_size / 2**20:.0f} MB, "
          f"shared_buffers {shared}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(
        f"{'index':28} {'size MB':>8} {'x full':>7} {'build s':>8} {'recall@10':>10} {'p50 ms':>8}"
    )
    rows = [("full precision", "full", full, {})]
    rows.append(("halfvec", "halfvec", half, {}))
    for overfetch in (int(x) for x in args.overfetch.split(",")):
        rows.append((f"binary + re-rank x{overfetch}", "binary", binary, {"overfetch": overfetch}))
    for label, kind, model, options in rows:
        p50, recall = measure(model, **options)
        build = built.get(kind)
        print(f"{label:28} {sizes[kind] / 2**20:8.1f} {sizes[kind] / sizes['full']:7.2f} "
              f"{'' if build is None else f'{build:8.1f}':>8} {recall:10.3f} {p50:8.2f}")  # fmt: skip
    if not args.keep:
        with connection.cursor() as cursor:
            for name, _ in INDEXES.values():
                cursor.execute(f"DROP INDEX IF EXISTS {name}")


if __name__ == "__main__":
    main()
