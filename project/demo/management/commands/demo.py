"""``python manage.py demo``: migrate, load Python's documentation, embed and index it, print an
admin login, serve the site on 127.0.0.1:8000.

The first run loads the corpus (about 20,000 passages) in one transaction, then embeds it with
``vectorsearch_backfill`` and builds the HNSW index with ``vectorsearch_index``, exactly as a site
adding vectorsearch to existing content would. Later runs find everything in place and only check
it, so they start in seconds. ``--no-serve`` stops after loading.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from project.demo import corpus
from project.demo.models import Passage

BATCH = 2000


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Set up the demo: Python's documentation as passages, embedded and indexed, and an admin "
        "login; then serve the site."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="Load only; do not serve.")
        parser.add_argument("--addrport", default="127.0.0.1:8000", help="Where to serve.")
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            help="Load at most this many passages (a quick look; the tests use it).",
        )

    def handle(
        self,
        *,
        no_serve: bool,
        addrport: str,
        limit: int | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        started = time.monotonic()
        call_command("migrate", verbosity=max(verbosity - 1, 0), interactive=False)
        if not Passage.objects.exists():
            self.load(limit, verbosity)
        loaded = time.monotonic()
        # Both are no-ops when everything is current: a rerun only checks.
        call_command(
            "vectorsearch_backfill", "demo.Passage", batch_size=1000, verbosity=verbosity,
            stdout=self.stdout, stderr=self.stderr,
        )  # fmt: skip
        embedded = time.monotonic()
        call_command(
            "vectorsearch_index", "demo.Passage", no_concurrently=True, verbosity=verbosity,
            stdout=self.stdout, stderr=self.stderr,
        )  # fmt: skip
        with connection.cursor() as cursor:
            # Fresh tables have no statistics until autovacuum comes by: the planner would
            # misjudge the first searches (hybrid p50 42 ms before, 27 ms after, measured).
            cursor.execute("ANALYZE demo_passage")
            cursor.execute("ANALYZE vectorsearch_embedding")
        if verbosity:
            done = time.monotonic()
            self.stdout.write(
                f"Ready in {done - started:.1f}s (load {loaded - started:.1f}s, "
                f"embed {embedded - loaded:.1f}s, index {done - embedded:.1f}s)."
            )
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        self.stdout.write(
            self.style.SUCCESS(f"Admin login: admin / {password}  (http://{addrport}/admin/)")
        )
        self.stdout.write(
            f"Search: http://{addrport}/search/  JSON: http://{addrport}/search/api/?q=..."
        )
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)

    def load(self, limit: int | None, verbosity: int) -> None:
        """All passages in one transaction: an interrupted load leaves nothing half-done."""
        started = time.monotonic()
        if verbosity:
            self.stdout.write("Reading Python's documentation (importing the stdlib) ...")
        loaded = 0
        with transaction.atomic():
            batch: list[Passage] = []
            for p in corpus.passages(limit):
                batch.append(
                    Passage(
                        title=p.title[:300],
                        module=p.module[:100],
                        kind=p.kind,
                        section=p.section,
                        heading=p.heading[:200],
                        body=p.body,
                    )
                )
                if len(batch) == BATCH:
                    loaded += len(Passage.objects.bulk_create(batch))
                    batch = []
                    if verbosity:
                        self.stdout.write(f"  {loaded} passages ...")
            loaded += len(Passage.objects.bulk_create(batch))
        if not loaded:
            raise CommandError("Found no documentation to load: is the standard library there?")
        self.stdout.write(
            f"Loaded {loaded} passages of Python's documentation "
            f"in {time.monotonic() - started:.1f}s."
        )
