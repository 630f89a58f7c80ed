"""Read by tests/test_citus.py's check test only (MIGRATION_MODULES), never applied: it
distributes queryapp.Article, whose primary key lacks the distribution column."""

from django.db import migrations

from vectorsearch.citus import DistributeTable, ReferenceTable


class Migration(migrations.Migration):
    dependencies = []

    operations = [
        ReferenceTable("category"),
        DistributeTable("article", "category", colocate_with="none"),
    ]
