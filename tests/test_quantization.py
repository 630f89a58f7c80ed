"""Quantized HNSW indexes: HnswIndex(quantization="halfvec" | "binary") and the searches they serve."""

import numpy as np
import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext, isolate_apps

from tests.queryapp.models import BinaryItem, HalfItem, WideItem
from vectorsearch import BitField, HnswIndex, SparseVectorField, VectorField
from vectorsearch.checks import check_model_indexes


def test_a_quantized_index_round_trips_through_deconstruct():
    index = HnswIndex(fields=["embedding"], distance="cosine", quantization="binary", name="i")
    path, args, kwargs = index.deconstruct()
    assert kwargs["quantization"] == "binary"
    assert HnswIndex(*args, **kwargs).deconstruct() == (path, args, kwargs)
    plain = HnswIndex(fields=["embedding"], distance="cosine", name="i").deconstruct()[2]
    assert "quantization" not in plain


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantization": "int8"}, "quantization must be one of 'halfvec', 'binary'"),
        ({"quantization": "binary", "distance": None}, "takes fields=\\[one vector field\\]"),
        ({"quantization": "halfvec", "fields": ["a", "b"]}, "takes fields=\\[one vector field\\]"),
    ],
)
def test_bad_quantization_arguments_are_refused(kwargs, message):
    arguments = {"fields": ["embedding"], "distance": "cosine", "name": "i", **kwargs}
    with pytest.raises(ValueError, match=message):
        HnswIndex(**arguments)


@isolate_apps("tests.testapp")
def test_checks_name_the_distances_and_columns_a_quantization_serves():
    class Quantized(models.Model):
        dense = VectorField(dimensions=8)
        sparse = SparseVectorField(dimensions=8)
        bits = BitField(length=8)
        wide = VectorField(dimensions=3072)

        class Meta:
            app_label = "testapp"
            indexes = [
                HnswIndex(fields=["dense"], distance="l1", quantization="binary", name="a"),
                HnswIndex(fields=["sparse"], distance="cosine", quantization="halfvec", name="b"),
                HnswIndex(fields=["bits"], distance="cosine", quantization="binary", name="c"),
                HnswIndex(fields=["wide"], distance="cosine", quantization="halfvec", name="d"),
            ]

    errors = {(e.id, e.msg.split("'")[1]) for e in check_model_indexes(Quantized)}
    assert errors == {
        ("vectorsearch.E009", "a"),
        ("vectorsearch.E008", "b"),
        ("vectorsearch.E008", "c"),
    }
    (l1,) = [e for e in check_model_indexes(Quantized) if e.id == "vectorsearch.E009"]
    assert "it serves: cosine, l2, inner_product" in l1.msg


def explain(queryset):
    """The plan as on a table too big to scan (these hold a few hundred rows)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def unit_rows(rng, count, dimensions):
    vectors = rng.normal(size=(count, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors, ids, query, k):
    return [ids[i] for i in np.argsort(-(vectors @ query))[:k]]


@pytest.fixture
def half_items(db):
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng, 400, 16)
    items = HalfItem.objects.bulk_create(
        HalfItem(group=i % 4, embedding=v) for i, v in enumerate(vectors)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_halfitem")
    return vectors, [item.pk for item in items], rng


def test_a_halfvec_index_serves_searches_that_cast_the_same_way(half_items):
    vectors, ids, rng = half_items
    query = unit_rows(rng, 1, 16)[0]
    found = HalfItem.objects.similar_to(query, k=5, exact=False)
    assert "half_hnsw" in explain(found)
    sql = str(found.query)
    assert '("queryapp_halfitem"."embedding")::halfvec(16) <=>' in sql
    assert [item.pk for item in found] == exact_top(vectors, ids, query, 5)
    for item in found:  # the distance of the halfvec, within float16 precision of float32's
        assert item.distance == pytest.approx(
            1 - float(vectors[ids.index(item.pk)] @ query), abs=2e-3
        )


def test_a_filtered_halfvec_search_still_returns_k_rows(half_items):
    _, _, rng = half_items
    query = unit_rows(rng, 1, 16)[0]
    found = list(HalfItem.objects.filter(group=2).similar_to(query, k=7, exact=False))
    assert len(found) == 7 and {item.group for item in found} == {2}


@pytest.fixture
def binary_items(db):
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 600, 64)
    items = BinaryItem.objects.bulk_create(BinaryItem(embedding=v) for v in vectors)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_binaryitem")
    return vectors, [item.pk for item in items], rng


def test_a_binary_index_search_is_reranked_by_the_full_distance(binary_items, settings):
    vectors, ids, rng = binary_items
    query = unit_rows(rng, 1, 64)[0]
    found = BinaryItem.objects.similar_to(query, k=5, exact=False)
    assert "binary_hnsw" in explain(found)
    with CaptureQueriesContext(connection) as captured:
        rows = list(found)
    (sql,) = [q["sql"] for q in captured.captured_queries]
    # The Hamming search finds 4 x 5 rows (BINARY_OVERFETCH), with ef_search to cover them.
    assert "binary_quantize" in sql and "LIMIT 20" in sql
    assert [r.distance for r in rows] == sorted(r.distance for r in rows)
    for row in rows:  # full precision, not Hamming
        assert row.distance == pytest.approx(
            1 - float(vectors[ids.index(row.pk)] @ query), abs=1e-5
        )


def test_overfetch_trades_speed_for_recall(binary_items):
    vectors, ids, rng = binary_items
    queries = unit_rows(rng, 20, 64)

    def recall(overfetch):
        hits = 0
        for q in queries:
            found = BinaryItem.objects.similar_to(q, k=5, exact=False, overfetch=overfetch)
            hits += len({r.pk for r in found} & set(exact_top(vectors, ids, q, 5)))
        return hits / (5 * len(queries))

    low, high = recall(1), recall(100)
    assert high >= 0.95 > low


def test_overfetch_is_checked():
    from vectorsearch import InvalidQuery

    with pytest.raises(InvalidQuery, match="overfetch must be a whole number from 1 to 100"):
        BinaryItem.objects.similar_to([0.1] * 64, overfetch=0)


@pytest.mark.django_db
def test_more_than_2000_dimensions_are_indexed_as_halfvec():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'wide_hnsw'")
        (definition,) = cursor.fetchone()
    assert "halfvec(3072)) halfvec_cosine_ops" in definition
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng, 30, 3072)
    WideItem.objects.bulk_create(WideItem(embedding=v) for v in vectors)
    found = WideItem.objects.similar_to(vectors[4], k=3, exact=False)
    assert "wide_hnsw" in explain(found)
    assert found[0].distance == pytest.approx(0.0, abs=1e-3)
