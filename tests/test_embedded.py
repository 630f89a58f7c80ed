import subprocess
import sys
from pathlib import Path

import psycopg
from django.conf import settings

from vectorsearch import embedded

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / ".pgdata"


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def test_a_second_process_reuses_the_running_server():
    if settings.DATABASES["default"]["HOST"] != str(DATA_DIR):
        import pytest

        pytest.skip("the suite runs on DATABASE_URL, not the embedded server")
    pid = _postmaster_pid(DATA_DIR)
    code = f"from vectorsearch.embedded import start; print(start({str(DATA_DIR)!r})['HOST'])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == str(DATA_DIR)
    assert _postmaster_pid(DATA_DIR) == pid  # the same server, not a restart


def test_a_fresh_data_directory_gets_postgres_18_with_pgvector(tmp_path):
    data_dir = tmp_path / "pg"
    config = embedded.start(data_dir)
    try:
        conninfo = psycopg.conninfo.make_conninfo(
            dbname=config["NAME"], user=config["USER"], host=config["HOST"]
        )
        with psycopg.connect(conninfo) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()[0]
            available = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()[0]
        assert int(version) >= 180000
        assert tuple(int(p) for p in available.split(".")) >= (0, 8, 5)
    finally:
        embedded.stop(data_dir)
    assert not (data_dir / "postmaster.pid").exists()


def test_database_url_wins_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://site:secret@db.internal:6543/shop")
    config = embedded.database_settings(tmp_path / "never", CONN_MAX_AGE=60)
    assert config["NAME"] == "shop"
    assert config["HOST"] == "db.internal"
    assert config["PORT"] == 6543
    assert config["CONN_MAX_AGE"] == 60
    assert not (tmp_path / "never").exists()
