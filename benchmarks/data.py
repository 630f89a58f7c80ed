"""Synthetic benchmark data: clustered, normalized 384-d vectors with independent categories.

``python -m benchmarks.data`` creates the ``vectorsearch_bench`` database, migrates it and loads
100k rows (once; ``--force`` reloads). The same seed gives the same vectors, so ``benchmarks.run``
regenerates them in memory for the numpy ground truth instead of reading them back.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

ROWS = 100_000
DIMENSIONS = 384
CLUSTERS = 100
CATEGORIES = 100
SEED = 20261129


def _clusters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centers, weights, spreads) of the ~100 uneven clusters; the same for data and queries."""
    rng = np.random.default_rng(SEED)
    centers = rng.normal(size=(CLUSTERS, DIMENSIONS))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(CLUSTERS, 0.7))
    spreads = rng.uniform(0.03, 0.07, size=CLUSTERS)
    return centers, weights, spreads


def generate(rows: int = ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(vectors float32 [rows, 384] normalized, categories int [rows]).

    ~100 clusters of uneven sizes (Dirichlet weights); categories uniform and independent of
    the clusters, so a category filter keeps ~1% of every neighbourhood.
    """
    centers, weights, spreads = _clusters()
    rng = np.random.default_rng(seed + 1)
    assignment = rng.choice(CLUSTERS, size=rows, p=weights)
    vectors = centers[assignment] + rng.normal(size=(rows, DIMENSIONS)) * spreads[assignment, None]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = rng.integers(0, CATEGORIES, size=rows)
    return vectors.astype(np.float32), categories


def queries(count: int, seed: int = SEED + 100) -> np.ndarray:
    """Query vectors from the same clusters as the data (new points, not rows of the table)."""
    vectors, _ = generate(count, seed=seed)
    return vectors


def connect_settings() -> dict[str, object]:
    from tests.settings import BASE_DIR
    from vectorsearch.embedded import database_settings

    return database_settings(BASE_DIR / ".pgdata")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--force", action="store_true", help="reload even if the table is full")
    args = parser.parse_args()

    import psycopg
    from pgvector.psycopg import register_vector

    conn_settings = connect_settings()
    admin = psycopg.connect(
        host=conn_settings["HOST"], user="postgres", dbname="postgres", autocommit=True
    )
    if not admin.execute(
        "SELECT 1 FROM pg_database WHERE datname = 'vectorsearch_bench'"
    ).fetchone():
        admin.execute("CREATE DATABASE vectorsearch_bench")
    admin.close()

    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "queryapp", verbosity=0)

    conn = psycopg.connect(
        host=conn_settings["HOST"], user="postgres", dbname="vectorsearch_bench", autocommit=True
    )
    register_vector(conn)
    count = conn.execute("SELECT count(*) FROM queryapp_benchitem").fetchone()[0]
    if count == ROWS and not args.force:
        print(f"queryapp_benchitem already has {count} rows; --force reloads.")
        return
    started = time.perf_counter()
    vectors, categories = generate()
    print(f"generated {ROWS} x {DIMENSIONS} in {time.perf_counter() - started:.1f}s")
    conn.execute("DROP INDEX IF EXISTS benchitem_embedding_hnsw")
    conn.execute("TRUNCATE queryapp_benchitem RESTART IDENTITY")
    started = time.perf_counter()
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY queryapp_benchitem (id, category, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "int4", "vector"])
        for i in range(ROWS):
            copy.write_row((i + 1, int(categories[i]), vectors[i]))
    conn.execute("SELECT setval(pg_get_serial_sequence('queryapp_benchitem', 'id'), %s)", (ROWS,))
    print(f"copied in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '4GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    # The same index the model declares (the migration built it on the empty table).
    conn.execute(
        "CREATE INDEX benchitem_embedding_hnsw ON queryapp_benchitem "
        "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
    )
    print(f"HNSW built in {time.perf_counter() - started:.1f}s")
    conn.execute("VACUUM ANALYZE queryapp_benchitem")
    if conn.execute("SELECT current_setting('shared_buffers', true)").fetchone()[0] != "1GB":
        # The graph and the table (~350MB) must fit in shared_buffers for steady latencies.
        conn.execute("ALTER SYSTEM SET shared_buffers = '1GB'")
        print("shared_buffers set to 1GB: restart the server before benchmarks.run.")
    conn.close()


if __name__ == "__main__":
    main()
