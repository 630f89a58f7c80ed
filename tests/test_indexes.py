import pytest
from django.db import connection, models
from django.db.models.functions import Cast
from pgvector import django as pgvector_django

from tests.testapp.models import Item
from vectorsearch import HalfVectorField, HnswIndex, IvfflatIndex
from vectorsearch.distances import Distance

INDEXES = [
    HnswIndex(fields=["embedding"], name="a"),
    HnswIndex(fields=["embedding"], distance="cosine", m=16, ef_construction=64, name="b"),
    HnswIndex(fields=["embedding"], opclasses=["vector_l2_ops"], name="c"),
    HnswIndex(
        Cast("embedding", HalfVectorField(dimensions=3)),
        distance=Distance.INNER_PRODUCT,
        name="d",
        condition=models.Q(name="x"),
    ),
    IvfflatIndex(fields=["embedding"], distance="l2", lists=100, name="e"),
    IvfflatIndex(fields=["embedding"], name="f"),
]


@pytest.mark.parametrize("index", INDEXES, ids=[i.name for i in INDEXES])
def test_deconstruct_round_trips(index):
    path, args, kwargs = index.deconstruct()
    assert path in ("vectorsearch.indexes.HnswIndex", "vectorsearch.indexes.IvfflatIndex")
    clone = type(index)(*args, **kwargs)
    assert clone.deconstruct() == (path, args, kwargs)
    assert clone == index


def test_deconstruct_writes_only_what_differs_from_the_default():
    assert HnswIndex(fields=["embedding"], name="a").deconstruct()[2] == {
        "fields": ["embedding"],
        "name": "a",
    }
    assert HnswIndex(fields=["embedding"], distance="cosine", name="b").deconstruct()[2] == {
        "fields": ["embedding"],
        "name": "b",
        "distance": "cosine",
    }


def _sql(index, model=Item):
    with connection.schema_editor() as editor:
        return str(index.create_sql(model, editor))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "distance", "opclass"),
    [
        ("embedding", "cosine", "vector_cosine_ops"),
        ("embedding", "l1", "vector_l1_ops"),
        ("half_embedding", "l2", "halfvec_l2_ops"),
        ("half_embedding", "inner_product", "halfvec_ip_ops"),
        ("sparse_embedding", "cosine", "sparsevec_cosine_ops"),
        ("binary_embedding", "hamming", "bit_hamming_ops"),
        ("binary_embedding", "jaccard", "bit_jaccard_ops"),
    ],
)
def test_hnsw_opclass_follows_column_type_and_distance(field, distance, opclass):
    sql = _sql(HnswIndex(fields=[field], distance=distance, m=8, ef_construction=32, name="i"))
    assert f'USING hnsw ("{field}" {opclass}) WITH (m = 8, ef_construction = 32)' in sql


@pytest.mark.django_db
def test_expression_index_gets_the_opclass_of_the_expression_type():
    index = HnswIndex(
        Cast("embedding", HalfVectorField(dimensions=3)),
        distance="cosine",
        name="half_expr",
        condition=models.Q(name="x"),
    )
    sql = _sql(index)
    assert 'USING hnsw ((("embedding")::halfvec(3)) halfvec_cosine_ops) WHERE "name" = \'x\'' in sql
    with connection.cursor() as cursor:  # and PostgreSQL accepts it
        cursor.execute(sql)
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'half_expr'")
        assert "halfvec_cosine_ops" in cursor.fetchone()[0]


@pytest.mark.django_db
def test_ivfflat_sql():
    sql = _sql(IvfflatIndex(fields=["embedding"], distance="inner_product", lists=10, name="i"))
    assert 'USING ivfflat ("embedding" vector_ip_ops) WITH (lists = 10)' in sql


@pytest.mark.django_db(transaction=True)
def test_declared_indexes_exist_in_the_database_with_their_opclasses():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'document_embedding_hnsw'"
        )
        (definition,) = cursor.fetchone()
    assert (
        "USING hnsw (embedding vector_cosine_ops) WITH (m='16', ef_construction='64')" in definition
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 1}, "m must be a whole number from 2 to 100, not 1"),
        ({"m": 101}, "m must be a whole number from 2 to 100"),
        ({"ef_construction": 2000}, "ef_construction must be a whole number from 4 to 1000"),
        ({"m": 32, "ef_construction": 40}, "ef_construction must be at least twice m (64), not 40"),
        ({"distance": "dot"}, "Unknown distance 'dot'; choose one of: cosine, l2"),
        ({"distance": "l2", "opclasses": ["vector_l2_ops"]}, "either distance= or opclasses="),
    ],
)
def test_hnsw_arguments_are_checked_on_construction(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HnswIndex(fields=["embedding"], name="i", **kwargs)


def test_ivfflat_lists_are_checked():
    with pytest.raises(ValueError, match="lists must be a whole number from 1 to 32768, not 0"):
        IvfflatIndex(fields=["embedding"], name="i", lists=0)


def test_opclass_for_an_impossible_combination_says_what_is_possible():
    with pytest.raises(
        ValueError,
        match="cannot serve the l1 distance; distances it can serve: cosine, l2, inner_product",
    ):
        Distance.L1.opclass("vector", "ivfflat")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            HnswIndex(fields=["embedding"], m=16, opclasses=["vector_l2_ops"], name="i"),
            pgvector_django.HnswIndex(
                fields=["embedding"], m=16, opclasses=["vector_l2_ops"], name="i"
            ),
        ),
        (
            IvfflatIndex(fields=["embedding"], lists=5, opclasses=["vector_ip_ops"], name="i"),
            pgvector_django.IvfflatIndex(
                fields=["embedding"], lists=5, opclasses=["vector_ip_ops"], name="i"
            ),
        ),
    ],
)
def test_switching_the_import_from_pgvector_django_changes_no_index(ours, theirs):
    # The migration autodetector compares indexes with ==: equal means no Remove/AddIndex, so no
    # DROP INDEX and a rebuild of a large HNSW index just for a changed import.
    assert ours == theirs
    assert theirs == ours
    assert ours != pgvector_django.HnswIndex(fields=["embedding"], m=8, name="i")
