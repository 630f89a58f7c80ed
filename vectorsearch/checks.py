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
- E020 ``register(fields=[...])`` names something that is not a field of the model
- E021 ``register(vector_field=...)`` names no field, or one that is not a vector/halfvec field
- E022 the registration's embedder alias is unknown or its backend cannot be built
- E023 the vector field's dimensions differ from the embedder's
- E024 ``SYNC`` is ``"task"`` but no tasks framework (django.tasks / django-tasks) is installed
- E025 ``register(filters=[...])`` names something that is not a field of the model
- E026 a generic registration needs ``django.contrib.contenttypes`` in INSTALLED_APPS
- W020 a generic registration's embedder has more dimensions than an HNSW index can cover
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import DatabaseError, connections

from . import registry as registry_module
from . import tasks
from .conf import get_settings
from .distances import IndexMethod, vector_type_of
from .exceptions import InvalidEmbedderError
from .indexes import (
    QUANTIZABLE_TYPES,
    QUANTIZATIONS,
    index_distance,
    index_method,
    indexed_targets,
    quantization_of,
    vector_indexes,
)
from .operations import extension_version, invalid_vector_indexes
from .registry import HNSW_MAX_VECTOR_DIMENSIONS

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

    quantization = quantization_of(index)
    if quantization is not None:
        column = model._meta.get_field(index.fields[0].lstrip("-"))
        vtype = vector_type_of(column)
        if vtype not in QUANTIZABLE_TYPES:
            error(
                "vectorsearch.E008",
                f"quantizes {index.fields[0]!r}, {_article(str(vtype))} column, as {quantization}; "
                f"quantization applies to {' and '.join(QUANTIZABLE_TYPES)} columns.",
                "Index the column as it is: HnswIndex(fields=[...], distance=...).",
            )
            return errors
        allowed = QUANTIZATIONS[quantization]
        if distance not in allowed:
            error(
                "vectorsearch.E009",
                f"cannot serve the {distance} distance with quantization={quantization!r}; "
                f"it serves: {', '.join(d.value for d in allowed)}.",
                "Choose one of those distances, or another quantization.",
            )
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
        if (
            distance is not None
            and quantization is None
            and method not in distance.index_methods(vtype)
        ):
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


@checks.register(checks.Tags.models)
def check_registrations(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    models = set(_models(app_configs)) if app_configs is not None else None
    # Through the module: the site's registry (a test may put a scratch one in its place).
    for registration in registry_module.registry:
        if models is not None and registration.model not in models:
            continue
        errors.extend(_check_registration(registration, HNSW_MAX_VECTOR_DIMENSIONS))
    return errors


def _check_registration(registration: Any, hnsw_max: int) -> list[checks.CheckMessage]:
    model = registration.model
    label = f"vectorsearch.register({model._meta.label})"
    errors: list[checks.CheckMessage] = []
    concrete = [f.name for f in model._meta.concrete_fields]
    for option, names, check_id in (
        ("fields", registration.fields, "vectorsearch.E020"),
        ("filters", registration.filters, "vectorsearch.E025"),
    ):
        for name in names:
            try:
                source = model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(
                    checks.Error(
                        f"{label}: {option}= names {name!r}, which is not a field of "
                        f"{model._meta.label}.",
                        hint=f"Fields: {', '.join(concrete)}. For text built from relations or "
                        "methods, pass fields=a callable taking the object and returning a str.",
                        obj=model,
                        id=check_id,
                    )
                )
                continue
            if option == "fields" and (source.many_to_many or source.one_to_many):
                errors.append(
                    checks.Error(
                        f"{label}: fields= names {name!r}, a relation to many objects, whose "
                        "text is not a single value.",
                        hint="Pass fields=a callable, e.g. lambda obj: ' '.join(str(t) for t in "
                        f"obj.{name}.all()).",
                        obj=model,
                        id=check_id,
                    )
                )
    field = None
    if registration.vector_field is not None:
        try:
            field = model._meta.get_field(registration.vector_field)
        except FieldDoesNotExist:
            field = None
        vtype = vector_type_of(field)
        if vtype not in ("vector", "halfvec"):
            dense = [
                f.name
                for f in model._meta.concrete_fields
                if vector_type_of(f) in ("vector", "halfvec")
            ]
            what = "is not a field" if field is None else f"is a {type(field).__name__}"
            errors.append(
                checks.Error(
                    f"{label}: vector_field={registration.vector_field!r} {what}; embeddings need "
                    "a VectorField or HalfVectorField.",
                    hint=f"Vector fields of {model._meta.label}: {', '.join(dense) or 'none'}. "
                    "Omit vector_field to store vectors in the generic Embedding table.",
                    obj=model,
                    id="vectorsearch.E021",
                )
            )
            field = None
    try:
        embedder = registration.embedder
    except InvalidEmbedderError as e:
        errors.append(
            checks.Error(
                f"{label}: embedder {registration.embedder_alias!r}: {e}",
                hint="Configure it in VECTORSEARCH_EMBEDDERS = "
                "{alias: {'BACKEND': ..., 'OPTIONS': ...}}.",
                obj=model,
                id="vectorsearch.E022",
            )
        )
        return errors
    dimensions = embedder.declared_dimensions
    if field is not None and dimensions is not None:
        size = getattr(field, "dimensions", None)
        if size is not None and size != dimensions:
            errors.append(
                checks.Error(
                    f"{label}: {registration.vector_field!r} has {size} dimensions but embedder "
                    f"{registration.embedder_alias!r} ({embedder.identity}) makes {dimensions}.",
                    hint="Make them equal: change the field's dimensions (and migrate) or the "
                    "embedder's.",
                    obj=model,
                    id="vectorsearch.E023",
                )
            )
    if registration.is_generic:
        if not apps.is_installed("django.contrib.contenttypes"):
            errors.append(
                checks.Error(
                    f"{label}: the generic Embedding table is keyed by content type.",
                    hint="Add 'django.contrib.contenttypes' to INSTALLED_APPS.",
                    obj=model,
                    id="vectorsearch.E026",
                )
            )
        if dimensions is not None and dimensions > 2 * hnsw_max:
            errors.append(
                checks.Warning(
                    f"{label}: embedder {registration.embedder_alias!r} makes {dimensions} "
                    f"dimensions; an HNSW index covers at most {2 * hnsw_max} (as halfvec), so "
                    "searches of this model scan every vector.",
                    hint="Use an embedder with fewer dimensions (e.g. OPTIONS dimensions=1536).",
                    obj=model,
                    id="vectorsearch.W020",
                )
            )
    mode = registration.sync or get_settings()["SYNC"]
    if mode == "task" and tasks.task_decorator() is None:
        errors.append(
            checks.Error(
                f"{label}: SYNC is 'task' but no tasks framework is installed.",
                hint="pip install 'django-vectorsearch[tasks]' (django-tasks) on Django 5.2, "
                "or set VECTORSEARCH = {'SYNC': 'immediate'}.",
                obj=model,
                id="vectorsearch.E024",
            )
        )
    return errors
