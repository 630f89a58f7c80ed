"""PostgreSQL killed under load: the site answers short 503s, logs a few lines, and comes back.

The demo site runs in a real server process (``manage.py runserver``, DEBUG off) on a second
embedded PostgreSQL in ``.pgdata-outage/``, so the test database is never touched. Clients loop
over the search page, the JSON API and the demo's passage page while the server's postmaster is
killed with SIGKILL (as in the measured incident), then restarted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / ".pgdata-outage"
CLIENTS = int(os.environ.get("VECTORSEARCH_OUTAGE_CLIENTS", "8"))
# By hand, as measured in docs/database.md: VECTORSEARCH_OUTAGE_SECONDS=15 VECTORSEARCH_OUTAGE_CLIENTS=32
OUTAGE_SECONDS = float(os.environ.get("VECTORSEARCH_OUTAGE_SECONDS", "5"))
# One line per cause per 10 s interval: connection refused, connection lost, server starting up,
# for each of the page's, the API's and the passage page's loggers, with room to spare.
MAX_LOG_LINES = 12
# runserver's own access log ("GET /search/?q=... HTTP/1.1" 503 123), not an error log.
ACCESS_LINE = re.compile(r'"(GET|HEAD) \S+ HTTP/1\.[01]" \d{3}')


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the embedded server's handle is cached per process)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start_database() -> str:
    return python(f"from vectorsearch.embedded import start; print(start({str(DATA)!r})['HOST'])")


def kill_database() -> None:
    """SIGKILL the postmaster, then wait until its children are gone too (they follow it)."""
    pid = int((DATA / "postmaster.pid").read_text().split()[0])
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while any(p.exists() for p in [Path(f"/proc/{pid}"), *children]):
        assert time.monotonic() < deadline, "PostgreSQL's processes outlived their postmaster"
        time.sleep(0.05)


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Site:
    def __init__(self, base: str, log: Path, paths: list[str]) -> None:
        self.base, self.log, self.paths = base, log, paths

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def load(self, seconds: float) -> list[tuple[str, int, str]]:
        """CLIENTS threads requesting the paths in turn for ``seconds``."""

        def client(i: int) -> list[tuple[str, int, str]]:
            answers = []
            deadline = time.monotonic() + seconds
            n = i
            while time.monotonic() < deadline:
                path = self.paths[n % len(self.paths)]
                answers.append((path, *self.get(path)))
                n += 1
            return answers

        with ThreadPoolExecutor(CLIENTS) as pool:
            return [a for batch in pool.map(client, range(CLIENTS)) for a in batch]

    def wait_until_up(self, timeout: float) -> float:
        started = time.monotonic()
        while True:
            statuses = [self.get(path)[0] for path in self.paths]
            if statuses == [200] * len(self.paths):
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, statuses
            time.sleep(0.1)

    def error_lines(self, start: int) -> list[str]:
        text = self.log.read_bytes()[start:].decode(errors="replace")
        return [line for line in text.splitlines() if line.strip() and not ACCESS_LINE.search(line)]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    host = start_database()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DATABASE_URL": f"postgres://postgres@{quote(host, safe='')}/postgres",
        "DJANGO_DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, "manage.py"]
    loaded = subprocess.run(
        [*manage, "demo", "--no-serve", "--limit", "20", "--verbosity", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr
    with psycopg.connect(host=host, dbname="postgres", user="postgres") as conn:
        pk = conn.execute("SELECT min(id) FROM demo_passage").fetchone()[0]
    port = free_port()
    log = tmp_path_factory.mktemp("outage") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    site = Site(
        f"http://127.0.0.1:{port}",
        log,
        ["/search/?q=json+dump", "/search/api/?q=sort", f"/docs/{pk}/"],
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                site.get("/search/api/?q=up")
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield site
    finally:
        server.terminate()
        server.wait(timeout=20)
        python(f"from vectorsearch.embedded import stop; stop({str(DATA)!r})")


def test_a_killed_database_gives_short_503s_a_few_log_lines_and_recovery(site):
    site.wait_until_up(timeout=30)
    up = site.load(1)
    assert {status for _, status, _ in up} == {200}

    logged_before = site.log.stat().st_size
    kill_database()
    down = site.load(OUTAGE_SECONDS)
    start_database()
    recovered_in = site.wait_until_up(timeout=30)
    lines = site.error_lines(logged_before)

    statuses = Counter(status for _, status, _ in down)
    print(
        f"\n{len(down)} requests in a {OUTAGE_SECONDS:.0f} s outage with {CLIENTS} clients: "
        f"{dict(statuses)}; {len(lines)} log lines; answering 200 again {recovered_in:.1f} s "
        "after the restart returned"
    )
    print("\n".join(lines))
    assert statuses == {503: len(down)}
    for path, _, body in down:
        assert "Traceback" not in body and "psycopg" not in body and "socket" not in body, path
        if "/api/" in path:
            assert len(json.loads(body)["error"]) < 80
        elif "/docs/" in path:
            assert len(body) < 80 and "unavailable" in body
        else:
            assert "Search is unavailable right now" in body
    assert len(down) > 10 * MAX_LOG_LINES  # enough requests that one line each would show
    assert len(lines) <= MAX_LOG_LINES, "\n".join(lines)
    assert not any("Traceback" in line for line in lines)
    assert any("the database is away" in line for line in lines)
