"""The SQL pieces of a search, each a small explicit expression (as ``contrib.postgres.search``).

- :class:`QueryVector`: the query vector as a typed literal, formatted once;
- :class:`Unindexed`: a distance no vector index can serve (``(a <=> b) + 0``), so PostgreSQL
  computes it for the filtered rows and sorts exactly;
- :class:`BinaryVector`: a vector column read in pgvector's binary form, after the sort.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Expression, F, FloatField, Func, TextField
from django.utils.functional import cached_property

__all__ = ["BinaryVector", "QueryVector", "Unindexed"]

_TEXT = TextField()
_FLOAT = FloatField()


class QueryVector(Expression):
    """A query vector in SQL: its text, formatted once, as a typed literal (``%s::vector``).

    Django hashes and compares the expressions of a query several times while compiling it; a
    ``Value`` holding a few kilobytes of text is slow to do that for, this one is not.
    """

    def __init__(self, literal: str, vector_type: str = "vector") -> None:
        super().__init__(output_field=_TEXT)
        self.literal = literal
        self.vector_type = vector_type

    @cached_property
    def identity(self) -> tuple[Any, ...]:
        return (QueryVector, self.literal, self.vector_type)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[str]]:
        return f"%s::{self.vector_type}", (self.literal,)

    def get_group_by_cols(self) -> list[Any]:
        return []  # a constant


class Unindexed(Func):
    """``(distance) + 0``: the same number, which no vector index matches.

    Ordering by it makes PostgreSQL filter first (with the B-tree indexes of the filters) and
    compute the distance of the rows kept only: the exact strategy.
    """

    template = "(%(expressions)s) + 0"
    output_field = _FLOAT


class BinaryVector(Func):
    """A ``vector``/``halfvec`` column selected as ``vector_send(column)`` bytes.

    A 384-dimension vector is ~4 KB of decimal text that the server formats and Python parses
    float by float; the bytes decode in one numpy call (the field's ``from_db_value``). The call
    is wrapped in a volatile ``CASE WHEN random() >= 0``: PostgreSQL then evaluates it after Sort
    and Limit, for the rows returned only, not for every row a sort reads.
    """

    template = "CASE WHEN random() >= 0 THEN %(function)s(%(expressions)s) END"

    def __init__(self, field: Any) -> None:
        vector_type = getattr(field, "vector_type", "vector")
        super().__init__(F(field.attname), output_field=field)
        self.function = "halfvec_send" if vector_type == "halfvec" else "vector_send"
