"""Property tests (hypothesis): no input makes vector parsing, the search form or the API fail
with anything but a clear error.

- vector values: ``validate_dense`` / the form field either give back finite numbers of the
  declared length or raise ``ValidationError`` (never TypeError, OverflowError, numpy errors...);
- the JSON API: any query string answers 200 or 400 with a JSON ``error`` message, never a 5xx.
"""

import json
import math
from urllib.parse import urlencode

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.embedapp.models import Note
from vectorsearch.fields import HalfVectorFormField, VectorFormField, validate_dense

DIMS = 4

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.decimals(allow_nan=True),
)
values = st.one_of(
    st.lists(numbers, max_size=6),
    st.tuples(numbers, numbers, numbers, numbers),
    st.text(max_size=40),
    st.lists(st.lists(st.floats(), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), numbers, max_size=3),
    numbers,
)


@settings(max_examples=400, deadline=None)
@given(value=values, vector_type=st.sampled_from(["vector", "halfvec"]))
def test_a_dense_value_is_valid_or_a_validation_error(value, vector_type):
    try:
        result = validate_dense(value, vector_type=vector_type, dimensions=DIMS)
    except ValidationError as e:
        assert e.messages and all(isinstance(m, str) and m for m in e.messages)
        return
    assert len(result) == DIMS
    assert all(isinstance(x, float) and math.isfinite(x) for x in result)
    limit = 65504.0 if vector_type == "halfvec" else float(np.finfo(np.float32).max)
    assert all(abs(x) <= limit for x in result)


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.lists(
            st.one_of(st.floats(), st.integers(), st.sampled_from(["nan", "inf", "1e400", ""])),
            max_size=6,
        ).map(lambda xs: "[" + ",".join(map(str, xs)) + "]"),
    ),
    form_field=st.sampled_from([VectorFormField, HalfVectorFormField]),
)
def test_the_form_field_parses_or_says_what_is_wrong(text, form_field):
    field = form_field(dimensions=DIMS)
    try:
        cleaned = field.clean(text)
    except ValidationError as e:
        assert e.messages
        return
    assert cleaned is None or len(cleaned) == DIMS


parameter_names = st.sampled_from(
    ["q", "page", "per_page", "model", "category", "utm_source", "x", "q\x00", "página", ""]
)
parameter_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "password",
            "0",
            "-1",
            "1e9",
            "999999999999999999999",
            "embedapp.note",
            "account",
            "\ufffd",
        ]
    ),
)


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=st.lists(st.tuples(parameter_names, parameter_values), max_size=5))
def test_no_query_string_makes_the_api_fail(client, params):
    if not Note.objects.exists():
        Note.objects.create(title="How to reset your password", category="account")
    response = client.get("/search/api/?" + urlencode(params))
    assert response.status_code in (200, 400), response.content[:300]
    body = json.loads(response.content)
    if response.status_code == 400:
        assert isinstance(body["error"], str) and body["error"]
        assert "Traceback" not in body["error"] and "psycopg" not in body["error"]
    else:
        assert isinstance(body["results"], list)
