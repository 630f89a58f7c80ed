"""A real pgbouncer in transaction mode in front of the test server, for tests/settings_pgbouncer.py.

    python -m tests.pgbouncer start   # writes .pgbouncer/pgbouncer.ini, starts it, waits for it
    python -m tests.pgbouncer stop

It listens on a Unix socket in ``.pgbouncer/`` (port 6432, no TCP) and forwards every database
to the server of tests/settings.py (the embedded one, or ``DATABASE_URL``'s). Debian's pgbouncer
(1.18) refuses to run as root: as root it runs as the embedded server's ``pgserver`` user (or
``$PGBOUNCER_USER``, else ``nobody``). ``auth_type = trust``: for tests only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

DIRECTORY = Path(__file__).resolve().parent.parent / ".pgbouncer"
PORT = 6432
# Small on purpose: clients share server connections, as they do on a busy site.
POOL_SIZE = 4
PIDFILE = DIRECTORY / "pgbouncer.pid"
LOGFILE = DIRECTORY / "pgbouncer.log"


def _binary() -> str:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(found).exists():
        raise SystemExit("pgbouncer is not installed: apt-get install pgbouncer (.ci/run does).")
    return found


def _server() -> dict[str, str]:
    from tests.settings import DATABASES

    default = DATABASES["default"]
    return {k: str(default.get(k) or "") for k in ("HOST", "PORT", "USER", "PASSWORD")}


def _config(server: dict[str, str]) -> str:
    target = f"host={server['HOST']}" + (f" port={server['PORT']}" if server["PORT"] else "")
    if server["PASSWORD"]:  # DATABASE_URL with a password: pgbouncer logs in with it
        target += f" user={server['USER']} password={server['PASSWORD']}"
    return f"""\
[databases]
; Any database name, on the test server. timezone: a session setting pgbouncer sets on every
; server connection (a client's own SET TIME ZONE would stick to one of them only).
* = {target} timezone=UTC

[pgbouncer]
pool_mode = transaction
listen_addr =
listen_port = {PORT}
unix_socket_dir = {DIRECTORY}
auth_type = trust
auth_file = {DIRECTORY}/userlist.txt
admin_users = {server["USER"] or "postgres"}
default_pool_size = {POOL_SIZE}
max_client_conn = 200
; psycopg sends none of these, but other clients do.
ignore_startup_parameters = extra_float_digits,options
logfile = {LOGFILE}
pidfile = {PIDFILE}
"""


def running() -> bool:
    """Whether the pgbouncer of this checkout is running."""
    try:
        os.kill(int(PIDFILE.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def admin(command: str) -> None:
    """Run ``command`` (``KILL db``, ``RECONNECT``...) on pgbouncer's admin console."""
    user = _server()["USER"] or "postgres"
    # The console speaks only the simple query protocol: a client-side-binding cursor.
    with (
        psycopg.connect(host=str(DIRECTORY), port=PORT, dbname="pgbouncer", user=user) as conn,
        psycopg.ClientCursor(conn) as cursor,
    ):
        conn.autocommit = True
        cursor.execute(command)


def start() -> None:
    """Write the configuration and start pgbouncer (daemonized); wait until it accepts clients."""
    if running():
        return
    server = _server()
    DIRECTORY.mkdir(exist_ok=True)
    (DIRECTORY / "pgbouncer.ini").write_text(_config(server))
    user = server["USER"] or "postgres"
    (DIRECTORY / "userlist.txt").write_text(f'"{user}" ""\n')
    command = [_binary(), "-d", "-q", str(DIRECTORY / "pgbouncer.ini")]
    if os.geteuid() == 0:
        runner = os.environ.get("PGBOUNCER_USER", "pgserver")
        try:
            account = pwd.getpwnam(runner)
        except KeyError:  # DATABASE_URL: the embedded server's user was never made
            runner = "nobody"
            account = pwd.getpwnam(runner)
        for path in [DIRECTORY, *DIRECTORY.iterdir()]:
            os.chown(path, account.pw_uid, account.pw_gid)
        command[1:1] = ["-u", runner]
    subprocess.run(command, check=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            admin("SHOW VERSION")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                log = LOGFILE.read_text() if LOGFILE.exists() else "(no log)"
                raise SystemExit(f"pgbouncer did not start:\n{log}") from None
            time.sleep(0.1)


def stop() -> None:
    """Stop pgbouncer and wait for it to exit."""
    if not running():
        return
    pid = int(PIDFILE.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    actions = {"start": start, "stop": stop}
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        raise SystemExit("usage: python -m tests.pgbouncer start|stop")
    actions[sys.argv[1]]()
