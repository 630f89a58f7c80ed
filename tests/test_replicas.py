"""vectorsearch.replicas against a real streaming standby of the test server (tests/standby.py).

The standby is made once per module (pg_basebackup -R of the embedded server, ~2 s) and serves the
``replica`` alias of tests/settings.py, whose TEST MIRROR points it at the test database.
"""

import asyncio
import contextvars
import json
import re
import threading
import time
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router
from django.db.models.expressions import RawSQL
from django.http import HttpResponse, HttpResponseRedirect
from django.test import RequestFactory, override_settings
from pgvector.django import CosineDistance

from tests.queryapp.models import Article, Category
from tests.standby import Standby
from vectorsearch import replicas
from vectorsearch.checks_scaling import check_replica_aliases, check_replica_databases
from vectorsearch.db import apply_settings

BOTH = ["default", "replica"]
REPLICAS = {"SEARCH_REPLICAS": ["replica"], "REPLICA_RETRY_SECONDS": 1}
QUERY = [1.0, 0.2, 0.0, 0.5]


@pytest.fixture(scope="module")
def standby(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        primary = connections["default"].settings_dict
        replica = connections["replica"].settings_dict
    server = Standby(primary, replica)
    reason = server.unavailable()
    if reason:
        pytest.skip(f"No streaming standby: {reason}.")
    started = time.monotonic()
    server.create()
    server.wait_for_database(replica["NAME"])
    server.setup_seconds = time.monotonic() - started
    yield server
    with django_db_blocker.unblock():
        connections["replica"].close()
    server.destroy()


@pytest.fixture(autouse=True)
def fresh_state():
    """No replica health and no read-your-writes window carried over from another test."""
    replicas.reset()
    token = replicas.primary_until.set(0.0)
    yield
    replicas.primary_until.reset(token)
    replicas.reset()


def elsewhere(function, *args, **kwargs):
    """Run ``function`` as another request would: in a context of its own."""
    return contextvars.Context().run(function, *args, **kwargs)


def make_articles(n=30):
    category = Category.objects.create(name="c")
    return [
        Article.objects.create(
            title=f"a{i}", category=category, embedding=[1.0, i / n, (i % 3) / 3, 0.5]
        )
        for i in range(n)
    ]


def search(alias, ef_search=40):
    """The nearest 5 articles on ``alias``, each row saying whether a standby served it."""
    with apply_settings(alias, {"hnsw.ef_search": ef_search}):
        return list(
            Article.objects.using(alias)
            .annotate(
                standby=RawSQL("pg_is_in_recovery()", []),
                ef=RawSQL("current_setting('hnsw.ef_search')", []),
            )
            .order_by(CosineDistance("embedding", QUERY))
            .values_list("pk", "standby", "ef")[:5]
        )


def setting(alias, name):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT '[1]'::vector")  # loads pgvector, which defines hnsw.*
        cursor.execute("SELECT current_setting(%s, true)", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_hnsw_index_and_rows_replicate_to_the_standby(standby):
    elsewhere(make_articles, 10)
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "CREATE INDEX replicated_hnsw ON queryapp_article "
            "USING hnsw (embedding vector_l2_ops) WITH (m = 8)"
        )
    standby.wait_replayed()
    with connections["replica"].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        assert cursor.fetchone()[0] is True
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'queryapp_article' "
            "AND indexdef LIKE '%USING hnsw%' ORDER BY indexname"
        )
        found = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM queryapp_article")
        assert cursor.fetchone()[0] == 10
        # The standby's planner walks the replicated index.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM queryapp_article ORDER BY embedding <-> '[1,0,0,0]' LIMIT 3"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert set(found) == {"article_embedding_hnsw", "replicated_hnsw"}
    assert "WITH (m='8')" in found["replicated_hnsw"]
    assert "Index Scan using replicated_hnsw" in plan


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_a_search_is_served_by_the_standby(standby):
    expected = [a.pk for a in elsewhere(make_articles)]
    standby.wait_replayed()
    with override_settings(VECTORSEARCH=REPLICAS):
        alias = replicas.search_alias(Article)
        assert alias == "replica"
        rows = search(alias)
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            assert cursor.fetchone()[0] is True
        # The same answer as the primary's, and a plain ORM read works there too.
        assert [pk for pk, _, _ in rows] == [pk for pk, _, _ in search("default")]
        assert {standby for _, standby, _ in rows} == {True}
        assert Article.objects.using(alias).filter(pk__in=expected).count() == len(expected)
        # Without replicas configured, searches stay on the primary.
    assert replicas.search_alias(Article) == DEFAULT_DB_ALIAS


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_no_setting_leaks_on_either_connection(standby):
    elsewhere(make_articles, 10)
    standby.wait_replayed()
    for alias in BOTH:
        before = setting(alias, "hnsw.ef_search")
        assert before != "77"
        assert {ef for _, _, ef in search(alias, ef_search=77)} == {"77"}
        assert setting(alias, "hnsw.ef_search") == before, alias
        # Later queries on the same connection (a pooled one's next request) see no trace.
        assert {ef for _, _, ef in search(alias, ef_search=41)} == {"41"}
        assert setting(alias, "hnsw.ef_search") == before, alias


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_read_your_writes_in_the_same_request(standby):
    elsewhere(make_articles, 5)
    standby.wait_replayed()
    settings = {**REPLICAS, "READ_YOUR_WRITES_SECONDS": 0.5}
    with override_settings(VECTORSEARCH=settings):
        assert replicas.search_alias(Article) == "replica"
        # Another request's write leaves this one on the replica...
        elsewhere(lambda: Category.objects.create(name="other request"))
        assert replicas.search_alias(Article) == "replica"
        # ...this one's own save sends its searches to the primary, which has the new row.
        article = Article.objects.create(title="new", category=Category.objects.first())
        assert replicas.search_alias(Article) == "default"
        assert Article.objects.using(replicas.search_alias(Article)).filter(pk=article.pk)
        time.sleep(0.6)
        assert replicas.search_alias(Article) == "replica"
        article.delete()
        assert replicas.search_alias(Article) == "default"
        with replicas.use_primary():
            primary_until = replicas.primary_until.get()
            assert replicas.search_alias(Article) == "default"
        assert replicas.primary_until.get() < primary_until


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_read_your_writes_follows_the_redirect(standby):
    category = elsewhere(Category.objects.create, name="c")
    standby.wait_replayed()
    seen = []

    def view(request):
        if request.method == "POST":
            Article.objects.create(title="posted", category=category)
            return HttpResponseRedirect("/search/")
        seen.append(replicas.search_alias(Article))
        return HttpResponse("ok")

    middleware = replicas.ReadYourWritesMiddleware(view)
    factory = RequestFactory()
    cookie = replicas.ReadYourWritesMiddleware.cookie_name
    with override_settings(VECTORSEARCH={**REPLICAS, "READ_YOUR_WRITES_SECONDS": 1}):
        posted = elsewhere(middleware, factory.post("/add/"))
        assert posted.status_code == 302
        morsel = posted.cookies[cookie]
        assert morsel["httponly"] and morsel["max-age"] == 1

        def follow(cookies):
            request = factory.get("/search/")
            request.COOKIES.update(cookies)
            elsewhere(middleware, request)
            return seen[-1]

        # The redirected page (same browser) searches the primary; another browser does not.
        assert follow({cookie: morsel.value}) == "default"
        assert follow({}) == "replica"
        # A tampered cookie counts for nothing.
        assert follow({cookie: morsel.value.replace(":", "x", 1)}) == "replica"
        # A thread that served the POST does not carry the window to its next visitor.
        middleware(factory.post("/add/"))
        assert replicas.search_alias(Article) == "replica"
        time.sleep(1.1)
        assert follow({cookie: morsel.value}) == "replica"


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_read_your_writes_middleware_under_asgi(standby):
    category = elsewhere(Category.objects.create, name="c")
    standby.wait_replayed()

    async def view(request):
        if request.method == "POST":
            await sync_to_async(Article.objects.create)(title="posted", category=category)
            return HttpResponseRedirect("/search/")
        return HttpResponse(await sync_to_async(replicas.search_alias)(Article))

    middleware = replicas.ReadYourWritesMiddleware(view)
    factory = RequestFactory()
    cookie = replicas.ReadYourWritesMiddleware.cookie_name
    with override_settings(VECTORSEARCH={**REPLICAS, "READ_YOUR_WRITES_SECONDS": 2}):
        try:
            posted = asyncio.run(middleware(factory.post("/add/")))
            value = posted.cookies[cookie].value
            request = factory.get("/search/")
            request.COOKIES[cookie] = value
            assert asyncio.run(middleware(request)).content == b"default"
            assert asyncio.run(middleware(factory.get("/search/"))).content == b"replica"
        finally:  # the connections of sync_to_async's thread
            asyncio.run(sync_to_async(connections.close_all)())


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_a_lagging_replica_falls_back_and_an_idle_primary_is_no_lag(standby):
    elsewhere(make_articles, 5)
    standby.wait_replayed()
    with override_settings(VECTORSEARCH={**REPLICAS, "REPLICA_MAX_LAG_SECONDS": 1}):
        # Idle primary: the last replayed commit gets older, but nothing is missing. (Wait for
        # that: autovacuum may commit after the inserts.)
        deadline = time.monotonic() + 15
        while not standby.execute("SELECT now() - pg_last_xact_replay_timestamp() > '1.2s'"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert replicas.measure_replica("replica") == (True, 0.0)
        assert replicas.search_alias(Article) == "replica"

        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            elsewhere(lambda: Category.objects.create(name="not replayed yet"))
            time.sleep(0.3)  # the WAL arrives at the standby, which does not replay it
            replicas.reset()
            _, lag = replicas.measure_replica("replica")
            assert lag > 1
            assert replicas.search_alias(Article) == "default"
            (status,) = replicas.replica_status()
            assert status.state == "lagging"
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
        standby.wait_replayed()
        replicas.reset()
        assert replicas.search_alias(Article) == "replica"


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_status_shows_each_replica_and_its_lag(standby):
    standby.wait_replayed()
    with override_settings(VECTORSEARCH=REPLICAS):
        out = StringIO()
        call_command("vectorsearch_status", "embedapp.Article", stdout=out)
        assert re.search(r"replica   replica: streaming, \d+\.\d s behind", out.getvalue())
        out = StringIO()
        call_command("vectorsearch_status", "embedapp.Article", json=True, stdout=out)
        (report,) = json.loads(out.getvalue())
        (replica,) = report["replicas"]
        assert replica.pop("lag_seconds") < 1
        assert replica == {
            "alias": "replica",
            "primary": "default",
            "state": "streaming",
            "in_recovery": True,
            "error": "",
        }
        standby.stop()
        try:
            out = StringIO()
            call_command("vectorsearch_status", "embedapp.Article", stdout=out)
            assert re.search(r"replica   replica: down \(.*PGSQL\.5433", out.getvalue())
        finally:
            standby.start()
    out = StringIO()
    call_command("vectorsearch_status", "embedapp.Article", stdout=out)
    assert "replica " not in out.getvalue()


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_instances_found_on_the_standby_save_to_the_primary(standby):
    elsewhere(make_articles, 5)
    standby.wait_replayed()
    with override_settings(VECTORSEARCH=REPLICAS):
        found = list(Article.objects.using("replica").order_by(CosineDistance("embedding", QUERY)))
        assert {a._state.db for a in found} == {"replica"}
        found[0].title = "edited"
        with pytest.raises(DatabaseError, match="read-only transaction"):
            found[0].save()  # what a search on the standby would leave its caller with
        connections["replica"].close()
        replicas.bind_to_primary([*found, {"not": "a model"}], "replica")
        assert {a._state.db for a in found} == {"default"}
        found[0].save()
        assert Article.objects.using("default").get(pk=found[0].pk).title == "edited"
        assert found[1].category.name == "c"  # relations load from the primary too


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_router_reads_from_the_replica_and_writes_to_the_primary(standby):
    article = elsewhere(make_articles, 3)[0]
    standby.wait_replayed()
    with override_settings(
        VECTORSEARCH=REPLICAS, DATABASE_ROUTERS=["vectorsearch.replicas.ReplicaRouter"]
    ):
        read = Article.objects.get(pk=article.pk)
        assert read._state.db == "replica"
        read.title = "edited"
        read.save()  # would fail on the read-only standby
        assert Article.objects.using("default").get(pk=article.pk).title == "edited"
        assert read.category.name == "c"  # a relation across primary and replica
        assert router.allow_migrate("replica", "queryapp") is False
        assert router.allow_migrate("default", "queryapp") is True


def test_a_replica_alias_not_in_databases_is_a_check_error():
    with override_settings(VECTORSEARCH={"SEARCH_REPLICAS": {"default": ["replica", "nope"]}}):
        (error,) = check_replica_aliases()
    assert error.id == "vectorsearch.E050"
    assert "'nope'" in error.msg and "replica" in error.hint


@pytest.fixture
def extra_alias(django_db_blocker):
    """Adds connections outside any test case (as tests/test_operations.py's other_database)."""
    added = []

    def add(alias, **overrides):
        connections.settings[alias] = {**connections["default"].settings_dict, **overrides}
        added.append(alias)

    with django_db_blocker.unblock():
        yield add
    for alias in added:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


def test_a_replica_without_pgvector_is_a_database_check_error(extra_alias, empty_database):
    extra_alias("noext", NAME=empty_database)
    extra_alias("gone", HOST="/nonexistent-socket-dir")
    with override_settings(VECTORSEARCH={"SEARCH_REPLICAS": ["noext", "gone"]}):
        assert check_replica_aliases() == []
        messages = check_replica_databases(databases=["default"])
        assert check_replica_databases(databases=["other"]) == []
    assert [m.id for m in messages] == ["vectorsearch.E051", "vectorsearch.W050"]
    assert "'noext'" in messages[0].msg


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_a_streaming_standby_passes_the_checks(standby):
    with override_settings(VECTORSEARCH=REPLICAS):
        assert check_replica_aliases() == []
        assert check_replica_databases(databases=["default"]) == []


@pytest.mark.django_db(transaction=True, databases=BOTH)
def test_searches_fall_back_while_the_standby_is_stopped(standby, capsys):
    """The issue's target: 0 failed searches while the standby stops and comes back."""
    elsewhere(make_articles)
    standby.wait_replayed()
    expected = [pk for pk, _, _ in search("default")]
    log = []  # (seconds since start, duration, served by a standby)
    errors = []
    events = {}

    def stop_then_start():
        time.sleep(1.0)
        events["stop"] = time.monotonic() - started
        standby.stop("fast")
        events["stopped"] = time.monotonic() - started
        time.sleep(2.0)
        events["start"] = time.monotonic() - started
        standby.start()
        events["started"] = time.monotonic() - started

    with override_settings(VECTORSEARCH=REPLICAS):
        started = time.monotonic()
        operator = threading.Thread(target=stop_then_start)
        operator.start()
        statuses = []
        while time.monotonic() - started < 30.0:
            t0 = time.monotonic()
            try:
                rows = replicas.with_fallback(Article, search)
            except Exception as e:  # counted, and asserted to be none
                errors.append(repr(e))
                continue
            duration = time.monotonic() - t0
            log.append((t0 - started, duration, rows[0][1]))
            assert [pk for pk, _, _ in rows] == expected
            if "stopped" in events and "start" not in events and not statuses:
                statuses = replicas.replica_status()
            if "started" in events and rows[0][1]:
                events.setdefault("back", t0 - started)
                if t0 - started > events["back"] + 0.5:
                    break
            time.sleep(0.005)
        operator.join()
    assert errors == []
    before = [d for t, d, s in log if t < events["stop"]]
    during = [(t, d, s) for t, d, s in log if events["stopped"] < t < events["start"]]
    assert before and all(s for t, d, s in log if t < events["stop"])
    assert during and not any(s for _, _, s in during)  # all on the primary
    assert "back" in events, "the standby never served searches again after its restart"
    # Once it streams again (an idle primary sends nothing new), within the retry delay.
    assert events["back"] - events["started"] < 5
    assert statuses[0].state == "down" and statuses[0].error
    around_stop = [d for t, d, s in log if events["stop"] - 0.01 < t < events["stopped"] + 0.5]
    with capsys.disabled():
        print(
            f"\nstandby set up in {standby.setup_seconds:.1f}s; {len(log)} searches, 0 errors; "
            f"p50 {sorted(before)[len(before) // 2] * 1000:.1f} ms before the stop, "
            f"slowest around the stop {max(around_stop) * 1000:.1f} ms, slowest while down "
            f"{max(d for _, d, _ in during) * 1000:.1f} ms; pg_ctl stop took "
            f"{events['stopped'] - events['stop']:.2f}s, pg_ctl start "
            f"{events['started'] - events['start']:.2f}s; searches back on the standby "
            f"{events['back'] - events['started']:.2f}s after it started"
        )
