import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import override_settings

from tests.conftest import admin_conninfo
from vectorsearch.checks import check_invalid_indexes
from vectorsearch.exceptions import VectorExtensionError
from vectorsearch.operations import (
    create_extension_before_migrate,
    ensure_vector_extension,
    extension_version,
    invalid_vector_indexes,
    repair_index,
)


def _version(text: str | None) -> tuple[int, ...]:
    assert text is not None
    return tuple(int(part) for part in text.split("."))


def _wrapper(database: str, user: str | None = None) -> DatabaseWrapper:
    settings = {**connection.settings_dict, "NAME": database}
    if user:
        settings["USER"] = user
    wrapper = DatabaseWrapper(settings, alias=f"tmp_{database}")
    # Reachable by its alias, as django.contrib.postgres's connection_created handler looks it up.
    connections[wrapper.alias] = wrapper
    return wrapper


@pytest.mark.django_db
def test_migrate_created_the_extension_in_the_test_database():
    assert _version(extension_version(connection)) >= (0, 8)


@pytest.mark.django_db
def test_extension_is_created_when_missing(empty_database):
    wrapper = _wrapper(empty_database)
    try:
        assert extension_version(wrapper) is None
        assert ensure_vector_extension(wrapper) is True
        assert _version(extension_version(wrapper)) >= (0, 8)
        assert ensure_vector_extension(wrapper) is False  # already there: nothing to do
    finally:
        wrapper.close()


@pytest.mark.django_db
def test_a_role_that_may_not_create_extensions_gets_the_sql_to_run(empty_database):
    role = f"{empty_database}_owner"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'ALTER DATABASE "{empty_database}" OWNER TO "{role}"')
    wrapper = _wrapper(empty_database, user=role)
    try:
        with pytest.raises(VectorExtensionError) as info:
            ensure_vector_extension(wrapper)
        message = str(info.value)
        assert f"The PostgreSQL role '{role}' may not create the pgvector extension" in message
        assert "Ask a superuser to run, once, in that database:" in message
        assert "CREATE EXTENSION IF NOT EXISTS vector;" in message
        assert extension_version(wrapper) is None
    finally:
        wrapper.close()
        with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{empty_database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_concurrent_build_is_detected_and_repaired():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE vs_invalid (id int, embedding vector)")
        cursor.execute("INSERT INTO vs_invalid VALUES (1, '[1,2,3]'), (2, '[1,0,0]'), (3, '[1,2]')")
    try:
        # The 2-dimensional row makes the build fail half-way, as a killed build would: the
        # index stays behind, INVALID.
        with (
            pytest.raises(Exception, match="expected 3 dimensions, not 2"),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "CREATE INDEX CONCURRENTLY vs_invalid_hnsw ON vs_invalid "
                "USING hnsw ((embedding::vector(3)) vector_cosine_ops)"
            )
        (found,) = invalid_vector_indexes(connection)
        assert (found.name, found.table, found.method) == ("vs_invalid_hnsw", "vs_invalid", "hnsw")
        (warning,) = check_invalid_indexes(databases=["default"])
        assert warning.id == "vectorsearch.W010"
        assert "'vs_invalid_hnsw' on table 'vs_invalid'" in warning.msg
        assert (
            'DROP INDEX CONCURRENTLY "public"."vs_invalid_hnsw"; and run migrate again'
            in warning.hint
        )
        assert (
            'otherwise rebuild it with REINDEX INDEX CONCURRENTLY "public"."vs_invalid_hnsw";'
            in warning.hint
        )

        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM vs_invalid WHERE id = 3")
        repair_index(connection, "vs_invalid_hnsw")
        assert invalid_vector_indexes(connection) == []
        assert check_invalid_indexes(databases=["default"]) == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE vs_invalid")


@pytest.mark.django_db(transaction=True)
def test_migrate_runs_the_database_check(capsys):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE vs_invalid2 (id int, embedding vector)")
        cursor.execute("INSERT INTO vs_invalid2 VALUES (1, '[1,2,3]'), (2, '[1,2]')")
        with pytest.raises(Exception, match="expected 3 dimensions"):
            cursor.execute(
                "CREATE INDEX CONCURRENTLY vs_invalid2_hnsw ON vs_invalid2 "
                "USING hnsw ((embedding::vector(3)) vector_l2_ops)"
            )
    try:
        call_command("check", "--database", "default", stdout=None)
        assert "vectorsearch.W010" in capsys.readouterr().err
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE vs_invalid2")


@pytest.fixture
def other_database(empty_database, django_db_blocker):
    """The empty database as a second Django connection, "other" (outside any test case)."""
    connections.settings["other"] = {**connection.settings_dict, "NAME": empty_database}
    try:
        with django_db_blocker.unblock():
            yield connections["other"]
    finally:
        connections["other"].close()
        del connections["other"]
        del connections.settings["other"]


class NoVectorsOnOther:
    def allow_migrate(self, db, app_label, **hints):
        return db != "other" or app_label in ("auth", "contenttypes")


def test_a_database_that_routers_keep_vector_models_off_gets_no_extension(other_database):
    with override_settings(DATABASE_ROUTERS=[NoVectorsOnOther()]):
        create_extension_before_migrate(using="other")
    assert extension_version(other_database) is None
    create_extension_before_migrate(using="other")  # no router: the test models may go there
    assert extension_version(other_database) is not None


def test_with_create_extension_off_a_missing_extension_stops_migrate_with_the_sql(other_database):
    with (
        override_settings(VECTORSEARCH={"CREATE_EXTENSION": False}),
        pytest.raises(VectorExtensionError, match="CREATE_EXTENSION'\\] is off") as info,
    ):
        create_extension_before_migrate(using="other")
    assert "CREATE EXTENSION IF NOT EXISTS vector;" in str(info.value)
    assert extension_version(other_database) is None
