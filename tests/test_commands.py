"""The vectorsearch_* commands, against the real database."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.test import override_settings

from tests.embedapp.models import Article, Note, Tag
from vectorsearch.embedders import HashingEmbedder
from vectorsearch.models import Embedding
from vectorsearch.registry import registry
from vectorsearch.sync import status

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **options):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def snapshot():
    """Everything a backfill decides, minus timestamps."""
    embeddings = {
        (e.content_type_id, e.object_id, e.key): (
            e.identity,
            e.source_hash,
            None if e.vector is None else tuple(np.round(e.vector, 6)),
        )
        for e in Embedding.objects.all()
    }
    columns = {
        a.pk: tuple(np.round(a.embedding, 6))
        for a in Article.objects.all()
        if a.embedding is not None
    }
    return embeddings, columns


# -- backfill ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backfill_embeds_missing_and_stale_rows_of_every_registered_model():
    Note.objects.bulk_create([Note(title=f"note {i}") for i in range(30)])
    Article.objects.bulk_create([Article(title=f"article {i}") for i in range(20)])
    Tag.objects.bulk_create([Tag(slug=f"t{i}", label="tag") for i in range(5)])
    out = run("vectorsearch_backfill", batch_size=7)
    assert "embedapp.Note@default: embedded 30 (30 missing, 0 stale) of 30 rows" in out
    # Not a terminal: the progress bar prints a line per 10% instead of redrawing one.
    assert "embedapp.Note@default [#####-------------------] 7/30 (23%)" in out
    assert "embedapp.Note@default [########################] 30/30 (100%)" in out
    assert "rows/s" in out
    assert "embedapp.Article.embedding: embedded 20" in out
    assert "embedapp.Tag@small: embedded 5" in out
    assert Article.objects.filter(embedding__isnull=True).count() == 0
    assert all(status(r).current == status(r).rows for r in registry)
    # A second run finds nothing to do.
    assert "embedded 0 (0 missing, 0 stale) of 30 rows" in run(
        "vectorsearch_backfill", "embedapp.Note"
    )


@pytest.mark.django_db
def test_dry_run_counts_and_changes_nothing():
    Note.objects.bulk_create([Note(title=f"note {i}") for i in range(4)])
    out = run("vectorsearch_backfill", "embedapp.note", dry_run=True)
    assert "4 rows, 4 missing, 0 stale; would embed 4 (dry run" in out
    assert Embedding.objects.count() == 0


@pytest.mark.django_db
def test_stale_only_leaves_missing_rows_alone():
    stale = Note.objects.create(title="old")
    Note.objects.filter(pk=stale.pk).update(title="new")
    Note.objects.bulk_create([Note(title="never embedded")])
    out = run("vectorsearch_backfill", "embedapp.Note", stale_only=True)
    assert "embedded 1 (1 missing, 1 stale)" in out
    counts = status(registry.get(Note))
    assert (counts.current, counts.missing) == (1, 1)


@pytest.mark.django_db
def test_backfill_removes_orphans_left_by_a_raw_delete():
    note = Note.objects.create(title="gone soon")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM embedapp_note WHERE id = %s", [note.pk])
    assert status(registry.get(Note)).orphans == 1
    assert "1 orphan vector(s) removed" in run("vectorsearch_backfill", "embedapp.Note")
    assert Embedding.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (
            ["embedapp.Nope"],
            {},
            "No registered model called 'embedapp.Nope'; registered: "
            "embedapp.Article.embedding, embedapp.Note@default, embedapp.Post@default, embedapp.Tag@small",
        ),
        ([], {"batch_size": 0}, "must be at least 1"),
    ],
)
def test_bad_arguments_are_command_errors(args, options, message):
    with pytest.raises(CommandError, match=message):
        run("vectorsearch_backfill", *args, **options)


def test_batch_size_zero_from_the_command_line_is_rejected_by_argparse():
    with pytest.raises(CommandError, match="argument --batch-size: must be at least 1, got 0"):
        call_command("vectorsearch_backfill", "--batch-size", "0")


@pytest.mark.django_db
def test_all_rows_re_embeds_current_rows_that_the_plain_backfill_keeps():
    notes = [Note.objects.create(title=f"note {i}") for i in range(3)]
    # Vectors spoiled behind the bookkeeping's back: "current" by identity and source hash.
    Embedding.objects.update(vector=[0.0] * 256)
    assert "embedded 0 (0 missing, 0 stale) of 3 rows" in run("vectorsearch_backfill")
    assert "would embed 3 (dry run" in run("vectorsearch_backfill", "--all-rows", "--dry-run")
    assert not any(any(e.vector) for e in Embedding.objects.all())
    assert "embedded 3 (0 missing, 0 stale) of 3 rows" in run(
        "vectorsearch_backfill", "embedapp.Note@default", "--all-rows"
    )
    assert all(any(rows.vector) for rows in Embedding.objects.all())
    assert Embedding.objects.count() == len(notes)


def test_all_rows_and_stale_only_exclude_each_other():
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("vectorsearch_backfill", "--all-rows", "--stale-only")


class PoisonEmbedder(HashingEmbedder):
    """Fails for any batch holding a text that contains "poison"."""

    def embed_documents(self, texts):
        if any("poison" in t for t in texts):
            raise ValueError("cannot embed poison")
        return super().embed_documents(texts)


POISON = {
    "default": {"BACKEND": "tests.test_commands.PoisonEmbedder", "OPTIONS": {"dimensions": 256}},
    "small": {"BACKEND": "vectorsearch.embedders.HashingEmbedder", "OPTIONS": {"dimensions": 32}},
}


@pytest.mark.django_db
def test_embedder_failure_stops_naming_the_rows_and_writes_no_part_of_the_batch():
    with override_settings(VECTORSEARCH_EMBEDDERS=POISON):
        notes = Note.objects.bulk_create([Note(title=f"ok {i}") for i in range(6)])
        bad = Note.objects.bulk_create([Note(title="poison pill")])[0]
        Note.objects.bulk_create([Note(title="after")])
        with pytest.raises(
            CommandError,
            match=rf"failed for 1 row\(s\) \(pk={bad.pk}: ValueError: cannot embed poison\); "
            "this batch was not written",
        ):
            run("vectorsearch_backfill", "embedapp.Note", batch_size=4)
    # The first batch (4 rows) was committed; the second, holding the bad row, was not at all.
    assert sorted(int(e.object_id) for e in Embedding.objects.all()) == [n.pk for n in notes[:4]]


@pytest.mark.django_db
def test_on_error_skip_writes_the_other_rows_and_reports_the_failures():
    with override_settings(VECTORSEARCH_EMBEDDERS=POISON):
        Note.objects.bulk_create([Note(title=f"ok {i}") for i in range(6)])
        bad = Note.objects.bulk_create([Note(title="poison pill")])[0]
        with pytest.raises(
            CommandError, match=rf"(?s)failed for 1 row\(s\).*Note@default pk={bad.pk}: ValueError"
        ):
            run("vectorsearch_backfill", "embedapp.Note", batch_size=4, on_error="skip")
        assert Embedding.objects.count() == 6
        assert status(registry.get(Note)).missing == 1


# -- resumable after SIGKILL ------------------------------------------------------------------


def _database_url():
    settings = connection.settings_dict
    host = quote(settings["HOST"], safe="")
    return f"postgres://{settings['USER']}@{host}/{settings['NAME']}"


def _backfill_process(batch_size):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "PYTHONPATH": str(ROOT),
        # 1 ms a row: slow enough to be killed several times mid-run on any machine.
        "VECTORSEARCH_TEST_SLOW_EMBEDDER": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "vectorsearch_backfill",
            "--settings",
            "tests.settings",
            "--batch-size",
            str(batch_size),
            "-v",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.django_db(transaction=True)
def test_backfill_killed_with_sigkill_resumes_to_the_same_state_as_an_uninterrupted_run():
    random.seed(4)
    Note.objects.bulk_create(
        [Note(title=f"note {i}", body="text " * (i % 40)) for i in range(1500)]
    )
    Article.objects.bulk_create([Article(title=f"article {i}") for i in range(750)])
    kills = 0
    for _ in range(4):
        before = Embedding.objects.count()
        process = _backfill_process(batch_size=20)
        # Kill it once it is writing, at a random moment (mid-transaction or between them).
        deadline = time.monotonic() + 60
        while Embedding.objects.count() == before and process.poll() is None:
            assert time.monotonic() < deadline, "the backfill never started writing"
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.4))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        else:
            break
    assert kills >= 2, "the backfill finished before it could be killed twice; use more rows"
    assert status(registry.get(Note)).missing > 0  # really interrupted
    final = _backfill_process(batch_size=20)
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()
    resumed = snapshot()

    Embedding.objects.all().delete()
    Article.objects.update(embedding=None)
    run("vectorsearch_backfill", batch_size=20)
    uninterrupted = snapshot()

    assert resumed == uninterrupted
    assert len(resumed[0]) == 1500 + 750  # one row per object: no duplicate, none lost
    assert len(resumed[1]) == 750


# -- status -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_reports_counts_embedder_and_index_as_json():
    Note.objects.create(title="current")
    stale = Note.objects.create(title="stale")
    Note.objects.filter(pk=stale.pk).update(title="edited")
    Note.objects.bulk_create([Note(title="missing")])
    Article.objects.create(title="a")
    report = {r["model"]: r for r in json.loads(run("vectorsearch_status", json=True))}
    note = report["embedapp.Note@default"]
    assert {k: note[k] for k in ("rows", "embedded", "current", "stale", "missing", "orphans")} == {
        "rows": 3,
        "embedded": 2,
        "current": 1,
        "stale": 1,
        "missing": 1,
        "orphans": 0,
    }
    assert note["identity"].startswith("hashing:") and note["identity"].endswith(":256")
    assert note["indexes"][0]["exists"] is False  # built by vectorsearch_index
    article = report["embedapp.Article.embedding"]
    (index,) = article["indexes"]
    assert {k: index[k] for k in ("name", "exists", "valid", "rows", "bloated", "leftovers")} == {
        "name": "embedapp_article_hnsw",
        "exists": True,
        "valid": True,
        "rows": 1,  # vectors in the index
        "bloated": False,
        "leftovers": [],
    }
    assert index["size_bytes"] > 0 and index["estimate_bytes"] > 0
    assert article["invalid_indexes"] == []


@pytest.mark.django_db
def test_status_table_tells_what_to_run():
    Note.objects.bulk_create([Note(title="missing")])
    out = run("vectorsearch_status", "embedapp.Note")
    assert "rows 1: 0 embedded" in out and "1 missing" in out
    assert "missing (run vectorsearch_index)" in out
    assert "run: manage.py vectorsearch_backfill embedapp.Note" in out


class WrongDimensions(HashingEmbedder):
    def embed_documents(self, texts):
        return super().embed_documents(texts)[:, :-1]


@pytest.mark.django_db
def test_an_embedder_returning_the_wrong_dimensions_is_rejected_by_the_backfill():
    config = {
        **POISON,
        "default": {
            "BACKEND": "tests.test_commands.WrongDimensions",
            "OPTIONS": {"dimensions": 256},
        },
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=config):
        note = Note.objects.bulk_create([Note(title="cats")])[0]
        with pytest.raises(
            CommandError, match=rf"pk={note.pk}: EmbeddingError: .*shape \(1, 255\)"
        ):
            run("vectorsearch_backfill", "embedapp.Note")
    assert Embedding.objects.count() == 0


@pytest.mark.django_db
def test_an_unavailable_embedding_server_fails_the_batch_at_once_naming_its_rows():
    from tests.embedding_server import FakeServer

    server = FakeServer()
    try:
        server.failures = [503] * 10
        config = {
            **POISON,
            "default": {
                "BACKEND": "vectorsearch.embedders.OpenAICompatibleEmbedder",
                "OPTIONS": {
                    "base_url": server.url,
                    "model": "m",
                    "dimensions": 256,
                    "max_retries": 1,
                    "backoff": 0.01,
                },
            },
        }
        with override_settings(VECTORSEARCH_EMBEDDERS=config):
            Note.objects.bulk_create([Note(title=f"n{i}") for i in range(4)])
            with pytest.raises(CommandError, match=r"failed for 4 row\(s\) \(pk=.*HTTP 503"):
                run("vectorsearch_backfill", "embedapp.Note", batch_size=10)
        # One request and one retry for the batch, not two more per row.
        assert len(server.requests) == 2
        assert [len(r["body"]["input"]) for r in server.requests] == [4, 4]  # the whole batch
        assert Embedding.objects.count() == 0
    finally:
        server.close()


# -- index health: leftovers of an interrupted REINDEX, duplicates, bloat ----------------------


def _hnsw_indexes(table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, x.indisvalid FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
            "WHERE x.indrelid = %s::regclass AND am.amname = 'hnsw' ORDER BY 1",
            [table],
        )
        return cursor.fetchall()


def _random_article_vectors(rows):
    """Articles with random 256-dimension vectors, written by the server: fast to make."""
    with connection.cursor() as cursor:
        # Loaded without the index, then built once: inserting into a live HNSW is slow.
        cursor.execute("SELECT pg_get_indexdef('embedapp_article_hnsw'::regclass)")
        definition = cursor.fetchone()[0]
        cursor.execute("DROP INDEX embedapp_article_hnsw")
        cursor.execute(
            "INSERT INTO embedapp_article (title, body, embedding) "
            "SELECT 'article ' || i, '', (SELECT array_agg(random()::real) "
            "  FROM generate_series(1, 256) WHERE i > 0)::vector "
            "FROM generate_series(1, %s) i",
            [rows],
        )
        cursor.execute(definition)


def _index_process(*args):
    env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django",
            "vectorsearch_index",
            "--settings",
            "tests.settings",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_killed_mid_way_leaves_a_ccnew_that_status_check_and_index_command_handle():
    from vectorsearch.checks import check_invalid_indexes

    _random_article_vectors(6000)
    # The D2 scenario for real: vectorsearch_index --rebuild runs REINDEX CONCURRENTLY; its
    # backend is terminated while building, and the command itself is killed with SIGKILL.
    process = _index_process("embedapp.Article", "--rebuild")
    deadline = time.monotonic() + 60
    pid = None
    with connection.cursor() as cursor:
        while pid is None:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the rebuild never started building"
            cursor.execute(
                "SELECT pid FROM pg_stat_progress_create_index "
                "WHERE command = 'REINDEX CONCURRENTLY' AND phase LIKE 'building index%%'"
            )
            row = cursor.fetchone()
            pid = row and row[0]
            time.sleep(0.05)
        time.sleep(0.3)
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _hnsw_indexes("embedapp_article") == [
        ("embedapp_article_hnsw", True),
        ("embedapp_article_hnsw_ccnew", False),
    ]

    # Status names the leftover, no longer "valid" and nothing else.
    (report,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))
    (leftover,) = report["indexes"][0]["leftovers"]
    assert leftover["name"] == "embedapp_article_hnsw_ccnew" and not leftover["valid"]
    assert leftover["why"] == "left by an interrupted REINDEX CONCURRENTLY of embedapp_article_hnsw"
    out = run("vectorsearch_status", "embedapp.Article")
    # (0 B while pgvector still builds in memory; the size of the pages written otherwise.)
    assert re.search(
        r"leftover  embedapp_article_hnsw_ccnew: INVALID, [\d.]+ [kM]?B, left by an interrupted "
        r"REINDEX CONCURRENTLY of embedapp_article_hnsw \(run vectorsearch_index to drop it\)",
        out,
    )

    # W010 says to drop it: rebuilding it (the old hint) made a second valid 40 MB index.
    (warning,) = check_invalid_indexes(databases=["default"])
    assert warning.id == "vectorsearch.W010"
    assert "left by an interrupted REINDEX CONCURRENTLY of 'embedapp_article_hnsw'" in warning.msg
    assert 'Drop it with DROP INDEX CONCURRENTLY "public"."embedapp_article_hnsw_ccnew";' in (
        warning.hint
    )
    assert "REINDEX INDEX" not in warning.hint

    # The command drops it and leaves exactly one valid index.
    out = run("vectorsearch_index", "embedapp.Article")
    assert re.search(
        r"embedapp\.Article\.embedding: dropped index embedapp_article_hnsw_ccnew \(INVALID, "
        r"[\d.]+ [kM]?B\), left by an interrupted REINDEX CONCURRENTLY of embedapp_article_hnsw\.",
        out,
    )
    assert "index embedapp_article_hnsw is valid" in out
    assert _hnsw_indexes("embedapp_article") == [("embedapp_article_hnsw", True)]
    assert check_invalid_indexes(databases=["default"]) == []

    # A rebuild that takes a while shows the server's progress report; -v 0 prints nothing.
    out = run("vectorsearch_index", "embedapp.Article", rebuild=True)
    assert "  embedapp_article_hnsw: building index: loading tuples" in out
    assert run("vectorsearch_index", "embedapp.Article", rebuild=True, verbosity=0) == ""
    assert _hnsw_indexes("embedapp_article") == [("embedapp_article_hnsw", True)]


@pytest.mark.django_db(transaction=True)
def test_a_valid_duplicate_index_is_reported_and_dropped_by_rebuild():
    _random_article_vectors(500)
    with connection.cursor() as cursor:
        # What following the old W010 hint on a _ccnew made: a second valid copy.
        cursor.execute(
            "CREATE INDEX embedapp_article_hnsw_ccnew1 ON embedapp_article "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    (report,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))
    (leftover,) = report["indexes"][0]["leftovers"]
    assert leftover["name"] == "embedapp_article_hnsw_ccnew1" and leftover["valid"]
    assert leftover["size_bytes"] > 0
    try:
        out = run("vectorsearch_index", "embedapp.Article", rebuild=True)
        assert "dropped index embedapp_article_hnsw_ccnew1 (valid," in out
        assert "rebuild index embedapp_article_hnsw over 500 vectors (concurrently" in out
        assert _hnsw_indexes("embedapp_article") == [("embedapp_article_hnsw", True)]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS embedapp_article_hnsw_ccnew1")


@pytest.mark.django_db
def test_status_reports_other_invalid_indexes_on_a_registered_table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX embedapp_article_title ON embedapp_article (title)")
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'embedapp_article_title'::regclass"
        )
    (report,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))
    assert report["invalid_indexes"] == ["embedapp_article_title"]
    assert "invalid   embedapp_article_title on the same table: INVALID" in run(
        "vectorsearch_status", "embedapp.Article"
    )


# Outside a transaction, as in production: a rebuild inside one keeps the old row versions.
@pytest.mark.django_db(transaction=True)
def test_a_re_embed_bloats_the_index_status_flags_it_and_rebuild_gives_the_space_back():
    Article.objects.bulk_create([Article(title=f"article {i} about cats") for i in range(1500)])
    run("vectorsearch_backfill", "embedapp.Article")
    run("vectorsearch_index", "embedapp.Article", rebuild=True)
    (fresh,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))[0]["indexes"]
    assert fresh["rows"] == 1500 and not fresh["bloated"]
    assert 0.95 <= fresh["ratio"] <= 1.05  # the estimate is what a fresh build takes

    # A real re-embed: every text changes, the backfill writes every vector again.
    Article.objects.update(title=Concat(F("title"), Value(" and dogs")))
    assert "embedded 1,500 (0 missing, 1,500 stale)" in run(
        "vectorsearch_backfill", "embedapp.Article"
    )
    (grown,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))[0]["indexes"]
    assert grown["bloated"] and grown["ratio"] > 1.5
    assert grown["size_bytes"] > 1.5 * fresh["size_bytes"]
    assert "bloated, over 1.5x (run vectorsearch_index --rebuild)" in run(
        "vectorsearch_status", "embedapp.Article"
    )
    out = run("vectorsearch_index", "embedapp.Article")
    assert "Bloated: more than 1.5x its fresh size" in out and "--rebuild" in out

    out = run("vectorsearch_index", "embedapp.Article", rebuild=True)
    assert "rebuild index embedapp_article_hnsw over 1,500 vectors" in out
    (rebuilt,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))[0]["indexes"]
    # The graph is random: a build or two may differ by a page.
    assert not rebuilt["bloated"] and rebuilt["size_bytes"] <= 1.03 * fresh["size_bytes"]


# -- backfill --defer-index ----------------------------------------------------------------------


def _retitle(suffix):
    Article.objects.update(title=Concat(F("title"), Value(suffix)))


@pytest.mark.django_db(transaction=True)
def test_a_big_re_embed_with_defer_index_drops_the_index_and_builds_it_fresh_after():
    Article.objects.bulk_create([Article(title=f"article {i} about cats") for i in range(1000)])
    run("vectorsearch_backfill", "embedapp.Article")
    run("vectorsearch_index", "embedapp.Article", rebuild=True)
    (fresh,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))[0]["indexes"]

    # Without the flag: the index is updated row by row, and the command says what to do.
    _retitle(" and dogs")
    out = run("vectorsearch_backfill", "embedapp.Article")
    assert "100% of the rows were embedded with the vector index live" in out
    assert "pass --defer-index" in out

    _retitle(" and birds")
    out = run("vectorsearch_backfill", "embedapp.Article", defer_index=True)
    assert (
        "embedapp.Article.embedding: 1,000 of 1,000 rows to embed (100%): dropped "
        "embedapp_article_hnsw for the load; it is built again after. Should this run be "
        "interrupted, run: manage.py vectorsearch_index embedapp.Article.embedding"
    ) in out
    assert "embedapp.Article.embedding: built embedapp_article_hnsw again in" in out
    assert "with the vector index live" not in out
    assert _hnsw_indexes("embedapp_article") == [("embedapp_article_hnsw", True)]
    # Built once over the new vectors: as small as a fresh build, not bloated.
    (after,) = json.loads(run("vectorsearch_status", "embedapp.Article", json=True))[0]["indexes"]
    assert after["size_bytes"] <= 1.03 * fresh["size_bytes"] and not after["bloated"]
    assert status(registry.get(Article)).current == 1000


@pytest.mark.django_db(transaction=True)
def test_defer_index_keeps_the_index_for_a_small_re_embed():
    Article.objects.bulk_create([Article(title=f"article {i}") for i in range(50)])
    run("vectorsearch_backfill", "embedapp.Article")
    Article.objects.filter(pk__in=list(Article.objects.values_list("pk", flat=True)[:3])).update(
        title="changed"
    )
    out = run("vectorsearch_backfill", "embedapp.Article", defer_index=True)
    assert "3 of 50 rows to embed (6%, not over 10%): keeping embedapp_article_hnsw." in out
    assert "dropped" not in out and "with the vector index live" not in out
    assert _hnsw_indexes("embedapp_article") == [("embedapp_article_hnsw", True)]
