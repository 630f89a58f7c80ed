import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.migrations.state import ProjectState
from django.test import override_settings

from tests.conftest import admin_conninfo
from vectorsearch.checks import check_invalid_indexes
from vectorsearch.exceptions import VectorExtensionError
from vectorsearch.operations import (
    VectorExtension,
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


# -- a server without pgvector ----------------------------------------------------------------


@pytest.fixture
def database_without_pgvector(empty_database):
    """A new database in which the server has no pgvector to create.

    PostgreSQL 18's ``extension_control_path`` is pointed, for this database only, at a
    directory holding no extensions: ``CREATE EXTENSION vector`` then fails exactly as on a
    server where pgvector was never installed (SQLSTATE 0A000, "extension "vector" is not
    available").
    """
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        if conn.info.server_version < 180000:
            pytest.skip("extension_control_path needs PostgreSQL 18")
        conn.execute(
            f"ALTER DATABASE \"{empty_database}\" SET extension_control_path = '/nonexistent'"
        )
    return empty_database


def _not_installed_message(database: str, alias: str) -> str:
    return (
        f"The PostgreSQL server behind database '{database}' (connection '{alias}') does not "
        "have pgvector installed. Install pgvector 0.8 or later on the server (see "
        "https://github.com/pgvector/pgvector), or unset DATABASE_URL to use the embedded "
        "server in development."
    )


@pytest.mark.django_db
def test_a_server_without_pgvector_gets_how_to_install_it(database_without_pgvector):
    wrapper = _wrapper(database_without_pgvector)
    try:
        with pytest.raises(VectorExtensionError) as info:
            ensure_vector_extension(wrapper)
        assert str(info.value) == _not_installed_message(database_without_pgvector, wrapper.alias)
        assert info.value.__cause__.__cause__.sqlstate == "0A000"
        assert extension_version(wrapper) is None
    finally:
        wrapper.close()


@pytest.mark.django_db
def test_the_migration_operation_on_a_server_without_pgvector_says_the_same(
    database_without_pgvector,
):
    wrapper = _wrapper(database_without_pgvector)
    try:
        with pytest.raises(VectorExtensionError) as info, wrapper.schema_editor() as editor:
            VectorExtension().database_forwards("testapp", editor, ProjectState(), ProjectState())
        assert str(info.value) == _not_installed_message(database_without_pgvector, wrapper.alias)
    finally:
        wrapper.close()


def test_migrate_on_a_server_without_pgvector_stops_before_any_migration(
    database_without_pgvector, other_database
):
    with pytest.raises(VectorExtensionError) as info:
        call_command("migrate", database="other", verbosity=0)
    assert str(info.value) == _not_installed_message(database_without_pgvector, "other")
    with other_database.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cursor.fetchone() == (0,)  # not even django_migrations


# -- vectorsearch.W011: pgvector older than 0.8 --------------------------------------------------


def _pretend_pgvector_is(version: str, connection) -> None:
    """Create pgvector, then make the catalog report another version, which is all the check
    reads (only the newest pgvector is installable on the test server)."""
    ensure_vector_extension(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_extension SET extversion = %s WHERE extname = 'vector'", [version]
        )


def _w011(alias: str) -> list:
    return [w for w in check_invalid_indexes(databases=[alias]) if w.id == "vectorsearch.W011"]


@pytest.mark.parametrize("version", ["0.7.4", "0.5.1", "0.7"])
def test_pgvector_older_than_0_8_is_warning_w011(other_database, version):
    _pretend_pgvector_is(version, other_database)
    (warning,) = _w011("other")
    assert warning.msg == (
        f"Database 'other' has pgvector {version}; vectorsearch needs 0.8 or later (iterative "
        "index scans, halfvec and sparsevec operators)."
    )
    assert (
        warning.hint == "Upgrade pgvector on the server, then run: ALTER EXTENSION vector UPDATE;"
    )


@pytest.mark.parametrize("version", ["0.8.0", "0.8.5", "0.10.0", "1.0.0"])
def test_pgvector_0_8_or_later_is_no_warning(other_database, version):
    _pretend_pgvector_is(version, other_database)  # 0.10 is newer than 0.8, whatever the strings
    assert _w011("other") == []


@pytest.mark.django_db
def test_w011_is_silent_on_the_test_database_and_without_the_extension(other_database):
    assert _version(extension_version(connection)) >= (0, 8)
    assert _w011("default") == []
    assert extension_version(other_database) is None  # migrate reports a missing extension
    assert _w011("other") == []


def test_manage_py_check_database_reports_w011(other_database, capsys):
    _pretend_pgvector_is("0.7.4", other_database)
    call_command("check", "--database", "other")
    err = capsys.readouterr().err
    assert "?: (vectorsearch.W011) Database 'other' has pgvector 0.7.4" in err
    assert "HINT: Upgrade pgvector on the server" in err
