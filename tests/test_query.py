import numpy as np
import pytest

from tests.testapp.models import Document, Item, LegacyItem
from vectorsearch import InvalidQuery

pytestmark = pytest.mark.django_db

WALKTHROUGH = [
    ("This is a document about cats", [0.1, 0.2, 0.7]),
    ("This is a document about dogs", [0.3, 0.5, 0.2]),
    ("This is a document about cars", [0.8, 0.1, 0.1]),
]


@pytest.fixture
def documents():
    return [Document.objects.create(content=c, embedding=e) for c, e in WALKTHROUGH]


def test_pgvector_walkthrough_top_two_are_cats_then_dogs(documents):
    results = Document.objects.similar_to([0.2, 0.3, 0.5], field="embedding", distance="cosine")[:2]
    assert [d.content for d in results] == [
        "This is a document about cats",
        "This is a document about dogs",
    ]


def test_walkthrough_composes_with_filter(documents):
    Document.objects.create(content="cats, but no match for the filter", embedding=[0.1, 0.2, 0.7])
    results = Document.objects.filter(content__contains="document").similar_to(
        [0.2, 0.3, 0.5], field="embedding", distance="cosine"
    )[:2]
    assert [d.content for d in results] == [
        "This is a document about cats",
        "This is a document about dogs",
    ]


def test_distance_and_score_annotations_match_numpy(documents):
    query = np.array([0.2, 0.3, 0.5])
    results = list(Document.objects.similar_to(query))
    for doc in results:
        v = np.array(doc.embedding)
        cosine = v @ query / (np.linalg.norm(v) * np.linalg.norm(query))
        assert doc.score == pytest.approx(cosine, abs=1e-6)
        assert doc.distance == pytest.approx(1 - cosine, abs=1e-6)
    assert [d.distance for d in results] == sorted(d.distance for d in results)


def test_field_and_distance_are_inferred_from_the_only_vector_field_and_its_index(documents):
    inferred = Document.objects.similar_to([0.2, 0.3, 0.5])
    explicit = Document.objects.similar_to([0.2, 0.3, 0.5], field="embedding", distance="cosine")
    assert str(inferred.query) == str(explicit.query)
    assert "<=>" in str(inferred.query)


def test_distance_is_read_from_a_pgvector_django_index_with_opclasses():
    LegacyItem.objects.create(embedding=[1, 0, 0])
    LegacyItem.objects.create(embedding=[3, 0, 0])
    results = list(LegacyItem.objects.similar_to([1, 0, 0]))
    assert "<#>" in str(LegacyItem.objects.similar_to([1, 0, 0]).query)
    assert [r.score for r in results] == [3.0, 1.0]  # the inner product, largest first


def test_ambiguous_field_lists_the_choices():
    with pytest.raises(InvalidQuery, match="pass field= one of: 'embedding', 'half_embedding'"):
        Item.objects.similar_to([1, 2, 3])


@pytest.mark.parametrize(
    ("field", "query", "expected_order"),
    [
        ("embedding", [1, 1, 1], ["a", "c", "b"]),  # l2
        ("half_embedding", [1, 1, 1], ["b", "c", "a"]),  # inner product, largest first
        ("sparse_embedding", [1, 1, 1], ["a", "c", "b"]),  # l1
        ("binary_embedding", "101", ["b", "c", "a"]),  # jaccard
    ],
)
def test_every_vector_type_ranks_with_its_indexed_distance(field, query, expected_order):
    for name, vec, bits in [
        ("a", [1, 1, 1], "000"),
        ("b", [2, 2, 2], "101"),
        ("c", [1, 1, 2], "111"),
    ]:
        Item.objects.create(
            name=name,
            embedding=vec,
            half_embedding=vec,
            sparse_embedding=vec,
            binary_embedding=bits,
        )
    results = Item.objects.similar_to(query, field=field)
    assert [i.name for i in results] == expected_order


@pytest.mark.parametrize(
    ("query", "kwargs", "message"),
    [
        ([1, 2], {}, "Expected a vector of 3 dimensions, got 2"),
        ([1, float("nan"), 2], {}, "Element 1 of the vector is NaN"),
        ([0, 0, 0], {}, "all zeros"),
        ([1, 2, 3], {"field": "content"}, "not a vector field; vector fields: 'embedding'"),
        ([1, 2, 3], {"field": "nope"}, "has no field 'nope'"),
        (
            [1, 2, 3],
            {"distance": "manhattan"},
            "Unknown distance 'manhattan'; choose one of: cosine",
        ),
        ([1, 2, 3], {"distance": "hamming"}, "not defined for vector field 'embedding'"),
        ("cats", {}, "A text query needs an embedder"),
    ],
)
def test_bad_queries_raise_before_any_sql(query, kwargs, message, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(InvalidQuery, match=message) as info:
        Document.objects.similar_to(query, **kwargs)
    assert isinstance(info.value, ValueError)
