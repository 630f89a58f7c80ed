"""The save and delete receivers (vectorsearch.signals): registrations made or dropped at any
time, connect_signals=False per registration, and no cost for models that are not registered."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

import vectorsearch
from tests.embedapp.models import Note
from tests.testapp.models import Document
from vectorsearch.models import Embedding
from vectorsearch.registry import registry
from vectorsearch.signals import connect_model
from vectorsearch.sync import backfill

pytestmark = pytest.mark.django_db


def keys_of(obj):
    ct = ContentType.objects.get_for_model(type(obj))
    return sorted(
        Embedding.objects.filter(content_type=ct, object_id=str(obj.pk)).values_list(
            "key", flat=True
        )
    )


@pytest.fixture
def site_registry(monkeypatch):
    """The site's registry, changed through the public API by a test and put back afterwards."""
    monkeypatch.setattr(registry, "_registrations", dict(registry._registrations))
    yield registry
    monkeypatch.undo()
    connect_model(Note)  # the registrations were put back behind the receivers' back


def test_a_model_unregistered_and_registered_again_after_start_up_follows_each_change(
    site_registry,
):
    vectorsearch.unregister(Note)
    note = Note.objects.create(title="Cats purr")
    assert keys_of(note) == []  # no registration: saves do nothing

    vectorsearch.register(Note, fields=["title", "body"])  # after ready(), as tests and sites do
    note.save()
    assert keys_of(note) == ["@default"]
    note.delete()
    assert not Embedding.objects.exists()


def test_connect_signals_false_holds_for_its_registration_only(site_registry):
    vectorsearch.unregister(Note)
    vectorsearch.register(Note, fields=["title"], connect_signals=False)
    vectorsearch.register(Note, fields=["title"], embedder="small")
    note = Note.objects.create(title="Cats purr")
    assert keys_of(note) == ["@small"]  # the connected registration only
    # The backfill is what writes the other one.
    assert backfill(registry.get(Note, embedder="default")).embedded == 1
    assert keys_of(note) == ["@default", "@small"]
    note.delete()  # a connected registration: the object's vectors go with it
    assert not Embedding.objects.exists()


def test_a_registration_without_signals_is_left_alone_by_saves_and_deletes(site_registry):
    vectorsearch.unregister(Note)
    registration = vectorsearch.register(Note, fields=["title"], connect_signals=False)
    note = Note.objects.create(title="Cats purr")
    note.title = "Dogs bark"
    note.save()
    assert keys_of(note) == []
    backfill(registration)
    note.delete()
    assert Embedding.objects.count() == 1  # an orphan now, which the next backfill removes
    assert backfill(registration).orphans_deleted == 1


def test_a_model_that_is_not_registered_keeps_djangos_fast_delete():
    Document.objects.bulk_create([Document(content=f"d{i}", embedding=[1, 2, 3]) for i in range(3)])
    with CaptureQueriesContext(connection) as queries:
        Document.objects.all().delete()
    # One DELETE, no SELECT of the rows to send signals for them.
    assert [q["sql"].split()[0] for q in queries] == ["DELETE"]


def test_a_registered_model_deleted_through_a_queryset_loses_its_vectors():
    notes = [Note.objects.create(title=f"note {i}") for i in range(3)]
    assert Embedding.objects.count() == 3
    Note.objects.filter(pk__in=[n.pk for n in notes[:2]]).delete()
    assert Embedding.objects.count() == 1
