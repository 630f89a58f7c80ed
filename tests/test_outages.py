"""vectorsearch.outages: which errors mean "the database is away", and logging them sparingly.

The errors are real ones, from psycopg and the test server; tests/test_outage.py kills a server
under load.
"""

import logging
import threading

import psycopg
import pytest
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction

from tests.conftest import admin_conninfo
from vectorsearch import outages
from vectorsearch.db import is_timeout
from vectorsearch.outages import RateLimiter, RateLimitFilter, is_database_away, log_error


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def django_error(code):
    """The exception Django raises for ``code`` run against the test database."""
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        code(cursor)
    return info.value


def refused() -> OperationalError:
    """What Django raises when the server's socket is gone: psycopg's error as its cause."""
    try:
        psycopg.connect(host="/nonexistent-vectorsearch", dbname="postgres", connect_timeout=2)
    except psycopg.OperationalError as e:
        error = OperationalError(*e.args)
        error.__cause__ = e
        return error
    raise AssertionError("connected to a server that does not exist")


def test_a_refused_or_closed_connection_is_the_database_away():
    assert is_database_away(refused())
    assert is_database_away(refused().__cause__)
    closed = psycopg.connect(admin_conninfo())
    closed.close()
    with pytest.raises(psycopg.OperationalError) as info:
        closed.execute("SELECT 1")
    assert is_database_away(info.value)
    assert is_database_away(InterfaceError("connection already closed"))


@pytest.mark.django_db
def test_a_failing_query_is_not_the_database_away():
    timeout = django_error(
        lambda c: (c.execute("SET LOCAL statement_timeout = 1"), c.execute("SELECT pg_sleep(1)"))
    )
    assert is_timeout(timeout) and not is_database_away(timeout)
    assert not is_database_away(django_error(lambda c: c.execute("SELEC 1")))
    assert not is_database_away(django_error(lambda c: c.execute("SELECT 1/0")))
    assert not is_database_away(ValueError("not a database error"))


def test_the_rate_limiter_lets_one_event_per_key_and_interval_through_and_counts_the_rest():
    clock = Clock()
    limiter = RateLimiter(interval=10, clock=clock)
    assert limiter.hit("refused") == (0, 0.0)
    assert [limiter.hit("refused") for _ in range(5)] == [None] * 5
    assert limiter.hit("lost") == (0, 0.0)  # another cause has its own interval
    clock.now += 9.9
    assert limiter.hit("refused") is None
    clock.now += 0.2
    assert limiter.hit("refused") == (6, pytest.approx(10.1))
    assert limiter.hit("refused") is None


def test_the_rate_limiter_forgets_the_oldest_key_past_its_bound():
    limiter = RateLimiter(interval=10, max_keys=3, clock=Clock())
    for key in "abcd":
        assert limiter.hit(key) == (0, 0.0)
    assert len(limiter._windows) == 3
    assert limiter.hit("a") == (0, 0.0)  # forgotten: a new cause again
    assert limiter.hit("d") is None


def test_the_rate_limiter_counts_every_event_of_concurrent_threads():
    clock = Clock()
    limiter = RateLimiter(interval=10, clock=clock)
    passed = []

    def hammer():
        passed.extend(r for r in (limiter.hit("k") for _ in range(2000)) if r is not None)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert passed == [(0, 0.0)]
    clock.now += 10
    assert limiter.hit("k") == (8 * 2000 - 1, 10.0)


def test_log_error_writes_one_line_per_cause_and_interval_with_the_count(monkeypatch, caplog):
    clock = Clock()
    monkeypatch.setattr(outages, "_limiter", RateLimiter(interval=10, clock=clock))
    logger = logging.getLogger("vectorsearch.tests")
    with caplog.at_level(logging.ERROR, logger="vectorsearch.tests"):
        written = [log_error(logger, "A search failed", refused()) for _ in range(500)]
        clock.now += 10
        log_error(logger, "A search failed", refused())
    assert written.count(True) == 1
    first, second = caplog.records
    assert first.getMessage().startswith("A search failed: the database is away: OperationalError:")
    assert "/nonexistent-vectorsearch" in first.getMessage()
    assert first.exc_info is None  # one line: the traceback of a refused connection says nothing
    assert second.getMessage().endswith("(499 more like it in the 10 s before)")


@pytest.mark.django_db
def test_log_error_keeps_the_traceback_of_an_error_that_is_not_an_outage(caplog):
    outages.reset()
    error = django_error(lambda c: c.execute("SELECT 1/0"))
    with caplog.at_level(logging.ERROR, logger="vectorsearch.tests"):
        for _ in range(3):
            log_error(logging.getLogger("vectorsearch.tests"), "A search failed", error)
    (record,) = caplog.records
    assert "DivisionByZero 22012: division by zero" in record.getMessage()
    assert record.exc_info is not None


def test_rate_limit_filter_passes_one_record_per_kind_and_interval(caplog):
    logger = logging.getLogger("vectorsearch.tests.filter")
    limit = RateLimitFilter(interval=10)
    clock = Clock()
    limit.limiter._clock = clock
    logger.addFilter(limit)
    try:
        with caplog.at_level(logging.ERROR, logger="vectorsearch.tests.filter"):
            for n in range(300):
                logger.error("Service Unavailable: %s", f"/search/?q={n}")
            logger.error("Internal Server Error: %s", "/search/")  # another kind
            clock.now += 10
            logger.error("Service Unavailable: %s", "/search/?q=last")
    finally:
        logger.removeFilter(limit)
    assert [r.getMessage() for r in caplog.records] == [
        "Service Unavailable: /search/?q=0",
        "Internal Server Error: /search/",
        "Service Unavailable: /search/?q=last (299 more like it in the 10 s before)",
    ]
