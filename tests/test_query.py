import numpy as np
import pytest
from asgiref.sync import async_to_sync
from django.core.paginator import Paginator
from django.db import NotSupportedError, connection, models, transaction
from django.db.models import Avg, CharField, Count, F, FilteredRelation, Func, Q, Value, Window
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from pgvector.django import CosineDistance

from tests.queryapp.models import Article, Category, Tag
from tests.testapp.models import Document, Item, LegacyItem
from vectorsearch import HnswIndex, InvalidQuery, VectorField, VectorManager
from vectorsearch.query import Strategy, mmr_select

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
        ([1e-30, 0, 1e-25], {}, "too close to zero"),  # not zero, but no float32 length
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


# -- the query layer on a table with relations, text and enough rows to walk an index ----------

ROWS = 300
QUERY = [0.3, -0.2, 0.5, 0.1]


def current(name):
    with connection.cursor() as cursor:
        # Loading pgvector's library defines its settings, so "unset" reads as the default.
        cursor.execute("SELECT '[1]'::vector")
        cursor.execute("SELECT current_setting(%s, true)", [name])
        return cursor.fetchone()[0]


def ef_seen():
    """An annotation reading hnsw.ef_search as the search query itself sees it."""
    return Func(Value("hnsw.ef_search"), function="current_setting", output_field=CharField())


@pytest.fixture
def articles():
    rng = np.random.default_rng(42)
    categories = [Category.objects.create(name=f"c{i}") for i in range(10)]
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    vectors = rng.normal(size=(ROWS, 4))
    rows = Article.objects.bulk_create(
        Article(
            title=f"article {i} " + ("about cats" if i % 7 == 0 else "about cars"),
            body="",
            category=categories[i % 10],
            price=i % 100,
            embedding=vectors[i].tolist(),
        )
        for i in range(ROWS)
    )
    for row in rows[:30]:
        row.tags.add(red if row.pk % 2 else blue)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_article")
    return rows


def exact_ids(rows, query=QUERY, keep=lambda row: True, k=10):
    q = np.asarray(query, dtype=float)

    def distance(row):
        v = np.asarray(row.embedding, dtype=float)
        return 1 - v @ q / (np.linalg.norm(v) * np.linalg.norm(q))

    return [row.pk for row in sorted(filter(keep, rows), key=distance)[:k]]


def force_index():
    """On a 300-row table the planner prefers a sequential scan; make the index the cheaper path."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")


def test_k_returns_the_k_nearest_in_order(articles):
    results = list(Article.objects.similar_to(QUERY, k=10, exact=True))
    assert [a.pk for a in results] == exact_ids(articles)
    assert [a.distance for a in results] == sorted(a.distance for a in results)


def test_a_slice_asks_the_same_as_k(articles):
    assert [a.pk for a in Article.objects.similar_to(QUERY, exact=True)[:5]] == exact_ids(
        articles, k=5
    )
    assert [a.pk for a in Article.objects.similar_to(QUERY, k=10, exact=True)[5:20]] == (
        exact_ids(articles)[5:10]
    )


def test_filtered_index_search_returns_k_rows_where_a_plain_hnsw_query_returns_fewer(articles):
    force_index()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = 10")
    stock = (
        models.QuerySet(Article)
        .filter(price__lt=5)
        .annotate(d=CosineDistance("embedding", QUERY))
        .order_by("d")[:10]
    )
    assert len(list(stock)) < 10  # pgvector without iterative scans: filtered after ef_search rows
    ours = Article.objects.filter(price__lt=5).similar_to(QUERY, k=10, exact=False, ef_search=10)
    assert "article_embedding_hnsw" in ours.explain()
    assert len(list(ours)) == 10
    assert all(a.price < 5 for a in ours)
    assert current("hnsw.ef_search") == "10"  # the caller's own SET LOCAL is intact


def test_filtered_search_matches_exact_results(articles):
    force_index()
    keep = lambda a: a.category_id == articles[3].category_id  # noqa: E731
    expected = exact_ids(articles, keep=keep)
    for exact in (True, False, None):
        qs = Article.objects.filter(category=articles[3].category).similar_to(
            QUERY, k=10, exact=exact
        )
        assert [a.pk for a in qs] == expected, exact


def test_explain_shows_the_index_for_the_index_path_and_not_for_the_exact_path(articles):
    force_index()
    assert "article_embedding_hnsw" in Article.objects.similar_to(QUERY, k=5).explain()
    assert "article_embedding_hnsw" in (
        Article.objects.filter(price__lt=50).similar_to(QUERY, k=5, exact=False).explain()
    )
    assert "article_embedding_hnsw" not in (
        Article.objects.filter(price__lt=50).similar_to(QUERY, k=5, exact=True).explain()
    )


def test_auto_strategy_scans_a_selective_filter_exactly_and_a_broad_one_by_index(articles):
    force_index()
    with override_settings(VECTORSEARCH={"EXACT_SEARCH_MAX_ROWS": 100}):
        selective = Article.objects.filter(price=3).similar_to(QUERY, k=3)
        broad = Article.objects.filter(price__lt=90).similar_to(QUERY, k=3)
        assert "article_embedding_hnsw" not in selective.explain()
        assert "article_embedding_hnsw" in broad.explain()
        assert len(list(selective)) == 3 and len(list(broad)) == 3


def test_a_short_iterative_scan_is_completed_by_an_exact_scan(articles):
    force_index()
    # An iterative scan allowed to visit 1 tuple gives up long before it meets the 3 rows that
    # pass the filter (3 of 300); the caller still gets all 3, in exact order.
    conf = {"EXACT_SEARCH_MAX_ROWS": 0, "MAX_SCAN_TUPLES": 1, "FILTERED_EF_SEARCH": 1}
    with override_settings(VECTORSEARCH=conf):
        qs = Article.objects.filter(price=3).similar_to(QUERY, k=3)
        assert "article_embedding_hnsw" in qs.explain()
        assert [a.pk for a in qs] == exact_ids(articles, keep=lambda a: a.price == 3, k=3)


def test_settings_apply_to_the_search_and_do_not_survive_it_inside_a_transaction(articles):
    before = current("hnsw.ef_search")
    rows = list(Article.objects.similar_to(QUERY, k=3, ef_search=123).annotate(ef=ef_seen()))
    assert {r.ef for r in rows} == {"123"}
    assert current("hnsw.ef_search") == before
    assert current("hnsw.iterative_scan") == "off"


def test_a_callers_set_local_survives_a_search_with_other_settings(articles):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = 77")
        rows = list(
            Article.objects.filter(price__lt=50)
            .similar_to(QUERY, k=3, exact=False, ef_search=321)
            .annotate(ef=ef_seen())
        )
        assert {r.ef for r in rows} == {"321"}
        assert current("hnsw.ef_search") == "77"
        assert current("hnsw.iterative_scan") == "off"


@pytest.mark.django_db(transaction=True)
def test_settings_do_not_leak_to_the_next_query_under_autocommit():
    category = Category.objects.create(name="c")
    for i in range(5):
        Article.objects.create(title=str(i), category=category, embedding=[1, i, 0, 1])
    assert connection.get_autocommit()
    before = current("hnsw.ef_search")
    rows = list(
        Article.objects.filter(price=0)
        .similar_to([1, 0, 0, 1], k=3, exact=False, ef_search=99)
        .annotate(ef=ef_seen())
    )
    assert {r.ef for r in rows} == {"99"}
    assert current("hnsw.ef_search") == before
    assert current("hnsw.iterative_scan") == "off"
    assert Article.objects.similar_to([1, 0, 0, 1], k=2, ef_search=55).count() == 2
    assert current("hnsw.ef_search") == before


def test_threshold_keeps_scores_at_or_above_it_and_still_uses_the_index(articles):
    force_index()
    q = np.asarray(QUERY)
    expected = sorted(
        (
            a
            for a in articles
            if np.asarray(a.embedding) @ q / np.linalg.norm(a.embedding) / np.linalg.norm(q) >= 0.9
        ),
        key=lambda a: -(np.asarray(a.embedding) @ q / np.linalg.norm(a.embedding)),
    )
    for exact in (True, False):
        qs = Article.objects.similar_to(QUERY, threshold=0.9, k=100, exact=exact)
        results = list(qs)
        assert [a.pk for a in results] == [a.pk for a in expected]
        assert all(a.score >= 0.9 for a in results)
    assert "article_embedding_hnsw" in (
        Article.objects.similar_to(QUERY, threshold=0.9, k=100, exact=False).explain()
    )


def test_instance_query_finds_more_like_it_and_leaves_it_out(articles, django_assert_num_queries):
    target = articles[17]
    with django_assert_num_queries(1):
        results = list(Article.objects.similar_to(target, k=5, exact=True))
    assert target.pk not in [a.pk for a in results]
    assert [a.pk for a in results] == exact_ids(
        articles, query=target.embedding, keep=lambda a: a.pk != target.pk, k=5
    )
    assert len(list(Article.objects.similar_to(target, k=5))) == 5  # index path, too


def test_instance_query_errors(articles):
    with pytest.raises(InvalidQuery, match="Document instance"):
        Article.objects.similar_to(Document(content="x", embedding=[1, 2, 3]))
    empty = Article.objects.create(title="no vector", category=articles[0].category)
    with pytest.raises(InvalidQuery, match="has no embedding vector"):
        Article.objects.similar_to(empty)


def test_composes_with_exclude_q_joins_and_custom_annotations(articles):
    name = articles[0].category.name
    qs = (
        Article.objects.filter(Q(category__name=name) | Q(price__gte=95))
        .exclude(title__contains="cats")
        .annotate(tag_count=Count("tags"))
        .similar_to(QUERY, k=7)
    )
    keep = lambda a: (a.category.name == name or a.price >= 95) and "cats" not in a.title  # noqa: E731
    assert [a.pk for a in qs] == exact_ids(articles, keep=keep, k=7)
    assert all(hasattr(a, "tag_count") for a in qs)


def test_select_related_and_prefetch_related(articles, django_assert_num_queries):
    with django_assert_num_queries(2):  # the search, then one prefetch query
        results = list(
            Article.objects.select_related("category")
            .prefetch_related("tags")
            .similar_to(QUERY, k=5, exact=True)
        )
        assert [a.category.name for a in results]
        assert [list(a.tags.all()) for a in results]


def test_values_values_list_and_slicing(articles):
    top = exact_ids(articles, k=5)
    values = list(Article.objects.similar_to(QUERY, k=5).values("pk", "distance", "score"))
    assert [v["pk"] for v in values] == top
    assert all(v["score"] == pytest.approx(1 - v["distance"]) for v in values)
    assert list(Article.objects.similar_to(QUERY).values_list("pk", flat=True)[:5]) == top
    assert Article.objects.similar_to(QUERY, k=5)[1].pk == top[1]


def test_count_exists_first_get_aggregate_and_iterator(articles):
    qs = Article.objects.filter(price__lt=50).similar_to(QUERY, k=8)
    top = exact_ids(articles, keep=lambda a: a.price < 50, k=8)
    assert qs.count() == 8
    assert qs.exists()
    assert qs.first().pk == top[0]
    assert qs.get(pk=top[3]).pk == top[3]
    prices = [a.price for a in articles if a.pk in top]
    assert qs.aggregate(avg=Avg("price"))["avg"] == pytest.approx(sum(prices) / 8)
    assert [a.pk for a in qs.iterator()] == top
    assert [a.pk for a in qs.iterator(chunk_size=3)] == top


def test_paginator(articles):
    top = exact_ids(articles, k=20)
    paginator = Paginator(Article.objects.similar_to(QUERY, k=20), 6)
    assert paginator.count == 20
    assert paginator.num_pages == 4
    assert [a.pk for a in paginator.page(2)] == top[6:12]
    assert [a.pk for a in paginator.page(4)] == top[18:20]


def test_another_ordering_keeps_the_k_nearest_and_sorts_them(articles):
    top = set(exact_ids(articles, k=6))
    results = list(Article.objects.similar_to(QUERY, k=6).order_by("price", "pk"))
    assert {a.pk for a in results} == top
    assert [a.price for a in results] == sorted(a.price for a in results)


def test_as_a_subquery_of_another_queryset(articles):
    top = exact_ids(articles, k=4)
    nearest = Article.objects.similar_to(QUERY, k=4).values("pk")
    assert set(Article.objects.filter(pk__in=nearest).values_list("pk", flat=True)) == set(top)
    filtered = Article.objects.filter(price__lt=50).similar_to(QUERY, k=4).values("category")
    expected = {
        a.category_id
        for a in articles
        if a.pk in exact_ids(articles, keep=lambda a: a.price < 50, k=4)
    }
    assert set(Category.objects.filter(pk__in=filtered).values_list("pk", flat=True)) == expected


def test_async_api(articles):
    top = exact_ids(articles, k=5)

    async def run():
        qs = Article.objects.similar_to(QUERY, k=5)
        iterated = [a.pk async for a in qs]
        chunked = [a.pk async for a in qs.aiterator()]
        count = await qs.acount()
        first = await qs.afirst()
        got = await qs.aget(pk=top[2])
        exists = await Article.objects.filter(price__lt=0).similar_to(QUERY, k=5).aexists()
        diverse = await Article.objects.ammr(QUERY, k=3)
        return iterated, chunked, count, first.pk, got.pk, exists, len(diverse)

    assert async_to_sync(run)() == (top, top, 5, top[0], top[2], False, 3)


def test_mmr_picks_similar_but_different_rows():
    category = Category.objects.create(name="c")
    near = [[1, 0.01 * i, 0, 0] for i in range(3)]  # three near-duplicates close to the query
    other = [0.8, 0, 0.6, 0]  # a little further, in another direction
    rows = [Article.objects.create(title=str(v), category=category, embedding=v) for v in near]
    different = Article.objects.create(title="other", category=category, embedding=other)
    plain = [a.pk for a in Article.objects.similar_to([1, 0, 0.1, 0], k=2, exact=True)]
    assert plain == [rows[0].pk, rows[1].pk]
    diverse = Article.objects.mmr([1, 0, 0.1, 0], k=2, lambda_mult=0.5)
    assert [a.pk for a in diverse] == [rows[0].pk, different.pk]
    assert [a.pk for a in Article.objects.mmr([1, 0, 0.1, 0], k=2, lambda_mult=1.0)] == plain


def test_mmr_select_is_plain_relevance_order_at_lambda_one():
    rng = np.random.default_rng(0)
    candidates = rng.normal(size=(20, 5))
    q = rng.normal(size=5)
    relevance = candidates @ q / np.linalg.norm(candidates, axis=1)
    assert mmr_select(q, candidates, 5, 1.0) == list(np.argsort(-relevance)[:5])


def test_hybrid_search_fuses_text_and_vector_ranks_in_one_query(
    articles, django_assert_num_queries
):
    with django_assert_num_queries(1):
        results = list(
            Article.objects.hybrid_search("cats", QUERY, search_fields=["title"], candidates=10)
        )
    vector_top = exact_ids(articles, k=10)
    text_top = sorted(a.pk for a in articles if "cats" in a.title)[:10]
    assert {a.pk for a in results} == set(vector_top) | set(text_top)
    for a in results:
        expected = 0.0
        if a.pk in vector_top:
            assert a.vector_rank == vector_top.index(a.pk) + 1
            expected += 1 / (60 + a.vector_rank)
        else:
            assert a.vector_rank is None
        if a.pk in text_top:
            assert a.text_rank is not None
            expected += 1 / (60 + a.text_rank)
        else:
            assert a.text_rank is None
        assert a.rrf_score == pytest.approx(expected)
    assert [a.rrf_score for a in results] == sorted((a.rrf_score for a in results), reverse=True)
    both = set(vector_top) & set(text_top)
    if both:
        assert results[0].pk in both


def test_hybrid_search_with_filters_k_and_a_search_vector_field(articles):
    from django.contrib.postgres.search import SearchVector

    Article.objects.update(search=SearchVector("title"))
    results = list(
        Article.objects.filter(price__lt=50).hybrid_search("cats", QUERY, k=5, candidates=10)
    )
    assert len(results) == 5
    assert all(a.price < 50 for a in results)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be a whole number from 1 to 1000, not 0"),
        ({"k": 1001}, "k must be a whole number from 1 to 1000, not 1001"),
        ({"k": "10"}, "k must be a whole number"),
        ({"k": True}, "k must be a whole number"),
        ({"ef_search": 0}, "ef_search must be a whole number from 1 to 1000, not 0"),
        ({"ef_search": 1001}, "ef_search must be a whole number from 1 to 1000"),
        ({"threshold": 2}, "cosine score ranges from -1 to 1; threshold=2.0 is outside it"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"exact": "yes"}, "exact must be True, False or None"),
    ],
)
def test_bad_options_raise_before_any_sql(kwargs, message, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(InvalidQuery, match=message):
        Article.objects.similar_to(QUERY, **kwargs)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([1, 2, 3], "Expected a vector of 4 dimensions, got 3"),
        ([1, float("inf"), 0, 0], "is infinite"),
        ([0, 0, 0, 0], "all zeros"),
    ],
)
def test_bad_vectors_raise_before_any_sql(query, message, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(InvalidQuery, match=message):
        Article.objects.similar_to(query)


def test_max_k_is_configurable(articles):
    with override_settings(VECTORSEARCH={"MAX_K": 5}):
        with pytest.raises(InvalidQuery, match="from 1 to 5, not 6"):
            Article.objects.similar_to(QUERY, k=6)
        assert len(Article.objects.similar_to(QUERY, k=5)) == 5


def test_threshold_range_follows_the_distance():
    with pytest.raises(InvalidQuery, match="l2 score is 1 / \\(1 \\+ distance\\)"):
        Item.objects.similar_to([1, 2, 3], field="embedding", threshold=0)
    Item.objects.similar_to([1, 2, 3], field="embedding", threshold=0.5)  # distance <= 1


def test_exact_false_without_an_index_and_ef_search_on_ivfflat_are_refused():
    with pytest.raises(InvalidQuery, match="exact=False needs a vector index for the l1 distance"):
        Item.objects.similar_to([1, 2, 3], field="embedding", distance="l1", exact=False)
    with pytest.raises(InvalidQuery, match="ef_search applies to HNSW indexes"):
        Item.objects.similar_to([1, 2, 3], field="half_embedding", ef_search=50)


def test_similar_to_twice_and_hybrid_search_input_errors():
    with pytest.raises(InvalidQuery, match="already ranked"):
        Article.objects.similar_to(QUERY).similar_to(QUERY)
    with pytest.raises(InvalidQuery, match="non-empty text"):
        Article.objects.hybrid_search("  ", QUERY, search_fields=["title"])
    with pytest.raises(InvalidQuery, match="no field 'nope'"):
        Article.objects.hybrid_search("cats", QUERY, search_fields=["nope"])
    with pytest.raises(InvalidQuery, match="lambda_mult must be from 0 to 1"):
        Article.objects.mmr(QUERY, lambda_mult=2)


def test_select_for_update_is_refused_on_an_index_search_and_works_on_an_exact_one(articles):
    with transaction.atomic():
        locked = Article.objects.select_for_update().similar_to(QUERY, k=3, exact=True)
        assert [a.pk for a in locked] == exact_ids(articles, k=3)
        with pytest.raises(InvalidQuery, match="select_for_update"):
            list(Article.objects.select_for_update().similar_to(QUERY, k=3, exact=False))


@pytest.mark.parametrize(
    ("field", "query"),
    [
        ("embedding", [1, 1, 1]),  # HNSW, l2
        ("half_embedding", [1, 1, 1]),  # IVFFlat, inner product: ivfflat.iterative_scan
        ("sparse_embedding", [1, 1, 1]),  # HNSW, l1
        ("binary_embedding", "101"),  # HNSW, jaccard
    ],
)
def test_every_vector_type_searches_with_filters_and_k_on_both_strategies(field, query):
    force_index()
    rng = np.random.default_rng(1)
    for i in range(40):
        vec = rng.uniform(0.1, 3, size=3).round(2).tolist()
        bits = "".join(rng.choice(["0", "1"], size=3))
        Item.objects.create(
            name=f"{i % 4}",
            embedding=vec,
            half_embedding=vec,
            sparse_embedding=vec,
            binary_embedding=bits if bits != "000" else "100",
        )
    exact = list(Item.objects.filter(name="1").similar_to(query, field=field, k=5, exact=True))
    searched = Item.objects.filter(name="1").similar_to(query, field=field, k=5, exact=False)
    assert "Index Scan using item_" in searched.explain()
    index = list(searched)
    assert len(exact) == len(index) == 5
    assert all(i.name == "1" for i in index)
    assert [i.distance for i in index] == sorted(i.distance for i in index)
    assert [i.distance for i in exact] == pytest.approx([i.distance for i in index])


@pytest.mark.parametrize(
    ("key", "value"), [("EF_SEARCH", 0), ("FILTERED_EF_SEARCH", 5000), ("MAX_K", "10")]
)
def test_bad_settings_are_reported_with_the_allowed_range(key, value):
    from vectorsearch.exceptions import ImproperlyConfiguredVectorSearch

    with (
        override_settings(VECTORSEARCH={key: value}),
        pytest.raises(ImproperlyConfiguredVectorSearch, match=f"VECTORSEARCH\\['{key}'\\]"),
    ):
        Article.objects.similar_to(QUERY, k=3)


def test_update_and_delete_touch_only_the_rows_found(articles):
    top = exact_ids(articles, keep=lambda a: a.price < 50, k=3)
    assert Article.objects.filter(price__lt=50).similar_to(QUERY, k=3).update(title="near") == 3
    assert set(Article.objects.filter(title="near").values_list("pk", flat=True)) == set(top)
    deleted, _ = Article.objects.similar_to(QUERY, k=2, exact=True).delete()
    assert deleted >= 2
    assert Article.objects.count() == ROWS - 2


def test_hybrid_search_runs_its_vector_list_with_the_search_settings(articles):
    force_index()
    fused = (
        Article.objects.filter(price__lt=90)
        .hybrid_search("cats", QUERY, search_fields=["title"], exact=False, ef_search=77)
        .annotate(ef=ef_seen())
    )
    assert "article_embedding_hnsw" in fused.explain()
    rows = list(fused)
    assert rows and {r.ef for r in rows} == {"77"}
    assert current("hnsw.ef_search") != "77"


def test_hybrid_phrase_query_ranks_only_real_matches_by_text():
    # Rows with both words but not the phrase have a positive ts_rank; they must not take the
    # text list's places from the rows that match the phrase.
    category = Category.objects.create(name="fruit")
    near = [
        Article.objects.create(
            title="banana apple apple apple", category=category, embedding=[1, 0, 0, 0.01 * i]
        )
        for i in range(6)
    ]
    phrase = [
        Article.objects.create(
            title="apple banana i", category=category, embedding=[0, 1, 0, 0.01 * i]
        )
        for i in range(6)
    ]
    results = list(
        Article.objects.hybrid_search(
            '"apple banana"', [1, 0, 0, 0], search_fields=["title"], candidates=4, exact=True
        )
    )
    by_pk = {a.pk: a for a in results}
    matched = [by_pk[a.pk] for a in phrase if a.pk in by_pk]
    assert len(matched) == 4  # the text list is the 4 phrase matches
    assert sorted(a.text_rank for a in matched) == [1, 2, 3, 4]
    assert all(a.rrf_score > 0 for a in matched)
    assert all(by_pk[a.pk].text_rank is None for a in near if a.pk in by_pk)


def test_a_model_with_a_field_named_score_gets_a_clear_error():
    from django.test.utils import isolate_apps

    with isolate_apps("tests.queryapp"):

        class Review(models.Model):
            score = models.IntegerField()
            embedding = VectorField(dimensions=3)

            objects = VectorManager()

            class Meta:
                app_label = "queryapp"

        with pytest.raises(InvalidQuery, match="has a field named score, which similar_to"):
            Review.objects.similar_to([1, 2, 3], distance="l2")


def test_threshold_without_k_returns_at_most_max_k_rows_whatever_the_strategy(articles):
    with override_settings(VECTORSEARCH={"MAX_K": 7}):
        exact = list(Article.objects.similar_to(QUERY, threshold=-1.0, exact=True))
        force_index()
        index = list(Article.objects.similar_to(QUERY, threshold=-1.0, exact=False))
    assert len(exact) == len(index) == 7
    assert [a.pk for a in exact] == exact_ids(articles, k=7)


def test_expression_and_partial_indexes_do_not_decide_the_distance():
    from django.db.models.functions import Cast
    from django.test.utils import isolate_apps

    from vectorsearch import HalfVectorField, HnswIndex

    with isolate_apps("tests.queryapp"):

        class Doc(models.Model):
            kind = models.CharField(max_length=10)
            embedding = VectorField(dimensions=3)

            objects = VectorManager()

            class Meta:
                app_label = "queryapp"
                indexes = [
                    HnswIndex(fields=["embedding"], distance="l2", name="doc_l2"),
                    HnswIndex(
                        Cast("embedding", HalfVectorField(dimensions=3)),
                        distance="cosine",
                        name="doc_half_cosine",
                    ),
                    HnswIndex(
                        fields=["embedding"],
                        distance="inner_product",
                        condition=Q(kind="a"),
                        name="doc_ip_a",
                    ),
                ]

        # Only the plain index on the column serves ORDER BY embedding <op> query.
        assert "<->" in str(Doc.objects.similar_to([1, 2, 3]).query)


def test_model_instances_ranked_by_distance_come_from_one_flat_query(
    articles, django_assert_num_queries
):
    """A filtered index search of model instances runs as one query, like hand-written SQL:
    no `pk IN (subquery)`, no score column; Python orders the relaxed scan's rows exactly and
    computes the score with the same arithmetic as the SQL."""
    force_index()
    filtered = Article.objects.filter(price__lt=50).similar_to(QUERY, k=10, exact=False)
    with django_assert_num_queries(1) as captured:
        found = list(filtered)
    sql = captured.captured_queries[0]["sql"]
    assert " IN (SELECT" not in sql and '"score"' not in sql
    expected = exact_ids(articles, keep=lambda a: a.price < 50)
    assert [a.pk for a in found] == expected
    assert [a.distance for a in found] == sorted(a.distance for a in found)
    from_sql = dict(filtered.values_list("pk", "score"))  # values(): score computed by SQL
    assert {a.pk: a.score for a in found} == from_sql
    # An offset keeps the same rows as slicing the whole answer.
    assert [a.pk for a in filtered[3:7]] == expected[3:7]
    unfiltered = list(Article.objects.similar_to(QUERY)[:5])
    assert [a.score for a in unfiltered] == [
        s for _, s in Article.objects.similar_to(QUERY).values_list("pk", "score")[:5]
    ]


def test_score_stays_in_sql_where_the_query_needs_it(articles):
    ranked = Article.objects.similar_to(QUERY, k=10, exact=True)
    by_score = list(ranked.order_by("-score", "pk"))
    assert [a.pk for a in by_score] == exact_ids(articles)
    assert all(a.score is not None for a in by_score)
    kept = list(ranked.filter(score__gte=by_score[4].score))
    assert [a.pk for a in kept] == exact_ids(articles)[:5]
    doubled = ranked.annotate(twice=models.F("score") * 2)[:3]
    assert [a.twice for a in doubled] == [2 * a.score for a in doubled]


def test_filters_that_match_nothing_or_everything_do_not_break_the_estimate(articles):
    """Django compiles pk__in=[] to "no rows" and ~Q(pk__in=[]) to "no condition"."""
    for exact in (None, True, False):
        assert list(Article.objects.filter(pk__in=[]).similar_to(QUERY, k=3, exact=exact)) == []
    everything = Article.objects.filter(~Q(pk__in=[])).similar_to(QUERY, k=3)
    assert [a.pk for a in everything] == exact_ids(articles, k=3)


def test_slicing_or_combining_before_similar_to_is_refused(articles):
    with pytest.raises(TypeError, match="once a slice has been taken"):
        Article.objects.order_by("pk")[:5].similar_to(QUERY)
    with pytest.raises(NotSupportedError, match="similar_to\\(\\) after union\\(\\)"):
        Article.objects.all().union(Article.objects.all()).similar_to(QUERY)


def test_an_annotation_replacing_or_beside_score_keeps_the_sql_form(articles):
    ranked = Article.objects.similar_to(QUERY, k=3, exact=True)
    scaled = ranked.annotate(score=F("score") * 100)
    assert [a.score for a in scaled] == [s for _, s in scaled.values_list("pk", "score")]
    assert all(a.score > 1 for a in scaled)
    doubled = ranked.annotate(distance=F("distance") * 2)
    assert [a.score for a in doubled] == [s for _, s in doubled.values_list("pk", "score")]
    # A window counts the k rows found, whichever strategy finds them.
    force_index()
    for exact in (True, False):
        counted = (
            Article.objects.filter(price__lt=50)
            .similar_to(QUERY, k=10, exact=exact)
            .annotate(n=Window(Count("id")))
        )
        assert {a.n for a in counted} == {10}, exact


def test_an_offset_page_of_a_flat_index_search_runs_one_query(articles, django_assert_num_queries):
    force_index()
    expected = exact_ids(articles, keep=lambda a: a.price < 50)
    with override_settings(VECTORSEARCH={"EXACT_SEARCH_MAX_ROWS": 0}):
        page = Article.objects.filter(price__lt=50).similar_to(QUERY, k=10)[3:7]
        page.explain()  # the planner's estimate, cached
        with django_assert_num_queries(1):
            assert [a.pk for a in page] == expected[3:7]


def test_the_estimate_cache_tells_filtered_relation_conditions_apart(articles):
    def search(condition):
        return (
            Article.objects.annotate(c=FilteredRelation("category", condition=condition))
            .filter(c__isnull=False)
            .similar_to(QUERY, k=5)
        )

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_category")
    with override_settings(VECTORSEARCH={"EXACT_SEARCH_MAX_ROWS": 100}):
        one = articles[0].category.name
        broad = search(Q(category__name__startswith=one[:1]))
        assert broad.plan().strategy is Strategy.INDEX
        assert search(Q(category__name=one)).plan().strategy is Strategy.EXACT


def test_the_field_and_distance_follow_a_change_of_indexes(monkeypatch):
    for distance, operator in [("l2", "<->"), ("inner_product", "<#>"), ("cosine", "<=>")] * 2:
        index = HnswIndex(fields=["embedding"], distance=distance, name="article_tmp")
        monkeypatch.setattr(Article._meta, "indexes", [index])
        assert operator in str(Article.objects.similar_to([1, 2, 3, 4]).query)
    indexes = [HnswIndex(fields=["embedding"], distance="l2", name="article_tmp")]
    monkeypatch.setattr(Article._meta, "indexes", indexes)
    assert "<->" in str(Article.objects.similar_to([1, 2, 3, 4]).query)
    indexes[0] = HnswIndex(fields=["embedding"], distance="l1", name="article_tmp")
    assert "<+>" in str(Article.objects.similar_to([1, 2, 3, 4]).query)


def test_an_index_search_without_k_or_slice_returns_up_to_max_k_rows(articles):
    force_index()
    with override_settings(VECTORSEARCH={"MAX_K": 20}):
        found = list(Article.objects.filter(price__lt=50).similar_to(QUERY, exact=False))
    assert [a.pk for a in found] == exact_ids(articles, keep=lambda a: a.price < 50, k=20)


def test_search_vectors_are_encoded_after_the_sort_not_for_every_sorted_row(articles):
    """Where PostgreSQL sorts (here: no index scans), vector_send() must not run for every row
    entering the sort, only for the k returned: the planner postpones a volatile expression."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
    plan = Article.objects.filter(price__lt=50).similar_to(QUERY, k=5).explain(verbose=True)
    sort_input = plan.split("Sort Key")[1]  # the nodes below the Sort
    assert "vector_send" not in sort_input
    assert "vector_send" in plan.split("Sort Key")[0]
    found = list(Article.objects.filter(price__lt=50).similar_to(QUERY, k=5))
    assert [a.pk for a in found] == exact_ids(articles, keep=lambda a: a.price < 50, k=5)


def test_extra_order_by_keeps_the_search_in_sql(articles):
    force_index()
    with override_settings(VECTORSEARCH={"EXACT_SEARCH_MAX_ROWS": 0}):
        by_price = Article.objects.filter(price__lt=50).similar_to(QUERY, k=5)
        ids = {a.pk for a in by_price.extra(order_by=["price"])}
    assert ids == set(exact_ids(articles, keep=lambda a: a.price < 50, k=5))


def test_a_filtered_relation_search_reuses_its_estimate(articles, django_assert_num_queries):
    def search():
        return (
            Article.objects.annotate(
                c=FilteredRelation("category", condition=Q(category__name="c1"))
            )
            .filter(c__isnull=False)
            .similar_to(QUERY, k=3)
        )

    list(search())
    with django_assert_num_queries(1):  # the search, not another EXPLAIN
        list(search())


def test_exact_takes_numpy_booleans_and_refuses_other_numbers(articles):
    """The planner asks `exact is True`: np.True_ is taken as True, 1 (== True) is refused."""
    with CaptureQueriesContext(connection) as queries:
        found = [a.pk for a in Article.objects.similar_to(QUERY, exact=np.True_)[:3]]
    assert "SET LOCAL" not in queries[0]["sql"]
    assert found == exact_ids(articles, k=3)
    for exact in (1, 0, "yes"):
        with pytest.raises(InvalidQuery, match="exact must be True, False or None"):
            Article.objects.similar_to(QUERY, exact=exact)


def test_a_proxy_model_searches_with_its_concrete_models_index(articles):
    from django.test.utils import isolate_apps

    with isolate_apps("tests.queryapp"):

        class ArticleProxy(Article):
            class Meta:
                proxy = True
                app_label = "queryapp"

        ranked = ArticleProxy.objects.similar_to(QUERY, k=5)  # distance inferred: cosine
        force_index()
        assert "article_embedding_hnsw" in ranked.explain()  # the index, not an exact scan
        found = list(ranked)
    assert len(found) == 5 and all(type(a) is ArticleProxy for a in found)
    assert [a.distance for a in found] == sorted(a.distance for a in found)
    assert found[0].distance == pytest.approx(
        1
        - np.dot(found[0].embedding, QUERY)
        / np.linalg.norm(found[0].embedding)
        / np.linalg.norm(QUERY),
        abs=1e-6,
    )
