"""A brand-new Django project adopts vectorsearch with no step beyond INSTALLED_APPS.

Runs the real ``django-admin startproject``, ``makemigrations`` and ``migrate`` in subprocesses,
against a new database that has no vector extension yet.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import admin_conninfo

MODELS = """
from django.db import models

from vectorsearch import HnswIndex, VectorField, VectorQuerySet


class Product(models.Model):
    name = models.CharField(max_length=100)
    embedding = VectorField(dimensions=3)

    objects = VectorQuerySet.as_manager()

    class Meta:
        indexes = [HnswIndex(fields=["embedding"], distance="cosine", name="product_embedding")]
"""

CONCURRENT_MIGRATION = """
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations

from vectorsearch import HnswIndex


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("shop", "0001_initial")]
    operations = [
        AddIndexConcurrently(
            "product", HnswIndex(fields=["embedding"], distance="l2", name="product_embedding_l2")
        ),
    ]
"""

QUERY = """
from shop.models import Product
Product.objects.create(name="cats", embedding=[0.1, 0.2, 0.7])
Product.objects.create(name="cars", embedding=[0.8, 0.1, 0.1])
print([p.name for p in Product.objects.similar_to([0.2, 0.3, 0.5])])
"""


def _run(args: list[str], cwd: Path) -> str:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.django_db
def test_startproject_makemigrations_migrate_on_a_database_without_the_extension(
    tmp_path, empty_database
):
    django_admin = [sys.executable, "-m", "django"]
    _run([*django_admin, "startproject", "mysite", str(tmp_path)], cwd=tmp_path)
    _run([sys.executable, "manage.py", "startapp", "shop"], cwd=tmp_path)
    (tmp_path / "shop" / "models.py").write_text(MODELS)
    settings = tmp_path / "mysite" / "settings.py"
    s = connection.settings_dict
    settings.write_text(
        settings.read_text()
        + textwrap.dedent(f"""
            INSTALLED_APPS += ["shop", "django.contrib.postgres", "vectorsearch"]
            DATABASES = {{"default": {{
                "ENGINE": "django.db.backends.postgresql",
                "NAME": {empty_database!r},
                "USER": {s["USER"]!r},
                "PASSWORD": {s["PASSWORD"]!r},
                "HOST": {s["HOST"]!r},
                "PORT": {s["PORT"]!r},
            }}}}
        """)
    )

    made = _run([sys.executable, "manage.py", "makemigrations", "shop"], cwd=tmp_path)
    assert "Create model Product" in made
    migration = (tmp_path / "shop" / "migrations" / "0001_initial.py").read_text()
    assert "CreateExtension" not in migration and "VectorExtension" not in migration

    migrated = _run([sys.executable, "manage.py", "migrate"], cwd=tmp_path)
    assert "Applying shop.0001_initial... OK" in migrated

    with psycopg.connect(admin_conninfo(empty_database)) as conn:
        (indexdef,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'product_embedding'"
        ).fetchone()
    assert "USING hnsw (embedding vector_cosine_ops)" in indexdef

    found = _run([sys.executable, "manage.py", "shell", "-c", QUERY], cwd=tmp_path)
    assert found.strip().splitlines()[-1] == "['cats', 'cars']"

    # A second index, built CONCURRENTLY on the now non-empty table, as docs/ describes.
    (tmp_path / "shop" / "migrations" / "0002_concurrent.py").write_text(CONCURRENT_MIGRATION)
    migrated = _run([sys.executable, "manage.py", "migrate"], cwd=tmp_path)
    assert "Applying shop.0002_concurrent... OK" in migrated
    with psycopg.connect(admin_conninfo(empty_database)) as conn:
        (indexdef, valid) = conn.execute(
            "SELECT pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'product_embedding_l2'"
        ).fetchone()
    assert "USING hnsw (embedding vector_l2_ops)" in indexdef
    assert valid is True
