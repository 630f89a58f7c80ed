"""register(), the registry's look-ups and its start-up checks (vectorsearch.E020-E026, W020)."""

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

import vectorsearch
from tests.embedapp.models import Article, Note, Tag
from tests.testapp.models import Document, Item
from vectorsearch import InvalidQuery, NotRegistered
from vectorsearch.checks import check_registrations
from vectorsearch.conf import get_settings
from vectorsearch.exceptions import ImproperlyConfiguredVectorSearch
from vectorsearch.ranking.search import query_vector
from vectorsearch.registry import Registry, registry


@pytest.fixture
def scratch(monkeypatch):
    """A registry of its own, as the site's, so checks see only what a test registers."""
    fresh = Registry()
    monkeypatch.setattr("vectorsearch.registry.registry", fresh)
    return fresh


def ids(errors):
    return sorted(e.id for e in errors)


def test_the_test_apps_registrations_pass_the_checks():
    assert check_registrations() == []
    assert registry.labels() == [
        "embedapp.Article.embedding",
        "embedapp.Note@default",
        "embedapp.Post@default",
        "embedapp.Tag@small",
    ]


def test_unknown_source_field_and_filter_are_check_errors(scratch):
    scratch.register(Note, fields=["title", "summary"], filters=["colour"], connect_signals=False)
    errors = check_registrations()
    assert ids(errors) == ["vectorsearch.E020", "vectorsearch.E025"]
    assert "fields= names 'summary', which is not a field of embedapp.Note" in errors[0].msg
    assert "Fields: id, title, body, category" in errors[0].hint


@pytest.mark.parametrize(
    ("model", "vector_field", "message"),
    [
        (Article, "vector", "vector_field='vector' is not a field"),
        (Article, "title", "vector_field='title' is a CharField"),
        (Item, "binary_embedding", "vector_field='binary_embedding' is a BitField"),
    ],
)
def test_a_vector_field_that_is_not_a_dense_vector_is_a_check_error(
    scratch, model, vector_field, message
):
    scratch.register(
        model,
        fields=["name" if model is Item else "title"],
        vector_field=vector_field,
        connect_signals=False,
    )
    errors = [e for e in check_registrations() if e.id == "vectorsearch.E021"]
    assert len(errors) == 1 and message in errors[0].msg


def test_unknown_embedder_and_dimension_mismatch_are_check_errors(scratch):
    scratch.register(Note, fields=["title"], embedder="nope", connect_signals=False)
    scratch.register(Document, fields=["content"], vector_field="embedding", connect_signals=False)
    errors = check_registrations()
    assert ids(errors) == ["vectorsearch.E022", "vectorsearch.E023"]
    assert "Could not find an embedder called 'nope'" in errors[0].msg
    assert "'embedding' has 3 dimensions but embedder 'default'" in errors[1].msg


def test_task_mode_without_a_tasks_framework_is_a_check_error(scratch, monkeypatch):
    scratch.register(Note, fields=["title"], sync="task", connect_signals=False)
    assert check_registrations() == []  # django-tasks is installed here
    monkeypatch.setattr("vectorsearch.tasks.task_decorator", lambda: None)
    assert ids(check_registrations()) == ["vectorsearch.E024"]


def test_an_embedder_too_large_to_index_is_a_warning(scratch):
    big = {
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": 5000},
        }
    }
    with override_settings(VECTORSEARCH_EMBEDDERS=big):
        scratch.register(Note, fields=["title"], connect_signals=False)
        assert ids(check_registrations()) == ["vectorsearch.W020"]


def test_check_errors_stop_manage_py_at_start_up(scratch):
    scratch.register(Note, fields=["nope"], connect_signals=False)
    with pytest.raises(SystemCheckError, match=r"vectorsearch.E020"):
        call_command("check")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fields": "title"}, TypeError, "non-empty list of field names"),
        ({"fields": []}, TypeError, "non-empty list of field names"),
        (
            {"fields": ["title"], "sync": "later"},
            ValueError,
            "must be one of immediate, task, manual",
        ),
        (
            {"fields": ["title"], "distance": "manhattan"},
            ValueError,
            "Unknown distance 'manhattan'",
        ),
    ],
)
def test_bad_register_arguments_raise_at_once(scratch, kwargs, error, message):
    with pytest.raises(error, match=message):
        scratch.register(Note, connect_signals=False, **kwargs)


def test_registering_twice_is_refused_and_a_string_label_works(scratch):
    scratch.register("embedapp.Note", fields=["title"], connect_signals=False)
    with pytest.raises(ValueError, match=r"embedapp.Note@default is registered already"):
        scratch.register(Note, fields=["body"], connect_signals=False)
    scratch.register(Note, fields=["body"], embedder="small", connect_signals=False)
    with pytest.raises(
        NotRegistered, match=r"has 2 registrations .* pass vector_field= or embedder="
    ):
        scratch.get(Note)
    assert scratch.get(Note, embedder="small").fields == ("body",)
    scratch.unregister(Note, "@small")
    assert [r.key for r in scratch.for_model(Note)] == ["@default"]


def test_select_by_label_is_case_insensitive_and_lists_known_ones():
    assert [r.label for r in registry.select(["EmbedApp.note"])] == ["embedapp.Note@default"]
    assert [r.label for r in registry.select(["embedapp.Tag@small"])] == ["embedapp.Tag@small"]
    with pytest.raises(
        NotRegistered, match=r"registered: embedapp.Article.embedding, embedapp.Note"
    ):
        registry.select(["shop.Product"])


def test_query_vector_uses_the_embedder_registered_for_the_field():
    registration = registry.get(Article, vector_field="embedding")
    vector = query_vector(registration, "cats")
    np.testing.assert_allclose(vector, vectorsearch.embedders["default"].embed_one("cats"))
    with pytest.raises(InvalidQuery, match=r"no words the embedder knows"):
        query_vector(registration, "!!!")


def test_text_is_the_fields_joined_or_the_callables():
    note = Note(title="Cats", body="")
    assert registry.get(Note).get_text(note) == "Cats"
    note.body = "purr"
    assert registry.get(Note).get_text(note) == "Cats\n\npurr"
    assert registry.get(Tag).get_text(Tag(slug="a", label="B")) == "a: B"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"SYNC": "sometimes"}, "VECTORSEARCH\\['SYNC'\\] must be 'immediate', 'task' or 'manual'"),
        ({"BATCH_SIZE": 0}, "VECTORSEARCH\\['BATCH_SIZE'\\] must be a positive whole number"),
    ],
)
def test_bad_settings_are_reported(setting, message):
    with (
        override_settings(VECTORSEARCH=setting),
        pytest.raises(ImproperlyConfiguredVectorSearch, match=message),
    ):
        get_settings()


def test_a_many_valued_relation_as_source_text_is_a_check_error(scratch):
    from django.contrib.auth.models import User

    scratch.register(User, fields=["username", "groups"], connect_signals=False)
    (error,) = check_registrations()
    assert error.id == "vectorsearch.E020" and "'groups', a relation to many objects" in error.msg


@pytest.mark.django_db
def test_a_foreign_key_in_the_source_text_is_read_in_the_same_query(
    scratch, django_assert_num_queries
):
    from django.contrib.auth.models import Permission

    from vectorsearch.sync import iter_items

    registration = scratch.register(
        Permission, fields=["name", "content_type"], connect_signals=False
    )
    count = Permission.objects.count()
    with django_assert_num_queries(2):  # one page of every row, one empty page that ends it
        (batch,) = [items for _, items in iter_items(registration, batch_size=count)]
    permission = Permission.objects.select_related("content_type").order_by("pk").first()
    assert batch[0].text == f"{permission.name}\n\n{permission.content_type}"
    # The admin's re-embed action reads the selected objects the same way: one query.
    from vectorsearch.sync import reading_sources

    with django_assert_num_queries(1):
        texts = [
            str(p.content_type) for p in reading_sources(registration, Permission.objects.all())
        ]
    assert len(texts) == count
