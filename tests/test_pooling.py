"""Searches through a real connection pool: Django's psycopg pool, and pgbouncer in transaction mode.

A pool hands one server session to many clients in turn, so a setting left behind by one search
changes the next client's results, and a statement prepared by one client is missing for the next.
These tests run under tests/settings_pool.py and tests/settings_pgbouncer.py (.ci/run runs both;
under the plain settings there is no pool to go through, and they skip saying so). "Another
client" is another thread with its own Django connection, handing it back after each query as a
request does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import CharField, Func, IntegerField, Value

from tests.queryapp.models import Article, Category

pytestmark = pytest.mark.django_db(transaction=True)

QUERY = [0.9, 0.1, 0.3, 0.2]
ROWS = 300
CLIENTS = 6


def pool_in_use() -> str | None:
    if connections["default"].settings_dict["OPTIONS"].get("pool"):
        return "Django's connection pool"
    if getattr(settings, "TESTS_PGBOUNCER", False):
        return "pgbouncer in transaction mode"
    return None


@pytest.fixture(autouse=True)
def pooled() -> str:
    found = pool_in_use()
    if found is None:
        pytest.skip(
            "No pool: run with DJANGO_SETTINGS_MODULE=tests.settings_pool or "
            "tests.settings_pgbouncer (after python -m tests.pgbouncer start), as .ci/run does."
        )
    return found


@pytest.fixture
def articles() -> list[Article]:
    rng = np.random.default_rng(7)
    categories = [Category.objects.create(name=f"c{i}") for i in range(3)]
    vectors = rng.normal(size=(ROWS, 4))
    rows = Article.objects.bulk_create(
        Article(
            title=f"a{i}", category=categories[i % 3], price=i % 100, embedding=vectors[i].tolist()
        )
        for i in range(ROWS)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queryapp_article")
    return rows


def exact_ids(
    rows: list[Article], query: list[float], keep: Callable[[Article], bool]
) -> list[int]:
    q = np.asarray(query)

    def distance(row: Article) -> float:
        v = np.asarray(row.embedding, dtype=float)
        return float(1 - v @ q / (np.linalg.norm(v) * np.linalg.norm(q)))

    return [row.pk for row in sorted(filter(keep, rows), key=distance)[:10]]


def setting(name: str) -> Func:
    return Func(Value(name), Value(True), function="current_setting", output_field=CharField())


def backend_pid() -> Func:
    return Func(function="pg_backend_pid", output_field=IntegerField())


class Session(NamedTuple):
    """What one client saw of the server session the pool gave it."""

    pid: int
    ef_search: str
    iterative_scan: str
    marker: str | None
    prepared: int


def probe(alias: str = "default") -> Session:
    # One transaction, so that pgbouncer keeps every statement on one server session; pgvector's
    # library is loaded first so that its settings read as their values, not as unknown.
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT '[1]'::vector")
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('hnsw.ef_search'), "
            "current_setting('hnsw.iterative_scan'), current_setting('vs_test.marker', true), "
            "(SELECT count(*) FROM pg_prepared_statements)"
        )
        return Session(*cursor.fetchone())


def as_other_clients(work: Callable[[], Any], times: int = 5) -> list[Any]:
    """``work`` run ``times`` by each of CLIENTS threads, each handing its connection back after
    every run (to the pool; to pgbouncer by disconnecting), as requests do."""

    def client(_: int) -> list[Any]:
        results = []
        try:
            for _ in range(times):
                results.append(work())
                connection.close()
        finally:
            connection.close()
        return results

    with ThreadPoolExecutor(CLIENTS) as executor:
        return [r for batch in executor.map(client, range(CLIENTS)) for r in batch]


@pytest.fixture
def server_binding() -> Iterator[str]:
    """A connection alias like "default" but with psycopg's server-side parameter binding, where
    vectorsearch.db runs the settings and the search as separate statements in a transaction.

    Registered as a connection, not in settings.DATABASES, so it exists in this thread only;
    under Django's pool it gets a pool of its own.
    """
    alias = "server_binding"
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    wrapper = connections["default"].__class__(settings_dict, alias)
    setattr(connections._connections, alias, wrapper)
    yield alias
    wrapper.close()
    if wrapper.pool:
        wrapper.close_pool()
    delattr(connections._connections, alias)


@pytest.mark.parametrize("binding", ["client", "server"])
def test_a_search_setting_reaches_neither_the_next_query_nor_another_client(
    articles, binding, pooled, request
):
    alias = "default" if binding == "client" else request.getfixturevalue("server_binding")
    defaults = probe(alias)
    for _ in range(6):  # more than psycopg's prepare_threshold
        found = list(
            Article.objects.using(alias)
            .filter(price__lt=50)
            .similar_to(QUERY, k=5, exact=False, ef_search=77)
            .annotate(ef=setting("hnsw.ef_search"), pid=backend_pid())
        )
        assert len(found) == 5
        assert {a.ef for a in found} == {"77"}  # the search itself ran with it
    searched_on = found[0].pid
    own_next = probe(alias)
    assert (own_next.ef_search, own_next.iterative_scan) == (defaults.ef_search, "off")
    connections[alias].close()

    if alias == "default" or pooled.startswith("pgbouncer"):
        seen = as_other_clients(probe)  # pgbouncer: one pool for every client of the database
    else:  # Django's pool of this alias, which only this thread knows: its next requests
        seen = []
        for _ in range(5):
            seen.append(probe(alias))
            connections[alias].close()
    assert searched_on in {s.pid for s in seen}, "no other client got the search's session"
    assert {s.ef_search for s in seen} == {defaults.ef_search}
    assert {s.iterative_scan for s in seen} == {"off"}
    assert {s.prepared for s in seen} == {0}


def test_the_probe_sees_what_a_session_level_set_leaves_behind():
    # The hazard the test above guards against, shown: a plain SET (session level, one
    # statement so pgbouncer runs it on one session) is seen by the next client of that session.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), set_config('vs_test.marker', 'left', false)")
        leaked_on = cursor.fetchone()[0]
    connection.close()
    seen = as_other_clients(probe)
    assert {s.marker for s in seen if s.pid == leaked_on} == {"left"}
    # Leave the pooled sessions clean for the tests after this one.
    as_other_clients(lambda: connection.cursor().execute("RESET vs_test.marker"))


def test_repeated_searches_prepare_nothing_on_pooled_sessions(articles):
    # psycopg prepares a statement run 5 times on a connection unless told not to; through
    # pgbouncer 1.18 the next client then fails with 'prepared statement "_pg3_0" does not exist'.
    def search_then_probe() -> tuple[int, Session]:
        found = Article.objects.filter(price__lt=50).similar_to(QUERY, k=3, exact=False)
        count = len(list(found))
        return count, probe()

    results = as_other_clients(search_then_probe, times=8)
    assert {count for count, _ in results} == {3}
    assert {session.prepared for _, session in results} == {0}


def test_iterative_index_and_exact_plans_return_the_exact_rows(articles):
    queries = [QUERY, [0.1, 0.9, -0.4, 0.2], [-0.5, 0.2, 0.8, 0.1]]
    cheap = lambda a: a.price < 10  # noqa: E731  (10% of the rows: an iterative index scan)
    expected = {tuple(q): exact_ids(articles, q, cheap) for q in queries}

    def searches() -> list[tuple[bool, list[float], list[int], bool, list[int]]]:
        done = []
        for query in queries:
            for exact in (False, True):
                with transaction.atomic():
                    # 300 rows: PostgreSQL prefers a sequential scan unless told otherwise; a
                    # transaction-local setting, safe on a pool.
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL enable_seqscan = off")
                    found = Article.objects.filter(price__lt=10).similar_to(
                        query, k=10, exact=exact
                    )
                    uses_index = "article_embedding_hnsw" in found.explain()
                    pks = [a.pk for a in found]
                # Outside a transaction: a server-side cursor would not survive pgbouncer.
                streamed = [
                    a.pk
                    for a in Article.objects.filter(price__lt=10)
                    .similar_to(query, k=10, exact=exact)
                    .iterator(chunk_size=3)
                ]
                done.append((exact, query, pks, uses_index, streamed))
        return done

    runs = [run for done in as_other_clients(searches, times=2) for run in done]
    assert len(runs) == CLIENTS * 2 * len(queries) * 2
    for exact, query, pks, uses_index, streamed in runs:
        assert uses_index is not exact, (exact, query)
        assert pks == expected[tuple(query)], (exact, query)
        assert streamed == expected[tuple(query)], (exact, query)
