"""Full-text search over a registration's text fields: the weighted ``tsvector`` the keyword and
hybrid rankings use, the query built from a visitor's words, and the GIN index that serves them.

The document is ``setweight(to_tsvector(config, title || ' ' || <title cut at dots and
underscores>), 'A') || setweight(to_tsvector(config, body), 'B') ...``: the first registered
field (the title) weighs A, the others B. The same
expression builds the GIN index (``vectorsearch_index``) and appears in the queries, so
PostgreSQL matches one with the other.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connections, models
from django.db.models import F, Func, TextField, Value
from django.db.models.functions import Cast

from ..conf import get_settings
from ..exceptions import InvalidQuery
from ..registry import Registration

__all__ = ["document", "has_columns", "text_index", "text_query", "words"]

# A word of a query: letters, digits or underscores (any script); at most this many are used.
_WORD = re.compile(r"\w+")
MAX_WORDS = 32


def has_columns(registration: Registration) -> bool:
    """Whether ``registration``'s text comes from columns a full-text search can read."""
    return any(_is_column(registration.model, name) for name in registration.fields)


def document(registration: Registration) -> Any:
    """The weighted tsvector of ``registration``'s text fields; InvalidQuery when its text comes
    from a callable (there are no columns to index)."""
    names = [name for name in registration.fields if _is_column(registration.model, name)]
    if not names:
        raise InvalidQuery(
            f"{registration.label} takes its text from a callable, so it has no text columns to "
            "search by keyword; search by meaning (mode=semantic), or register fields=[...]."
        )
    config = get_settings()["TEXT_SEARCH_CONFIG"]
    vector: Any = SearchVector(_with_parts(names[0]), config=config, weight="A")
    for name in names[1:]:
        vector = vector + SearchVector(name, config=config, weight="B")
    return vector


def words(text: str) -> list[str]:
    """The words of ``text`` a text query is made of (at most :data:`MAX_WORDS`)."""
    return _WORD.findall(text)[:MAX_WORDS]


def text_query(text: str) -> SearchQuery | None:
    """Rows holding *any* of the words of ``text`` (ranked by how many and where), or None when
    it has no word at all (emoji, punctuation). Stop words drop out in PostgreSQL: a query of
    stop words only matches nothing."""
    found = words(text)
    if not found:
        return None
    config = get_settings()["TEXT_SEARCH_CONFIG"]
    # Each word is \\w+, so it cannot carry tsquery syntax; the words are ORed.
    return SearchQuery(" | ".join(found), search_type="raw", config=config)


def text_index(registration: Registration) -> GinIndex:
    """The GIN index over :func:`document`, named after the model, fields and configuration."""
    config = get_settings()["TEXT_SEARCH_CONFIG"]
    digest = hashlib.sha256(
        f"{registration.model._meta.db_table}:{','.join(registration.fields)}:{config}".encode()
    ).hexdigest()[:12]
    return GinIndex(document(registration), name=f"vs_text_{digest}")


def create_text_index(registration: Registration, using: str, *, concurrently: bool) -> str | None:
    """Create :func:`text_index` when it is missing; its name, or None when it existed."""
    index = text_index(registration)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [index.name])
        if cursor.fetchone()[0]:
            return None
    with connection.schema_editor(atomic=not concurrently) as editor:
        statement = index.create_sql(registration.model, editor, concurrently=concurrently)
        editor.execute(statement)
    return index.name


def _with_parts(name: str) -> Any:
    """``title || ' ' || regexp_replace(title, '[._]+', ' ', 'g')``: a title such as
    ``json.dumps`` or ``read_csv`` is also found by its parts ("json dumps"). Immutable
    functions only (``concat()`` is not), so the GIN index can hold it."""
    parts = Func(
        F(name), Value("[._]+"), Value(" "), Value("g"),
        function="regexp_replace", output_field=TextField(),
    )  # fmt: skip
    return Func(
        Cast(F(name), TextField()), parts,
        template="(%(expressions)s)", arg_joiner=" || ' ' || ", output_field=TextField(),
    )  # fmt: skip


def _is_column(model: type[models.Model], name: str) -> bool:
    try:
        field = model._meta.get_field(name)
    except Exception:
        return False
    return bool(getattr(field, "concrete", False)) and not field.is_relation
