"""vectorsearch.db: SET LOCAL settings for one search, never left behind."""

import copy

import pytest
from django.db import connections, transaction
from django.db.models import CharField, Func, Value

from tests.queryapp.models import Article, Category
from vectorsearch.db import apply_settings, set_local_statements


def ef_seen():
    return Func(Value("hnsw.ef_search"), function="current_setting", output_field=CharField())


def current(alias, name):
    with connections[alias].cursor() as cursor:
        # Loading pgvector's library defines its settings, so "unset" reads as the default.
        cursor.execute("SELECT '[1]'::vector")
        cursor.execute("SELECT current_setting(%s, true)", [name])
        return cursor.fetchone()[0]


def test_set_local_statements():
    assert set_local_statements(
        {"hnsw.ef_search": 100, "hnsw.iterative_scan": "relaxed_order"}
    ) == [
        "SET LOCAL hnsw.ef_search = 100",
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
    ]


@pytest.mark.parametrize(
    "settings",
    [{"hnsw.ef_search; DROP TABLE x": 1}, {"hnsw.ef_search": "1; DROP TABLE x"}, {"a b": 1}],
)
def test_set_local_statements_refuse_anything_but_plain_names_and_values(settings):
    with pytest.raises(ValueError, match="Refusing to SET"):
        set_local_statements(settings)


@pytest.mark.django_db
def test_only_the_first_query_gets_the_settings():
    with apply_settings("default", {"hnsw.ef_search": 66}), connections["default"].cursor() as c:
        c.execute("SELECT current_setting('hnsw.ef_search')")
        first = c.fetchone()[0]
        c.execute("SELECT current_setting('hnsw.ef_search')")
        second = c.fetchone()[0]
    assert first == "66"
    assert second != "66"


@pytest.fixture
def server_binding(transactional_db):
    """A second connection to the test database with psycopg server-side parameter binding.

    Registered as a connection but not in settings.DATABASES: Django's per-test database guard
    allows such dynamically created connections. ``transactional_db`` because that connection
    sees only committed rows.
    """
    alias = "server_binding"
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings["OPTIONS"] = {**settings.get("OPTIONS", {}), "server_side_binding": True}
    wrapper = connections["default"].__class__(settings, alias)
    setattr(connections._connections, alias, wrapper)
    yield alias
    wrapper.close()
    delattr(connections._connections, alias)


def test_server_side_binding_applies_settings_without_leaking(server_binding):
    category = Category.objects.create(name="c")
    for i in range(4):
        Article.objects.create(title=str(i), category=category, embedding=[1, i, 0, 1])
    alias = server_binding
    before = current(alias, "hnsw.ef_search")

    def search(ef):
        qs = (
            Article.objects.using(alias)
            .filter(price=0)
            .similar_to([1, 0, 0, 1], k=3, exact=False, ef_search=ef)
            .annotate(ef=ef_seen())
        )
        return {row.ef for row in qs}

    assert search(88) == {"88"}  # autocommit: BEGIN ... COMMIT around the search
    assert current(alias, "hnsw.ef_search") == before
    with transaction.atomic(using=alias):
        assert search(89) == {"89"}  # in a transaction: a savepoint rolled back after it
        assert current(alias, "hnsw.ef_search") == before
    assert current(alias, "hnsw.iterative_scan") == "off"
