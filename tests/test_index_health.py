"""Index health against real builds: the HNSW size estimate, bloat and leftovers."""

import pytest
from django.db import connection

from vectorsearch.index_health import (
    BLOAT_RATIO,
    hnsw_size_estimate,
    index_health,
    leftover_indexes,
)

pytestmark = pytest.mark.django_db


def _build(vtype, dimensions, rows, m=16):
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE vs_size (id serial, v {vtype}({dimensions}))")
        cursor.execute(
            f"INSERT INTO vs_size (v) SELECT (SELECT array_agg(random()::real) "
            f"FROM generate_series(1, {dimensions}) WHERE i > 0)::vector::{vtype} "
            f"FROM generate_series(1, {rows}) i"
        )
        cursor.execute("INSERT INTO vs_size (v) VALUES (NULL)")  # not in the index
        opclass = f"{vtype}_l2_ops"
        cursor.execute(
            f"CREATE INDEX vs_size_hnsw ON vs_size USING hnsw (v {opclass}) WITH (m = {m})"
        )


@pytest.mark.parametrize(
    ("vtype", "dimensions", "rows", "m"),
    [
        ("vector", 384, 2000, 16),
        ("vector", 32, 3000, 16),
        ("vector", 1536, 300, 16),
        ("halfvec", 768, 1000, 16),
        ("vector", 128, 2000, 32),
    ],
)
def test_the_estimate_is_what_a_fresh_build_takes(vtype, dimensions, rows, m):
    _build(vtype, dimensions, rows, m)
    health = index_health(connection, "vs_size_hnsw")
    assert health.rows == rows  # the NULL is not counted: HNSW skips it
    assert health.estimate_bytes == hnsw_size_estimate(rows, dimensions, m=m, vector_type=vtype)
    # Exact for big vectors; small ones pack a page less evenly (upper layers link more).
    assert health.ratio == pytest.approx(1.0, abs=0.03)
    assert not health.bloated


def test_updates_bloat_the_index_past_the_ratio():
    _build("vector", 256, 1500)
    with connection.cursor() as cursor:
        # New vectors: a new graph element per row, the old ones left behind.
        cursor.execute(
            "UPDATE vs_size SET v = (SELECT array_agg(random()::real) "
            "FROM generate_series(1, 256) WHERE id > 0)::vector WHERE v IS NOT NULL"
        )
    health = index_health(connection, "vs_size_hnsw")
    assert health.ratio > BLOAT_RATIO and health.bloated


def test_no_estimate_for_ivfflat_and_none_for_a_missing_index():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE vs_size (id serial, v vector(3))")
        cursor.execute("INSERT INTO vs_size (v) VALUES ('[1,2,3]')")
        cursor.execute("CREATE INDEX vs_size_ivf ON vs_size USING ivfflat (v vector_l2_ops)")
    health = index_health(connection, "vs_size_ivf")
    assert (health.method, health.rows, health.estimate_bytes, health.bloated) == (
        "ivfflat",
        1,
        None,
        False,
    )
    assert index_health(connection, "no_such_index") is None


def test_leftovers_are_ccnew_ccold_and_exact_duplicates_only():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE vs_size (id serial, v vector(3))")
        for name, opclass in [
            ("vs_size_hnsw", "vector_l2_ops"),
            ("vs_size_hnsw_ccold", "vector_l2_ops"),
            ("vs_size_copy", "vector_l2_ops"),
            ("vs_size_cosine", "vector_cosine_ops"),  # another index, not a duplicate
        ]:
            cursor.execute(f"CREATE INDEX {name} ON vs_size USING hnsw (v {opclass})")
    found = {(x.name, x.why) for x in leftover_indexes(connection, "vs_size_hnsw")}
    assert found == {
        ("vs_size_hnsw_ccold", "left by an interrupted REINDEX CONCURRENTLY of vs_size_hnsw"),
        ("vs_size_copy", "a duplicate of vs_size_hnsw"),
    }
