"""System checks; every id is documented in docs/checks.md.

- E001 a vector field's size is outside what its column type holds (fields.py)
- E002 a vector index covers a field declared without ``dimensions``/``length``
- E003 a vector index covers more dimensions than the index method allows
- E004 a vector index's distance cannot be served on that column type by that method
- E005 the ``VECTORSEARCH`` setting is wrong
- E006 a vector index covers something that is not a vector
- E007 a vector index covers more than one column
- W002 a BitField without length (fields.py)
- W010 an HNSW/IVFFlat index is INVALID in the database (tagged ``database``)
- W011 the database's pgvector is older than 0.8 (tagged ``database``)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import DatabaseError, connections

from .conf import get_settings
from .distances import IndexMethod, vector_type_of
from .indexes import index_distance, index_method, indexed_targets, vector_indexes
from .operations import extension_version, invalid_vector_indexes

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


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _check_index(model: Any, index: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    label = f"{model._meta.label}: index {index.name!r}"
    method = index_method(index)
    distance = index_distance(index, model)
    try:
        targets = indexed_targets(index, model)
    except (FieldDoesNotExist, FieldError):
        return errors  # Django's own index checks report fields that do not exist.

    def error(id: str, msg: str, hint: str | None = None) -> None:
        errors.append(checks.Error(f"{label} {msg}", hint=hint, obj=model, id=id))

    if len(targets) > 1:
        error(
            "vectorsearch.E007",
            f"covers {len(targets)} columns; {_article(str(method))} index covers exactly one.",
            "Declare one index per vector field, and filter other columns with a B-tree index.",
        )
    for name, field in targets:
        vtype = vector_type_of(field)
        if vtype is None:
            error(
                "vectorsearch.E006",
                f"is {_article(str(method))} index on {name}, which is not a vector.",
                "Index a VectorField, HalfVectorField, SparseVectorField or BitField (or a Cast "
                "to one).",
            )
            continue
        keyword = "length" if vtype == "bit" else "dimensions"
        size = getattr(field, keyword, None)
        if size is None:
            error(
                "vectorsearch.E002",
                f"covers {name}, which has no {keyword}; pgvector only indexes vectors of a "
                "fixed size.",
                f"Declare the {keyword}, e.g. {type(field).__name__}({keyword}=384).",
            )
        limit = INDEX_MAX_DIMENSIONS.get(vtype)
        if isinstance(size, int) and limit is not None and size > limit:
            alternative = {
                "vector": " Or index it as halfvec (up to 4,000 dimensions): HnswIndex(Cast("
                '"field", HalfVectorField(dimensions=N)), distance=...).',
                "halfvec": " Or index a binary quantization (bit, up to 64,000).",
            }.get(vtype, "")
            error(
                "vectorsearch.E003",
                f"covers {name} with {size:,} dimensions; {_article(str(method))} index on a "
                f"{vtype} takes at most {limit:,}.",
                f"Use an embedding model with fewer dimensions.{alternative}",
            )
        if distance is not None and method not in distance.index_methods(vtype):
            possible = ", ".join(
                d.value for d in type(distance) if method in d.index_methods(vtype)
            )
            hint = f"Distances {_article(str(method))} index can serve on a {vtype}: {possible or 'none'}."
            if method is IndexMethod.IVFFLAT and IndexMethod.HNSW in distance.index_methods(vtype):
                hint += f" An HNSW index can serve {distance}."
            error(
                "vectorsearch.E004",
                f"cannot serve the {distance} distance on {name}, a {vtype}.",
                hint,
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


MIN_PGVECTOR = (0, 8, 0)


def _check_version(alias: str) -> list[checks.CheckMessage]:
    try:
        version = extension_version(connections[alias])
    except DatabaseError:
        return []
    if version is None:
        return []
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts >= MIN_PGVECTOR:
        return []
    return [
        checks.Warning(
            f"Database {alias!r} has pgvector {version}; vectorsearch needs 0.8 or later "
            "(iterative index scans, halfvec and sparsevec operators).",
            hint="Upgrade pgvector on the server, then run: ALTER EXTENSION vector UPDATE;",
            id="vectorsearch.W011",
        )
    ]


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
                    hint=f"If a migration (AddIndexConcurrently) was building it, drop it with "
                    f"{index.drop_sql} and run migrate again; otherwise rebuild it with "
                    f"{index.repair_sql}",
                    id="vectorsearch.W010",
                )
            )
        warnings.extend(_check_version(alias))
    return warnings
