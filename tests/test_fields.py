import numpy as np
import pytest
from django import forms
from django.core import serializers
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import Subquery
from django.test.utils import CaptureQueriesContext, isolate_apps
from pgvector import Bit, SparseVector, Vector

from tests.testapp.models import Document, Item, LegacyItem
from vectorsearch import BitField, HalfVectorField, HnswIndex, SparseVectorField, VectorField
from vectorsearch.fields import decode_dense

BAD_VECTORS = [
    ([1.0, 2.0], "Expected a vector of 3 dimensions, got 2."),
    ([1.0, 2.0, 3.0, 4.0], "Expected a vector of 3 dimensions, got 4."),
    ([1.0, float("nan"), 3.0], "Element 1 of the vector is NaN (not a number)."),
    ([float("inf"), 2.0, 3.0], "Element 0 of the vector is infinite."),
    ([1.0, 2.0, float("-inf")], "Element 2 of the vector is infinite."),
    ([1.0, 2.0, 1e39], "Element 2 of the vector is 1e+39, outside the range a vector can store"),
    ("[1, two, 3]", 'Element 1 of the vector is not a number: "two".'),
    ([[1.0, 2.0, 3.0]], "must be a flat list of numbers"),
    ([], "Expected a vector of 3 dimensions, got 0."),
]


@pytest.mark.parametrize(("value", "message"), BAD_VECTORS)
def test_full_clean_names_the_problem_and_position(value, message):
    doc = Document(content="x", embedding=value)
    with pytest.raises(ValidationError) as info:
        doc.full_clean()
    assert message in " ".join(info.value.message_dict["embedding"])


@pytest.mark.django_db
@pytest.mark.parametrize(("value", "message"), BAD_VECTORS)
def test_save_without_full_clean_is_stopped_before_the_database(
    value, message, django_assert_num_queries
):
    # The savepoint's own queries stay outside the count.
    with pytest.raises(ValidationError, match="vector"), transaction.atomic():  # noqa: SIM117
        with django_assert_num_queries(0):
            Document(content="x", embedding=value).save()
    assert Document.objects.count() == 0


@pytest.mark.parametrize(
    "value",
    [
        [1, 2, 3],
        (1, 2, 3),
        np.array([1, 2, 3], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.float64),
        Vector([1, 2, 3]),
        "[1, 2, 3]",
        " 1,2,3 ",
    ],
)
def test_lists_arrays_and_text_are_accepted(value):
    cleaned = VectorField(dimensions=3).clean(value, None)
    assert cleaned == [1.0, 2.0, 3.0]
    assert type(cleaned) is list


def test_full_clean_accepts_numpy_arrays_in_blank_fields():
    item = Item(embedding=np.array([1.0, 2.0, 3.0]), half_embedding=np.array([1, 2, 3]))
    item.full_clean()
    assert item.embedding == [1.0, 2.0, 3.0]
    with pytest.raises(ValidationError, match="Element 0 of the vector is NaN"):
        Item(embedding=np.array([np.nan, 1, 2])).full_clean()


@pytest.mark.django_db
def test_numpy_arrays_round_trip_as_lists_like_pgvector_django():
    doc = Document.objects.create(content="x", embedding=np.array([0.5, 0.25, 0.125]))
    doc.refresh_from_db()
    assert doc.embedding == [0.5, 0.25, 0.125]
    assert type(doc.embedding) is list


def test_float32_limits():
    field = VectorField(dimensions=2)
    assert field.clean([3.4e38, -3.4e38], None) == [3.4e38, -3.4e38]
    with pytest.raises(ValidationError, match=r"Element 1 of the vector is -3\.5e\+38"):
        field.clean([0, -3.5e38], None)


def test_halfvec_range_is_float16():
    field = HalfVectorField(dimensions=2)
    assert field.clean([65504, -1], None) == [65504.0, -1.0]
    with pytest.raises(
        ValidationError, match="Element 0 of the halfvec is 70000, outside the range"
    ):
        field.clean([70000, 1], None)


def test_sparsevec_validation():
    field = SparseVectorField(dimensions=5)
    assert field.clean("{1:0.5,3:2}/5", None).to_list() == [0.5, 0, 2, 0, 0]
    assert field.clean([0, 1, 0, 0, 0], None).indices() == [1]
    with pytest.raises(ValidationError, match="Expected a sparsevec of 5 dimensions, got 3"):
        field.clean(SparseVector([1, 0, 0]), None)
    with pytest.raises(ValidationError, match="Element 0 of the sparsevec is NaN"):
        field.clean(SparseVector({0: float("nan")}, 5), None)
    with pytest.raises(ValidationError, match="Enter a sparsevec as"):
        field.clean("{1:0.5", None)


def test_bit_validation():
    field = BitField(length=4)
    assert field.clean("1010", None) == "1010"
    assert field.clean([True, False, True, False], None) == "1010"
    assert field.clean(np.array([1, 0, 1, 0], dtype=bool), None) == "1010"
    assert field.clean(Bit("1010"), None) == "1010"
    with pytest.raises(ValidationError, match='Character 2 of the bit string is "2"'):
        field.clean("1020", None)
    with pytest.raises(ValidationError, match="Expected a bit string of 4 dimensions, got 3"):
        field.clean("101", None)


@pytest.mark.django_db
def test_every_type_stores_and_reads_back_what_pgvector_django_returns():
    item = Item.objects.create(
        embedding=np.array([1, 2, 3]),
        half_embedding=[1, 2, 3],
        sparse_embedding=SparseVector([1, 0, 3]),
        binary_embedding="101",
    )
    item = Item.objects.get(pk=item.pk)
    assert item.embedding == [1.0, 2.0, 3.0]
    assert item.half_embedding == [1.0, 2.0, 3.0]  # pgvector.django 0.5 reads halfvec as a list
    assert item.sparse_embedding.to_list() == [1.0, 0.0, 3.0]
    assert item.binary_embedding == "101"
    with connection.cursor() as cursor:
        cursor.execute("SELECT embedding::text, sparse_embedding::text FROM testapp_item")
        assert cursor.fetchone() == ("[1,2,3]", "{1:1,3:3}/3")


class DocumentForm(forms.ModelForm):
    class Meta:
        model = Document
        fields = ["content", "embedding"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "Expected a vector of 3 dimensions, got 2."),
        ("[1, nan, 2]", "Element 1 of the vector is NaN (not a number)."),
        ("[inf, 1, 2]", "Element 0 of the vector is infinite."),
        ("[1, 2, 1e40]", "Element 2 of the vector is 1e+40"),
        ("[a, b, c]", 'Element 0 of the vector is not a number: "a".'),
    ],
)
def test_model_form_reports_bad_vectors_as_field_errors(text, message):
    form = DocumentForm(data={"content": "x", "embedding": text})
    assert not form.is_valid()
    assert message in " ".join(form.errors["embedding"])


def test_model_form_parses_and_renders_vectors():
    form = DocumentForm(data={"content": "x", "embedding": "[0.5, 0.25, 1]"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["embedding"] == [0.5, 0.25, 1.0]
    rendered = DocumentForm(instance=Document(content="x", embedding=[0.5, 0.25, 1.0])).as_p()
    assert 'value="[0.5, 0.25, 1.0]"' in rendered


def test_required_vector_form_field_rejects_empty_input():
    form = DocumentForm(data={"content": "x", "embedding": "  "})
    assert not form.is_valid()
    assert form.errors["embedding"] == ["This field is required."]


def test_fields_check_their_declared_size():
    field = VectorField(dimensions=20_000)
    field.set_attributes_from_name("embedding")
    errors = [e.id for e in field.check()]
    assert errors == ["vectorsearch.E001"]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        (VectorField(dimensions=3, null=True), {"dimensions": 3, "null": True}),
        (HalfVectorField(dimensions=8), {"dimensions": 8}),
        (SparseVectorField(), {}),
        (BitField(length=64), {"length": 64}),
    ],
)
def test_field_deconstruct_round_trips(field, kwargs):
    _, path, args, found = field.deconstruct()
    assert path.startswith("vectorsearch.fields.")
    assert found == kwargs
    clone = type(field)(*args, **found)
    assert clone.deconstruct()[1:] == (path, args, kwargs)


@pytest.mark.django_db
def test_a_bad_vector_in_save_leaves_the_callers_transaction_usable():
    with transaction.atomic():
        with pytest.raises(ValidationError) as info:
            Document.objects.create(content="x", embedding=[1, float("nan"), 2])
        assert info.value.message_dict == {
            "embedding": ["Element 1 of the vector is NaN (not a number)."]
        }
        Document.objects.create(content="still fine", embedding=[1, 2, 3])
    assert Document.objects.get().content == "still fine"


@pytest.mark.django_db
def test_update_and_bulk_create_are_checked_too():
    doc = Document.objects.create(content="x", embedding=[1, 2, 3])
    with pytest.raises(ValidationError, match="Element 0 of the vector is infinite"):
        Document.objects.filter(pk=doc.pk).update(embedding=[float("inf"), 1, 2])
    with pytest.raises(ValidationError, match="Expected a vector of 3 dimensions, got 1"):
        Document.objects.bulk_create([Document(content="y", embedding=[1])])


@pytest.mark.django_db
def test_a_form_posted_back_unchanged_keeps_every_digit():
    doc = Document.objects.create(content="x", embedding=[0.123456789, 1.23456789e-5, 12345.6789])
    doc.refresh_from_db()
    before = list(doc.embedding)
    text = DocumentForm(instance=doc)["embedding"].as_widget()
    rendered_text = text.split('value="')[1].split('"')[0]
    form = DocumentForm(instance=doc, data={"content": "y", "embedding": rendered_text})
    assert form.is_valid(), form.errors
    assert form.changed_data == ["content"]
    form.save()
    assert Document.objects.get(pk=doc.pk).embedding == before
    # The text the widget wrote reads back as the very same float32 numbers.
    shown = np.array([float(x) for x in rendered_text.strip("[]").split(",")], dtype=np.float32)
    assert shown.tolist() == before


def test_has_changed_with_a_numpy_instance_value():
    instance = Document(content="x", embedding=np.array([1.0, 2.0, 3.0]))
    same = DocumentForm(instance=instance, data={"content": "x", "embedding": "[1, 2.0, 3]"})
    other = DocumentForm(instance=instance, data={"content": "x", "embedding": "[1, 2, 4]"})
    assert same.changed_data == []
    assert other.changed_data == ["embedding"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["0", "0", "0", "1"], 'Element 0 of the bit string is "0"; use True/False or 1/0.'),
        ([2, 0, 1, 1], "Element 0 of the bit string is 2"),
        (np.array([1.5, 0, 0, 1]), "Element 0 of the bit string is 1.5"),
        (np.array([[1, 0], [1, 0]]), "must be a flat list of booleans"),
        (b"1010", "Enter a bit string such as 0101"),
    ],
)
def test_bits_are_never_coerced_from_other_values(value, message):
    with pytest.raises(ValidationError) as info:
        BitField(length=4).clean(value, None)
    assert message in info.value.messages[0]


def test_integer_and_uint8_bits_are_accepted():
    assert BitField(length=3).clean([1, 0, 1], None) == "101"
    assert BitField(length=3).clean(np.array([1, 0, 1], dtype=np.uint8), None) == "101"


def test_sparsevec_duplicate_indices_are_rejected():
    with pytest.raises(ValidationError, match="A sparsevec index appears twice"):
        SparseVectorField(dimensions=3).clean("{1:1,1:2}/3", None)


def test_undeclared_sizes_are_held_to_pgvectors_limits():
    with pytest.raises(
        ValidationError, match="A vector holds at most 16,000 dimensions, got 16,001"
    ):
        VectorField().clean([0.5] * 16_001, None)
    with pytest.raises(ValidationError, match="A halfvec holds at most 16,000 dimensions"):
        HalfVectorField().clean([0.5] * 16_001, None)


def test_empty_list_is_invalid_even_when_blank_is_allowed():
    with pytest.raises(ValidationError, match="Expected a vector of 3 dimensions, got 0"):
        Item(embedding=[]).full_clean()


def test_complex_numbers_are_rejected():
    with pytest.raises(ValidationError, match="Enter a vector as a list of numbers"):
        VectorField(dimensions=2).clean(np.array([1 + 2j, 0]), None)


@isolate_apps("tests.testapp")
def test_hnsw_indexed_sparse_vectors_hold_at_most_1000_nonzeros():
    class Sparse(models.Model):
        indexed = SparseVectorField(dimensions=2000)
        plain = SparseVectorField(dimensions=2000)

        class Meta:
            app_label = "testapp"
            indexes = [HnswIndex(fields=["indexed"], distance="l2", name="sparse_hnsw")]

    many = SparseVector({i: 1.0 for i in range(1001)}, 2000)
    assert Sparse._meta.get_field("plain").clean(many, None) == many
    with pytest.raises(ValidationError, match="in an HNSW-indexed column may have at most 1,000"):
        Sparse._meta.get_field("indexed").clean(many, None)


def test_size_must_be_a_whole_number_and_bits_need_a_length():
    field = VectorField(dimensions="3")
    field.set_attributes_from_name("embedding")
    assert [e.id for e in field.check()] == ["vectorsearch.E001"]
    bits = BitField()
    bits.set_attributes_from_name("bits")
    (warning,) = bits.check()
    assert warning.id == "vectorsearch.W002"
    assert "bit(1)" in warning.msg


@pytest.mark.django_db
def test_dense_vectors_read_back_as_the_exact_stored_numbers_whatever_the_path():
    item = Item.objects.create(embedding=[0.1, -2.5, 3e-7], half_embedding=[0.1, 2, -3])
    stored = np.array([0.1, -2.5, 3e-7], dtype=np.float32).tolist()
    half = np.array([0.1, 2, -3], dtype=np.float16).tolist()
    with CaptureQueriesContext(connection) as queries:
        item = Item.objects.get(pk=item.pk)
    assert "vector_send" not in queries.captured_queries[0]["sql"]  # text, outside searches
    assert (item.embedding, item.half_embedding) == (stored, half)
    assert type(item.embedding) is list and {type(x) for x in item.embedding} == {float}
    from_raw = Item.objects.raw("SELECT id, embedding, half_embedding FROM testapp_item")[0]
    assert (from_raw.embedding, from_raw.half_embedding) == (stored, half)
    assert Item.objects.values_list("embedding", flat=True).get() == stored
    # A search reads its rows in binary: the same numbers.
    with CaptureQueriesContext(connection) as queries:
        (found,) = Item.objects.similar_to([0.1, -2.5, 3e-7], field="embedding", distance="l2")
    assert 'vector_send("testapp_item"."embedding")' in queries.captured_queries[-1]["sql"]
    assert 'halfvec_send("testapp_item"."half_embedding")' in queries.captured_queries[-1]["sql"]
    assert (found.embedding, found.half_embedding) == (stored, half)


@pytest.mark.django_db
def test_any_float32_is_written_as_its_shortest_text_and_stored_exactly():
    rng = np.random.default_rng(7)
    # Every magnitude a float32 holds, subnormals and the extremes included.
    numbers = (rng.normal(size=3000) * 10.0 ** rng.integers(-45, 38, size=3000)).astype(np.float32)
    numbers[:6] = [np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e-45, -0.0, 0.1, 1]
    vectors = numbers.reshape(-1, 3)
    with CaptureQueriesContext(connection) as queries:
        Item.objects.bulk_create([Item(name=str(i), embedding=v) for i, v in enumerate(vectors)])
    assert "[3.4028235e+38,-3.4028235e+38,1e-45]" in queries.captured_queries[0]["sql"]
    assert "[-0.0,0.1,1.0]" in queries.captured_queries[0]["sql"]  # not 0.10000000149011612
    stored = np.array(
        [row.embedding for row in Item.objects.order_by("id")], dtype=np.float32
    ).view(np.uint32)
    assert np.array_equal(stored, vectors.view(np.uint32))  # bit for bit, -0.0 included


@pytest.mark.django_db
def test_vectors_outside_searches_order_group_and_combine_as_vectors():
    for name, vector in [("a", [2, 0, 0]), ("b", [-1, 0, 0]), ("c", [0.0, 1, 2])]:
        Item.objects.create(name=name, embedding=vector)
    Item.objects.create(name="d", embedding=[-0.0, 1, 2])  # the same vector as "c"
    by_vector = Item.objects.values("name", "embedding").order_by("embedding", "name")
    assert [row["name"] for row in by_vector] == ["b", "c", "d", "a"]
    assert Item.objects.values_list("embedding", flat=True).distinct().count() == 3
    groups = Item.objects.values("embedding").annotate(n=models.Count("id")).order_by("-n")
    assert groups[0]["n"] == 2
    LegacyItem.objects.create(embedding=[5, 5, 5])
    union = Item.objects.values_list("embedding", flat=True).union(
        LegacyItem.objects.values_list("embedding", flat=True)
    )
    assert sorted(map(tuple, union)) == sorted(
        [(2.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 2.0), (5.0, 5.0, 5.0)]
    )


@pytest.mark.django_db
def test_a_subquery_selecting_a_vector_still_compares_as_a_vector():
    a = Item.objects.create(name="a", embedding=[1, 0, 0])
    b = Item.objects.create(name="b", embedding=[0, 1, 0])
    b_vector = Item.objects.filter(pk=b.pk).values("embedding")[:1]
    assert list(Item.objects.filter(embedding=Subquery(b_vector))) == [b]
    annotated = Item.objects.annotate(other=Subquery(b_vector)).get(pk=a.pk)
    assert annotated.other == [0.0, 1.0, 0.0]
    assert list(Item.objects.filter(embedding__in=Item.objects.values("embedding"))) == [a, b]


def test_a_truncated_binary_vector_is_an_error_not_a_shorter_vector():
    whole = bytes([0, 3, 0, 0]) + np.array([1, 2, 3], dtype=">f4").tobytes()
    assert decode_dense(whole, np.float32) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="2 of 3 dimensions"):
        decode_dense(whole[:-4], np.float32)


def test_serializing_an_unsaved_instance_takes_any_accepted_value():
    for value in (Vector([0.1, 0.2, 0.3]), "[0.1, 0.2, 0.3]", np.array([0.1, 0.2, 0.3])):
        text = serializers.serialize("json", [Item(name="x", embedding=value)])
        assert '"embedding": "[0.1,0.2,0.3]"' in text


@pytest.mark.django_db
def test_dumpdata_writes_the_stored_numbers_in_their_shortest_form_and_loads_them_back():
    item = Item.objects.create(name="x", embedding=[0.1, -2.5, 3e-7], half_embedding=[0.1, 2, -3])
    item = Item.objects.get(pk=item.pk)
    text = serializers.serialize("json", [item])
    assert '"embedding": "[0.1,-2.5,3e-07]"' in text
    assert '"half_embedding": "[0.1,2,-3]"' in text
    Item.objects.all().delete()
    for loaded in serializers.deserialize("json", text):
        loaded.save()
    again = Item.objects.get(pk=item.pk)
    assert (again.embedding, again.half_embedding) == (item.embedding, item.half_embedding)


@pytest.mark.django_db
def test_the_largest_float32_and_float16_survive_a_dumpdata_round_trip():
    biggest = float(np.finfo(np.float32).max)
    item = Item.objects.create(
        name="x", embedding=[biggest, -biggest, 1], half_embedding=[65504, 1, 2]
    )
    text = serializers.serialize("json", [Item.objects.get(pk=item.pk)])
    assert "3.4028235e+38" in text
    Item.objects.all().delete()
    for loaded in serializers.deserialize("json", text):
        loaded.save()
    again = Item.objects.get(pk=item.pk)
    assert again.embedding == [biggest, -biggest, 1.0]
    assert again.half_embedding == [65504.0, 1.0, 2.0]
    with pytest.raises(ValidationError, match="outside the range"):
        Item(embedding=[3.41e38, 0, 0]).full_clean()
    with pytest.raises(ValidationError, match="outside the range"):
        Item(half_embedding=[65520, 0, 0]).full_clean()  # rounds to infinity in float16


def test_the_widget_shows_whole_numbers_as_pgvector_django_does():
    from vectorsearch.fields import VectorWidget

    assert VectorWidget().format_value([1, 2, 3]) == "[1.0, 2.0, 3.0]"
    assert VectorWidget().format_value(np.array([0.1, -2.5, 1e20], dtype=np.float32)) == (
        "[0.1, -2.5, 1e+20]"
    )
