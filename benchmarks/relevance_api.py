"""Relevance and latency of the search API itself, as the demo serves it (issue #11).

    python manage.py demo --no-serve          # once: the demo corpus, embedded and indexed
    python -m benchmarks.relevance_api [--modes hybrid,semantic,keyword] [--repeat 3]

Asks the demo's JSON API (through Django's test client, in process: the view, the form, the one
query path, the statement timeout, the real embedder) every question of
``relevance_questions.json`` in each mode, and prints hit@1/5/10 and MRR@10 computed by ranx, and
the API's latency p50/p95 per mode (query embedding included). A hit is any passage whose title
is an accepted answer, as in benchmarks/relevance.py. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="hybrid,semantic,keyword")
    parser.add_argument("--repeat", type=int, default=3, help="Timed passes over the questions.")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "0")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client
    from ranx import Qrels, Run, evaluate

    from project.demo.models import Passage

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    questions = json.loads((HERE / "relevance_questions.json").read_text())
    title_of = dict(Passage.objects.values_list("pk", "title"))
    titles = set(title_of.values())
    if not titles:
        raise SystemExit("The demo is not loaded: python manage.py demo --no-serve")
    kept = [q for q in questions if set(q["answers"]) & titles]
    qrels = Qrels(
        {f"q{i}": {t: 1 for t in q["answers"] if t in titles} for i, q in enumerate(kept)}
    )
    client = Client()
    client.get("/search/api/", {"q": "warm up"})
    embedder = settings.VECTORSEARCH_EMBEDDERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(f"{len(kept)} questions ({len(questions) - len(kept)} without an answer in this corpus), "
          f"{Passage.objects.count()} passages, embedder {embedder}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(
        f"{'mode':10} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'MRR@10':>7} {'p50 ms':>8} {'p95 ms':>8}"
    )
    for mode in args.modes.split(","):
        run: dict[str, dict[str, float]] = {}
        times: list[float] = []
        for attempt in range(args.repeat):
            for i, q in enumerate(kept):
                started = time.perf_counter()
                response = client.get("/search/api/", {"q": q["q"], "mode": mode})
                times.append(time.perf_counter() - started)
                if attempt:
                    continue
                body = json.loads(response.content)
                ranked: dict[str, float] = {}
                for rank, result in enumerate(body.get("results", [])):
                    # A title's best rank (several passages share a title).
                    ranked.setdefault(title_of[result["pk"]], float(100 - rank))
                run[f"q{i}"] = ranked or {"-": 0.0}
        metrics = evaluate(qrels, Run(run), ["hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10"])
        p50 = statistics.median(times) * 1000
        p95 = statistics.quantiles(times, n=20)[18] * 1000
        print(f"{mode:10} {metrics['hit_rate@1']:6.3f} {metrics['hit_rate@5']:6.3f} "
              f"{metrics['hit_rate@10']:6.3f} {metrics['mrr@10']:7.3f} {p50:8.1f} {p95:8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
