import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

from vectorsearch import outages

pytest_plugins = ["tests.browser"]


@pytest.fixture(autouse=True)
def _forget_logged_errors() -> None:
    """Each test sees its first error logged: the rate limit of vectorsearch.outages is global."""
    outages.reset()


def admin_conninfo(dbname: str = "postgres") -> str:
    """A libpq connection string to the test server as its superuser."""
    s = connection.settings_dict
    parts = {"host": s["HOST"], "port": s["PORT"], "user": s["USER"], "password": s["PASSWORD"]}
    return psycopg.conninfo.make_conninfo(dbname=dbname, **{k: v for k, v in parts.items() if v})


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database; pooled server sessions are let go before it is dropped.

    Under tests/settings_pool.py (Django's pool) and tests/settings_pgbouncer.py the pooled
    server connections to the test database outlive Django's, and PostgreSQL refuses to drop a
    database in use.
    """
    yield
    test_database = connection.settings_dict["NAME"]
    # Pools of every alias, including connections a test made and forgot (Django keeps them
    # per alias on the backend class).
    pools = getattr(type(connections["default"]), "_connection_pools", {})
    for pool in list(pools.values()):
        pool.close()
    pools.clear()
    if getattr(settings, "TESTS_PGBOUNCER", False):
        from tests import pgbouncer

        pgbouncer.admin(f"KILL {test_database}")
        pgbouncer.admin(f"RESUME {test_database}")


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new database on the test server, without the vector extension; dropped afterwards."""
    name = f"vs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
