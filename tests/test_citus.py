"""vectorsearch.citus: the SQL of the Citus operations, the distribution check, and the
``citus.propagate_set_commands`` statement db.apply_settings sends on a Citus coordinator.

Citus is not installable here: the statements are checked as generated (and, for the SET LOCAL
ones, run on the real PostgreSQL, which takes an unknown ``citus.*`` name as a placeholder).
"""

from contextlib import nullcontext

import pytest
from django.apps import apps
from django.core import checks
from django.db import NotSupportedError, connection, connections, models, transaction
from django.db.migrations import Migration
from django.db.migrations.state import ProjectState
from django.db.migrations.writer import MigrationWriter
from django.test import override_settings
from django.test.utils import isolate_apps

from tests.queryapp.models import Article, Category
from vectorsearch import citus
from vectorsearch.checks_scaling import check_distributed_models, check_distribution
from vectorsearch.citus import DistributeTable, Distribution, ReferenceTable, distributed_tables
from vectorsearch.db import apply_settings


def collected(operation, backwards=False):
    state = ProjectState.from_apps(apps)
    with connection.schema_editor(collect_sql=True) as editor:
        if backwards:
            operation.database_backwards("queryapp", editor, state, state)
        else:
            operation.database_forwards("queryapp", editor, state, state)
    return editor.collected_sql


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("operation", "forwards"),
    [
        (
            DistributeTable("article", "category"),
            "SELECT create_distributed_table('\"queryapp_article\"', 'category_id');",
        ),
        (
            DistributeTable("Article", "category_id", colocate_with="category"),
            "SELECT create_distributed_table('\"queryapp_article\"', 'category_id', "
            "colocate_with => '\"queryapp_category\"');",
        ),
        (
            DistributeTable("article", "title", colocate_with="queryapp.Tag"),
            "SELECT create_distributed_table('\"queryapp_article\"', 'title', "
            "colocate_with => '\"queryapp_tag\"');",
        ),
        (
            DistributeTable("article", "id", colocate_with="None"),
            "SELECT create_distributed_table('\"queryapp_article\"', 'id', "
            "colocate_with => 'none');",
        ),
        (ReferenceTable("category"), "SELECT create_reference_table('\"queryapp_category\"');"),
    ],
)
def test_generated_sql_both_ways(operation, forwards):
    assert collected(operation) == [forwards]
    table = "queryapp_category" if isinstance(operation, ReferenceTable) else "queryapp_article"
    assert collected(operation, backwards=True) == [f"SELECT undistribute_table('\"{table}\"');"]
    assert operation.reversible and operation.reduces_to_sql


@pytest.mark.django_db
def test_a_column_the_model_lacks_is_named():
    with pytest.raises(ValueError, match=r"queryapp.Article has no such field or column"):
        collected(DistributeTable("article", "tenant"))


@pytest.mark.parametrize(
    "operation",
    [
        DistributeTable("article", "category"),
        DistributeTable("article", "category", colocate_with="category"),
        ReferenceTable("category"),
    ],
)
def test_deconstruct_round_trips_through_the_migration_writer(operation):
    name, args, kwargs = operation.deconstruct()
    assert type(operation)(*args, **kwargs).deconstruct() == (name, args, kwargs)
    text, imports = MigrationWriter.serialize(operation)
    namespace = {}
    exec("\n".join([*imports, f"op = {text}"]), namespace)
    assert namespace["op"].deconstruct() == operation.deconstruct()
    assert "import vectorsearch.citus" in imports


def test_deconstruct_writes_only_what_differs_from_the_default():
    assert DistributeTable("article", "category").deconstruct()[2] == {
        "model_name": "article",
        "column": "category",
    }


def test_describe_and_migration_name():
    op = DistributeTable("Article", "category", colocate_with="category")
    assert op.describe() == (
        "Distribute Article across Citus workers by category, co-located with category"
    )
    assert op.migration_name_fragment == "distribute_article"
    assert ReferenceTable("Category").describe() == (
        "Copy Category to every Citus worker (reference table)"
    )
    assert ReferenceTable("Category").migration_name_fragment == "reference_category"


@pytest.mark.parametrize(
    "make",
    [
        lambda: DistributeTable("", "x"),
        lambda: DistributeTable("a", None),
        lambda: DistributeTable("a", "x", colocate_with=3),
        lambda: ReferenceTable(""),
    ],
)
def test_bad_arguments_are_refused_when_written(make):
    with pytest.raises(TypeError, match="must be"):
        make()


@pytest.mark.django_db
def test_migrating_without_citus_stops_with_the_fix_and_changes_nothing():
    state = ProjectState.from_apps(apps)
    with (
        pytest.raises(NotSupportedError, match=r"CREATE EXTENSION citus"),
        connection.schema_editor() as editor,
    ):
        DistributeTable("article", "category").database_forwards("queryapp", editor, state, state)
    assert citus.has_citus(connection) is False
    Category.objects.create(name="still a plain table")


@isolate_apps("tests.queryapp")
def test_the_primary_key_must_contain_the_distribution_column():
    class Tenanted(models.Model):
        pk = models.CompositePrimaryKey("tenant_id", "id")
        tenant_id = models.IntegerField()
        id = models.IntegerField()
        slug = models.SlugField(unique=True)

        class Meta:
            app_label = "queryapp"
            constraints = [
                models.UniqueConstraint(fields=["tenant_id", "slug"], name="ok_unique"),
                models.UniqueConstraint(fields=["id", "slug"], name="bad_unique"),
            ]

    class Plain(models.Model):
        tenant_id = models.IntegerField()

        class Meta:
            app_label = "queryapp"

    def check(model, column):
        return check_distribution(model, Distribution("queryapp", "x", column, "queryapp.0002"))

    errors = check(Tenanted, "tenant_id")
    assert [e.id for e in errors] == ["vectorsearch.E052", "vectorsearch.E052"]
    assert "unique field 'slug'" in errors[0].msg
    assert "unique constraint 'bad_unique'" in errors[1].msg
    (error,) = check(Plain, "tenant_id")
    assert error.id == "vectorsearch.E052" and "primary key (id)" in error.msg
    assert 'CompositePrimaryKey("tenant_id", "id")' in error.hint
    (error,) = check(Plain, "tenant")
    assert error.id == "vectorsearch.E053"
    assert check(Plain, None) == []  # a reference table


def test_distributed_tables_are_read_from_the_migrations():
    migration = Migration("0002_distribute", "queryapp")
    migration.operations = [ReferenceTable("Category"), DistributeTable("Article", "category")]
    assert distributed_tables([migration]) == [
        Distribution("queryapp", "category", None, "queryapp.0002_distribute"),
        Distribution("queryapp", "article", "category", "queryapp.0002_distribute"),
    ]


def test_the_registered_check_reads_the_migration_files():
    assert check_distributed_models() == []
    with override_settings(MIGRATION_MODULES={"queryapp": "tests.citus_migrations"}):
        errors = [e for e in checks.run_checks() if e.id.startswith("vectorsearch.E05")]
    (error,) = errors
    assert error.id == "vectorsearch.E052" and error.obj is Article
    assert "queryapp.0001_distribute" in error.msg


def sent_with(settings, citus_present, atomic=False):
    """The SQL text apply_settings sends for one query, and what that query saw."""
    conn = connections["default"]
    conn.ensure_connection()
    citus._citus_by_alias[conn.alias] = citus_present  # as if detected
    sent = []

    def capture(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    query = (
        "SELECT current_setting('citus.propagate_set_commands', true), "
        "current_setting('hnsw.ef_search')"
    )
    try:
        with transaction.atomic() if atomic else nullcontext():
            with (
                apply_settings("default", settings),
                conn.execute_wrapper(capture),
                conn.cursor() as cursor,
            ):
                cursor.execute(query)
                seen = cursor.fetchone()
            # The caller's next query, in the same transaction when there is one.
            with conn.cursor() as cursor:
                cursor.execute(query)
                after = cursor.fetchone()
    finally:
        citus._citus_by_alias.pop(conn.alias, None)
    return sent[0], seen, after


@pytest.mark.django_db(transaction=True)
def test_a_citus_coordinator_gets_propagate_set_commands_first():
    sql, seen, after = sent_with({"hnsw.ef_search": 55}, citus_present=True)
    assert sql.startswith(
        "SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL hnsw.ef_search = 55; SELECT"
    )
    assert seen == ("local", "55")
    assert after[0] in (None, "")  # transaction-local: gone with the search
    assert after[1] != "55"


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_citus_setting_is_rolled_back_with_the_savepoint():
    sql, seen, after = sent_with({"hnsw.ef_search": 56}, citus_present=True, atomic=True)
    assert after[0] in (None, "") and after[1] != "56"
    assert sql.startswith(
        "SAVEPOINT vectorsearch_settings; SET LOCAL citus.propagate_set_commands = 'local'; "
        "SET LOCAL hnsw.ef_search = 56; SELECT"
    )
    assert sql.endswith(
        "; ROLLBACK TO SAVEPOINT vectorsearch_settings; RELEASE SAVEPOINT vectorsearch_settings"
    )
    assert seen == ("local", "56")


@pytest.mark.django_db(transaction=True)
def test_without_citus_no_citus_statement_is_sent():
    sql, seen, _ = sent_with({"hnsw.ef_search": 57}, citus_present=False)
    assert sql.startswith("SET LOCAL hnsw.ef_search = 57; SELECT")
    assert seen[1] == "57"


@pytest.mark.django_db(transaction=True)
def test_citus_is_detected_once_per_alias():
    from django.test.utils import CaptureQueriesContext

    conn = connections["default"]
    citus._citus_by_alias.pop("default", None)
    assert citus.has_citus(conn) is False  # the real catalogue: no citus extension here
    assert citus._citus_by_alias["default"] is False
    conn.close()
    with CaptureQueriesContext(conn) as captured:
        assert citus.has_citus(conn) is False
    assert not captured.captured_queries  # a new connection asks nothing again
