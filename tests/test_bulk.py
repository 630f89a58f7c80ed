"""vectorsearch.bulk: the one binary COPY writer, read back from PostgreSQL."""

from datetime import UTC, datetime

import numpy as np
import pytest
from django.db import connection

from vectorsearch import bulk
from vectorsearch.bulk import SMALL_BATCH, Column, copy_binary, write_vectors
from vectorsearch.models import Embedding

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("rows", [7, bulk.CHUNK_ROWS * 2 + 3])  # one chunk; several, threaded
def test_rows_of_every_kind_of_column_read_back_as_written(rows):
    rng = np.random.default_rng(0)
    # Text of varying lengths in no order (rows are grouped by length, then read back by id),
    # the empty text among them.
    texts = ["x" * int(n) for n in rng.integers(0, 12, rows)]
    ids = rng.permutation(rows).astype(np.int64) + 2**40  # beyond int4
    vectors = rng.normal(size=(rows, 5)).astype(np.float32)
    when = datetime(2026, 12, 5, 4, 30, 15, 123456, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE bulk_test (id bigint, small integer, label text, note text, "
            "nothing text, v vector, at timestamptz)"
        )
        copy_binary(
            connection,
            cursor,
            "bulk_test",
            [
                Column.integers("id", ids, "bigint"),
                Column.value("small", -5),
                Column.texts("label", texts),
                Column.value("note", "é ünïcode"),
                Column.value("nothing", None),
                Column.vectors("v", vectors),
                Column.value("at", when),
            ],
            rows,
        )
        cursor.execute("SELECT id, small, label, note, nothing, v::text, at FROM bulk_test")
        stored = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute("DROP TABLE bulk_test")
    assert len(stored) == rows
    for i in range(rows):
        small, label, note, nothing, vector, at = stored[int(ids[i])]
        assert (small, label, note, nothing, at) == (-5, texts[i], "é ünïcode", None, when)
        np.testing.assert_array_equal(
            np.array(vector.strip("[]").split(","), dtype=np.float32), vectors[i]
        )


def test_a_vector_the_server_refuses_is_a_database_error_and_nothing_is_copied():
    from django.db import DataError, transaction

    vectors = np.ones((3, 4), np.float32)
    vectors[1, 2] = np.nan
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE bulk_nan (v vector)")
        with pytest.raises(DataError, match="NaN not allowed in vector"), transaction.atomic():
            copy_binary(connection, cursor, "bulk_nan", [Column.vectors("v", vectors)], 3)
        cursor.execute("SELECT count(*) FROM bulk_nan")
        assert cursor.fetchone()[0] == 0
        cursor.execute("DROP TABLE bulk_nan")


@pytest.mark.parametrize("rows", [1, SMALL_BATCH + 1])
def test_a_save_writes_inline_and_a_batch_through_copy(rows):
    # One row (a save) must not create the COPY staging table: a temporary table per request
    # writes PostgreSQL's catalogs each time. A larger batch goes through COPY.
    from django.test.utils import CaptureQueriesContext

    from tests.embedapp.models import Note
    from vectorsearch.registry import registry

    notes = Note.objects.bulk_create(Note(title=f"n{i}") for i in range(rows))
    registration = registry.get(Note)
    vectors = np.random.default_rng(0).normal(size=(rows, 256)).astype(np.float32)
    with CaptureQueriesContext(connection) as captured:
        written = write_vectors(registration, [(str(n.pk), "h") for n in notes], vectors)
    assert written == rows
    staged = any("CREATE TEMPORARY TABLE" in q["sql"] for q in captured.captured_queries)
    assert staged is (rows > SMALL_BATCH)
    stored = Embedding.objects.get(object_id=str(notes[0].pk)).vector
    assert stored == pytest.approx(vectors[0].tolist())
