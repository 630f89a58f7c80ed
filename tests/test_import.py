"""vectorsearch_import: .npy and .jsonl through COPY BINARY, all or nothing."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

import vectorsearch
from tests.embedapp.models import Article, Note, Tag
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
        (
            np.ones((3, DIMS)),
            ["{0}", "{1}", "0{0}"],  # the same primary key as the first, written otherwise
            r"The ids are not unique: {0} is the id of vectors 1 and 3 \(counting from 1\)",
        ),
        (
            np.ones((3, DIMS)),
            ["{0}", "", " "],
            r"2 id\(s\) are empty \(vector 2, 3, counting from 1\)",
        ),
    ],
)
def test_bad_files_are_refused_before_anything_is_written(tmp_path, notes, vectors, ids, message):
    pks = [notes[0].pk, notes[1].pk]
    ids = [i.format(*pks) for i in ids] if ids else pks
    file, ids_file = npy(tmp_path, vectors, ids)
    with pytest.raises(CommandError, match=message.format(*pks)):
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
        CommandError,
        match=f"Id '{bad}' \\(record 1, line 1\\) is not a valid primary key of embedapp.Note",
    ):
        run("embedapp.Note", str(path))
    assert Embedding.objects.count() == 0


# -- --identity, .ndjson, a text --ids file -------------------------------------------------------

OTHER_MODEL = "openai:text-embedding-3-small:256"


def test_identity_records_the_model_that_made_the_vectors_and_they_count_as_stale(tmp_path, notes):
    vectors = np.random.default_rng(1).normal(size=(5, DIMS)).astype(np.float32)
    file, ids = npy(tmp_path, vectors, [n.pk for n in notes])
    run("embedapp.Note", file, ids=ids, identity=OTHER_MODEL)
    assert set(Embedding.objects.values_list("identity", flat=True)) == {OTHER_MODEL}
    np.testing.assert_allclose(
        Embedding.objects.get(object_id=str(notes[3].pk)).vector, vectors[3], rtol=1e-6
    )
    counts = status(registry.get(Note))
    assert (counts.stale, counts.unknown, counts.current, counts.missing) == (5, 0, 0, 0)
    # Another model's vectors lie in another space: searches never rank them...
    assert list(vectorsearch.search(Note, vectors[3].tolist(), k=1)) == []
    # ...and the backfill replaces them with the registered embedder's.
    call_command("vectorsearch_backfill", "embedapp.Note", stdout=StringIO())
    registered = vectorsearch.embedders["default"].identity
    assert set(Embedding.objects.values_list("identity", flat=True)) == {registered}
    assert status(registry.get(Note)).current == 5


def test_identity_is_recorded_for_a_models_own_column(tmp_path):
    articles = Article.objects.bulk_create([Article(title=f"a{i}") for i in range(2)])
    path = tmp_path / "vectors.jsonl"
    path.write_text(
        "\n".join(json.dumps({"id": a.pk, "vector": [float(a.pk)] * DIMS}) for a in articles)
    )
    run("embedapp.Article", str(path), identity=OTHER_MODEL)
    for article in Article.objects.all():
        assert article.embedding == pytest.approx([float(article.pk)] * DIMS)
    bookkeeping = Embedding.objects.filter(key="embedding")
    assert sorted(bookkeeping.values_list("object_id", "identity")) == sorted(
        (str(a.pk), OTHER_MODEL) for a in articles
    )
    assert status(registry.get(Article)).stale == 2
    assert list(vectorsearch.search(Article, [float(articles[0].pk)] * DIMS, k=2)) == []


def test_ndjson_is_read_like_jsonl(tmp_path, notes):
    path = tmp_path / "vectors.NDJSON"
    lines = [json.dumps({"id": n.pk, "vector": [float(i + 1)] * DIMS}) for i, n in enumerate(notes)]
    path.write_text("\n\n".join(lines) + "\n")  # blank lines are skipped
    out = run("embedapp.Note", str(path))
    assert "embedapp.Note@default: imported 5 vectors of 256 dimensions" in out
    for i, note in enumerate(notes):
        stored = Embedding.objects.get(object_id=str(note.pk))
        assert stored.vector == pytest.approx([float(i + 1)] * DIMS)
        assert stored.source_hash == ""


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"id": 3, "vector": [1.0, 2.0', "Expecting"),  # cut short
        ('{"id": 3}', "'vector'"),
        ('{"vector": [1.0]}', "'id'"),
        ("[3, [1.0]]", "list indices"),
        ("null", "not subscriptable"),
    ],
)
def test_a_malformed_ndjson_line_is_named_and_nothing_is_imported(
    tmp_path, notes, bad_line, reason
):
    path = tmp_path / "vectors.ndjson"
    good = [json.dumps({"id": n.pk, "vector": [1.0] * DIMS}) for n in notes[:2]]
    # Line numbers count blank lines, so they match what an editor shows.
    path.write_text(f"{good[0]}\n\n{good[1]}\n{bad_line}\n")
    with pytest.raises(CommandError) as info:
        run("embedapp.Note", str(path))
    message = str(info.value)
    assert message.startswith(f'{path}, line 4: expected {{"id": ..., "vector": [...]}} (')
    assert reason in message
    assert Embedding.objects.count() == 0


@pytest.mark.parametrize(
    ("bad_vector", "reason"),
    [
        ([1.0] * 3, f"the vector has 3 numbers; embedapp.Note@default takes {DIMS}."),
        (
            ["x"] * DIMS,
            'the vector holds something other than numbers: "x" (number 1); write numbers '
            "unquoted, and no true/false/null.",
        ),
        ("abc", 'the vector must be a list of numbers, not "abc".'),
    ],
    ids=["too-short", "non-numbers", "a-string"],
)
def test_a_line_with_a_bad_vector_is_named(tmp_path, notes, bad_vector, reason):
    path = tmp_path / "vectors.ndjson"
    path.write_text(
        json.dumps({"id": notes[0].pk, "vector": [1.0] * DIMS})
        + "\n"
        + json.dumps({"id": notes[1].pk, "vector": bad_vector})
        + "\n"
    )
    with pytest.raises(CommandError) as info:
        run("embedapp.Note", str(path))
    assert Embedding.objects.count() == 0
    assert str(info.value) == f"{path}, line 2 (id {notes[1].pk}): {reason}"


def test_ids_from_a_text_file_one_per_line(tmp_path, notes):
    vectors = np.random.default_rng(2).normal(size=(5, DIMS)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    # Any order, padded with spaces, blank lines and a Windows line ending: row i is ids line i.
    order = [notes[4], notes[0], notes[3], notes[1], notes[2]]
    (tmp_path / "ids.txt").write_text(
        f"{order[0].pk}\n  {order[1].pk}  \n\n{order[2].pk}\r\n{order[3].pk}\n{order[4].pk}\n\n"
    )
    run("embedapp.Note", str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"))
    for note, vector in zip(order, vectors, strict=True):
        np.testing.assert_allclose(
            Embedding.objects.get(object_id=str(note.pk)).vector, vector, rtol=1e-6
        )
    assert status(registry.get(Note)).unknown == 5


def test_a_text_ids_file_holds_text_primary_keys(tmp_path):
    Tag.objects.bulk_create([Tag(slug="cats", label="Cats"), Tag(slug="dogs", label="Dogs")])
    vectors = np.stack([np.full(32, 0.5), np.full(32, -0.5)]).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    (tmp_path / "ids.txt").write_text("dogs\ncats\n")
    run("embedapp.Tag", str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"))
    stored = dict(Embedding.objects.values_list("object_id", "vector"))
    assert stored["dogs"] == pytest.approx([0.5] * 32)
    assert stored["cats"] == pytest.approx([-0.5] * 32)
    # One id short of the vectors: the lines are counted, blank ones left out.
    (tmp_path / "ids.txt").write_text("dogs\n\n")
    with pytest.raises(CommandError, match=r"1 ids for 2 vectors; they must match"):
        run("embedapp.Tag", str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt"), replace=True)


# -- ids out of range, non-numbers, counts and lines in the messages (issue #13 D3, D4) ---------


def jsonl(tmp_path, records):
    path = tmp_path / "vectors.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.parametrize("label", ["embedapp.Note", "embedapp.Article"])
def test_an_id_beyond_the_primary_keys_range_is_named_before_anything_is_written(tmp_path, label):
    articles = Article.objects.bulk_create([Article(title="a")])
    notes = Note.objects.bulk_create([Note(title="n")])
    pk = (notes if label.endswith("Note") else articles)[0].pk
    path = jsonl(
        tmp_path, [{"id": pk, "vector": [1.0] * DIMS}, {"id": 2**70, "vector": [1.0] * DIMS}]
    )
    with pytest.raises(CommandError) as info:
        run(label, path)
    assert str(info.value).startswith(
        f"Id '{2**70}' (record 2, line 2) is out of range for the primary key of {label} "
        "(BigAutoField: -9223372036854775808 to 9223372036854775807)"
    )
    assert Embedding.objects.count() == 0
    assert not Article.objects.filter(embedding__isnull=False).exists()
    # The same from a .npy file and its --ids: the record is named.
    file, ids = npy(tmp_path, np.ones((2, DIMS)), [str(pk), str(-(2**65))])
    with pytest.raises(CommandError, match=r"Id '-36893488147419103232' \(record 2\) is out of"):
        run(label, file, ids=ids)


@pytest.mark.parametrize(
    ("bad", "shown"), [("0.5", '"0.5"'), (True, "true"), (None, "null"), ([1.0], "[1.0]")]
)
def test_strings_booleans_and_nulls_inside_a_vector_are_refused(tmp_path, notes, bad, shown):
    vector = [1.0] * DIMS
    vector[7] = bad
    path = jsonl(
        tmp_path,
        [{"id": notes[0].pk, "vector": [1.0] * DIMS}, {"id": notes[1].pk, "vector": vector}],
    )
    with pytest.raises(CommandError) as info:
        run("embedapp.Note", path)
    assert str(info.value) == (
        f"{path}, line 2 (id {notes[1].pk}): the vector holds something other than numbers: "
        f"{shown} (number 8); write numbers unquoted, and no true/false/null."
    )
    assert Embedding.objects.count() == 0


def test_every_vector_beyond_float32_is_counted_and_the_first_are_named(tmp_path):
    notes = Note.objects.bulk_create([Note(title=f"n{i}") for i in range(100)])
    # Some finite rows between the bad ones.
    vectors = np.full((100, DIMS), 1e300)
    vectors[::10] = 0.5
    file, ids = npy_f64(tmp_path, vectors, [n.pk for n in notes])
    with pytest.raises(CommandError) as info:
        run("embedapp.Note", file, ids=ids)
    message = str(info.value)
    assert message.startswith(
        "90 vector(s) hold NaN, infinity or a number beyond float32 (first: "
        f"id {notes[1].pk} (record 2); id {notes[2].pk} (record 3); "
    )
    assert f"id {notes[11].pk} (record 12)); nothing was imported." in message
    assert Embedding.objects.count() == 0


def npy_f64(tmp_path, vectors, ids):
    np.save(tmp_path / "v.npy", np.asarray(vectors, dtype=np.float64))
    np.save(tmp_path / "ids.npy", np.asarray(ids))
    return str(tmp_path / "v.npy"), str(tmp_path / "ids.npy")


@pytest.mark.parametrize("label", ["embedapp.Note", "embedapp.Article"])
def test_a_short_first_line_is_the_one_blamed(tmp_path, label):
    model = Note if label.endswith("Note") else Article
    objects = model.objects.bulk_create([model(title=f"o{i}") for i in range(3)])
    path = jsonl(
        tmp_path,
        [{"id": objects[0].pk, "vector": [1.0] * 3}]
        + [{"id": o.pk, "vector": [1.0] * DIMS} for o in objects[1:]],
    )
    with pytest.raises(CommandError) as info:
        run(label, path)
    takes = f"{label}@default" if model is Note else f"{label}.embedding"
    assert str(info.value) == (
        f"{path}, line 1 (id {objects[0].pk}): the vector has 3 numbers; {takes} takes {DIMS}."
    )
    assert Embedding.objects.count() == 0


def test_into_a_models_column_an_id_of_no_object_imports_nothing(tmp_path):
    articles = Article.objects.bulk_create([Article(title=f"a{i}") for i in range(3)])
    gone = articles[-1].pk + 1000
    ids = [articles[0].pk, gone, articles[1].pk]
    file, ids_file = npy(tmp_path, np.ones((3, DIMS)), ids)
    with pytest.raises(CommandError) as info:
        run("embedapp.Article", file, ids=ids_file)
    assert str(info.value) == (
        f"1 id(s) match no embedapp.Article (e.g. {gone}); nothing was imported."
    )
    assert not Article.objects.filter(embedding__isnull=False).exists()
    assert Embedding.objects.count() == 0
    # Both kinds of conflict: the ids of no object are named first.
    first, first_ids = npy(tmp_path, np.ones((1, DIMS)), [articles[0].pk])
    run("embedapp.Article", first, ids=first_ids)
    file, ids_file = npy(tmp_path, np.ones((3, DIMS)), ids)
    with pytest.raises(CommandError, match=r"1 id\(s\) match no embedapp.Article"):
        run("embedapp.Article", file, ids=ids_file)
    file, ids_file = npy(tmp_path, np.ones((2, DIMS)), ids[::2])
    with pytest.raises(CommandError, match=r"^1 of these embedapp.Article objects have a vector"):
        run("embedapp.Article", file, ids=ids_file)
    assert Embedding.objects.count() == 1


def test_replace_into_a_column_rewrites_the_bookkeeping_of_embedded_objects(tmp_path):
    # Saved objects are embedded on save: current, with a source hash each.
    articles = [Article.objects.create(title=f"a{i}") for i in range(3)]
    assert status(registry.get(Article)).current == 3
    vectors = np.random.default_rng(3).normal(size=(2, DIMS)).astype(np.float32)
    file, ids = npy(tmp_path, vectors, [articles[0].pk, articles[2].pk])
    run("embedapp.Article", file, ids=ids, replace=True)
    rows = {
        object_id: (identity, source_hash)
        for object_id, identity, source_hash in Embedding.objects.filter(
            key="embedding"
        ).values_list("object_id", "identity", "source_hash")
    }
    identity = vectorsearch.embedders["default"].identity
    assert len(rows) == 3  # one row per object, none doubled
    assert rows[str(articles[0].pk)] == rows[str(articles[2].pk)] == (identity, "")
    assert rows[str(articles[1].pk)][1] != ""  # untouched
    counts = status(registry.get(Article))
    assert (counts.unknown, counts.current) == (2, 1)
    stored = Article.objects.get(pk=articles[2].pk).embedding
    np.testing.assert_allclose(stored, vectors[1], rtol=1e-6)
