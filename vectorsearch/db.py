"""Database session helpers: per-query pgvector settings, statement timeouts, timeout detection.

Per-query pgvector settings (``hnsw.ef_search``, ``hnsw.iterative_scan``...) that never leak.

A search that needs ``SET hnsw.ef_search = 100`` must not leave it behind for the next request on
a pooled or persistent connection, nor for the next query of the caller's own transaction. So the
settings are ``SET LOCAL`` and travel *in the same round trip* as the search:

- under autocommit, ``SET LOCAL ...; <search>`` is one simple-protocol message, which PostgreSQL
  runs as one implicit transaction: the settings end with it;
- inside a transaction (``atomic()``), ``SAVEPOINT ...; SET LOCAL ...; <search>; ROLLBACK TO
  SAVEPOINT ...; RELEASE SAVEPOINT ...``: rolling back to the savepoint restores every setting
  to its value before the search, including one the caller set with ``SET LOCAL`` themselves.

On a Citus coordinator (the ``citus`` extension present on that connection, detected once per
connection) ``SET LOCAL citus.propagate_set_commands = 'local'`` goes first: without it Citus
keeps ``SET LOCAL`` on the coordinator and the shards search with their own ``hnsw.*`` values.

That needs Django's default client-side parameter binding (psycopg's ``ClientCursor``). With
``OPTIONS={"server_side_binding": True}`` the same statements run one by one on the same
connection instead (one more round trip each), with the same guarantees.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .citus import PROPAGATE_SET_LOCAL, has_citus

__all__ = ["apply_settings", "is_timeout", "set_local_statements", "statement_timeout"]

_SAVEPOINT = "vectorsearch_settings"
# (milliseconds, alias) of the statement_timeout() block the code runs in, if any.
_TIMED: ContextVar[tuple[int, str] | None] = ContextVar("vectorsearch_timed", default=None)
# Names and values end up in SQL text (SET takes no parameters), so both are checked here even
# though only this package builds them.
_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$|^[a-z_]+$")
_VALUE = re.compile(r"^[A-Za-z0-9_.]+$")


def set_local_statements(settings: Mapping[str, Any]) -> list[str]:
    """``SET LOCAL name = value`` statements for ``settings``; ValueError on an unsafe token."""
    statements = []
    for name, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not _NAME.match(name) or not _VALUE.match(text):
            raise ValueError(f"Refusing to SET {name!r} = {text!r}: not a plain name and value.")
        statements.append(f"SET LOCAL {name} = {text}")
    return statements


class _SettingsWrapper:
    """A Django execute wrapper that runs the next query with ``SET LOCAL`` settings.

    One-shot: only the first query executed under it (the search) gets the settings, so the
    queries ``prefetch_related`` runs after it are left alone.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.statements = set_local_statements(settings)
        self.used = False

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        if self.used or many or not self.statements:
            return execute(sql, params, many, context)
        self.used = True
        connection = context["connection"]
        cursor = context["cursor"]
        raw = getattr(cursor, "cursor", cursor)
        in_transaction = connection.in_atomic_block or not connection.get_autocommit()
        statements = self.statements
        if has_citus(connection):
            statements = [PROPAGATE_SET_LOCAL, *statements]
        if in_transaction:
            before = [f"SAVEPOINT {_SAVEPOINT}", *statements]
            after = [f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", f"RELEASE SAVEPOINT {_SAVEPOINT}"]
        else:
            before, after = list(statements), []
        if _sends_simple_queries(raw):
            result = execute("; ".join([*before, sql, *after]), params, many, context)
            # Step over the results of the statements before the search to reach its rows; the
            # ones after it were already received with them.
            for _ in before:
                raw.nextset()
            return result
        return self._separately(
            connection, before, after, in_transaction, execute, sql, params, context
        )

    @staticmethod
    def _separately(
        connection: Any,
        before: list[str],
        after: list[str],
        in_transaction: bool,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        context: dict[str, Any],
    ) -> Any:
        # Server-side binding cannot send several statements at once: run them one by one on the
        # raw connection, in an explicit transaction when Django is in autocommit. The search's
        # rows are already on the client when the closing statements run on another cursor.
        pg = connection.connection
        if not in_transaction:
            before = ["BEGIN", *before]
            after = ["COMMIT"]
        for statement in before:
            pg.execute(statement)
        try:
            result = execute(sql, params, False, context)
        except BaseException:
            pg.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}" if in_transaction else "ROLLBACK")
            raise
        for statement in after:
            pg.execute(statement)
        return result


def _sends_simple_queries(cursor: Any) -> bool:
    """Whether ``cursor`` merges parameters into the query text (so ``;`` may join several)."""
    return isinstance(cursor, psycopg.ClientCursor) and not isinstance(cursor, psycopg.ServerCursor)


@contextmanager
def apply_settings(using: str, settings: Mapping[str, Any]) -> Iterator[None]:
    """Run the next query on connection ``using`` with ``settings`` applied transaction-locally.

    ``settings`` maps PostgreSQL parameter names to values, e.g. ``{"hnsw.ef_search": 100}``.
    """
    timed = _TIMED.get()
    if timed is not None and timed[1] != using:
        # A search sent to another connection (a replica) than the block's statement_timeout
        # transaction: it carries the same timeout with its own settings.
        settings = {"statement_timeout": timed[0], **settings}
    if not settings:
        yield
        return
    with connections[using].execute_wrapper(_SettingsWrapper(settings)):
        yield


@contextmanager
def statement_timeout(milliseconds: int, using: str | None = None) -> Iterator[None]:
    """Run the block in a transaction whose queries PostgreSQL cancels after ``milliseconds``.

    The setting is transaction-local, so it never outlives the block on a pooled connection;
    inside a caller's transaction (``ATOMIC_REQUESTS``) the block is a savepoint, whose release
    would not end it, so the caller's value is put back. A cancelled query raises
    ``OperationalError`` (see :func:`is_timeout`).
    """
    alias = using or DEFAULT_DB_ALIAS
    token = _TIMED.set((int(milliseconds), alias))
    try:
        with transaction.atomic(using=using):
            yield from _timed_block(alias, milliseconds)
    finally:
        _TIMED.reset(token)


def _timed_block(using: str, milliseconds: int) -> Iterator[None]:
    connection = transaction.get_connection(using)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), "
            "set_config('statement_timeout', %s, true)",
            [str(int(milliseconds))],
        )
        previous = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


def is_timeout(error: BaseException) -> bool:
    """Whether PostgreSQL cancelled the statement (statement_timeout): SQLSTATE 57014."""
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) == "57014"
