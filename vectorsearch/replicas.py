"""Searches on read replicas, falling back to the primary (docs/scaling.md).

``VECTORSEARCH["SEARCH_REPLICAS"]`` names the aliases that serve searches; writes and every other
query stay where Django's routers send them. :func:`search_alias` picks, for a search without an
explicit ``.using()``, a replica, or the primary when:

- **read-your-writes** is on: this context wrote within ``READ_YOUR_WRITES_SECONDS`` (signals
  set :data:`primary_until`; :class:`ReadYourWritesMiddleware` carries it across a redirect);
- the replica is **down**: left alone for ``REPLICA_RETRY_SECONDS`` after a failure;
- the replica **lags** more than ``REPLICA_MAX_LAG_SECONDS`` (``now() -
  pg_last_xact_replay_timestamp()``, cached a second; 0 when a live WAL receiver has replayed
  all the primary reported, since that age also grows on an idle primary).
:func:`with_fallback` re-runs a search on the primary when the replica fails mid-query.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Model
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

from .conf import get_settings

__all__ = [
    "LAG_CACHE_SECONDS",
    "ReadYourWritesMiddleware",
    "ReplicaRouter",
    "ReplicaStatus",
    "bind_to_primary",
    "mark_written",
    "measure_replica",
    "note_write",
    "primary_of",
    "primary_until",
    "replica_status",
    "replicas_of",
    "reset",
    "search_alias",
    "use_primary",
    "with_fallback",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Wall-clock time (``time.time()``) until which searches in this context use the primary.
primary_until: ContextVar[float] = ContextVar("vectorsearch_primary_until", default=0.0)

#: How long a replica's measured lag is reused, per process.
LAG_CACHE_SECONDS = 1.0

_LAG_SQL = """
SELECT pg_is_in_recovery(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver
               WHERE coalesce(status, 'streaming') = 'streaming'
                 AND pg_last_wal_replay_lsn() >= coalesce(latest_end_lsn, pg_last_wal_receive_lsn())),
       greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
"""
# Caught up: replayed up to the primary's WAL end its last message reported (latest_end_lsn, NULL
# before one and without pg_read_all_stats), else what was received (">=": after a restart that
# starts at the segment before the replay position).


@dataclass
class _Health:
    down_until: float = 0.0  # time.monotonic()
    lag: float | None = None
    lag_expires: float = 0.0  # time.monotonic()
    caught_up_at: float | None = None  # time.monotonic() it was last seen fully replayed
    error: str = ""


# Process-wide, shared by threads (attribute writes are atomic; a race costs one more query).
_health: dict[str, _Health] = {}


def _state(alias: str) -> _Health:
    return _health.setdefault(alias, _Health())


def reset() -> None:
    """Forget what is known of every replica (down, lag); done on a settings change."""
    _health.clear()


@receiver(setting_changed, dispatch_uid="vectorsearch.replicas.reset")
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("VECTORSEARCH", "DATABASES"):
        reset()
        connect_delete_receiver()


def connect_delete_receiver() -> None:
    """Listen to ``post_delete`` only while the site has replicas: any ``post_delete`` receiver
    makes Django load the rows of every ``QuerySet.delete()`` of every model before deleting them
    (no fast delete), a price a site without replicas must not pay."""
    try:
        replicas = get_settings()["SEARCH_REPLICAS"]
    except ImproperlyConfigured:  # reported where the setting is used, and by the checks
        replicas = {}
    if any(replicas.values()):
        post_delete.connect(note_write, dispatch_uid="vectorsearch.replicas.delete")
    else:
        post_delete.disconnect(dispatch_uid="vectorsearch.replicas.delete")


def replicas_of(alias: str) -> list[str]:
    """The replica aliases of primary ``alias`` (empty when it has none)."""
    replicas: dict[str, list[str]] = get_settings()["SEARCH_REPLICAS"]
    return replicas.get(alias, [])


def primary_of(alias: str) -> str | None:
    """The primary of replica ``alias``, or None when ``alias`` is not a replica."""
    replicas: dict[str, list[str]] = get_settings()["SEARCH_REPLICAS"]
    for primary, aliases in replicas.items():
        if alias in aliases:
            return primary
    return None


def mark_written(seconds: float | None = None) -> None:
    """Search the primary in this context for ``seconds`` (default ``READ_YOUR_WRITES_SECONDS``).

    Saves and deletes call it through signals; call it after writes that send none
    (``QuerySet.update()``, ``bulk_create()``, raw SQL).
    """
    window = get_settings()["READ_YOUR_WRITES_SECONDS"] if seconds is None else seconds
    deadline = time.time() + window
    if deadline > primary_until.get():
        primary_until.set(deadline)


def note_write(sender: type[Model], using: str | None = None, **kwargs: Any) -> None:
    """Receiver of ``post_save``/``post_delete``/``m2m_changed``: a write to a database with
    replicas starts the read-your-writes window. Session saves do not count."""
    if using and replicas_of(using) and sender._meta.label_lower != "sessions.session":
        mark_written()


@contextmanager
def use_primary() -> Iterator[None]:
    """Run the block's searches on the primary, whatever the replicas' state."""
    token = primary_until.set(math.inf)
    try:
        yield
    finally:
        primary_until.reset(token)


class ReadYourWritesMiddleware:
    """Carries the read-your-writes window to the browser's next requests (the page a form's
    redirect leads to) in a signed, HttpOnly cookie that expires with the window.

    Also confines the window to the request that wrote: the next request served by the same
    thread starts from the cookie, not from what the thread's previous visitor did.
    """

    cookie_name = "vectorsearch_primary"
    salt = "vectorsearch.replicas.ReadYourWritesMiddleware"
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        previous, start = self._enter(request)
        try:
            response = self.get_response(request)
        finally:
            end = primary_until.get()
            primary_until.set(previous)
        return self._leave(request, response, start, end)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        previous, start = self._enter(request)
        try:
            response = await self.get_response(request)
        finally:
            end = primary_until.get()
            primary_until.set(previous)
        return self._leave(request, response, start, end)

    def _enter(self, request: HttpRequest) -> tuple[float, float]:
        previous = primary_until.get()
        start = 0.0
        value = request.get_signed_cookie(self.cookie_name, default=None, salt=self.salt)
        if value is not None:
            try:
                deadline = float(value)
            except ValueError:
                deadline = 0.0
            # Never longer than the window allows now, even if the setting was shortened.
            start = min(deadline, time.time() + get_settings()["READ_YOUR_WRITES_SECONDS"])
        primary_until.set(start)
        return previous, start

    def _leave(
        self, request: HttpRequest, response: HttpResponseBase, start: float, end: float
    ) -> HttpResponseBase:
        remaining = end - time.time()
        if end > start and remaining > 0 and math.isfinite(end):
            response.set_signed_cookie(
                self.cookie_name,
                f"{end:.3f}",
                salt=self.salt,
                max_age=math.ceil(remaining),
                httponly=True,
                samesite="Lax",
                secure=request.is_secure(),
            )
        return response


def _query(alias: str) -> tuple[bool, float | None]:
    with connections[alias].cursor() as cursor:
        cursor.execute(_LAG_SQL)
        in_recovery, caught_up, replay_age = cursor.fetchone()
    state = _state(alias)
    now = time.monotonic()
    if not in_recovery or caught_up:
        state.caught_up_at = now
        return bool(in_recovery), 0.0
    # Behind what it received. The age of its last replayed commit overstates the lag after an
    # idle spell (the first write's WAL is received a moment before it is replayed), while
    # whatever is unreplayed now arrived after it was last seen caught up: the smaller bound.
    since = None if state.caught_up_at is None else now - state.caught_up_at
    if replay_age is None or since is None:
        return True, replay_age if since is None else since
    return True, min(replay_age, since)


def measure_replica(alias: str) -> tuple[bool, float | None]:
    """``(in recovery, seconds behind)`` of ``alias``, measured now; lag None when unknown (a
    standby catching up after it started). ``DatabaseError`` when it is away, after replacing
    a connection broken by a restart of the replica once."""
    connection = connections[alias]
    try:
        return _query(alias)
    except DatabaseError:
        if connection.in_atomic_block:
            raise
        connection.close()
        return _query(alias)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _mark_down(alias: str, error: BaseException) -> None:
    state = _state(alias)
    state.down_until = time.monotonic() + get_settings()["REPLICA_RETRY_SECONDS"]
    state.lag_expires = 0.0
    state.caught_up_at = None
    state.error = _first_line(error)
    retry = get_settings()["REPLICA_RETRY_SECONDS"]
    logger.warning("Replica %r is unavailable (%s); primary for %ss.", alias, state.error, retry)
    with suppress(DatabaseError):
        connections[alias].close()


def _lag(alias: str) -> float | None:
    state = _state(alias)
    now = time.monotonic()
    if now < state.lag_expires:
        return state.lag
    try:
        _, lag = measure_replica(alias)
    except DatabaseError as e:
        _mark_down(alias, e)
        return None
    state.lag, state.lag_expires, state.error = lag, now + LAG_CACHE_SECONDS, ""
    return lag


def search_alias(model: type[Model] | None, default_alias: str = DEFAULT_DB_ALIAS) -> str:
    """The alias a search of ``model`` without an explicit ``.using()`` should run on.

    ``default_alias`` is where the queryset would run otherwise (``queryset.db``); a replica
    alias given there (by a router) counts as its primary. Returns a replica of it that is up
    and within ``REPLICA_MAX_LAG_SECONDS``, or the primary (see the module docstring).
    ``model`` is accepted for routing by model later; every model of a primary shares its
    replicas today.
    """
    primary = primary_of(default_alias) or default_alias
    replicas = replicas_of(primary)
    if not replicas or time.time() < primary_until.get():
        return primary
    now = time.monotonic()
    candidates = [alias for alias in replicas if _state(alias).down_until <= now]
    random.shuffle(candidates)  # spreads searches over several replicas
    limit = get_settings()["REPLICA_MAX_LAG_SECONDS"]
    for alias in candidates:
        lag = _lag(alias)
        if lag is not None and lag <= limit:
            return alias
    return primary


def with_fallback(
    model: type[Model] | None, run: Callable[[str], T], default_alias: str = DEFAULT_DB_ALIAS
) -> T:
    """``run(alias)`` on :func:`search_alias`'s choice; on a replica's failure, again on the primary.

    ``run`` must fetch its rows (``list(...)``) before returning. A statement timeout is raised
    as it is (the primary would time out too); any other database error on a replica re-runs
    the search on the primary, and marks the replica down unless a fresh connection to it
    works (a connection broken by an earlier restart) or the error was a recovery conflict.
    """
    alias = search_alias(model, default_alias)
    primary = primary_of(default_alias) or default_alias
    if alias == primary:
        return run(alias)
    try:
        return run(alias)
    except DatabaseError as e:
        code = getattr(e.__cause__, "sqlstate", None)
        if code == "57014":
            raise
        logger.info("Search on replica %r failed (%s); re-running it on %r.", alias, e, primary)
        if code != "40001":  # canceled by a recovery conflict: the replica itself is fine
            try:
                connections[alias].close()
                _query(alias)
            except DatabaseError as probe:
                _mark_down(alias, probe)
        return run(primary)


def bind_to_primary(objects: Iterable[Any], alias: str) -> None:
    """Point model instances read on replica ``alias`` at its primary: saving one (or loading its
    relations) then goes there, not to a read-only standby."""
    primary = primary_of(alias)
    if primary is not None:
        for obj in objects:
            if isinstance(obj, Model):
                obj._state.db = primary


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as ``vectorsearch_status`` shows it."""

    alias: str
    primary: str
    state: str  # "streaming", "lagging", "catching up", "not a standby", "down"
    in_recovery: bool | None
    lag_seconds: float | None
    error: str = ""


def replica_status(primary: str = DEFAULT_DB_ALIAS) -> list[ReplicaStatus]:
    """Each replica of ``primary``, measured now (no cache)."""
    limit = get_settings()["REPLICA_MAX_LAG_SECONDS"]
    found = []
    for alias in replicas_of(primary):
        try:
            in_recovery, lag = measure_replica(alias)
        except DatabaseError as e:
            found.append(ReplicaStatus(alias, primary, "down", None, None, _first_line(e)))
            continue
        if not in_recovery:
            state = "not a standby"
        elif lag is None:
            state = "catching up"
        else:
            state = "streaming" if lag <= limit else "lagging"
        found.append(ReplicaStatus(alias, primary, state, in_recovery, lag))
    return found


class ReplicaRouter:
    """An optional ``DATABASE_ROUTERS`` entry that sends *every* read of every model with
    replicas through :func:`search_alias` (not only searches), and keeps writes of objects read
    from a replica on its primary. ``migrate`` never runs on a replica alias."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        instance = hints.get("instance")
        db = getattr(getattr(instance, "_state", None), "db", None) or DEFAULT_DB_ALIAS
        primary = primary_of(db) or db
        return search_alias(model, primary) if replicas_of(primary) else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        instance = hints.get("instance")
        db = getattr(getattr(instance, "_state", None), "db", None)
        return primary_of(db) if db else None

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        first, second = obj1._state.db, obj2._state.db
        if first and second and (primary_of(first) or first) == (primary_of(second) or second):
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if primary_of(db) is not None else None
