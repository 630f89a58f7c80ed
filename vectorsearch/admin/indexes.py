"""The admin's "Vector indexes" page: each vector index, its rows, health and calibration.

One page lists every vector index of the site: the HNSW/IVFFlat indexes declared in the models'
``Meta.indexes`` and the per-registration HNSW indexes of the generic Embedding table. For each:
rows embedded, stale and missing (:func:`vectorsearch.sync.status`), the index's size and
whether it is valid, the ``ef_search`` it was calibrated for and when
(``vectorsearch_bench --apply``), whether it is due for a recalibration, and the recall against
latency curve of that calibration as an SVG chart drawn here, on the server.

The page is the changelist of :class:`~vectorsearch.models.VectorIndex`, a proxy model, so it
is listed on the admin index under "Vector search" and guarded like any model page: staff users
with the ``vectorsearch.view_vectorindex`` permission (superusers have it). It is registered on
the default admin site when this module is imported (``vectorsearch.admin`` imports it, so
``admin.autodiscover()`` does); a custom ``AdminSite`` registers it itself::

    from vectorsearch.admin.indexes import VectorIndexAdmin
    from vectorsearch.models import VectorIndex

    my_site.register(VectorIndex, VectorIndexAdmin)

See docs/admin.md. Reading the stale/missing counts reads every registered row (as
``vectorsearch_status`` does): about a second per 100k rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS, models
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from ..calibration import calibration_of_index, needs_recalibration
from ..conf import get_settings
from ..distances import IndexMethod
from ..indexes import index_field_names, index_method, quantization_of, vector_indexes
from ..management.utils import generic_index_name, human_size, index_info
from ..models import IndexCalibration, VectorIndex
from ..registry import Registration, registry
from ..sync import Status, status

__all__ = ["Chart", "IndexRow", "VectorIndexAdmin", "curve_chart", "index_rows"]

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[VectorIndex]
else:
    _Base = admin.ModelAdmin


# -- what the page shows --------------------------------------------------------------------------


@dataclass
class IndexRow:
    """One vector index as the page shows it."""

    name: str
    model: str
    field: str
    kind: str
    registration: str | None
    rows: int
    stale: int | None = None
    missing: int | None = None
    exists: bool = False
    valid: bool = False
    size: str = ""
    calibration: IndexCalibration | None = None
    recalibrate: str | None = None
    chart: Chart | None = None

    @property
    def health(self) -> str:
        if not self.exists:
            return "missing"
        return "valid" if self.valid else "invalid"


def index_rows(using: str = DEFAULT_DB_ALIAS) -> list[IndexRow]:
    """Every vector index of the site's models and registrations, with its figures."""
    statuses: dict[int, Status] = {}

    def counted(registration: Registration) -> Status:
        if id(registration) not in statuses:
            statuses[id(registration)] = status(registration, using=using)
        return statuses[id(registration)]

    rows: list[IndexRow] = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue
        for index in vector_indexes(model):
            names = index_field_names(index, model)
            column = names[0] if names else ""
            registration = _column_registration(model, column)
            kind = "HNSW" if index_method(index) is IndexMethod.HNSW else "IVFFlat"
            if quantization_of(index):
                kind += f" ({quantization_of(index)})"
            row = IndexRow(
                name=index.name,
                model=model._meta.label,
                field=column,
                kind=kind,
                registration=registration.label if registration else None,
                rows=0,
            )
            if registration is not None:
                counts = counted(registration)
                row.rows, row.stale, row.missing = counts.embedded, counts.stale, counts.missing
            elif column:
                manager = model._base_manager.using(using)
                row.rows = manager.filter(**{f"{column}__isnull": False}).count()
            rows.append(row)
    for registration in registry:
        if not registration.is_generic:
            continue
        counts = counted(registration)
        rows.append(
            IndexRow(
                name=generic_index_name(registration),
                model=registration.model._meta.label,
                field=registration.key,
                kind=f"HNSW on {registration.vector_type()}({registration.embedder.dimensions})",
                registration=registration.label,
                rows=counts.embedded,
                stale=counts.stale,
                missing=counts.missing,
            )
        )
    target = float(get_settings()["TARGET_RECALL"])
    for row in rows:
        info = index_info(row.name, using)
        row.exists, row.valid, row.size = info.exists, info.valid, human_size(info.size_bytes)
        row.calibration = calibration_of_index(row.name, using)
        if row.calibration is not None:
            if row.exists:
                row.recalibrate = needs_recalibration(row.calibration, row.rows, using=using)
            row.chart = curve_chart(
                row.calibration.curve,
                row.calibration.target_recall or target,
                row.calibration.ef_search,
            )
    return rows


def _column_registration(model: type[models.Model], column: str) -> Registration | None:
    """The registration writing ``column`` of ``model``'s table (on it, a proxy or a child)."""
    for registration in registry:
        if registration.vector_field != column:
            continue
        owner = registration.model._meta.get_field(column).model
        if owner is model:
            return registration
    return None


# -- the chart ------------------------------------------------------------------------------------


@dataclass
class ChartPoint:
    x: float
    y: float
    label: str
    label_x: float
    label_y: float
    anchor: str
    chosen: bool
    title: str


@dataclass
class Chart:
    """An SVG recall-against-latency chart, in user units of a ``width`` x ``height`` box."""

    width: int
    height: int
    left: float
    top: float
    right: float
    bottom: float
    points: list[ChartPoint] = field(default_factory=list)
    line: str = ""
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    target_y: float = 0.0
    target_label: str = ""
    description: str = ""


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values covering [low, high] (steps of 1, 2, 2.5 or 5 x 10^n)."""
    span = max(high - low, 1e-9)
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high - 1e-9:
        ticks.append(round(value, 10))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def curve_chart(
    curve: Sequence[dict[str, Any]],
    target_recall: float,
    chosen: int | None = None,
    *,
    width: int = 520,
    height: int = 300,
) -> Chart | None:
    """The chart of ``curve`` (``{"ef_search", "recall", "p50_ms"}`` points): x = p50 latency,
    y = recall, one labelled point per ef_search, the target recall as a dashed line."""
    points = sorted(
        (p for p in curve if all(k in p for k in ("ef_search", "recall", "p50_ms"))),
        key=lambda p: p["ef_search"],
    )
    if not points:
        return None
    chart = Chart(width, height, left=56, top=16, right=width - 20, bottom=height - 44)
    x_ticks = nice_ticks(0.0, max(p["p50_ms"] for p in points) * 1.08 or 1.0)
    lowest = min(min(p["recall"] for p in points), target_recall)
    y_ticks = nice_ticks(max(0.0, math.floor((lowest - 0.02) * 20) / 20), 1.0)
    x_max, y_min, y_max = x_ticks[-1], y_ticks[0], y_ticks[-1]

    def x_of(ms: float) -> float:
        return round(chart.left + (chart.right - chart.left) * ms / x_max, 1)

    def y_of(recall: float) -> float:
        share = (recall - y_min) / (y_max - y_min)
        return round(chart.bottom - (chart.bottom - chart.top) * share, 1)

    chart.x_ticks = [(x_of(t), _fmt(t)) for t in x_ticks]
    chart.y_ticks = [(y_of(t), f"{t:.2f}") for t in y_ticks]
    chart.target_y = y_of(target_recall)
    chart.target_label = f"target {target_recall:.2f}"
    taken: list[tuple[float, float, float, float]] = [
        # The target line's label, at the right end of the line.
        (chart.right - 80, chart.target_y - 16, chart.right, chart.target_y)
    ]
    for point in points:
        x, y = x_of(point["p50_ms"]), y_of(point["recall"])
        label = f"ef {point['ef_search']}"
        lx, ly, anchor = _place_label(x, y, label, taken, chart)
        chart.points.append(
            ChartPoint(
                x,
                y,
                label,
                lx,
                ly,
                anchor,
                point["ef_search"] == chosen,
                f"ef_search {point['ef_search']}: recall {point['recall']:.3f}, "
                f"p50 {point['p50_ms']:.2f} ms",
            )
        )
    chart.line = " ".join(f"{p.x},{p.y}" for p in chart.points)
    chart.description = "; ".join(p.title for p in chart.points)
    return chart


def _place_label(
    x: float, y: float, label: str, taken: list[tuple[float, float, float, float]], chart: Chart
) -> tuple[float, float, str]:
    """Where a point's label goes: the first of four spots around it that overlaps no label
    placed before and stays inside the plot (points of close ef_search values crowd)."""
    width, height = 7.0 * len(label), 12.0
    spots = [
        (x + 6, y - 6, "start"),
        (x + 6, y + 15, "start"),
        (x - 6, y - 6, "end"),
        (x - 6, y + 15, "end"),
    ]
    chosen = spots[0]
    for lx, ly, anchor in spots:
        box = (
            (lx, ly - height, lx + width, ly)
            if anchor == "start"
            else (lx - width, ly - height, lx, ly)
        )
        inside = box[0] >= chart.left and box[2] <= chart.right + 16 and box[1] >= 0
        if inside and not any(_overlap(box, other) for other in taken):
            chosen = (lx, ly, anchor)
            taken.append(box)
            break
    return chosen


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# -- the admin ------------------------------------------------------------------------------------


class VectorIndexAdmin(_Base):
    """The "Vector indexes" page, as the changelist of :class:`~vectorsearch.models.VectorIndex`.

    Read-only: no add, change or delete, and no other URL than the page itself.
    """

    template_name = "admin/vectorsearch/indexes.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name="{}_{}_changelist".format(*info))]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        rows = index_rows()
        context = {
            **self.admin_site.each_context(request),
            "title": "Vector indexes",
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "rows": rows,
            "charted": [row for row in rows if row.chart is not None],
            "target_recall": get_settings()["TARGET_RECALL"],
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.template_name, context)


admin.site.register(VectorIndex, VectorIndexAdmin)
