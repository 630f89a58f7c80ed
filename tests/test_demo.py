"""The README's demo command sets up a working site (run without serving, on a fresh database)."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_demo_command_loads_sample_data_and_serves_ranked_pages(empty_database):
    host = quote(connection.settings_dict["HOST"], safe="")
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "DATABASE_URL": f"postgres://{connection.settings_dict['USER']}@{host}/{empty_database}",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "Loaded 12 sample articles." in done.stdout
    assert "Admin login: admin / " in done.stdout

    check = (
        "from django.test import Client; c = Client(HTTP_HOST='localhost');"
        "r = c.get('/?topic=food'); print(r.status_code, b'Sourdough for beginners' in r.content);"
        "r = c.get('/?v=[1,nan,2]'); print(r.status_code, b'Element 1 of the vector is NaN' in r.content)"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", check],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip().splitlines()[-2:] == ["200 True", "400 True"], out.stderr
