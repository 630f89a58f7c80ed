"""Saves, edits, deletes and embedder changes keep the stored vectors right (real database)."""

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

import vectorsearch
from tests.embedapp.models import Article, Note, Tag
from vectorsearch import embedders
from vectorsearch.models import Embedding
from vectorsearch.registry import registry
from vectorsearch.sync import backfill, status

pytestmark = pytest.mark.django_db


def rows_of(obj):
    ct = ContentType.objects.get_for_model(type(obj))
    return Embedding.objects.filter(content_type=ct, object_id=str(obj.pk))


def test_saving_a_generic_model_stores_its_vector_with_identity_and_hash():
    note = Note.objects.create(title="Reset your password", body="Use the link we email you.")
    (row,) = rows_of(note)
    registration = registry.get(Note)
    assert row.key == "@default"
    assert row.identity == embedders["default"].identity
    assert row.source_hash == registration.hash_text(
        "Reset your password\n\nUse the link we email you."
    )
    expected = embedders["default"].embed(["Reset your password\n\nUse the link we email you."])[0]
    np.testing.assert_allclose(row.vector, expected, rtol=1e-6)


def test_saving_a_model_with_its_own_column_fills_the_column_and_the_bookkeeping():
    article = Article.objects.create(title="Cats", body="Cats purr.")
    article.refresh_from_db()
    assert article.embedding is not None and len(article.embedding) == 256
    (row,) = rows_of(article)
    assert row.key == "embedding" and row.vector is None


def test_editing_the_text_re_embeds_and_an_unrelated_save_does_not():
    note = Note.objects.create(title="Cats", body="")
    first = rows_of(note).get()
    note.category = "pets"
    note.save(update_fields=["category"])
    assert rows_of(note).get().updated_at == first.updated_at
    note.save()  # same text: still current, nothing rewritten
    assert rows_of(note).get().updated_at == first.updated_at
    note.body = "Dogs bark."
    note.save()
    second = rows_of(note).get()
    assert second.source_hash != first.source_hash
    assert not np.allclose(second.vector, first.vector)


def test_deleting_an_object_leaves_no_vector():
    note = Note.objects.create(title="Cats")
    article = Article.objects.create(title="Dogs")
    note.delete()
    Article.objects.filter(pk=article.pk).delete()  # a queryset delete sends post_delete too
    assert Embedding.objects.count() == 0


def test_text_primary_keys_and_callable_text_work():
    tag = Tag.objects.create(slug="django-orm", label="Django ORM")
    (row,) = rows_of(tag)
    assert row.object_id == "django-orm" and row.key == "@small"
    assert row.source_hash == registry.get(Tag).hash_text("django-orm: Django ORM")
    assert len(row.vector) == 32


def test_an_edit_made_behind_the_orms_back_is_reported_stale_and_refreshed():
    note = Note.objects.create(title="Cats", body="Cats purr.")
    Note.objects.filter(pk=note.pk).update(body="Cats purr loudly.")  # no signal
    Note.objects.bulk_create([Note(title="Bulk")])  # no signal: missing
    registration = registry.get(Note)
    before = status(registration)
    assert (before.rows, before.current, before.stale, before.missing) == (2, 0, 1, 1)
    result = backfill(registration)
    assert (result.stale, result.missing, result.embedded) == (1, 1, 2)
    after = status(registration)
    assert (after.current, after.stale, after.missing) == (2, 0, 0)


def test_changing_the_embedder_makes_vectors_stale_and_searches_never_mix_them():
    Note.objects.create(title="Cats purr", body="")
    Note.objects.create(title="Dogs bark", body="")
    registration = registry.get(Note)
    other = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 48},
        },
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=other):
        assert status(registration).stale == 2
        # Until the backfill ran, no vector of the old embedder is ranked against the new one.
        assert list(vectorsearch.search(Note.objects.all(), "cats")) == []
        Note.objects.create(title="Cats nap", body="")
        assert [n.title for n in vectorsearch.search(Note.objects.all(), "cats")] == ["Cats nap"]
        backfill(registration)
        assert status(registration).current == 3
        assert len(vectorsearch.search(Note.objects.all(), "cats")) == 3


def test_an_embedder_failure_on_save_keeps_the_object_and_leaves_it_missing(caplog):
    broken = {
        "default": {"BACKEND": "tests.test_sync.BrokenEmbedder", "OPTIONS": {}},
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=broken):
        note = Note.objects.create(title="Cats")
    assert Note.objects.filter(pk=note.pk).exists()
    assert not rows_of(note).exists()
    assert "run vectorsearch_backfill to retry" in caplog.text
    assert status(registry.get(Note)).missing == 1


def test_manual_sync_mode_embeds_nothing_on_save():
    with override_settings(VECTORSEARCH={"SYNC": "manual"}):
        note = Note.objects.create(title="Cats")
    assert not rows_of(note).exists()


@pytest.fixture
def register_note(monkeypatch):
    """Register Note again with other arguments, through the public API; the site's
    registrations (and their order) are restored afterwards."""
    from vectorsearch.signals import connect_model

    monkeypatch.setattr(registry, "_registrations", dict(registry._registrations))

    def again(**kwargs):
        vectorsearch.unregister(Note)
        return vectorsearch.register(Note, fields=["title", "body"], **kwargs)

    yield again
    monkeypatch.undo()
    connect_model(Note)  # the registry was put back behind the receivers' back


def test_register_sync_manual_overrides_an_immediate_setting(register_note):
    registration = register_note(sync="manual")
    with override_settings(VECTORSEARCH={"SYNC": "immediate"}):
        note = Note.objects.create(title="Cats purr")
        note.body = "loudly"
        note.save()
        assert not rows_of(note).exists()
        assert status(registration).missing == 1
        # The backfill is what embeds a manual registration.
        assert backfill(registration).embedded == 1
    (row,) = rows_of(note)
    assert row.source_hash == registration.hash_text("Cats purr\n\nloudly")
    # Other registered models still follow the setting.
    article = Article.objects.create(title="Cats")
    assert rows_of(article).exists()


def test_register_sync_immediate_overrides_a_manual_setting(register_note):
    registration = register_note(sync="immediate")
    with override_settings(VECTORSEARCH={"SYNC": "manual"}):
        note = Note.objects.create(title="Cats purr")
        article = Article.objects.create(title="Cats purr")
        (row,) = rows_of(note)
        assert row.source_hash == registration.hash_text("Cats purr")
        np.testing.assert_allclose(
            row.vector, embedders["default"].embed(["Cats purr"])[0], rtol=1e-6
        )
        note.title = "Dogs bark"
        note.save()
        assert rows_of(note).get().source_hash == registration.hash_text("Dogs bark")
        # Article has no sync= of its own: the manual setting holds for it.
        assert not rows_of(article).exists()
        assert status(registration).current == 1


def test_register_sync_task_overrides_an_immediate_setting(
    register_note, django_capture_on_commit_callbacks
):
    pytest.importorskip("django_tasks")
    registration = register_note(sync="task")
    with override_settings(
        VECTORSEARCH={"SYNC": "immediate"},
        TASKS={"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}},
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            note = Note.objects.create(title="Cats purr")
        assert not rows_of(note).exists()  # not embedded in the save
        assert len(callbacks) == 1
        callbacks[0]()
    assert rows_of(note).get().source_hash == registration.hash_text("Cats purr")


class BrokenEmbedder(vectorsearch.embedders.HashingEmbedder):
    def embed_documents(self, texts):
        raise ConnectionError("embedding server is down")


def test_task_sync_mode_enqueues_on_commit_and_the_task_embeds(django_capture_on_commit_callbacks):
    pytest.importorskip("django_tasks")

    with override_settings(
        VECTORSEARCH={"SYNC": "task"},
        TASKS={"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}},
    ):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            note = Note.objects.create(title="Cats purr")
        assert not rows_of(note).exists()  # nothing before the commit
        assert len(callbacks) == 1
        for callback in callbacks:
            callback()
    # A worker finds the task by module path, as every django-tasks backend does.
    from django.utils.module_loading import import_string

    from vectorsearch.tasks import embed_objects

    assert import_string(embed_objects.module_path) is embed_objects
    (row,) = rows_of(note)
    assert row.source_hash == registry.get(Note).hash_text("Cats purr")


def test_the_task_skips_objects_that_are_current_or_gone():
    from vectorsearch.tasks import run_embed_objects

    note = Note.objects.create(title="Cats")
    assert run_embed_objects("embedapp.Note", "@default", [str(note.pk), "999999"]) == 0
    Note.objects.filter(pk=note.pk).update(title="Dogs")
    assert run_embed_objects("embedapp.Note", "@default", [str(note.pk)]) == 1


def test_the_task_with_force_re_embeds_current_objects_too():
    from vectorsearch.tasks import run_embed_objects

    note = Note.objects.create(title="Cats")
    Embedding.objects.filter(object_id=str(note.pk)).update(vector=[0.0] * 256)  # still "current"
    assert run_embed_objects("embedapp.Note", "@default", [str(note.pk)]) == 0
    assert run_embed_objects("embedapp.Note", "@default", [str(note.pk)], force=True) == 1
    assert any(rows_of(note).get().vector)


def test_a_task_writes_what_it_can_and_its_error_names_what_failed():
    from tests.test_commands import POISON
    from vectorsearch.exceptions import EmbeddingError
    from vectorsearch.tasks import run_embed_objects

    with override_settings(VECTORSEARCH={"SYNC": "manual"}):
        good = Note.objects.create(title="Cats")
        bad = Note.objects.create(title="poison")
    with (
        override_settings(VECTORSEARCH_EMBEDDERS=POISON),
        pytest.raises(
            EmbeddingError,
            match=rf"embedded 1 of 2 object\(s\); the embedder failed for 1 \(pk={bad.pk}: ",
        ),
    ):
        run_embed_objects("embedapp.Note", "@default", [str(good.pk), str(bad.pk)])
    assert rows_of(good).exists() and not rows_of(bad).exists()


class ThreeDimensions(vectorsearch.embedders.BaseEmbedder):
    """A tiny embedder for the 3-dimension columns of tests/testapp."""

    backend_name = "three"

    @property
    def dimensions(self):
        return 3

    def embed_documents(self, texts):
        return np.asarray([[len(t), t.count("a") + 1, 1.0] for t in texts], dtype=np.float32)


def test_a_halfvec_column_is_filled_and_searched():
    from tests.testapp.models import Item
    from vectorsearch.registry import Registry

    config = {
        "default": {"BACKEND": "vectorsearch.embedders.HashingEmbedder"},
        "three": {"BACKEND": "tests.test_sync.ThreeDimensions"},
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=config):
        registration = Registry().register(
            Item,
            fields=["name"],
            vector_field="half_embedding",
            embedder="three",
            connect_signals=False,
        )
        Item.objects.bulk_create([Item(name="aaaa"), Item(name="bb")])
        assert backfill(registration).embedded == 2
        stored = dict(Item.objects.values_list("name", "half_embedding"))
        assert list(stored["aaaa"]) == [4.0, 5.0, 1.0] and list(stored["bb"]) == [2.0, 1.0, 1.0]
        assert status(registration).current == 2


def test_a_models_own_column_is_not_searched_with_another_embedders_vectors():
    Article.objects.create(title="Cats purr")
    changed = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 256, "ngram_range": (2, 4)},  # same size, other identity
        },
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=changed):
        assert list(vectorsearch.search(Article, "cats")) == []
        assert status(registry.get(Article)).stale == 1
        backfill(registry.get(Article))
        assert [a.title for a in vectorsearch.search(Article, "cats")] == ["Cats purr"]


def test_saving_again_keeps_the_vector_and_does_not_re_embed():
    article = Article.objects.create(title="Cats", body="purr")
    first = rows_of(article).get()
    assert article.embedding is not None  # the instance got the vector the save wrote
    article.save()
    article.refresh_from_db()
    assert article.embedding is not None
    assert rows_of(article).get().updated_at == first.updated_at


def test_a_text_similar_to_on_a_column_never_ranks_another_embedders_vectors():
    Article.objects.create(title="Cats purr", body="")
    other = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 256, "word_weight": 0.9},  # same size, another identity
        },
        "small": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 32},
        },
    }
    assert [a.title for a in Article.objects.similar_to("cats", k=5)] == ["Cats purr"]
    with override_settings(VECTORSEARCH_EMBEDDERS=other):
        assert list(Article.objects.similar_to("cats", k=5)) == []
        Article.objects.create(title="Cats nap", body="")
        assert [a.title for a in Article.objects.similar_to("cats", k=5)] == ["Cats nap"]


def test_saving_a_multi_table_child_or_a_proxy_embeds_the_registered_parent():
    from tests.embedapp.models import LongPost, PinnedPost, Post

    child = LongPost.objects.create(title="Cats purr", summary="")
    pinned = PinnedPost.objects.create(title="Dogs bark")
    found = [p.pk for p in vectorsearch.search(Post.objects.all(), "cats purr", k=2)]
    assert found[0] == child.pk
    assert set(found) == {child.pk, pinned.pk}
    assert status(registry.get(Post)).missing == 0

    child.title = "Owls hoot"
    child.save()
    assert status(registry.get(Post)).stale == 0
    assert vectorsearch.search(Post.objects.all(), "owls hoot", k=1)[0].pk == child.pk

    child.delete()
    PinnedPost.objects.filter(pk=pinned.pk).delete()
    assert not Embedding.objects.exists()


def test_a_proxy_model_cannot_be_registered():
    from tests.embedapp.models import PinnedPost

    with pytest.raises(
        TypeError,
        match=r"embedapp\.PinnedPost is a proxy model; register its concrete model embedapp\.Post",
    ):
        vectorsearch.register(PinnedPost, fields=["title"])


def test_save_field_names_given_as_attnames_are_source_fields():
    # save(update_fields=["category_id"]) names the category field: its text may have changed.
    from tests.queryapp.models import Article as QueryArticle
    from vectorsearch.signals import _field_names

    assert _field_names(QueryArticle, ["category_id", "title"]) == {"category", "title"}


try:
    from django_tasks.backends.base import BaseTaskBackend
except ImportError:  # pragma: no cover - Django 6.x ships django.tasks
    from django.tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]


class DownQueueBackend(BaseTaskBackend):
    """A task backend whose queue is unreachable."""

    def enqueue(self, task, args, kwargs):
        raise ConnectionError("the queue is down")


@pytest.mark.django_db(transaction=True)
def test_a_queue_that_is_down_does_not_fail_the_save(caplog):
    pytest.importorskip("django_tasks")
    with override_settings(
        VECTORSEARCH={"SYNC": "task"},
        TASKS={"default": {"BACKEND": "tests.test_sync.DownQueueBackend"}},
    ):
        note = Note.objects.create(title="Cats purr")  # autocommit: enqueued at once
    assert Note.objects.filter(pk=note.pk).exists()  # saved, and no exception reached here
    assert "the queue is down" in caplog.text
