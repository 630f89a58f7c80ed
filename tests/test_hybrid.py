"""vectorsearch.ranking.hybrid and .fulltext: keyword and hybrid modes of search()."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import vectorsearch
from tests.embedapp.models import Article, Note, Tag
from vectorsearch import InvalidQuery
from vectorsearch.ranking.fulltext import create_text_index, text_index
from vectorsearch.registry import registry

pytestmark = pytest.mark.django_db

NOTES = [
    ("json.dumps", "Serialize an object to a JSON formatted string."),
    ("csv.reader", "Return a reader object that iterates over lines in the given csvfile."),
    ("Reading files", "Open a file and read it line by line; mention json in passing."),
    ("Shipping times to Europe", "Parcels arrive within a week."),
    ("Password reset", "How to reset your password when the email never arrives."),
]


@pytest.fixture
def notes():
    return [Note.objects.create(title=t, body=b, category="docs") for t, b in NOTES]


def titles(rows):
    return [row.title for row in rows]


def test_keyword_mode_ranks_rows_holding_the_words_title_first(notes):
    found = vectorsearch.search(Note, "json", k=5, mode="keyword")
    assert titles(found)[:2] == ["json.dumps", "Reading files"]  # title (A) before body (B)
    assert all(row.score == row.text_score > 0 for row in found)


def test_the_parts_of_a_dotted_title_are_words(notes):
    assert titles(vectorsearch.search(Note, "csv reader", k=1, mode="keyword")) == ["csv.reader"]


@pytest.mark.parametrize("q", ["the of and", "🙂🙂", "\uff01\uff1f", "データベース"])
def test_queries_without_searchable_words_give_an_empty_answer_in_every_mode(notes, q):
    assert list(vectorsearch.search(Note, q, k=5, mode="keyword")) == []
    try:
        hybrid = list(vectorsearch.search(Note, q, k=5, mode="hybrid"))
    except InvalidQuery as e:  # the embedder knows none of its words either
        assert "nothing in that text to search by" in str(e)
    else:
        assert all(row.text_rank is None for row in hybrid)


def test_hybrid_mode_is_one_query_fusing_both_lists(notes):
    with CaptureQueriesContext(connection) as captured:
        found = list(vectorsearch.search(Note, "reset my password", k=3))
    (select,) = [q["sql"] for q in captured.captured_queries if "SELECT" in q["sql"]]
    assert "<=>" in select and "@@" in select and "ROW_NUMBER" in select
    assert found[0].title == "Password reset"
    assert found[0].vector_rank == 1 and found[0].text_rank == 1
    scores = [row.rrf_score for row in found]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_finds_a_row_the_text_list_alone_brings(notes):
    found = vectorsearch.search(Note, "csv", k=5, mode="hybrid")
    by_title = {row.title: row for row in found}
    assert by_title["csv.reader"].text_rank == 1


def test_the_column_target_searches_hybrid_too():
    Article.objects.create(title="Cats purr", body="A cat purrs when content.")
    Article.objects.create(title="Dogs bark", body="A dog barks at strangers.")
    assert titles(vectorsearch.search(Article, "cats purr", k=1))[0] == "Cats purr"


def test_mode_errors():
    with pytest.raises(InvalidQuery, match="mode must be one of hybrid, semantic, keyword"):
        vectorsearch.search(Note, "x", mode="fuzzy")
    with pytest.raises(InvalidQuery, match="A keyword search needs the text"):
        vectorsearch.search(Note, [0.1] * 256, mode="keyword")


def test_a_registration_with_callable_text_searches_by_meaning_only():
    Tag.objects.create(slug="felines", label="cats and kittens")
    assert [t.slug for t in vectorsearch.search(Tag, "kittens", k=1)] == ["felines"]
    with pytest.raises(InvalidQuery, match="takes its text from a callable"):
        vectorsearch.search(Tag, "kittens", mode="keyword")


def test_the_gin_index_serves_keyword_search(notes):
    registration = registry.get(Note)
    name = create_text_index(registration, "default", concurrently=False)
    assert name == text_index(registration).name
    assert create_text_index(registration, "default", concurrently=False) is None  # exists
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = vectorsearch.search(Note, "json", k=5, mode="keyword").explain()
    assert name in plan
