"""``hnsw.ef_search`` calibrated for a recall target, per vector index.

``vectorsearch_bench --apply`` measures recall@k against exact search on a sample of the stored
vectors at several ``ef_search`` values, and :func:`store`\\ s the smallest one reaching
``VECTORSEARCH["TARGET_RECALL"]`` as an :class:`~vectorsearch.models.IndexCalibration`. The
planner asks :func:`calibrated_ef_search` for the ``ef_search`` of an unfiltered search that
does not pass one (a per-query ``ef_search=`` still wins); :func:`needs_recalibration` says when
a calibration no longer describes its index (the rows changed by more than
:data:`RECALIBRATE_CHANGE`, or the index was rebuilt).

The lookup runs on every search, so its answer is kept per (model, field, alias) for
:data:`CACHE_TTL` seconds: a hit is a dict lookup and a clock read and runs no SQL (0.3 to
0.65 µs per call on a loaded machine, ``benchmarks/bench_glove.py``; a search takes 1 to 10 ms).
:func:`store` and a change of the ``VECTORSEARCH`` or ``DATABASES`` setting clear it in this
process; web workers pick up a calibration stored by the command in another process within
:data:`CACHE_TTL`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models, transaction
from django.dispatch import receiver
from django.utils import timezone

if TYPE_CHECKING:
    from .models import IndexCalibration

__all__ = [
    "CACHE_TTL",
    "RECALIBRATE_CHANGE",
    "calibrated_ef_search",
    "calibration_for",
    "calibration_of_index",
    "choose_ef_search",
    "describe",
    "index_filenode",
    "needs_recalibration",
    "reset",
    "store",
]

logger = logging.getLogger("vectorsearch.calibration")

#: Seconds a looked-up calibration (or the absence of one) is reused by searches.
CACHE_TTL = 60.0
#: The share by which the indexed rows may grow or shrink before a calibration is due again.
#: HNSW recall at a fixed ef_search falls slowly as the graph grows (on GloVe, 0.95 at 400k
#: rows is about 0.96 at 100k); a quarter more rows is where a recalibration starts to pay.
RECALIBRATE_CHANGE = 0.25
_CACHE_SIZE = 1024

_cache: dict[tuple[Any, ...], tuple[float, int | None]] = {}


def _field_key(model: type[models.Model], field_name: str | None) -> tuple[str, str]:
    """(model label, field) as stored: a column's declaring model (a child or proxy searches
    its parent's table and index), or the model itself for the Embedding table's ``@alias``."""
    if field_name is None:
        from .registry import registry

        generic = [r for r in registry.for_model(model) if r.is_generic]
        field_name = generic[0].key if len(generic) == 1 else ""
    if field_name and not field_name.startswith("@"):
        with contextlib.suppress(FieldDoesNotExist):  # an unknown field has no calibration
            model = model._meta.get_field(field_name).model
    return model._meta.label_lower, field_name


def _database(using: str) -> str:
    return "" if using == DEFAULT_DB_ALIAS else using


def calibrated_ef_search(
    model: type[models.Model], field_name: str | None, using: str = DEFAULT_DB_ALIAS
) -> int | None:
    """The ``hnsw.ef_search`` calibrated for searches of ``model.field_name`` on ``using``, or
    None when its index has no calibration (the caller then uses ``VECTORSEARCH["EF_SEARCH"]``).

    ``field_name`` is the vector field searched, or ``"@<embedder alias>"`` (a registration's
    ``key``) for vectors in the Embedding table; None picks the model's only registration there.
    A calibration stored for the alias itself is preferred, then the default alias's (its
    replicas stream the same index). Cached for :data:`CACHE_TTL` seconds.
    """
    key = (model, field_name, using)
    found = _cache.get(key)
    if found is not None and time.monotonic() < found[0]:
        return found[1]
    calibration = _lookup(model, field_name, using)
    value = None if calibration is None else calibration.ef_search
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    _cache[key] = (time.monotonic() + CACHE_TTL, value)
    return value


def _lookup(
    model: type[models.Model], field_name: str | None, using: str
) -> IndexCalibration | None:
    try:
        # A savepoint inside a transaction: a missing table (migrations not applied yet) must
        # not break the caller's transaction; searches then run with the default ef_search.
        with transaction.atomic(using=using):
            return calibration_for(model, field_name, using)
    except DatabaseError as e:
        logger.warning("No ef_search calibration read (%s); run manage.py migrate vectorsearch", e)
        return None


def calibration_for(
    model: type[models.Model], field_name: str | None, using: str = DEFAULT_DB_ALIAS
) -> IndexCalibration | None:
    """The calibration searches of ``model.field_name`` on ``using`` use (not cached): the
    newest for the alias itself, else the newest for the default alias."""
    from .models import IndexCalibration

    label, field = _field_key(model, field_name)
    database = _database(using)
    rows = IndexCalibration.objects.using(using).filter(
        model=label, field=field, database__in={database, ""}
    )
    return _preferred(rows, database)


def _preferred(rows: Any, database: str) -> IndexCalibration | None:
    """The newest calibration made for ``database`` itself, else the newest made for any."""
    found = sorted(rows, key=lambda c: (c.database == database, c.calibrated_at), reverse=True)
    return found[0] if found else None


def calibration_of_index(index_name: str, using: str = DEFAULT_DB_ALIAS) -> IndexCalibration | None:
    """The calibration of the index called ``index_name`` (for the alias, else the default)."""
    from .models import IndexCalibration

    database = _database(using)
    rows = IndexCalibration.objects.using(using).filter(
        index_name=index_name, database__in={database, ""}
    )
    return _preferred(rows, database)


def choose_ef_search(curve: Sequence[dict[str, Any]], target_recall: float) -> int | None:
    """The smallest ``ef_search`` of ``curve`` (``{"ef_search", "recall", "stderr"?, ...}``
    points) whose recall, less one standard error of its mean (``stderr``, 0 if absent),
    reaches ``target_recall``; or None.

    The margin is about 84 % confidence that new queries like the measured ones average at
    least the target: a value chosen on the mean alone falls below it half of the time (on
    GloVe, 0.951 on 300 calibration queries was 0.945 on 700 others).
    """
    reaching = [
        p["ef_search"] for p in curve if p["recall"] - p.get("stderr", 0.0) >= target_recall
    ]
    return min(reaching) if reaching else None


def store(
    *,
    index_name: str,
    model: type[models.Model],
    field_name: str,
    using: str = DEFAULT_DB_ALIAS,
    ef_search: int,
    target_recall: float,
    recall: float,
    k: int,
    queries: int,
    rows: int,
    curve: Sequence[dict[str, Any]],
) -> IndexCalibration:
    """Record ``ef_search`` as the calibration of ``index_name`` on ``using`` (replacing the
    previous one), with what was measured; searches in this process use it at once."""
    from .models import IndexCalibration

    label, field = _field_key(model, field_name)
    calibration, _ = IndexCalibration.objects.using(using).update_or_create(
        index_name=index_name,
        database=_database(using),
        defaults={
            "model": label,
            "field": field,
            "ef_search": ef_search,
            "target_recall": target_recall,
            "recall": recall,
            "k": k,
            "queries": queries,
            "rows": rows,
            "filenode": index_filenode(index_name, using),
            "curve": [_point(p) for p in sorted(curve, key=lambda p: p["ef_search"])],
            "calibrated_at": timezone.now(),
        },
    )
    reset()
    return calibration


def _point(point: dict[str, Any]) -> dict[str, Any]:
    return {
        "ef_search": int(point["ef_search"]),
        "recall": float(point["recall"]),
        "p50_ms": float(point["p50_ms"]),
        "stderr": float(point.get("stderr", 0.0)),
    }


def index_filenode(index_name: str, using: str = DEFAULT_DB_ALIAS) -> int | None:
    """The index's ``pg_class.relfilenode`` (new after REINDEX, VACUUM FULL, drop and create),
    or None when no such index is visible."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relfilenode FROM pg_class c WHERE c.relname = %s AND c.relkind = 'i' "
            "AND pg_catalog.pg_table_is_visible(c.oid)",
            [index_name],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def needs_recalibration(
    calibration: IndexCalibration, current_rows: int, *, using: str | None = None
) -> str | None:
    """Why ``calibration`` no longer describes its index, or None while it does.

    ``current_rows``: the vectors the index holds now (``vectorsearch.sync.status(...)
    .embedded``). Due when they grew or shrank by more than :data:`RECALIBRATE_CHANGE` since
    the calibration, or when the index was rebuilt or dropped since (one catalog query on
    ``using``, by default the calibration's own alias). The reason ends with the command to run.
    """
    using = using or calibration.database or DEFAULT_DB_ALIAS
    when = calibration.calibrated_at.date().isoformat()
    reason = None
    filenode = index_filenode(calibration.index_name, using)
    if filenode is None:
        reason = f"index {calibration.index_name} no longer exists"
    elif calibration.filenode is not None and filenode != calibration.filenode:
        reason = f"index {calibration.index_name} was rebuilt after its calibration on {when}"
    else:
        before = calibration.rows
        change = (current_rows - before) / before if before else (1.0 if current_rows else 0.0)
        if abs(change) > RECALIBRATE_CHANGE:
            verb = "grew" if change > 0 else "shrank"
            reason = (
                f"rows {verb} by {abs(change):.0%} ({before:,} to {current_rows:,}) since the "
                f"calibration on {when}"
            )
    if reason is None:
        return None
    return (
        f"{reason}; recalibrate: manage.py vectorsearch_bench {command_label(calibration)} --apply"
    )


def describe(
    model: type[models.Model],
    field_name: str | None,
    current_rows: int,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[str, Any] | None:
    """The calibration searches of ``model.field_name`` use, as ``vectorsearch_status`` reports
    it (JSON-ready), with ``recalibrate``: :func:`needs_recalibration`'s reason or None; None
    when there is no calibration."""
    found = calibration_for(model, field_name, using)
    if found is None:
        return None
    return {
        "index": found.index_name,
        "ef_search": found.ef_search,
        "recall": found.recall,
        "target_recall": found.target_recall,
        "rows": found.rows,
        "calibrated_at": found.calibrated_at.isoformat(),
        "recalibrate": needs_recalibration(found, current_rows, using=using),
    }


def command_label(calibration: IndexCalibration) -> str:
    """The ``app_label.Model.field`` / ``app_label.Model@alias`` the commands take."""
    separator = "" if calibration.field.startswith("@") else "."
    return f"{calibration.model}{separator}{calibration.field}"


def reset() -> None:
    """Forget the calibrations looked up so far (after a calibration is stored or deleted)."""
    _cache.clear()


@receiver(setting_changed)
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("VECTORSEARCH", "DATABASES"):
        reset()
