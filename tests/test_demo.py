"""The README's demo command sets up a working site (run without serving, on a fresh database):
Python's documentation loaded, embedded and indexed, searchable at /search/ and /search/api/."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from project.demo import corpus

REPO = Path(__file__).resolve().parent.parent


def run(env, *args, timeout=180):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.django_db
def test_demo_command_loads_embeds_indexes_and_serves_the_search(empty_database):
    host = quote(connection.settings_dict["HOST"], safe="")
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@{host}/{empty_database}",
    }
    done = run(env, "demo", "--no-serve", "--limit", "300")
    assert done.returncode == 0, done.stderr
    assert "Loaded 300 passages of Python's documentation" in done.stdout
    assert "embedded 300 (300 missing, 0 stale) of 300 rows" in done.stdout
    assert "valid" in done.stdout  # the HNSW index was built
    assert "Admin login: admin / " in done.stdout

    again = run(env, "demo", "--no-serve", "--limit", "300")
    assert again.returncode == 0, again.stderr
    assert "Loaded" not in again.stdout  # a second run reuses what the first loaded
    assert "embedded 0 " in again.stdout

    check = """
import json
from django.test import Client
c = Client(HTTP_HOST="localhost")
r = c.get("/search/", {"q": "for loop over a sequence"})
print("page", r.status_code, b"vs-result-title" in r.content, b'aria-label="Filters"' in r.content)
r = c.get("/search/api/", {"q": "for loop over a sequence", "kind": "topic", "per_page": 3})
body = json.loads(r.content)
print("api", r.status_code, len(body["results"]), body["results"][0]["url"])
print("doc", c.get(body["results"][0]["url"]).status_code)
print("bad", c.get("/search/api/", {"q": "x", "password__startswith": "a"}).status_code)
print("admin", c.get("/admin/demo/passage/").status_code)
"""
    out = run(env, "shell", "-c", check, timeout=120)
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines() if " " in line)
    assert lines.get("page") == "200 True True", out.stdout + out.stderr
    status, count, url = lines["api"].split()
    assert (status, count) == ("200", "3") and url.startswith("/docs/")
    assert lines["doc"] == "200"
    assert lines["bad"] == "400"
    assert lines["admin"] == "302"  # to the login page


def test_the_corpus_splits_documents_into_passages_with_module_and_kind():
    passages = list(corpus.passages(400, django=False))
    assert len(passages) == 400
    assert {p.kind for p in passages} <= set(corpus.KINDS)
    assert {p.module for p in passages} == {corpus.TOPICS_MODULE}  # the topics come first
    # A long page becomes several numbered passages, none longer than a paragraph or so.
    long_page = passages[-1].title
    sections = [p.section for p in passages if p.title == long_page]
    assert len(sections) > 1 and sections == sorted(set(sections)) and sections[0] == 1
    # A paragraph a gathering page ("compound") repeats from a specific one ("for") is kept once.
    bodies = [" ".join(p.body.split()) for p in passages]
    assert len(bodies) == len(set(bodies))
    assert max(len(p.body.split()) for p in passages) < 3 * corpus.MAX_PASSAGE_WORDS
