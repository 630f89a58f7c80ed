"""Shared set-up for the benchmarks: Django on a dedicated database of the embedded server.

The benchmarks use the test suite's models (tests/embedapp) in a database of their own,
``vectorsearch_bench``, so they never touch the test database; with ``DATABASE_URL`` set they use
that database instead. Not part of the pytest run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "vectorsearch_bench"


def setup(dimensions: int = 384, extra_apps: tuple[str, ...] = ()) -> None:
    """Start the server, configure Django, migrate. ``extra_apps`` (benchmark-only apps without
    migrations, such as ``benchmarks.gloveapp``) are installed and their tables created."""
    sys.path.insert(0, str(ROOT))
    if not os.environ.get("DATABASE_URL"):
        import psycopg

        from vectorsearch.embedded import start

        settings = start(ROOT / ".pgdata")
        with psycopg.connect(
            host=settings["HOST"], user=settings["USER"], dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        os.environ["DATABASE_URL"] = (
            f"postgres://{settings['USER']}@{quote(settings['HOST'], safe='')}/{BENCH_DB}"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.conf import settings as django_settings

    if extra_apps:
        django_settings.INSTALLED_APPS = [*django_settings.INSTALLED_APPS, *extra_apps]
    django.setup()
    # The benchmark's embedder: the 384 dimensions (the generic table takes any size).
    django_settings.VECTORSEARCH_EMBEDDERS = {
        **django_settings.VECTORSEARCH_EMBEDDERS,
        "default": {
            "BACKEND": "vectorsearch.embedders.HashingEmbedder",
            "OPTIONS": {"dimensions": dimensions},
        },
    }
    from django.core.management import call_command

    from vectorsearch.embedders import embedders

    embedders.reset()
    call_command("migrate", verbosity=0, skip_checks=True, run_syncdb=bool(extra_apps))


def truncate(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        cursor.execute("CHECKPOINT")
