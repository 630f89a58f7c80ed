"""A search shape seen before runs its compiled SQL again with the new vector (vectorsearch.replay)."""

import datetime
import decimal
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.models import F, Q, Value
from django.db.models.sql.compiler import SQLCompiler
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests import test_query
from tests.queryapp.models import Article, Category
from tests.test_query import QUERY, ROWS, exact_ids
from vectorsearch import replay

pytestmark = pytest.mark.django_db

articles = test_query.articles  # the same 300 rows


@pytest.fixture(autouse=True)
def no_statements():
    replay._STATEMENTS.clear()
    yield
    replay._STATEMENTS.clear()


@contextmanager
def compilations():
    """The SQL compilations made inside (a replayed search makes none)."""
    calls = []
    original = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        calls.append(self.query.model)
        return original(self, *args, **kwargs)

    with mock.patch.object(SQLCompiler, "as_sql", counting):
        yield calls


def vectors(n, seed=3):
    return np.random.default_rng(seed).normal(size=(n, 4))


def cosine(row, query):
    v, q = np.asarray(row.embedding), np.asarray(query)
    return 1 - v @ q / (np.linalg.norm(v) * np.linalg.norm(q))


def test_a_search_seen_before_runs_its_compiled_sql_with_the_new_vector(articles):
    cheap = lambda a: a.price < 50  # noqa: E731
    for i, vector in enumerate(vectors(5)):
        with compilations() as calls, CaptureQueriesContext(connection) as queries:
            found = list(Article.objects.filter(price__lt=50).similar_to(vector, exact=True)[:5])
        assert [a.pk for a in found] == exact_ids(articles, vector, keep=cheap, k=5)
        for row in found:
            assert row.distance == pytest.approx(cosine(row, vector), abs=1e-6)
            assert row.score == pytest.approx(1 - row.distance)
        assert len(calls) == (1 if i == 0 else 0)
        assert len(queries) == 1  # logged as any query is
    assert len(replay._STATEMENTS) == 1


def test_the_index_path_replays_too_and_keeps_its_settings(articles):
    for i, vector in enumerate(vectors(3)):
        with compilations() as calls, CaptureQueriesContext(connection) as queries:
            found = list(Article.objects.similar_to(vector)[:4])
        assert len(found) == 4
        assert [r.distance for r in found] == sorted(r.distance for r in found)
        assert "SET LOCAL hnsw.ef_search" in queries[0]["sql"]
        assert len(calls) == (1 if i == 0 else 0)


def test_other_filter_values_are_other_statements(articles):
    for price in (10, 60, 10, 60):
        found = list(Article.objects.filter(price__lt=price).similar_to(QUERY, exact=True)[:5])
        keep = lambda a, price=price: a.price < price  # noqa: E731
        assert [a.pk for a in found] == exact_ids(articles, keep=keep, k=5)
    assert len(replay._STATEMENTS) == 2


def test_a_long_lived_base_queryset_keeps_replaying(articles):
    base = Article.objects.filter(price__lt=50)  # a module or class attribute in a view
    first, second = vectors(2)
    list(base.all().similar_to(first, exact=True)[:3])
    with compilations() as calls:
        found = list(base.all().similar_to(second, exact=True)[:3])
    assert calls == []
    assert [a.pk for a in found] == exact_ids(articles, second, keep=lambda a: a.price < 50, k=3)


def test_a_query_changed_in_place_is_compiled_from_what_it_now_says(articles):
    list(Article.objects.filter(price__lt=50).similar_to(QUERY, exact=True)[:5])
    changed = Article.objects.filter(price__lt=50).similar_to(QUERY, exact=True)[:5]
    changed.query.add_q(Q(category__name="c1"))
    found = list(changed)
    keep = lambda a: a.price < 50 and a.category.name == "c1"  # noqa: E731
    assert [a.pk for a in found] == exact_ids(articles, keep=keep, k=5)


def test_methods_that_do_not_record_themselves_compile_every_time(articles):
    shapes = [
        lambda v: Article.objects.annotate(one=Value(1)).similar_to(v, exact=True)[:3],
        lambda v: Article.objects.similar_to(v, exact=True).order_by("distance", "pk")[:3],
        lambda v: Article.objects.filter(price__lt=F("category__id")).similar_to(v, exact=True)[:3],
        lambda v: Article.objects.filter(category=Category.objects.get(name="c1")).similar_to(
            v, exact=True
        )[:3],
    ]
    for shape in shapes:
        for vector in vectors(2):
            with compilations() as calls:
                assert len(list(shape(vector))) == 3
            assert calls
    assert not replay._STATEMENTS


def test_select_related_rows_come_with_their_relation(articles, django_assert_num_queries):
    for vector in vectors(2):
        with compilations() as calls:
            found = list(
                Article.objects.select_related("category")
                .filter(price__lt=50)
                .similar_to(vector, exact=True)[:3]
            )
        with django_assert_num_queries(0):
            names = [a.category.name for a in found]
        assert names == [Article.objects.get(pk=a.pk).category.name for a in found]
    assert calls == []


def test_the_annotations_and_slice_are_there_for_whoever_reads_the_query(articles):
    sliced = Article.objects.similar_to(QUERY, exact=True)[2:5]
    assert set(sliced.query.annotations) == {"distance", "score"}
    assert (sliced.query.low_mark, sliced.query.high_mark) == (2, 5)
    assert sliced.query.order_by == ("distance",)
    assert "LIMIT 3 OFFSET 2" in str(sliced.query)

    whole = Article.objects.similar_to(QUERY, exact=True)
    head = whole[:2]
    str(whole.query)  # builds the source: its slice stays as it was
    tail = whole[2:4]
    assert [a.pk for a in head] == exact_ids(articles, k=2)
    assert [a.pk for a in tail] == exact_ids(articles, k=4)[2:]
    assert [a.pk for a in whole] == exact_ids(articles, k=ROWS)


def test_an_empty_filter_gives_no_rows_every_time(articles):
    for vector in vectors(2):
        assert list(Article.objects.filter(pk__in=[]).similar_to(vector)[:3]) == []


def test_a_settings_change_forgets_every_statement(articles):
    list(Article.objects.similar_to(QUERY)[:3])
    assert replay._STATEMENTS
    with override_settings(VECTORSEARCH={"EF_SEARCH": 77}):
        assert not replay._STATEMENTS
        with CaptureQueriesContext(connection) as queries:
            list(Article.objects.similar_to(QUERY)[:3])
    assert "SET LOCAL hnsw.ef_search = 77" in queries[0]["sql"]


def test_a_statement_is_compiled_again_after_its_time(articles, monkeypatch):
    list(Article.objects.similar_to(QUERY, exact=True)[:3])
    monkeypatch.setattr(replay, "TTL", 0.0)
    with compilations() as calls:
        list(Article.objects.similar_to(QUERY, exact=True)[:3])
    assert len(calls) == 1


def test_async_iteration_replays(articles):
    async def search(vector):
        return [a.pk async for a in Article.objects.similar_to(vector, exact=True)[:3]]

    for vector in vectors(2):
        assert async_to_sync(search)(vector) == exact_ids(articles, vector, k=3)
    assert len(replay._STATEMENTS) == 1


def test_the_time_zone_is_part_of_the_key():
    recipe = (Article, "anything")
    with timezone.override("Asia/Tokyo"):
        tokyo = replay.key(recipe, "default")
    with timezone.override("Europe/Paris"):
        paris = replay.key(recipe, "default")
    assert tokyo != paris


def test_only_plain_values_are_recorded_and_their_type_counts():
    assert replay.freeze(1) != replay.freeze(True) != replay.freeze(1.0)
    assert replay.freeze(Q(a=1) | Q(b=[1, 2])) == replay.freeze(Q(a=1) | Q(b=[1, 2]))
    assert replay.freeze(Q(a=1)) != replay.freeze(~Q(a=1))
    aware = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert replay.freeze((aware, decimal.Decimal("1.5"), {"x": None})) is not None
    for value in (
        F("price"),
        Q(price=F("pk")),
        datetime.datetime(2026, 1, 1),  # naive: read in the active time zone
        Category(name="x"),
        object(),
    ):
        with pytest.raises(replay.Unrecordable):
            replay.freeze(value)
    assert replay.record(None, "filter") is None
    assert replay.record((Article,), "filter", (), {"price": F("pk")}) is None
