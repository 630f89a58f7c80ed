"""How long the admin's "Re-embed selected" holds the request (issue #13, D5).

    python benchmarks/bench_admin_reembed.py [--rows 20000] [--words 60] [--skip-inline-all]

The target: over 20k rows the response returns in < 2 s, and the work is queued or refused with
the command to run. Rows are embedapp.Note objects (generic Embedding table, HashingEmbedder of
384 dimensions), embedded once first; each scenario posts the action through Django's test
client to the real admin (``select_across``: "Select all N notes") and times the POST alone
(the action and its redirect), then the changelist page the browser loads after it.

Scenarios: above ``ADMIN_REEMBED_MAX_ROWS`` without a background task backend (refused), with
one (django-tasks' DummyBackend: queued; the queue's cost only, no worker), 1,000 rows inline
(the default limit), and, for comparison with before, all rows inline with the limits lifted.
"""

from __future__ import annotations

import argparse
import importlib
import random
import re
import time
from io import StringIO
from typing import Any

from _setup import setup, truncate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--words", type=int, default=60)
    parser.add_argument("--skip-inline-all", action="store_true")
    args = parser.parse_args()
    setup(384)

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client, override_settings

    from tests.embedapp.models import Note

    rng = random.Random(0)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
        for _ in range(20_000)
    ]
    truncate("vectorsearch_embedding", "embedapp_note")
    Note.objects.bulk_create(
        (
            Note(
                title=" ".join(rng.choices(vocabulary, k=6)),
                body=" ".join(rng.choices(vocabulary, k=args.words)),
            )
            for _ in range(args.rows)
        ),
        batch_size=5_000,
    )
    call_command("vectorsearch_backfill", "embedapp.Note", stdout=StringIO())
    User.objects.filter(username="bench").delete()
    user = User.objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
    url = "/admin/embedapp/note/"
    all_rows = {"select_across": "1", "index": "0", "_selected_action": ["0"]}
    first = [str(pk) for pk in Note.objects.order_by("pk").values_list("pk", flat=True)[:1000]]

    def post(data: dict[str, Any]) -> tuple[float, float, str]:
        started = time.perf_counter()
        response = client.post(url, {"action": "vectorsearch_reembed", **data})
        posted = time.perf_counter() - started
        assert response.status_code == 302, response.status_code
        started = time.perf_counter()
        page = client.get(response["Location"]).content.decode()
        shown = time.perf_counter() - started
        found = re.findall(r'<li class="(?:success|warning|error|info)">(.*?)</li>', page, re.S)
        return posted, shown, " | ".join(m.strip() for m in found)

    def report(name: str, result: tuple[float, float, str]) -> None:
        posted, shown, message = result
        print(f"{name:<44} POST {posted:6.2f} s   changelist {shown:5.2f} s")
        print(f"    {message[:300]}")

    print(f"{args.rows:,} notes of ~{args.words + 6} words, HashingEmbedder(384), admin client")
    report(f"all {args.rows:,}, no background backend (refused)", post(all_rows))
    try:  # the framework vectorsearch.tasks uses: Django's own (6.0+), else django-tasks
        framework = importlib.import_module("django.tasks")
    except ImportError:
        framework = importlib.import_module("django_tasks")
    task_backends = framework.task_backends
    dummy = {"default": {"BACKEND": f"{framework.__name__}.backends.dummy.DummyBackend"}}
    with override_settings(TASKS=dummy):
        report(f"all {args.rows:,}, DummyBackend (queued)", post(all_rows))
        queued = task_backends["default"].results
        print(f"    {len(queued)} task(s), {sum(len(r.args[2]) for r in queued):,} ids")
    with override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=None):  # 1,000 checkboxes
        report("1,000 selected, inline (the default limit)", post({"_selected_action": first}))
    if not args.skip_inline_all:
        lifted = {"ADMIN_REEMBED_MAX_ROWS": 10**9, "ADMIN_REEMBED_MAX_SECONDS": 10**6}
        with override_settings(VECTORSEARCH=lifted):
            report(f"all {args.rows:,}, inline, limits lifted (before)", post(all_rows))
        report(
            f"all {args.rows:,}, inline, time limit 10 s only",
            _with(
                override_settings(VECTORSEARCH={"ADMIN_REEMBED_MAX_ROWS": 10**9}), post, all_rows
            ),
        )


def _with(context: Any, function: Any, *args: Any) -> Any:
    with context:
        return function(*args)


if __name__ == "__main__":
    main()
