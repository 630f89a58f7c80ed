"""One query path: the search page, the JSON API and the admin run the plan similar_to() makes.

Each compares the SQL a user-facing path executes with the SQL of the same search made through
``vectorsearch.search()`` (a thin wrapper over ``similar_to()``), captured from the database.
"""

import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

import vectorsearch
from tests.embedapp.models import Note
from vectorsearch.ranking.search import query_vector
from vectorsearch.registry import registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def notes():
    titles = [f"note {i} about {('password', 'shipping', 'refund')[i % 3]}" for i in range(150)]
    Note.objects.bulk_create(Note(title=t, category="c") for t in titles)
    call_command("vectorsearch_backfill", "embedapp.Note", verbosity=0)
    call_command("vectorsearch_index", "embedapp.Note", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE vectorsearch_embedding")


def first_registrations():
    """Each registered model's first registration, in the registry's order (the page's)."""
    found = {}
    for registration in registry:
        found.setdefault(registration.model, registration)
    return list(found.values())


def ranking_selects(run):
    """The SELECT statements that rank by distance, executed while ``run()`` runs."""
    with CaptureQueriesContext(connection) as captured:
        run()
    selects = []
    for query in captured.captured_queries:
        for part in query["sql"].split("; "):
            if part.startswith("SELECT") and "<=>" in part:
                selects.append(part)
    return selects


def test_the_api_and_the_page_run_the_plan_of_search(client, notes):
    # The test site's page searches every registered model, 11 rows each (a page and one more).
    # The page embeds the text once per request and passes the vector with the text.
    expected = [
        select
        for r in first_registrations()
        for select in ranking_selects(
            lambda r=r: list(
                vectorsearch.search(
                    r.model,
                    query_vector(r, "password"),
                    text="password",
                    k=11,
                    vector_field=r.vector_field,
                    embedder=r.embedder_alias,
                )
            )
        )
    ]
    assert len(expected) >= 2
    assert ranking_selects(lambda: client.get("/search/api/", {"q": "password"})) == expected
    page = ranking_selects(lambda: client.get("/search/", {"q": "password"}))
    assert page == expected  # several models: no facet counts


def nearest_subquery(sql):
    """The ``ORDER BY <distance> ASC LIMIT k`` subquery that finds the nearest rows."""
    found = re.search(
        r"ORDER BY \(\((\"?\w+\"?)\.\"vector\"\)::vector\(256\) <=> [^)]*\) ASC LIMIT \d+", sql
    )
    assert found, sql
    # The table alias depends on how deep Django nests the subquery, and 6.1 quotes it:
    # compare the ranking itself.
    return found.group(0).replace(found.group(1) + ".", "T.")


def test_the_admins_search_by_meaning_runs_the_plan_of_search(admin_client, notes):
    (expected,) = ranking_selects(
        lambda: list(vectorsearch.search(Note, "password", k=100, mode="semantic"))
    )
    admin = ranking_selects(
        lambda: admin_client.get("/admin/embedapp/note/", {"q": "password", "semantic": "1"})
    )
    assert admin, "the admin ran no ranking query"
    assert all(nearest_subquery(sql) == nearest_subquery(expected) for sql in admin)


def test_count_and_len_agree_with_k_beyond_ef_search(notes):
    # D1: count() ran without the iterative scan and answered hnsw.ef_search (40), not k.
    found = vectorsearch.search(Note.objects.all(), "note", k=100, ef_search=40, mode="semantic")
    assert found.count() == 100
    assert len(list(found)) == 100


def test_the_searchs_own_guard_is_not_a_filter_of_the_callers():
    # search() keeps to vectors its embedder made (IS NOT NULL, NOT EXISTS another identity).
    # That guard keeps nearly every row: the search must stay an unfiltered index search (no
    # EXPLAIN, EF_SEARCH, ordered strictly), not a filtered one (FILTERED_EF_SEARCH).
    from tests.embedapp.models import Article

    Article.objects.bulk_create(Article(title=f"article {i} about cats") for i in range(30))
    call_command("vectorsearch_backfill", "embedapp.Article", verbosity=0)
    found = vectorsearch.search(Article, "cats", k=5, mode="semantic")
    with CaptureQueriesContext(connection) as captured:
        plan = found.plan(rows=True)
    assert not captured.captured_queries  # no EXPLAIN
    assert plan.settings["hnsw.ef_search"] == 200
    assert plan.settings["hnsw.iterative_scan"] == "strict_order"
    assert len(list(found)) == 5
    # A filter of the caller's is one: its search walks the index iteratively.
    # (exact=False: on 30 rows the planner may well prefer an exact scan.)
    filtered = vectorsearch.search(
        Article.objects.filter(title__contains="1"), "cats", k=5, exact=False, mode="semantic"
    )
    settings = filtered.plan(rows=True).settings
    assert settings["hnsw.iterative_scan"] == "relaxed_order"
    assert settings["hnsw.ef_search"] == 500
