"""A soak test: the demo under gunicorn with mixed load for 10 minutes (issue #13, item 6).

    python -m benchmarks.soak [--seconds 600] [--connections 16] [--workers 3]

At once, on loopback only:
- ``wrk`` asks the search API other questions, pages and filters (benchmarks/http_queries.lua);
- a writer thread saves a passage with new text every 2 s (sync mode "immediate": embedded on
  save) and then checks that the API finds it by that text: the delay until searchable;
- a ``vectorsearch_backfill`` runs a third of the way in.

Prints requests, non-2xx answers, p50/p99, the workers' RSS after the first minute and at the
end, and the saves' searchable delays. Needs ``pip install -e '.[dev,serve]'`` and Debian wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


WORDS = [
    "read",
    "write",
    "parse",
    "config",
    "option",
    "file",
    "socket",
    "thread",
    "queue",
    "lock",
    "date",
    "time",
    "zone",
    "json",
    "csv",
    "xml",
    "html",
    "url",
    "http",
    "request",
    "response",
    "header",
    "cookie",
    "session",
    "cache",
    "hash",
    "random",
    "sort",
    "list",
    "dict",
    "set",
    "tuple",
    "string",
    "bytes",
    "encode",
    "decode",
    "compress",
    "archive",
    "path",
    "directory",
    "process",
    "signal",
    "timer",
    "event",
    "loop",
    "task",
    "future",
    "pool",
    "logging",
    "format",
    "number",
    "float",
    "decimal",
    "fraction",
    "math",
]


def rss_kb(parent: int) -> int:
    """The summed RSS (kB) of ``parent``'s child processes (gunicorn's workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"PPid:\t{parent}\n" in status:
            found = re.search(r"VmRSS:\s+(\d+)", status)
            total += int(found.group(1)) if found else 0
    return total


def api(port: int, **params: str) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{port}/search/api/?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "project.settings"}
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "demo", "--no-serve", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    server = subprocess.Popen(
        [python, "-m", "gunicorn", "project.wsgi:application", "--bind", f"127.0.0.1:{args.port}",
         "--workers", str(args.workers), "--log-level", "warning", "--timeout", "30"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                if api(args.port, q="warm up")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from project.demo.models import Passage
        from vectorsearch.registry import registry

        registration = registry.get(Passage)

        stop = threading.Event()
        delays: list[float] = []
        failures: list[str] = []

        pks = list(Passage.objects.values_list("pk", flat=True)[:500])
        # The passages' own text, put back (and embedded again) when the run ends.
        originals = dict(Passage.objects.filter(pk__in=pks).values_list("pk", "body"))

        def writer() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                passage = Passage.objects.get(pk=pks[n % len(pks)])
                # Each save its own words: two saves of one text would tie for the first place.
                text = f"soak {n}: " + " ".join(random.sample(WORDS, 8))
                passage.body = text
                saved = time.monotonic()
                passage.save()  # embedded on save (sync "immediate")
                # The text its vector is made of (title, heading and the new body): searched by
                # meaning alone, the saved passage is then the nearest once it is re-embedded.
                query = registration.get_text(passage)
                while time.monotonic() - saved < 10:
                    status, body = api(args.port, q=query, per_page="10", mode="semantic")
                    if status == 200 and any(r["pk"] == passage.pk for r in body["results"]):
                        delays.append(time.monotonic() - saved)
                        break
                    time.sleep(0.2)
                else:
                    failures.append(f"passage {passage.pk} not found by its new text within 10 s")
                stop.wait(2.0)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        wrk = subprocess.Popen(
            ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
             "--latency", "-s", "benchmarks/http_queries.lua",
             f"http://127.0.0.1:{args.port}/search/api/"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(min(60, args.seconds / 3))
        rss_start = rss_kb(server.pid)
        time.sleep(max(0, args.seconds / 3 - 60))
        backfill = subprocess.run(
            [python, "manage.py", "vectorsearch_backfill", "--verbosity", "0"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        output, _ = wrk.communicate()
        rss_end = rss_kb(server.pid)
        stop.set()
        thread.join(timeout=15)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if "originals" in locals():
            for passage in Passage.objects.filter(pk__in=list(originals)):
                if passage.body != originals[passage.pk]:
                    passage.body = originals[passage.pk]
                    passage.save()  # embedded again on save
    print(output)
    requests = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    p50 = re.search(r"50%\s+(\S+)", output)
    p99 = re.search(r"99%\s+(\S+)", output)
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("nan")
    print(f"requests: {requests.group(1) if requests else '?'}, non-2xx: "
          f"{non2xx.group(1) if non2xx else 0}, p50 {p50.group(1) if p50 else '?'}, "
          f"p99 {p99.group(1) if p99 else '?'}")  # fmt: skip
    print(f"workers' RSS after the first minute {rss_start / 1024:.1f} MB, at the end "
          f"{rss_end / 1024:.1f} MB ({growth:+.1f}%, target <= +10%)")  # fmt: skip
    print(f"backfill during the load: exit {backfill.returncode} {backfill.stderr.strip()[:200]}")
    if delays:
        print(f"saves: {len(delays)} searchable by their new text, delay p50 "
              f"{statistics.median(delays):.2f} s, max {max(delays):.2f} s; "
              f"{len(failures)} not found")  # fmt: skip
    for failure in failures[:5]:
        print("  ", failure)


if __name__ == "__main__":
    main()
