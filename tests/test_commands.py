"""The vectorsearch_* commands, against the real database."""

import json
import os
import random
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
    assert article["indexes"] == [
        {
            "name": "embedapp_article_hnsw",
            "exists": True,
            "valid": True,
            "size_bytes": article["indexes"][0]["size_bytes"],  # checked just below
        }
    ]
    assert article["indexes"][0]["size_bytes"] > 0


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
