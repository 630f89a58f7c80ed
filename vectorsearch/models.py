"""vectorsearch's own models: the generic :class:`Embedding` table, and the ef_search each
vector index was calibrated for (:class:`IndexCalibration`).

The module must exist anyway: Django sends ``pre_migrate`` only to apps with a models module, and
that signal is what creates the pgvector extension before any migration runs.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db import models

from .fields import VectorField

__all__ = ["Embedding", "IndexCalibration", "VectorIndex"]


class Embedding(models.Model):
    """One object's vector (or, for a registration into a model's own column, its bookkeeping).

    A row is keyed by the object (content type + primary key as text, so any primary key type
    fits) and the registration ``key``: ``"@<embedder alias>"`` for vectors stored here, or the
    name of the model's own vector field, whose vector then lives in that column and ``vector``
    here stays NULL. ``identity`` and ``source_hash`` say which embedder made the vector from
    which text, so edits and a change of embedder are seen as stale. ``source_hash`` is empty for
    imported vectors, whose source text is unknown.

    ``vector`` has no fixed size, so embedders of any size share the table; each (model,
    embedder) gets its own HNSW index on ``vector::vector(N)``, partial on that model and
    embedder (``vectorsearch_index`` builds them).
    """

    # No index of its own (the unique constraint below leads with it) and no database-level
    # constraint: each row written would pay for a second index entry and a per-row foreign
    # key check at commit, together ~45% of the server's work to write bookkeeping rows
    # (benchmarks/bench_import.py). Deleting a content type still deletes its rows: Django's
    # CASCADE runs in Python.
    content_type = models.ForeignKey(
        ContentType,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    object_id = models.CharField(max_length=255)
    key = models.CharField(max_length=100)
    identity = models.CharField(max_length=255)
    source_hash = models.CharField(max_length=64, blank=True, default="")
    vector = VectorField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "object_id", "key"], name="vectorsearch_embedding_object"
            )
        ]

    def __str__(self) -> str:
        return f"{self.content_type_id}:{self.object_id} {self.key} ({self.identity})"


class IndexCalibration(models.Model):
    """The ``hnsw.ef_search`` measured to reach a recall target on one vector index.

    Written by ``vectorsearch_bench --apply`` (see :mod:`vectorsearch.calibration`), one row per
    index and database: ``database`` is blank for the default alias, whose replicas stream the
    same index, or the alias benchmarked with ``--database``. ``model`` and ``field`` say which
    searches use it: the model's ``app_label.model_name`` and the vector field, or ``@alias``
    for a registration in the Embedding table. ``curve`` is what was measured, one
    ``{"ef_search", "recall", "p50_ms"}`` per value tried, for the admin's chart; ``filenode``
    is the index's ``pg_class.relfilenode`` then, which a rebuild (``REINDEX``, drop and create)
    changes.
    """

    index_name = models.CharField(max_length=63)
    database = models.CharField(max_length=100, blank=True, default="")
    model = models.CharField(max_length=200)
    field = models.CharField(max_length=100)
    ef_search = models.PositiveIntegerField()
    target_recall = models.FloatField()
    recall = models.FloatField()
    k = models.PositiveIntegerField()
    queries = models.PositiveIntegerField()
    rows = models.BigIntegerField()
    filenode = models.BigIntegerField(null=True, blank=True)
    curve = models.JSONField(default=list)
    calibrated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["index_name", "database"], name="vectorsearch_calibration_index"
            )
        ]
        indexes = [models.Index(fields=["model", "field"], name="vectorsearch_calibration_for")]
        verbose_name = "index calibration"

    def __str__(self) -> str:
        return f"{self.index_name}: ef_search {self.ef_search} (recall {self.recall:.3f})"


class VectorIndex(IndexCalibration):
    """The admin's "Vector indexes" page (:mod:`vectorsearch.admin.indexes`) hangs on this
    proxy, so it is listed on the admin index and guarded by a permission
    (``vectorsearch.view_vectorindex``) like any model page."""

    class Meta:
        proxy = True
        verbose_name = "vector index"
        verbose_name_plural = "vector indexes"
