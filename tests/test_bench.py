"""vectorsearch_bench: recall against exact search and an ef_search suggestion."""

import json
import random
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.embedapp.models import Article, Note

pytestmark = pytest.mark.django_db

WORDS = [
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "rock",
    "river",
    "cloud",
    "stone",
    "road",
    "lamp",
    "door",
    "book",
    "pen",
    "cup",
]


def run(*args, **options):
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def articles():
    rng = random.Random(1)
    Article.objects.bulk_create(
        [Article(title=" ".join(rng.choices(WORDS, k=6))) for _ in range(300)]
    )
    run("vectorsearch_backfill", "embedapp.Article")


def test_bench_measures_recall_against_exact_search_and_suggests_ef_search(articles):
    report = json.loads(
        run(
            "vectorsearch_bench",
            "embedapp.Article",
            queries=20,
            k=5,
            ef_search=[5, 200],
            as_json=True,
        )
    )
    assert report["index_used"] is True
    assert report["queries"] == 20
    low, high = report["hnsw"]
    assert 0 < low["recall"] <= high["recall"] <= 1
    assert high["recall"] >= 0.95  # ef_search 200 over 300 rows is all but exhaustive
    assert report["suggested_ef_search"] in (5, 200)
    assert report["suggested_ef_search"] == (5 if low["recall"] >= 0.95 else 200)
    assert report["exact"]["p50_ms"] > 0


def test_bench_text_report_and_generic_table_without_an_index():
    Note.objects.bulk_create([Note(title=f"note {w}") for w in WORDS])
    run("vectorsearch_backfill", "embedapp.Note")
    out = run("vectorsearch_bench", "embedapp.Note", queries=5, k=3, ef_search=[40])
    assert "No HNSW index serves these queries" in out
    assert "ef=40" in out and "recall 1.000" in out  # exact either way
    assert "Suggested ef_search: 40" in out


def test_bench_without_vectors_says_to_backfill():
    with pytest.raises(
        CommandError, match="no stored vectors to benchmark; run vectorsearch_backfill"
    ):
        run("vectorsearch_bench", "embedapp.Note")


def test_bench_options_are_validated():
    with pytest.raises(CommandError, match="must be at most 1000"):
        run("vectorsearch_bench", "embedapp.Note", ef_search=[2000])
    with pytest.raises(CommandError, match="argument --target-recall: must be greater than 0"):
        call_command("vectorsearch_bench", "embedapp.Note", "--target-recall", "0")


def test_recall_counts_ties_at_the_kth_distance_as_hits():
    from vectorsearch.management.commands.vectorsearch_bench import recall

    exact = [("a", 0.1), ("b", 0.2), ("c", 0.2)]
    assert recall([("a", 0.1), ("d", 0.2), ("b", 0.2)], exact) == 1.0  # d ties with c
    assert recall([("a", 0.1), ("b", 0.2), ("e", 0.3)], exact) == pytest.approx(2 / 3)
    assert recall([], []) == 1.0


def test_bench_without_a_label_on_a_site_with_several_registrations_lists_them():
    with pytest.raises(CommandError, match=r"The site has several registrations \(embedapp\."):
        run("vectorsearch_bench")
