"""vectorsearch_import: .npy and .jsonl through COPY BINARY, all or nothing."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

import vectorsearch
from tests.embedapp.models import Article, Note
from vectorsearch.models import Embedding
from vectorsearch.registry import registry
from vectorsearch.sync import status

pytestmark = pytest.mark.django_db

DIMS = 256


def run(*args, **options):
    out = StringIO()
    call_command("vectorsearch_import", *args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def notes():
    return Note.objects.bulk_create([Note(title=f"note {i}") for i in range(5)])


def npy(tmp_path, vectors, ids):
    np.save(tmp_path / "v.npy", np.asarray(vectors, dtype=np.float32))
    np.save(tmp_path / "ids.npy", np.asarray(ids))
    return str(tmp_path / "v.npy"), str(tmp_path / "ids.npy")


def test_import_npy_into_the_generic_table(tmp_path, notes):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, DIMS)).astype(np.float32)
    file, ids = npy(tmp_path, vectors, [n.pk for n in notes])
    out = run("embedapp.Note", file, ids=ids)
    assert "embedapp.Note@default: imported 5 vectors of 256 dimensions" in out
    stored = {int(e.object_id): e for e in Embedding.objects.all()}
    for note, vector in zip(notes, vectors, strict=True):
        np.testing.assert_allclose(stored[note.pk].vector, vector, rtol=1e-6)
        assert stored[note.pk].identity == vectorsearch.embedders["default"].identity
        assert stored[note.pk].source_hash == ""
    counts = status(registry.get(Note))
    assert (counts.unknown, counts.missing) == (5, 0)
    # The backfill keeps imported vectors; a save re-embeds from the text.
    call_command("vectorsearch_backfill", "embedapp.Note", stdout=StringIO())
    np.testing.assert_allclose(
        stored[notes[0].pk].vector, Embedding.objects.get(object_id=str(notes[0].pk)).vector
    )
    notes[0].save()
    assert Embedding.objects.get(object_id=str(notes[0].pk)).source_hash != ""
    # Searchable right away.
    assert vectorsearch.search(Note, vectors[3].tolist(), k=1)[0].pk == notes[3].pk


def test_import_jsonl_into_a_models_own_column(tmp_path):
    articles = Article.objects.bulk_create([Article(title=f"a{i}") for i in range(3)])
    path = tmp_path / "vectors.jsonl"
    path.write_text(
        "\n".join(json.dumps({"id": a.pk, "vector": [float(a.pk)] * DIMS}) for a in articles)
    )
    run("embedapp.Article", str(path))
    for article in Article.objects.all():
        assert article.embedding == pytest.approx([float(article.pk)] * DIMS)
    with pytest.raises(CommandError, match=r"in 'embedding' already\. Pass --replace"):
        run("embedapp.Article", str(path))
    run("embedapp.Article", str(path), replace=True)


def test_existing_vectors_need_replace_and_nothing_is_half_imported(tmp_path, notes):
    Note.objects.get(pk=notes[2].pk).save()  # embeds notes[2] on save
    file, ids = npy(tmp_path, np.ones((5, DIMS)), [n.pk for n in notes])
    with pytest.raises(CommandError, match=r"have vectors already\. Pass --replace"):
        run("embedapp.Note", file, ids=ids)
    assert Embedding.objects.count() == 1
    run("embedapp.Note", file, ids=ids, replace=True)
    assert Embedding.objects.count() == 5
    assert all(e.vector == pytest.approx([1.0] * DIMS) for e in Embedding.objects.all())


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.ones((2, 3)), None, "takes vectors of 256 dimensions; the file's have 3"),
        (np.ones((3, DIMS)), None, r"2 ids for 3 vectors"),
        (np.full((2, DIMS), np.nan), None, r"2 vector\(s\) hold NaN"),
        (
            np.ones((2, DIMS)),
            ["999998", "999999"],
            r"2 id\(s\) match no embedapp.Note \(e.g. 999998, 999999\)",
        ),
    ],
)
def test_bad_files_are_refused_before_anything_is_written(tmp_path, notes, vectors, ids, message):
    file, ids_file = npy(tmp_path, vectors, ids or [notes[0].pk, notes[1].pk])
    with pytest.raises(CommandError, match=message):
        run("embedapp.Note", file, ids=ids_file)
    assert Embedding.objects.count() == 0


def test_npy_without_ids_and_unknown_types_say_what_to_pass(tmp_path, notes):
    file, _ = npy(tmp_path, np.ones((1, DIMS)), [1])
    with pytest.raises(CommandError, match="pass --ids FILE"):
        run("embedapp.Note", file)
    (tmp_path / "v.csv").write_text("1,2")
    with pytest.raises(CommandError, match=r"Unknown file type '\.csv'"):
        run("embedapp.Note", str(tmp_path / "v.csv"))
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(CommandError, match="line 1: expected"):
        run("embedapp.Note", str(tmp_path / "bad.jsonl"))


def test_ids_are_read_as_the_primary_key_reads_them(tmp_path, notes):
    # "007" names the same row as 7: stored as "7", it is found by search and status.
    padded = [f"00{n.pk}" for n in notes]
    file, ids = npy(tmp_path, np.ones((5, DIMS)), padded)
    run("embedapp.Note", file, ids=ids)
    assert sorted(Embedding.objects.values_list("object_id", flat=True)) == sorted(
        str(n.pk) for n in notes
    )
    assert status(registry.get(Note)).missing == 0


@pytest.mark.parametrize("bad", ["abc", "2.5"])
def test_an_id_that_is_no_primary_key_is_a_command_error(tmp_path, notes, bad):
    path = tmp_path / "vectors.jsonl"
    path.write_text(json.dumps({"id": bad, "vector": [1.0] * DIMS}))
    with pytest.raises(
        CommandError, match=f"Id '{bad}' \\(record 1\\) is not a valid primary key of embedapp.Note"
    ):
        run("embedapp.Note", str(path))
    assert Embedding.objects.count() == 0
