"""A search shape seen before runs its compiled SQL again with the new vector (vectorsearch.replay)."""

import datetime
import decimal
import inspect
import sys
import threading
import zoneinfo
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldError
from django.db import connection
from django.db.models import Case, F, Q, Value, When
from django.db.models.sql.compiler import SQLCompiler
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

import vectorsearch.query as vector_query
from tests import test_query
from tests.queryapp.models import Article, Category
from tests.test_query import QUERY, ROWS, current, exact_ids
from vectorsearch import HnswIndex, VectorField, VectorQuerySet, replay
from vectorsearch.models import Embedding

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
        assert current("hnsw.ef_search") == "40"  # pgvector's default: nothing left behind


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


# -- 1. "More like this": the excluded instance is not part of the recipe ----------------------


@pytest.mark.parametrize("exact", [True, None])
def test_more_like_this_leaves_out_its_own_instance_every_time(articles, exact):
    first, second = articles[0], articles[1]
    list(Article.objects.similar_to(first, exact=exact)[:5])
    found = [a.pk for a in Article.objects.similar_to(second, exact=exact)[:5]]
    assert second.pk not in found
    assert found == exact_ids(articles, second.embedding, keep=lambda a: a.pk != second.pk, k=5)


def test_a_vector_search_after_a_more_like_this_search_leaves_nothing_out(articles):
    instance = articles[0]
    list(Article.objects.similar_to(instance, exact=True)[:5])
    found = [a.pk for a in Article.objects.similar_to(instance.embedding, exact=True)[:5]]
    # A plain vector search leaves nothing out: the row itself is the nearest.
    assert found == exact_ids(articles, instance.embedding, k=5)
    assert found[0] == instance.pk


# -- 2. Values that compare equal in Python but are different SQL parameters --------------------


def embeddings_at(*instants):
    article_type = ContentType.objects.get_for_model(Article)
    rows = []
    for i, instant in enumerate(instants):
        row = Embedding.objects.create(
            content_type=article_type,
            object_id=str(i),
            key="k",
            identity="x",
            vector=[1.0, float(i), 0.5],
        )
        Embedding.objects.filter(pk=row.pk).update(updated_at=instant)
        rows.append(row.pk)
    return rows


def test_dst_ambiguous_datetimes_equal_in_python_are_different_instants_in_sql():
    new_york = zoneinfo.ZoneInfo("America/New_York")
    edt = datetime.datetime(2026, 11, 1, 1, 30, tzinfo=new_york)  # 05:30 UTC
    est = edt.replace(fold=1)  # 06:30 UTC: another instant, yet == edt and same hash
    assert edt == est and edt.astimezone(datetime.UTC) != est.astimezone(datetime.UTC)
    early, late = embeddings_at(edt, est)

    def search(when):
        return (
            VectorQuerySet(Embedding)
            .filter(updated_at=when)
            .similar_to([1, 0, 0], field="vector", distance="l2", exact=True)[:5]
        )

    assert [e.pk for e in search(edt)] == [early]
    assert [e.pk for e in search(est)] == [late]


def test_equal_decimals_with_another_text_are_different_parameters(articles):
    Article.objects.filter(pk=articles[0].pk).update(title="price 1.0")
    Article.objects.filter(pk=articles[1].pk).update(title="price 1.00")

    def search(value):
        return Article.objects.filter(title__endswith=value).similar_to(QUERY, exact=True)[:5]

    assert [a.pk for a in search(decimal.Decimal("1.0"))] == [articles[0].pk]
    assert [a.pk for a in search(decimal.Decimal("1.00"))] == [articles[1].pk]


# -- 3. The recipe leaves out the queryset class and what its methods depend on -----------------


class LocalizedQuerySet(VectorQuerySet):
    """Lookups on `text` go to the active language's column, as django-modeltranslation's
    MultilingualQuerySet rewrites `title` to `title_en`/`title_fr` in _filter_or_exclude()."""

    def _filter_or_exclude(self, negate, args, kwargs):
        column = "title" if translation.get_language() == "en" else "body"
        kwargs = {
            (column + key[4:] if key.startswith("text") else key): value
            for key, value in kwargs.items()
        }
        return super()._filter_or_exclude(negate, args, kwargs)


def test_a_queryset_subclass_that_rewrites_lookups_per_language_is_compiled_every_time(
    articles,
):
    def search(vector):
        return (
            LocalizedQuerySet(Article)
            .filter(text__contains="cats")
            .similar_to(vector, exact=True)[:3]
        )

    with translation.override("en"):
        assert len(list(search(QUERY))) == 3  # titles mention cats
    with translation.override("fr"):
        # Every body is empty: nothing matches in French.
        assert list(search([0.1, 0.2, 0.3, 0.4])) == []


def test_a_change_of_indexes_is_seen_by_a_replayed_search(articles, monkeypatch):
    """The recipe holds the distance the search resolved (from Meta.indexes), not None."""
    l2 = HnswIndex(fields=["embedding"], distance="l2", name="article_tmp")
    monkeypatch.setattr(Article._meta, "indexes", [l2])
    list(Article.objects.similar_to(QUERY, exact=True)[:3])
    cos = HnswIndex(fields=["embedding"], distance="cosine", name="article_tmp")
    monkeypatch.setattr(Article._meta, "indexes", [cos])
    ranked = Article.objects.similar_to(QUERY, exact=True)[:3]
    assert "<=>" in str(Article.objects.similar_to(QUERY, exact=True)[:3].query)
    found = list(ranked)
    assert [a.pk for a in found] == exact_ids(articles, k=3)
    assert found[0].distance == pytest.approx(cosine(found[0], QUERY), abs=1e-6)


# -- 4. The lazy build moves errors and is not safe for two threads ----------------------------


def test_a_bad_expression_query_is_reported_by_similar_to_not_later(articles):
    """An expression query is never replayed, so it is built at once: its errors show there."""
    with pytest.raises(FieldError):
        Article.objects.similar_to(F("nope"))


# -- 5. Two threads reading one unbuilt search ----------------------------------------------


def race(method, marker, first, second):
    """Run ``first`` in a thread held at the line of ``method`` that holds ``marker``, and
    ``second`` in another meanwhile; let both finish. Whether ``second`` was still waiting."""
    lines, start = inspect.getsourcelines(method)
    target = start + next(i for i, line in enumerate(lines) if marker in line)
    paused, resume = threading.Event(), threading.Event()

    def tracer(frame, event, arg):
        if frame.f_code is not method.__code__:
            return None

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == target:
                paused.set()
                resume.wait(5)
            return local

        return local

    def held():
        sys.settrace(tracer)
        try:
            first()
        finally:
            sys.settrace(None)

    one, other = threading.Thread(target=held), threading.Thread(target=second)
    one.start()
    assert paused.wait(5)
    other.start()
    other.join(0.3)
    waited = other.is_alive()
    resume.set()
    one.join()
    other.join()
    return waited


def test_two_threads_reading_one_unbuilt_search_build_it_once(articles):
    """The second reader waits for the first one's build instead of building on top of it
    (which applied the pending slice twice)."""
    shared = Article.objects.similar_to(QUERY, exact=True)[2:5]  # a module-level search, say
    found = {}
    waited = race(
        VectorQuerySet._build,
        "self._unbuilt = False",
        lambda: found.update(first=shared.all()),
        lambda: found.update(second=shared.all()),
    )
    assert waited  # for the first build
    expected = exact_ids(articles, k=5)[2:]
    assert [a.pk for a in found["first"]] == expected
    assert [a.pk for a in found["second"]] == expected
    assert [a.pk for a in shared] == expected


def test_replay_can_be_turned_off(articles):
    with override_settings(VECTORSEARCH={"REPLAY_SEARCHES": False}):
        for vector in vectors(2):
            with compilations() as calls:
                found = list(Article.objects.similar_to(vector, exact=True)[:3])
            assert calls
            assert [a.pk for a in found] == exact_ids(articles, vector, k=3)
    assert not replay._STATEMENTS


def test_replay_searches_must_be_a_boolean():
    from vectorsearch.conf import get_settings
    from vectorsearch.exceptions import ImproperlyConfiguredVectorSearch

    with (
        override_settings(VECTORSEARCH={"REPLAY_SEARCHES": "yes"}),
        pytest.raises(ImproperlyConfiguredVectorSearch, match="REPLAY_SEARCHES"),
    ):
        get_settings()


# -- Found by a second review ----------------------------------------------------------------


def test_an_unbuilt_search_inside_the_query_expression_of_another_does_not_deadlock(
    articles, monkeypatch
):
    """similar_to(<expression>) builds at once, under the build lock; resolving the expression
    resolves the unbuilt search held by its Q(pk__in=...), which builds it on the same thread."""
    # A private lock of the same kind, so a hang here cannot block the other tests.
    original = vector_query._BUILD_LOCK
    reentrant = isinstance(original, type(threading.RLock()))
    monkeypatch.setattr(
        vector_query, "_BUILD_LOCK", threading.RLock() if reentrant else threading.Lock()
    )
    near = Article.objects.filter(price__lt=50).similar_to(QUERY, exact=True)[:5]  # unbuilt
    vector = Case(
        When(pk__in=near, then=F("embedding")),
        default=F("embedding"),
        output_field=VectorField(dimensions=4),
    )
    made = {}

    def rank():  # no SQL runs in here: the thread never opens a connection
        made["ranked"] = Article.objects.similar_to(vector, distance="cosine", exact=True)

    worker = threading.Thread(target=rank, daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "similar_to() deadlocked on _BUILD_LOCK"
    assert len(list(made["ranked"][:3])) == 3


def test_a_slice_taken_while_another_thread_builds_the_search_keeps_its_limit(articles):
    """The lazy slice checks that the search is unbuilt and copies it under the build lock: a
    build in another thread waits, instead of leaving the copy with limits nobody applies."""
    shared = Article.objects.similar_to(QUERY, exact=True)  # a module-level search, say
    made = {}
    waited = race(
        VectorQuerySet.__getitem__,
        "clone = self.__class__.__new__",
        lambda: made.update(head=shared[:5]),  # no SQL in this thread
        lambda: made.update(all=shared.all()),
    )
    assert waited  # for the slice's copy
    head = len(list(made["head"]))
    later = len(list(Article.objects.similar_to(QUERY, exact=True)[:5]))  # same recipe
    assert (head, later) == (5, 5)
    assert len(list(made["all"])) == ROWS


def test_equal_sets_iterated_in_another_order_are_other_parameters(articles):
    """Django binds a set in iteration order, which these two equal sets do not share (8 and 16
    collide in a fresh set's table): price__range=set([16, 8]) is BETWEEN 16 AND 8."""
    low_first, high_first = set([8, 16]), set([16, 8])
    assert low_first == high_first and list(low_first) != list(high_first)

    def search(prices):
        ranked = Article.objects.filter(price__range=prices).similar_to(QUERY, exact=True)
        return [a.pk for a in ranked[:5]]

    compiled = search(high_first)
    replay._STATEMENTS.clear()
    search(low_first)
    assert search(high_first) == compiled


# -- Found by a third review ----------------------------------------------------------------


def test_get_on_a_sliced_search_does_not_leave_its_limit_in_the_statement_of_filter(articles):
    """Django's get() calls filter() -- a recorded step -- then limits that clone in place
    (LIMIT 21); the statement compiled for it must not serve the same recipe later."""
    first, second = vectors(2)

    def top30(vector):
        return Article.objects.similar_to(vector, exact=True)[:30]

    with pytest.raises(Article.MultipleObjectsReturned):
        top30(first).get()  # "returned more than 20": it fetched 21 rows
    found = [a.pk for a in top30(second).filter()]  # no condition: the same 30 rows
    assert found == exact_ids(articles, second, k=30)
