"""Code written against pgvector.django keeps working with its import changed to vectorsearch.

The calls below are the ones pgvector-python documents for Django, unchanged but for the import.
"""

from math import sqrt

import numpy as np
import pytest
from django.core import serializers
from django.db.models import Avg, Sum
from django.forms import ModelForm
from pgvector import HalfVector, SparseVector

from tests.testapp.models import Item
from vectorsearch import (
    CosineDistance,
    HammingDistance,
    JaccardDistance,
    L1Distance,
    L2Distance,
    MaxInnerProduct,
    VectorExtension,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def items():
    Item(
        id=1,
        embedding=[1, 1, 1],
        half_embedding=[1, 1, 1],
        binary_embedding="000",
        sparse_embedding=SparseVector([1, 1, 1]),
    ).save()
    Item(
        id=2,
        embedding=[2, 2, 2],
        half_embedding=[2, 2, 2],
        binary_embedding="101",
        sparse_embedding=SparseVector([2, 2, 2]),
    ).save()
    Item(
        id=3,
        embedding=[1, 1, 2],
        half_embedding=[1, 1, 2],
        binary_embedding="111",
        sparse_embedding=SparseVector([1, 1, 2]),
    ).save()


@pytest.mark.parametrize(
    ("distance", "ids", "values"),
    [
        (L2Distance("embedding", [1, 1, 1]), [1, 3, 2], [0, 1, sqrt(3)]),
        (MaxInnerProduct("embedding", [1, 1, 1]), [2, 3, 1], [-6, -4, -3]),
        (CosineDistance("embedding", [1, 1, 1]), [1, 2, 3], [0, 0, 0.05719095841793653]),
        (L1Distance("embedding", [1, 1, 1]), [1, 3, 2], [0, 1, 3]),
        (L2Distance("half_embedding", HalfVector([1, 1, 1])), [1, 3, 2], [0, 1, sqrt(3)]),
        (L1Distance("sparse_embedding", SparseVector([1, 1, 1])), [1, 3, 2], [0, 1, 3]),
        (HammingDistance("binary_embedding", "101"), [2, 3, 1], [0, 1, 2]),
    ],
)
def test_distance_functions(items, distance, ids, values):
    found = Item.objects.annotate(distance=distance).order_by(distance)
    assert [v.id for v in found] == ids
    assert [v.distance for v in found] == pytest.approx(values)


def test_jaccard_distance(items):
    distance = JaccardDistance("binary_embedding", "101")
    assert [v.id for v in Item.objects.annotate(distance=distance).order_by(distance)] == [2, 3, 1]


def test_filter_on_an_aliased_distance(items):
    distance = L2Distance("embedding", [1, 1, 1])
    assert [v.id for v in Item.objects.alias(distance=distance).filter(distance__lt=1)] == [1]


def test_average_and_sum():
    Item(embedding=[1, 2, 3]).save()
    Item(embedding=[4, 5, 6]).save()
    avg = Item.objects.aggregate(Avg("embedding"))["embedding__avg"]
    total = Item.objects.aggregate(Sum("embedding"))["embedding__sum"]
    assert np.array_equal(avg, [2.5, 3.5, 4.5])
    assert np.array_equal(total, [5, 7, 9])


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_serialization_round_trip(items, fmt):
    data = serializers.serialize(fmt, Item.objects.order_by("id"))
    Item.objects.all().delete()
    for obj in serializers.deserialize(fmt, data):
        obj.save()
    first = Item.objects.get(pk=1)
    assert first.embedding == [1.0, 1.0, 1.0]
    assert first.sparse_embedding.to_list() == [1.0, 1.0, 1.0]
    assert first.binary_embedding == "000"


class VectorForm(ModelForm):
    class Meta:
        model = Item
        fields = ["embedding"]


def test_model_form_save_and_missing_value():
    item = Item.objects.create(embedding=[1, 2, 3])
    form = VectorForm(instance=item, data={"embedding": "[4, 5, 6]"})
    assert form.has_changed()
    assert form.is_valid()
    form.save()
    assert Item.objects.get(pk=item.pk).embedding == [4, 5, 6]
    form = VectorForm(instance=item, data={"embedding": ""})
    assert form.is_valid()
    form.save()
    assert Item.objects.get(pk=item.pk).embedding is None


def test_vector_extension_operation_is_importable_and_describes_itself():
    operation = VectorExtension()
    assert operation.name == "vector"
    assert operation.describe() == "Creates extension vector"
    assert operation.deconstruct() == ("VectorExtension", (), {})
