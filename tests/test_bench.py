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
    assert low["ef_search"] == 6  # k + 1: what a search at ef_search 5 walks anyway
    reaches = low["recall"] - low["stderr"] >= 0.95
    assert report["suggested_ef_search"] == (6 if reaches else 200)
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


# -- --apply: the calibration searches use -------------------------------------------------------


def vacuum_articles():
    """Rows that earlier tests inserted and rolled back stay in the HNSW graph until a VACUUM,
    and take candidate slots of every search: recall at a given ef_search falls with them.
    Calibrating a bloated index is as wrong on a site (docs/commands.md says to VACUUM first)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM embedapp_article")


@pytest.fixture
def random_articles(transactional_db):
    """2,000 random 256-d vectors: hard enough for HNSW that a small ef_search misses some.
    Transactional (no test transaction): the index is vacuumed first."""
    import numpy as np

    from vectorsearch import calibration

    vacuum_articles()
    rng = np.random.default_rng(7)
    Article.objects.bulk_create(
        [Article(title=f"r{i}", embedding=rng.standard_normal(256)) for i in range(2000)],
        batch_size=500,
    )
    calibration.reset()
    yield
    calibration.reset()


def test_apply_stores_the_smallest_ef_search_reaching_the_target(random_articles):
    from vectorsearch import calibration
    from vectorsearch.models import IndexCalibration

    report = json.loads(
        run(
            "vectorsearch_bench", "embedapp.Article", "--apply", "--json", queries=20, k=10,
            ef_search=[10, 40, 160], target_recall=0.98,
        )
    )  # fmt: skip
    points = {r["ef_search"]: r["recall"] for r in report["hnsw"]}
    lower = {r["ef_search"]: r["recall"] - r["stderr"] for r in report["hnsw"]}
    chosen = report["applied"]["ef_search"]
    # The smallest whose recall, less one standard error, reaches the target, among the values
    # measured (the bisected ones included).
    assert lower[chosen] >= 0.98
    assert all(bound < 0.98 for ef, bound in lower.items() if ef < chosen)
    assert points[11] < 0.98, "the data is too easy to show a choice"  # 10 runs as k + 1
    # Bisection narrowed the gap below the chosen value to 10% of it.
    below = max(ef for ef in points if ef < chosen)
    assert chosen - below <= max(1, 0.1 * chosen)
    stored = IndexCalibration.objects.get()
    assert (stored.index_name, stored.ef_search, stored.rows) == (
        "embedapp_article_hnsw",
        chosen,
        2000,
    )
    assert stored.target_recall == 0.98 and stored.recall == points[chosen]
    assert [p["ef_search"] for p in stored.curve] == sorted(points)
    assert calibration.calibrated_ef_search(Article, "embedding") == chosen


def test_apply_text_report_says_what_it_stored(random_articles):
    out = run(
        "vectorsearch_bench", "embedapp.Article", "--apply", queries=10, ef_search=[200],
        target_recall=0.5,
    )  # fmt: skip
    assert "Stored ef_search 200 for index embedapp_article_hnsw" in out
    assert "searches without ef_search= use it from now on" in out


def test_apply_stores_nothing_when_no_ef_search_reaches_the_target(random_articles):
    from vectorsearch.models import IndexCalibration

    with pytest.raises(CommandError, match=r"no calibration was stored: try larger values"):
        run(
            "vectorsearch_bench", "embedapp.Article", "--apply", queries=10, ef_search=[11],
            target_recall=1.0,
        )  # fmt: skip
    assert not IndexCalibration.objects.exists()


def test_apply_without_an_index_says_to_build_it_first():
    Note.objects.bulk_create([Note(title=f"note {w}") for w in WORDS])
    run("vectorsearch_backfill", "embedapp.Note")
    with pytest.raises(
        CommandError, match=r"run manage\.py vectorsearch_index first, then --apply"
    ):
        run("vectorsearch_bench", "embedapp.Note", "--apply", queries=5)


def test_target_recall_defaults_to_the_setting(articles, settings):
    settings.VECTORSEARCH = {"TARGET_RECALL": 0.5}
    report = json.loads(run("vectorsearch_bench", "embedapp.Article", queries=5, as_json=True))
    assert report["target_recall"] == 0.5


def test_a_sampled_vector_does_not_find_its_own_row(random_articles):
    # A stored vector used as a query is at distance 0 from its own row, which any index finds:
    # counting it would flatter the recall as no real query does.
    from vectorsearch.management.commands.vectorsearch_bench import Command
    from vectorsearch.registry import registry

    command = Command()
    registration = registry.get(Article)
    ids, vectors = command.sample(registration, 5, 0, "default")
    for ef in (None, 40):
        found, _ = command.run_queries(registration, ids, vectors, 10, ef, "default")
        for own, rows in zip(ids, found, strict=True):
            assert len(rows) == 10
            assert own not in {str(pk) for pk, _ in rows}


def test_queries_file_uses_the_given_vectors_as_queries(articles, tmp_path):
    import numpy as np

    path = tmp_path / "queries.npy"
    np.save(path, np.random.default_rng(0).standard_normal((7, 256)).astype(np.float32))
    report = json.loads(
        run(
            "vectorsearch_bench", "embedapp.Article", "--queries-file", str(path), queries=50,
            k=5, ef_search=[200], as_json=True,
        )
    )  # fmt: skip
    assert report["queries"] == 7  # all of the file (fewer than --queries)
    assert report["hnsw"][0]["recall"] >= 0.95


def test_a_bad_queries_file_is_a_command_error(tmp_path):
    import numpy as np

    missing = tmp_path / "missing.npy"
    with pytest.raises(CommandError, match=r"cannot read it as a \.npy array"):
        run("vectorsearch_bench", "embedapp.Article", "--queries-file", str(missing))
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(4))
    with pytest.raises(CommandError, match=r"expected a non-empty 2-D numeric array"):
        run("vectorsearch_bench", "embedapp.Article", "--queries-file", str(flat))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((2, 3), dtype=np.float32))
    Article.objects.create(title="one")  # embedded on save: there is a vector to compare
    with pytest.raises(CommandError, match=r"embedapp.Article.embedding: .*256"):
        run("vectorsearch_bench", "embedapp.Article", "--queries-file", str(wrong))
