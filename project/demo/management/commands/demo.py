"""``python manage.py demo``: migrate, load the sample catalogue, print a login, serve the site."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from project.demo.models import Article

SAMPLE = [
    # (animals, vehicles, food)
    ("This is a document about cats", "animals", [0.9, 0.0, 0.2]),
    ("This is a document about dogs", "animals", [0.95, 0.1, 0.1]),
    ("This is a document about cars", "vehicles", [0.0, 1.0, 0.05]),
    ("Feeding a kitten", "animals", [0.8, 0.05, 0.6]),
    ("Training a sheepdog", "animals", [0.95, 0.2, 0.05]),
    ("The migration of swallows", "animals", [0.9, 0.3, 0.0]),
    ("Electric bicycles in the city", "vehicles", [0.05, 0.95, 0.0]),
    ("Restoring a 1960s motorcycle", "vehicles", [0.0, 0.9, 0.05]),
    ("Night trains across Europe", "vehicles", [0.1, 0.85, 0.3]),
    ("Sourdough for beginners", "food", [0.0, 0.05, 0.98]),
    ("A guide to street food in Hanoi", "food", [0.05, 0.3, 0.9]),
    ("Cheese and the cows that make it", "food", [0.6, 0.0, 0.8]),
]


class Command(BaseCommand):
    help = "Set up the demo database with sample data and an admin login, then serve the site."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="Load only; do not serve.")
        parser.add_argument("--addrport", default="127.0.0.1:8000", help="Where to serve.")

    def handle(self, *, no_serve: bool, addrport: str, verbosity: int, **options: Any) -> None:
        call_command("migrate", verbosity=max(verbosity - 1, 0), interactive=False)
        if not Article.objects.exists():
            Article.objects.bulk_create(
                Article(title=t, topic=topic, embedding=v) for t, topic, v in SAMPLE
            )
            self.stdout.write(f"Loaded {len(SAMPLE)} sample articles.")
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        self.stdout.write(
            self.style.SUCCESS(f"Admin login: admin / {password}  (http://{addrport}/admin/)")
        )
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)
