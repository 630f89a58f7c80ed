"""Citus: distribute a searchable table across workers, from migrations (docs/scaling.md).

- :class:`DistributeTable` runs ``create_distributed_table()`` (reversed by
  ``undistribute_table()``); :class:`ReferenceTable` runs ``create_reference_table()``.
- :func:`distributed_tables` reads which models those operations distribute from the project's
  migration files, so the system check (``checks_scaling``) needs no second declaration.
- :func:`has_citus` tells once per database alias whether the ``citus`` extension is there;
  ``db.apply_settings`` then sends ``SET LOCAL citus.propagate_set_commands = 'local'`` before
  the ``hnsw.*`` settings, without which a ``SET LOCAL`` never reaches the shards.

Citus cannot be installed on the machine these were written on: the SQL they generate is tested,
not its effect on a Citus cluster. docs/scaling.md says so too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations import Migration
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models import Field, Model
from django.dispatch import receiver

__all__ = [
    "PROPAGATE_SET_LOCAL",
    "DistributeTable",
    "Distribution",
    "ReferenceTable",
    "distributed_tables",
    "has_citus",
]

# Citus runs SET LOCAL on the shards of the transaction's distributed queries only with this.
PROPAGATE_SET_LOCAL = "SET LOCAL citus.propagate_set_commands = 'local'"

# Database alias -> whether it has the citus extension: asked once per process and alias, not
# once per connection (with CONN_MAX_AGE = 0 or a pooler, that is every request), and forgotten
# when DATABASES changes.
_citus_by_alias: dict[str, bool] = {}


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "DATABASES":
        _citus_by_alias.clear()


def has_citus(connection: BaseDatabaseWrapper) -> bool:
    """Whether the database behind ``connection`` has the ``citus`` extension (asked once per
    process and database alias; installing Citus on a running site needs a restart)."""
    known = _citus_by_alias.get(connection.alias)
    if known is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            row = cursor.fetchone()
        known = _citus_by_alias[connection.alias] = bool(row and row[0])
    return known


def _field(model: type[Model], column: str) -> Field[Any, Any] | None:
    """The concrete field named ``column``, or whose database column it is."""
    for field in model._meta.concrete_fields:
        if column in (field.name, field.column):
            return field
    return None


class _TableOperation(Operation):
    """What both operations share: the model, the table, the Citus check, no state change."""

    reversible = True
    reduces_to_sql = True
    model_name: str

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass  # Distribution is storage, not schema: Django's model state is unchanged.

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def _model(self, app_label: str, state: ProjectState) -> type[Model]:
        return state.apps.get_model(app_label, self.model_name)

    def _run(
        self,
        schema_editor: BaseDatabaseSchemaEditor,
        model: type[Model],
        sql: str,
        params: list[Any],
    ) -> None:
        connection = schema_editor.connection
        if not self.allow_migrate_model(connection.alias, model):
            return
        # sqlmigrate collects the SQL without running it: no Citus needed for that.
        if not schema_editor.collect_sql and not has_citus(connection):
            raise NotSupportedError(
                f"{type(self).__name__}({self.model_name!r}) needs the citus extension on "
                f"database {connection.alias!r}, the Citus coordinator. Run CREATE EXTENSION "
                "citus; there (and on every worker), or remove the operation from the migration "
                "on a database without Citus."
            )
        schema_editor.execute(sql, params)

    def _table(self, schema_editor: BaseDatabaseSchemaEditor, model: type[Model]) -> str:
        # A regclass given as text: quoted, so mixed-case table names resolve.
        return schema_editor.quote_name(model._meta.db_table)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = self._model(app_label, from_state)
        self._run(
            schema_editor,
            model,
            "SELECT undistribute_table(%s)",
            [self._table(schema_editor, model)],
        )


class DistributeTable(_TableOperation):
    """``create_distributed_table()`` on a model's table, by ``column`` (a field name or its
    database column); reversed by ``undistribute_table()``.

    ``colocate_with`` is another model of the same app (or ``"app_label.Model"``) whose shards
    this table's should sit with, or Citus's ``"none"`` / ``"default"``. The model's primary key
    (and its unique constraints) must include the distribution column: check
    ``vectorsearch.E052`` says so before ``migrate`` fails on it.
    """

    def __init__(self, model_name: str, column: str, colocate_with: str | None = None) -> None:
        for name, value in (("model_name", model_name), ("column", column)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"DistributeTable({name}=...) must be a non-empty str.")
        if colocate_with is not None and (not isinstance(colocate_with, str) or not colocate_with):
            raise TypeError(
                "DistributeTable(colocate_with=...) must be a model name, 'none' or 'default'."
            )
        self.model_name = model_name
        self.column = column
        self.colocate_with = colocate_with

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"model_name": self.model_name, "column": self.column}
        if self.colocate_with is not None:
            kwargs["colocate_with"] = self.colocate_with
        return type(self).__qualname__, [], kwargs

    def describe(self) -> str:
        with_ = f", co-located with {self.colocate_with}" if self.colocate_with else ""
        return f"Distribute {self.model_name} across Citus workers by {self.column}{with_}"

    @property
    def migration_name_fragment(self) -> str:
        return f"distribute_{self.model_name_lower}"

    def sql(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, state: ProjectState
    ) -> tuple[str, list[Any]]:
        """The ``SELECT create_distributed_table(...)`` statement and its parameters."""
        model = self._model(app_label, state)
        field = _field(model, self.column)
        if field is None:
            raise ValueError(
                f"DistributeTable({self.model_name!r}, column={self.column!r}): "
                f"{model._meta.label} has no such field or column."
            )
        params: list[Any] = [self._table(schema_editor, model), field.column]
        sql = "SELECT create_distributed_table(%s, %s"
        if self.colocate_with is not None:
            sql += ", colocate_with => %s"
            if self.colocate_with.lower() in ("none", "default"):
                params.append(self.colocate_with.lower())
            else:
                other_app, _, other = self.colocate_with.rpartition(".")
                other_model = state.apps.get_model(other_app or app_label, other)
                params.append(self._table(schema_editor, other_model))
        return sql + ")", params

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        sql, params = self.sql(app_label, schema_editor, to_state)
        self._run(schema_editor, self._model(app_label, to_state), sql, params)


class ReferenceTable(_TableOperation):
    """``create_reference_table()``: a copy of the table on every worker (small tables that
    distributed ones join or filter on, e.g. categories); reversed by ``undistribute_table()``."""

    def __init__(self, model_name: str) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise TypeError("ReferenceTable(model_name=...) must be a non-empty str.")
        self.model_name = model_name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return type(self).__qualname__, [], {"model_name": self.model_name}

    def describe(self) -> str:
        return f"Copy {self.model_name} to every Citus worker (reference table)"

    @property
    def migration_name_fragment(self) -> str:
        return f"reference_{self.model_name_lower}"

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        model = self._model(app_label, to_state)
        self._run(
            schema_editor,
            model,
            "SELECT create_reference_table(%s)",
            [self._table(schema_editor, model)],
        )


@dataclass(frozen=True)
class Distribution:
    """How one model's table is spread: by ``column``, or copied whole (``column`` None)."""

    app_label: str
    model_name: str
    column: str | None
    migration: str


def distributed_tables(migrations: Iterable[Migration]) -> list[Distribution]:
    """The :class:`DistributeTable` / :class:`ReferenceTable` operations in ``migrations``."""
    found = []
    for migration in migrations:
        for operation in migration.operations:
            if isinstance(operation, DistributeTable | ReferenceTable):
                column = operation.column if isinstance(operation, DistributeTable) else None
                found.append(
                    Distribution(
                        migration.app_label,
                        operation.model_name_lower,
                        column,
                        f"{migration.app_label}.{migration.name}",
                    )
                )
    return found
