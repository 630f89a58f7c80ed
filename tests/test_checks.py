"""System checks on models; the database checks are exercised in test_operations.py."""

from django.db import models
from django.db.models.functions import Cast
from django.test.utils import isolate_apps
from pgvector import django as pgvector_django

from tests.testapp.models import Document, Item
from vectorsearch import BitField, HalfVectorField, HnswIndex, IvfflatIndex, VectorField
from vectorsearch.checks import check_model_indexes


def test_test_models_pass_the_checks():
    assert check_model_indexes(Document) == []
    assert check_model_indexes(Item) == []


@isolate_apps("tests.testapp")
def test_check_errors_for_indexes_that_cannot_work():
    class Bad(models.Model):
        no_dims = VectorField()
        big = VectorField(dimensions=2001)
        big_half = HalfVectorField(dimensions=4001)
        half = HalfVectorField(dimensions=8)
        bits = BitField(length=64)
        text = models.TextField()

        class Meta:
            app_label = "testapp"
            indexes = [
                HnswIndex(fields=["no_dims"], distance="cosine", name="no_dims_idx"),
                HnswIndex(fields=["big"], distance="cosine", name="big_idx"),
                IvfflatIndex(fields=["big_half"], distance="l2", name="big_half_idx"),
                IvfflatIndex(fields=["bits"], distance="jaccard", name="bits_idx"),
                HnswIndex(fields=["half"], distance="hamming", name="half_hamming_idx"),
                pgvector_django.HnswIndex(fields=["text"], name="text_idx"),
            ]

    found = {(e.id, e.msg.split(":")[1].split("'")[1]) for e in check_model_indexes(Bad)}
    assert found == {
        ("vectorsearch.E002", "no_dims_idx"),
        ("vectorsearch.E003", "big_idx"),
        ("vectorsearch.E003", "big_half_idx"),
        ("vectorsearch.E004", "bits_idx"),
        ("vectorsearch.E004", "half_hamming_idx"),
        ("vectorsearch.E006", "text_idx"),
    }
    (big,) = [e for e in check_model_indexes(Bad) if "'big_idx'" in e.msg]
    assert "a hnsw index on a vector takes at most 2,000" in big.msg
    assert "HalfVectorField" in big.hint


@isolate_apps("tests.testapp")
def test_ivfflat_jaccard_hint_points_to_hnsw():
    class Bits(models.Model):
        bits = BitField(length=64)

        class Meta:
            app_label = "testapp"
            indexes = [IvfflatIndex(fields=["bits"], distance="jaccard", name="bits_idx")]

    (error,) = check_model_indexes(Bits)
    assert error.hint == (
        "Distances an ivfflat index can serve on a bit: hamming. An HNSW index can serve jaccard."
    )


@isolate_apps("tests.testapp")
def test_checks_judge_an_expression_index_by_what_it_stores():
    class Big(models.Model):
        embedding = VectorField(dimensions=3072)
        name = models.TextField()

        class Meta:
            app_label = "testapp"
            indexes = [
                # The documented way past HNSW's 2,000 vector dimensions: index it as halfvec.
                HnswIndex(
                    Cast("embedding", HalfVectorField(dimensions=3072)),
                    distance="cosine",
                    name="big_half",
                ),
                HnswIndex(
                    Cast("embedding", BitField(length=3072)), distance="hamming", name="big_bits"
                ),
                HnswIndex(Cast("embedding", HalfVectorField()), distance="l2", name="no_size"),
                HnswIndex(fields=["embedding", "name"], distance="l2", name="two_columns"),
            ]

    found = sorted((e.id, e.msg.split("'")[1]) for e in check_model_indexes(Big))
    assert found == [
        ("vectorsearch.E002", "no_size"),
        ("vectorsearch.E003", "two_columns"),
        ("vectorsearch.E006", "two_columns"),
        ("vectorsearch.E007", "two_columns"),
    ]
