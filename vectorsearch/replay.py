"""Compiled searches, run again with another query vector.

A view runs the same search shape on every request -- ``Article.objects.filter(section=s)
.similar_to(q)[:10]`` -- and only the vector changes. Building that queryset, planning it and
compiling it to SQL costs more Python than the rest of the request's ORM work together (about
a third of a 100k-row HNSW search on a small machine). So a search queryset remembers how it was
made, as a *recipe*: the model, then each queryset method called and its arguments. When the
recipe has been seen before, the SQL compiled for it then is run again with the new vector.

The recipe is a faithful description only while the queryset was made by methods that record
themselves (:data:`RECORDED`, with plain argument values) and nothing else touched its Query.
Everything else drops the recipe, and the queryset is compiled as usual:

- any other queryset method (``annotate``, ``values``, ``order_by``, ``prefetch_related``...);
- an argument that is not a plain value (an expression, a model instance, a lazy string...);
- reading ``queryset.query`` from code outside Django's ``QuerySet`` and this package: that
  code may change the Query in place.

A compiled statement is also forgotten after :data:`TTL` seconds (the planner's row estimate that
chose its strategy may have changed) and when any setting changes.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.core.signals import setting_changed
from django.db import connections, models
from django.db.models.query import ModelIterable
from django.db.models.sql.compiler import SQLCompiler
from django.dispatch import receiver
from django.utils import timezone

__all__ = ["TTL", "Statement", "freeze", "lookup", "remember"]

#: Seconds a compiled statement is reused: the planner estimate behind its strategy is
#: cached as long (``query.ESTIMATE_TTL``).
TTL = 60.0
_MAX = 1024

# Values whose SQL parameter depends on nothing but the value and its type (part of the key: 1
# and True are equal in Python, not in a query).
_PLAIN = frozenset(
    {str, int, bool, type(None), bytes, datetime.date, datetime.timedelta, uuid.UUID}
)
# Values that can be equal in Python yet different parameters: Decimal("1.0") and "1.00", 0.0
# and -0.0, the two 01:30 of a DST change (fold), one instant in two time zones. Their repr()
# tells them apart.
_BY_REPR = frozenset({float, decimal.Decimal, datetime.time})


class Unrecordable(Exception):
    """A queryset argument that a recipe cannot describe."""


def freeze(value: Any) -> Any:
    """A hashable stand-in for a queryset argument, or :class:`Unrecordable`.

    Two arguments with equal stand-ins give the same SQL parameters.
    """
    kind = type(value)
    if kind in _PLAIN:
        return (kind, value)
    if kind in _BY_REPR:
        return (kind, repr(value))
    if kind is datetime.datetime:
        if value.tzinfo is None:  # naive: read in the active time zone
            raise Unrecordable
        return (kind, repr(value))
    if kind is tuple or kind is list:
        return (kind, tuple(freeze(item) for item in value))
    if kind is set or kind is frozenset:
        # In iteration order: Django binds a set's values in that order (which equal sets
        # need not share), and __range takes them by position.
        return (kind, tuple(freeze(item) for item in value))
    if kind is dict:
        return (kind, tuple((freeze(key), freeze(item)) for key, item in value.items()))
    if isinstance(value, enum.Enum):
        return (kind, value.name, freeze(value.value))
    if kind is models.Q:
        return (kind, value.connector, value.negated, freeze(value.children))
    raise Unrecordable


def record(
    recipe: tuple[Any, ...] | None, *step: Any, frozen: bool = False
) -> tuple[Any, ...] | None:
    """``recipe`` and one more step, or None if there is no recipe or the step is unrecordable.

    ``frozen``: the step holds only values that are their own stand-ins (ints, None, bools,
    names, enum members), as this package's own steps do.
    """
    if recipe is None:
        return None
    if frozen:
        return (*recipe, step)
    try:
        return (*recipe, freeze(step))
    except Unrecordable:
        return None


@dataclass(frozen=True, eq=False)
class Statement:
    """A search compiled once: its SQL, where the query vector goes, and how rows become models.

    ``plan`` is what the planner chose (settings, the Python work left on the rows); it is kept
    as it was made, with the compiled Query, and only read afterwards.
    """

    sql: str
    params: tuple[Any, ...]
    vector_at: tuple[int, ...]
    compiler: SQLCompiler
    plan: Any
    created: float

    @classmethod
    def compile(cls, plan: Any, literal: str) -> Statement | None:
        """Compile ``plan.queryset``; None when it cannot be replayed (it selects nothing)."""
        queryset = plan.queryset
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return None
        # QueryVector.as_sql() hands out the literal object itself: every position holding it
        # is the query vector, whatever else equals it.
        vector_at = tuple(i for i, param in enumerate(params) if param is literal)
        if not sql or not vector_at:
            return None
        return cls(sql, tuple(params), vector_at, compiler, plan, time.monotonic())

    def rows(self, db: str, literal: str, run: Callable[[Any], list[Any]]) -> list[Any]:
        """The model instances of this statement with ``literal`` as the query vector.

        ``run(iterable)`` evaluates Django's own ``ModelIterable`` (under the plan's settings).
        """
        params = list(self.params)
        for position in self.vector_at:
            params[position] = literal
        compiled = self.compiler
        compiler = _Compiled(compiled.query, connections[db], db)
        compiler.sql_params = (self.sql, params)
        compiler.select = compiled.select
        compiler.klass_info = compiled.klass_info
        compiler.annotation_col_map = compiled.annotation_col_map
        compiler.col_count = compiled.col_count
        compiler.has_extra_select = compiled.has_extra_select
        return run(ModelIterable(_Source(compiled.query.model, db, compiler)))  # type: ignore[arg-type]


class _Compiled(SQLCompiler):
    """A compiler whose SQL is already known: Django's ``execute_sql`` and ``results_iter``
    (cursor, converters, chunking) run unchanged around it."""

    sql_params: tuple[str, Any]

    def as_sql(self, *args: Any, **kwargs: Any) -> tuple[str, Any]:
        return self.sql_params


class _Source:
    """What ``ModelIterable`` reads of a queryset, for a compiled statement."""

    def __init__(self, model: type[models.Model], db: str, compiler: SQLCompiler) -> None:
        self.model = model
        self.db = db
        self.query = self
        self._known_related_objects: dict[Any, Any] = {}
        self._compiler = compiler

    def get_compiler(self, *args: Any, **kwargs: Any) -> SQLCompiler:
        return self._compiler


_STATEMENTS: dict[tuple[Any, ...], Statement] = {}


def key(recipe: tuple[Any, ...], db: str) -> tuple[Any, ...]:
    """The cache key of a recipe run on database ``db``.

    The active time zone is part of it: lookups such as ``__date`` and ``__hour`` on a
    DateTimeField put its name in the SQL.
    """
    zone = timezone.get_current_timezone_name() if settings.USE_TZ else None
    return (recipe, db, zone)


def lookup(cache_key: tuple[Any, ...]) -> Statement | None:
    statement = _STATEMENTS.get(cache_key)
    if statement is not None and time.monotonic() - statement.created >= TTL:
        return None
    return statement


def remember(cache_key: tuple[Any, ...], statement: Statement) -> None:
    if len(_STATEMENTS) >= _MAX:
        _STATEMENTS.clear()
    _STATEMENTS[cache_key] = statement


@receiver(setting_changed)
def _forget(**kwargs: Any) -> None:
    _STATEMENTS.clear()
