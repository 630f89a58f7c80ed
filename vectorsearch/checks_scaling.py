"""System checks of read replicas and Citus distribution; every id is in docs/checks.md.

- E050 ``SEARCH_REPLICAS`` names an alias (replica or primary) that is not in ``DATABASES``
- E051 a replica's database has no pgvector (tagged ``database``)
- W050 a replica cannot be reached while checking (tagged ``database``): searches will use
  the primary until it can
- E052 a model distributed by ``DistributeTable`` has a primary key (or a unique constraint)
  without the distribution column, which Citus refuses
- E053 ``DistributeTable(column=...)`` names no field or column of the model
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.db import DatabaseError, connections
from django.db.migrations.loader import MigrationLoader
from django.db.models import CompositePrimaryKey, Model, UniqueConstraint

from .citus import Distribution, distributed_tables
from .conf import get_settings
from .operations import extension_version


def _replica_settings() -> dict[str, list[str]]:
    try:
        replicas: dict[str, list[str]] = get_settings()["SEARCH_REPLICAS"]
    except Exception:  # a bad setting is vectorsearch.E005's to report
        return {}
    return replicas


@checks.register()
def check_replica_aliases(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    known = list(connections.settings)
    for primary, replicas in _replica_settings().items():
        for alias, role in [(primary, "primary"), *((r, "replica") for r in replicas)]:
            if alias not in known:
                errors.append(
                    checks.Error(
                        f"VECTORSEARCH['SEARCH_REPLICAS'] names {role} {alias!r}, which is not "
                        "in DATABASES.",
                        hint=f"Aliases in DATABASES: {', '.join(known)}. Add the replica there "
                        "(its HOST, PORT, NAME) or fix the name.",
                        id="vectorsearch.E050",
                    )
                )
    return errors


@checks.register(checks.Tags.database)
def check_replica_databases(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """The replicas of the databases being checked (or named themselves) have pgvector."""
    messages: list[checks.CheckMessage] = []
    wanted = set(databases or ())
    known = set(connections.settings)
    for primary, replicas in _replica_settings().items():
        for alias in replicas:
            if alias not in known or not ({primary, alias} & wanted):
                continue
            try:
                version = extension_version(connections[alias])
            except DatabaseError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                messages.append(
                    checks.Warning(
                        f"Replica {alias!r} cannot be reached: {first}",
                        hint="Searches use the primary until it answers. Check its HOST/PORT "
                        "and that the standby is running.",
                        id="vectorsearch.W050",
                    )
                )
                continue
            if version is None:
                messages.append(
                    checks.Error(
                        f"Replica {alias!r} has no pgvector extension in its database, so "
                        "every search sent to it would fail.",
                        hint=f"Point {alias!r} at a standby of {primary!r} (a streaming "
                        "replica has the primary's extensions) or run CREATE EXTENSION vector "
                        "on a logical replica.",
                        id="vectorsearch.E051",
                    )
                )
    return messages


def check_distribution(model: type[Model], distribution: Distribution) -> list[checks.CheckMessage]:
    """The problems of distributing ``model`` as ``distribution`` says."""
    column = distribution.column
    if column is None:  # a reference table is copied whole: no key to distribute by
        return []
    label = f"{model._meta.label}: DistributeTable(column={column!r}) in {distribution.migration}"
    field = next((f for f in model._meta.concrete_fields if column in (f.name, f.column)), None)
    if field is None:
        return [
            checks.Error(
                f"{label} names no field or column of the model.",
                hint=f"Fields: {', '.join(f.name for f in model._meta.concrete_fields)}.",
                obj=model,
                id="vectorsearch.E053",
            )
        ]
    errors: list[checks.CheckMessage] = []
    pk = model._meta.pk
    keys: list[tuple[str, list[Any]]] = []
    if isinstance(pk, CompositePrimaryKey):
        keys.append(("primary key", list(pk.fields)))
    elif pk is not None:
        keys.append(("primary key", [pk]))
    for other in model._meta.concrete_fields:
        if other.unique and not other.primary_key:
            keys.append((f"unique field {other.name!r}", [other]))
    for constraint in model._meta.constraints:
        if isinstance(constraint, UniqueConstraint) and constraint.fields:
            fields = [model._meta.get_field(name) for name in constraint.fields]
            keys.append((f"unique constraint {constraint.name!r}", fields))
    for what, fields in keys:
        if field in fields:
            continue
        names = [f.name for f in fields]
        hint = (
            f'pk = models.CompositePrimaryKey("{field.name}", "{names[0]}") (Django 5.2+), in '
            "a migration before the one that distributes the table."
            if what == "primary key"
            else f"Add {field.name!r} to it, or drop it."
        )
        errors.append(
            checks.Error(
                f"{label}: the {what} ({', '.join(names)}) does not include {field.name!r}; "
                "Citus requires every primary key and unique constraint of a distributed table "
                "to contain the distribution column.",
                hint=hint,
                obj=model,
                id="vectorsearch.E052",
            )
        )
    return errors


@checks.register(checks.Tags.models)
def check_distributed_models(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Read the Citus operations of the migration files and check the models they distribute."""
    labels = None if app_configs is None else {c.label for c in app_configs}
    loader = MigrationLoader(None, ignore_no_migrations=True)
    errors: list[checks.CheckMessage] = []
    seen = set()
    for distribution in distributed_tables(loader.disk_migrations.values()):
        key = (distribution.app_label, distribution.model_name, distribution.column)
        if key in seen or (labels is not None and distribution.app_label not in labels):
            continue  # a squashed migration repeats the operations it replaces
        seen.add(key)
        try:
            model = apps.get_model(distribution.app_label, distribution.model_name)
        except LookupError:
            continue  # a model deleted by a later migration
        errors.extend(check_distribution(model, distribution))
    return errors
