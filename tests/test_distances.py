import math

import numpy as np
import pytest

from tests.testapp.models import Item
from vectorsearch.distances import Distance, IndexMethod


def test_plain_strings_and_members_are_the_same_distance():
    assert Distance("cosine") is Distance.COSINE
    assert Distance.parse("inner_product") is Distance.INNER_PRODUCT


@pytest.mark.parametrize(
    ("distance", "operator", "vector_opclass"),
    [
        (Distance.COSINE, "<=>", "vector_cosine_ops"),
        (Distance.L2, "<->", "vector_l2_ops"),
        (Distance.INNER_PRODUCT, "<#>", "vector_ip_ops"),
        (Distance.L1, "<+>", "vector_l1_ops"),
    ],
)
def test_operator_and_opclass(distance, operator, vector_opclass):
    assert distance.operator == operator
    assert distance.opclass("vector") == vector_opclass


def test_bit_distances():
    assert Distance.HAMMING.opclass("bit", "ivfflat") == "bit_hamming_ops"
    assert Distance.JACCARD.index_methods("bit") == (IndexMethod.HNSW,)
    assert Distance.JACCARD.index_methods("vector") == ()
    assert Distance.L1.index_methods("sparsevec") == (IndexMethod.HNSW,)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("distance", "field", "query", "expected"),
    [
        (
            Distance.COSINE,
            "embedding",
            [1, 0, 0],
            lambda v, q: v @ q / np.linalg.norm(v) / np.linalg.norm(q),
        ),
        (Distance.INNER_PRODUCT, "embedding", [1, 2, 0], lambda v, q: v @ q),
        (Distance.L2, "embedding", [1, 0, 0], lambda v, q: 1 / (1 + np.linalg.norm(v - q))),
        (Distance.L1, "embedding", [1, 0, 0], lambda v, q: 1 / (1 + np.abs(v - q).sum())),
    ],
)
def test_sql_scores_match_their_definition(distance, field, query, expected):
    Item.objects.create(embedding=[3, 4, 0])
    Item.objects.create(embedding=[1, 1, 1])
    q = np.array(query, dtype=float)
    for item in Item.objects.similar_to(query, field=field, distance=distance):
        v = np.array(item.embedding)
        assert item.score == pytest.approx(expected(v, q), abs=1e-6)
        assert distance.score_of(item.distance) == pytest.approx(item.score, abs=1e-9)


@pytest.mark.django_db
def test_hamming_score_is_the_share_of_equal_bits():
    Item.objects.create(binary_embedding="101")
    (item,) = Item.objects.similar_to("100", field="binary_embedding", distance="hamming")
    assert item.distance == 1
    assert math.isclose(item.score, 2 / 3)
