import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

pytest_plugins = ["tests.browser"]


def admin_conninfo(dbname: str = "postgres") -> str:
    """A libpq connection string to the test server as its superuser."""
    s = connection.settings_dict
    parts = {"host": s["HOST"], "port": s["PORT"], "user": s["USER"], "password": s["PASSWORD"]}
    return psycopg.conninfo.make_conninfo(dbname=dbname, **{k: v for k, v in parts.items() if v})


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
