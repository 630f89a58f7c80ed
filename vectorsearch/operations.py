"""The pgvector extension and index health, for migrations and operators.

- The extension is created at the start of ``migrate`` (a ``pre_migrate`` receiver), before any
  migration of any app runs, so a site's own migrations need no hand-written operation whatever
  the order of INSTALLED_APPS.
- :class:`VectorExtension` is the explicit migration operation, for sites that prefer it.
- Index health (INVALID indexes, REINDEX leftovers, bloat) lives in :mod:`.index_health`;
  its names stay importable from here.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import DatabaseError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import ProjectState
from pgvector import django as pgvector_django

from .conf import get_settings
from .exceptions import VectorExtensionError
from .index_health import (
    BLOAT_MIN_BYTES,
    BLOAT_RATIO,
    IndexHealth,
    InvalidIndex,
    LeftoverIndex,
    drop_index,
    hnsw_size_estimate,
    index_health,
    invalid_vector_indexes,
    leftover_indexes,
    repair_index,
)

__all__ = [
    "BLOAT_MIN_BYTES",
    "BLOAT_RATIO",
    "IndexHealth",
    "InvalidIndex",
    "LeftoverIndex",
    "VectorExtension",
    "drop_index",
    "ensure_vector_extension",
    "extension_version",
    "hnsw_size_estimate",
    "index_health",
    "invalid_vector_indexes",
    "leftover_indexes",
    "repair_index",
]

EXTENSION = "vector"
CREATE_SQL = "CREATE EXTENSION IF NOT EXISTS vector;"
# SQLSTATEs of the failures a site owner can fix.
INSUFFICIENT_PRIVILEGE = "42501"
NOT_AVAILABLE = ("0A000", "58P01")  # feature_not_supported (PG 15+), undefined_file (older)


def extension_version(connection: BaseDatabaseWrapper) -> str | None:
    """The installed pgvector version in the connection's database, or None."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = %s", [EXTENSION])
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def ensure_vector_extension(connection: BaseDatabaseWrapper) -> bool:
    """Create the ``vector`` extension unless it exists; True when it was created.

    Raises :class:`VectorExtensionError` with the SQL a superuser must run when the connection's
    role may not create it, or how to install pgvector when the server lacks it.
    """
    if connection.vendor != "postgresql" or extension_version(connection) is not None:
        return False
    try:
        # One statement: atomic by itself under autocommit, as migrate runs it.
        with connection.cursor() as cursor:
            cursor.execute(CREATE_SQL)
    except DatabaseError as e:
        raise _extension_error(connection, e) from e
    return True


def _extension_error(connection: BaseDatabaseWrapper, error: DatabaseError) -> VectorExtensionError:
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    settings = connection.settings_dict
    where = f"database {settings.get('NAME')!r} (connection {connection.alias!r})"
    if sqlstate == INSUFFICIENT_PRIVILEGE:
        return VectorExtensionError(
            f"The PostgreSQL role {settings.get('USER')!r} may not create the pgvector extension "
            f"in {where}. Ask a superuser to run, once, in that database:\n\n"
            f"    {CREATE_SQL}\n\nthen run migrate again."
        )
    if sqlstate in NOT_AVAILABLE:
        return VectorExtensionError(
            f"The PostgreSQL server behind {where} does not have pgvector installed. Install "
            "pgvector 0.8 or later on the server (see https://github.com/pgvector/pgvector), or "
            "unset DATABASE_URL to use the embedded server in development."
        )
    return VectorExtensionError(f"Could not create the pgvector extension in {where}: {error}")


def create_extension_before_migrate(*, using: str, **kwargs: Any) -> None:
    """``pre_migrate`` receiver: the extension exists before the first migration runs.

    Only for a database that routers let a model with a vector field migrate to: a database
    that holds none of them needs no extension. With ``CREATE_EXTENSION`` off, a missing
    extension stops migrate with the SQL to run, rather than failing half-way with
    ``type "vector" does not exist``.
    """
    connection = connections[using]
    if connection.vendor != "postgresql" or not _holds_vectors(using):
        return
    if get_settings()["CREATE_EXTENSION"]:
        ensure_vector_extension(connection)
    elif extension_version(connection) is None:
        raise VectorExtensionError(
            f"The pgvector extension is missing in database {connection.settings_dict.get('NAME')!r} "
            f"(connection {using!r}), and VECTORSEARCH['CREATE_EXTENSION'] is off. Ask a "
            f"superuser to run, once, in that database:\n\n    {CREATE_SQL}\n\nthen run "
            "migrate again."
        )


def _holds_vectors(using: str) -> bool:
    from .distances import vector_type_of

    return any(
        router.allow_migrate_model(using, model)
        for model in apps.get_models(include_auto_created=True)
        if any(vector_type_of(f) for f in model._meta.local_concrete_fields)
    )


class VectorExtension(pgvector_django.VectorExtension):
    """``CREATE EXTENSION vector`` as a migration operation, with an actionable error.

    Rarely needed: with ``vectorsearch`` installed, ``migrate`` creates the extension itself.
    """

    def __init__(self, hints: Any = None) -> None:
        super().__init__(hints=hints)
        self.name = EXTENSION

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        try:
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        except DatabaseError as e:
            raise _extension_error(schema_editor.connection, e) from e
