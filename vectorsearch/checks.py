"""System checks; every id is documented in docs/checks.md.

- E001 a vector field's size is outside what its column type holds (fields.py)
- E002 a vector index covers a field declared without ``dimensions``/``length``
- E003 a vector index covers more dimensions than the index method allows
- E004 a vector index's distance cannot be served on that column type by that method
- E005 the ``VECTORSEARCH`` setting is wrong
- W001 a vector index covers a field that is not a vector field
- W010 an HNSW/IVFFlat index is INVALID in the database (tagged ``database``)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import DatabaseError, connections

from .conf import get_settings
from .distances import IndexMethod, vector_type_of
from .indexes import index_distance, index_field_names, index_method, vector_indexes
from .operations import invalid_vector_indexes

# The most dimensions an index can cover, by column type (pgvector 0.8, HNSW and IVFFlat alike).
INDEX_MAX_DIMENSIONS = {"vector": 2_000, "halfvec": 4_000, "bit": 64_000}


def _models(app_configs: Sequence[AppConfig] | None) -> Iterable[Any]:
    configs = app_configs if app_configs is not None else apps.get_app_configs()
    for config in configs:
        yield from config.get_models()


@checks.register(checks.Tags.models)
def check_vector_indexes(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for model in _models(app_configs):
        errors.extend(check_model_indexes(model))
    return errors


def check_model_indexes(model: Any) -> list[checks.CheckMessage]:
    """The problems of one model's HNSW/IVFFlat indexes."""
    errors: list[checks.CheckMessage] = []
    for index in vector_indexes(model):
        errors.extend(_check_index(model, index))
    return errors


def _check_index(model: Any, index: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    label = f"{model._meta.label}: index {index.name!r}"
    method = index_method(index)
    distance = index_distance(index, model)
    try:
        names = index_field_names(index, model)
    except (FieldDoesNotExist, ImproperlyConfigured, AttributeError):
        return errors  # Django's own index checks report fields that do not exist.
    for name in names:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        vtype = vector_type_of(field)
        if vtype is None:
            errors.append(
                checks.Warning(
                    f"{label} is a {method} index on {name!r}, which is not a vector field.",
                    hint="Index a VectorField, HalfVectorField, SparseVectorField or BitField.",
                    obj=model,
                    id="vectorsearch.W001",
                )
            )
            continue
        size = field.length if vtype == "bit" else field.dimensions
        if size is None and index.fields:
            keyword = "length" if vtype == "bit" else "dimensions"
            errors.append(
                checks.Error(
                    f"{label} covers {name!r}, which has no {keyword}; pgvector can only index "
                    f"a column of fixed size.",
                    hint=f"Declare the field with {keyword}=N, e.g. {type(field).__name__}"
                    f"({keyword}=384).",
                    obj=model,
                    id="vectorsearch.E002",
                )
            )
        limit = INDEX_MAX_DIMENSIONS.get(vtype)
        if size is not None and limit is not None and size > limit:
            alternative = {
                "vector": " Store it as a HalfVectorField (up to 4,000 indexed dimensions), "
                "or index a halfvec expression.",
                "halfvec": " Reduce the dimensions, or index a binary quantization (bit).",
            }.get(vtype, "")
            errors.append(
                checks.Error(
                    f"{label} covers {name!r} with {size:,} dimensions; a {method} index on a "
                    f"{vtype} column takes at most {limit:,}.",
                    hint=f"Use a model with fewer dimensions.{alternative}",
                    obj=model,
                    id="vectorsearch.E003",
                )
            )
        if distance is not None and method not in distance.index_methods(vtype):
            possible = ", ".join(
                d.value for d in type(distance) if method in d.index_methods(vtype)
            )
            hint = f"Distances a {method} index can serve on a {vtype} column: {possible}."
            if method is IndexMethod.IVFFLAT and IndexMethod.HNSW in distance.index_methods(vtype):
                hint += f" An HNSW index can serve {distance}."
            errors.append(
                checks.Error(
                    f"{label}: a {method} index on {vtype} column {name!r} cannot serve the "
                    f"{distance} distance.",
                    hint=hint,
                    obj=model,
                    id="vectorsearch.E004",
                )
            )
    return errors


@checks.register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        get_settings()
    except ImproperlyConfigured as e:
        return [checks.Error(str(e), id="vectorsearch.E005")]
    return []


@checks.register(checks.Tags.database)
def check_invalid_indexes(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    warnings: list[checks.CheckMessage] = []
    for alias in databases or ():
        try:
            found = invalid_vector_indexes(connections[alias])
        except DatabaseError:
            continue  # An unreachable database is reported by Django itself.
        for index in found:
            warnings.append(
                checks.Warning(
                    f"The {index.method} index {index.name!r} on table {index.table!r} in "
                    f"database {alias!r} is INVALID: an interrupted CREATE INDEX CONCURRENTLY "
                    "left it behind. Queries ignore it, yet every write still updates it.",
                    hint=f"Rebuild it with: {index.repair_sql} (or "
                    "vectorsearch.operations.repair_index(connection, name)).",
                    id="vectorsearch.W010",
                )
            )
    return warnings
