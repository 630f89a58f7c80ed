"""vectorsearch.ranking.planner: the strategy rule, and the estimates behind it."""

import numpy as np
import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.queryapp.models import HalfItem
from vectorsearch.ranking import planner
from vectorsearch.ranking.planner import Strategy, exact_is_cheaper


@pytest.mark.parametrize(
    ("kept", "total", "k", "exact"),
    [
        (1_000, 100_000, 10, False),  # 1% of 100k: an iterative scan walks ~1,000 tuples
        (500, 100_000, 10, True),  # 0.5%: it would walk ~2,000 to find 10
        (100, 1_000_000, 10, True),
        (50_000, 100_000, 10, False),
        (700, 100_000, 100, True),  # more rows asked: the index scan walks more
    ],
)
def test_exact_wins_below_the_crossover(kept, total, k, exact):
    assert exact_is_cheaper(kept, total, k) is exact


def test_a_fixed_bound_replaces_the_rule():
    with override_settings(VECTORSEARCH={"EXACT_SEARCH_MAX_ROWS": 5000}):
        assert exact_is_cheaper(4_000, 100_000, 10)
        assert not exact_is_cheaper(6_000, 100_000, 10)


@pytest.fixture
def items(db):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    created = HalfItem.objects.bulk_create(
        HalfItem(group=i % 4, embedding=v) for i, v in enumerate(vectors)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_halfitem")
    planner._ESTIMATES.data.clear()
    planner._SHAPES.data.clear()
    return [item.pk for item in created], vectors[0]


def explains(run):
    with CaptureQueriesContext(connection) as captured:
        run()
    return sum("EXPLAIN" in q["sql"] for q in captured.captured_queries)


def test_a_filter_value_seen_again_reuses_its_estimate(items):
    pks, query = items
    search = HalfItem.objects.filter(pk__gt=pks[10]).similar_to(query, k=5)
    assert explains(lambda: list(search)) == 1
    assert explains(lambda: list(search.all())) == 0


def test_new_values_of_a_decisive_filter_shape_skip_the_explain(items):
    # pk > x keeps ~390 of 400 rows: far above the crossover (sqrt(0.5 * 5 * 400) = 32 rows)
    # for every x, so after three values the planner stops asking.
    pks, query = items
    for x in range(3):
        assert (
            explains(
                lambda x=x: list(HalfItem.objects.filter(pk__gt=pks[x]).similar_to(query, k=5))
            )
            == 1
        )
    searched = HalfItem.objects.filter(pk__gt=pks[3]).similar_to(query, k=5)
    assert explains(lambda: list(searched)) == 0
    assert searched.plan().strategy is Strategy.INDEX


def test_a_shape_whose_values_fall_on_both_sides_keeps_asking(items):
    pks, query = items
    # pk < x keeps from 3 to 390 rows: some exact, some index: every new value is estimated.
    for x in (3, 390, 5, 380):
        assert (
            explains(
                lambda x=x: list(HalfItem.objects.filter(pk__lt=pks[x]).similar_to(query, k=5))
            )
            == 1
        )
