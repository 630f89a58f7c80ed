import pytest

from tests.testapp.models import Document, Item

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, nan, 2]", "Element 1 of the vector is NaN (not a number)."),
        ("[inf, 1, 2]", "Element 0 of the vector is infinite."),
        ("[1, 2, 1e39]", "Element 2 of the vector is 1e+39, outside the range"),
        ("[1, 2]", "Expected a vector of 3 dimensions, got 2."),
        ("[1, 2, x]", "Element 2 of the vector is not a number: &quot;x&quot;."),
    ],
)
def test_admin_add_form_shows_bad_vectors_as_form_errors(admin_client, text, message):
    response = admin_client.post(
        "/admin/testapp/document/add/", {"content": "cats", "embedding": text}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Document.objects.count() == 0


def test_admin_add_and_change_a_vector(admin_client):
    response = admin_client.post(
        "/admin/testapp/document/add/", {"content": "cats", "embedding": "[0.1, 0.2, 0.7]"}
    )
    assert response.status_code == 302
    doc = Document.objects.get()
    assert doc.embedding == pytest.approx([0.1, 0.2, 0.7])
    page = admin_client.get(f"/admin/testapp/document/{doc.pk}/change/").content.decode()
    assert 'value="[0.1, 0.2, 0.7]"' in page


def test_admin_change_form_for_every_vector_type(admin_client):
    response = admin_client.post(
        "/admin/testapp/item/add/",
        {
            "name": "x",
            "embedding": "[1, 2, 3]",
            "half_embedding": "[1, 2, 70000]",
            "sparse_embedding": "{1:1,3:2}/3",
            "binary_embedding": "10a",
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Element 2 of the halfvec is 70000, outside the range" in page
    assert "Character 2 of the bit string is &quot;a&quot;" in page
    assert Item.objects.count() == 0
