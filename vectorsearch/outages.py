"""Database outages degrade, they don't flood: tell "the database is away" apart, log it sparingly.

When PostgreSQL goes away under load, every request fails the same way within milliseconds of the
others. Logging each one with its traceback buried the one line an operator needs (measured on the
demo under ``wrk -c32``, PostgreSQL killed: 10,103 tracebacks, 40 MB in 17 s).

- :func:`is_database_away` tells a lost or refused connection (the site should answer 503 and
  wait) from an error in the query itself (a bug: 500, with its traceback).
- :func:`log_error` logs the first error of each *cause* and counts the next ones of that cause
  silently for :data:`LOG_INTERVAL` seconds; the next line of the cause says how many it left
  out. "The database is away" is one line without a traceback (it would only show the socket
  code); any other error keeps its traceback, on the first of each interval::

      A search failed in the database: the database is away: OperationalError: connection failed:
      connection to server on socket "/srv/pg/.s.PGSQL.#" failed: No such file or directory
      (1,412 more like it in the 10 s before)

  A cause is the logger, the message, the exception's class, its SQLSTATE and the first line of
  its text with digits masked (process ids, ports and durations do not make each error new).
- :class:`RateLimitFilter` does the same to any log record, for a site's ``LOGGING``: Django
  itself writes one ``django.request`` line per 5xx response ("Service Unavailable: /search/").

Both are thread-safe and remember at most :data:`MAX_CAUSES` causes (the least recently logged is
forgotten first). Counts are reported with the next line of the same cause: when an outage ends,
its last count is reported by the next outage, or never.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import psycopg
from django.db import Error, InterfaceError, OperationalError

__all__ = [
    "LOG_INTERVAL",
    "MAX_CAUSES",
    "RateLimitFilter",
    "RateLimiter",
    "is_database_away",
    "log_error",
    "reset",
]

#: Seconds during which further errors of a cause are counted instead of logged.
LOG_INTERVAL = 10.0
#: The causes remembered at once; past it the least recently logged one is forgotten.
MAX_CAUSES = 128

# SQLSTATEs of a server that is unreachable, shutting down, starting up or out of connections:
# class 08 (connection exception), admin_shutdown, crash_shutdown, cannot_connect_now,
# too_many_connections; idle_session_timeout (57P05) ended the session itself.
_AWAY_PREFIXES = ("08", "57P01", "57P02", "57P03", "57P05", "53300")
_DIGITS = re.compile(r"\d+")


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__
    return seen


def _driver_error(error: BaseException) -> BaseException:
    """The psycopg error Django wrapped (``__cause__``), else ``error`` itself."""
    for e in _chain(error):
        if isinstance(e, psycopg.Error):
            return e
    return error


def is_database_away(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached, rather than that a query failed.

    True for a connection that failed, was lost or was closed (psycopg reports no SQLSTATE for
    those), a pool that had no connection to give, a server shutting down, starting up or out of
    connections. False for a cancelled statement (``statement_timeout``), a lock timeout, a
    constraint, a syntax error, and anything that is not a database error.
    """
    chain = _chain(error)
    if not any(isinstance(e, (Error, psycopg.Error)) for e in chain):
        return False
    driver = _driver_error(error)
    if isinstance(driver, psycopg.InterfaceError) or (
        driver is error and isinstance(error, InterfaceError)  # "connection already closed"
    ):
        return True
    if isinstance(driver, psycopg.OperationalError) or (
        driver is error and isinstance(error, OperationalError)
    ):
        sqlstate = getattr(driver, "sqlstate", None)
        return sqlstate is None or sqlstate.startswith(_AWAY_PREFIXES)
    return False


class RateLimiter:
    """Lets the first event of each key through per ``interval`` seconds and counts the others.

    Thread-safe; remembers at most ``max_keys`` keys (the least recently let through is forgotten
    first, so memory stays bounded whatever the keys).
    """

    def __init__(
        self,
        interval: float = LOG_INTERVAL,
        max_keys: int = MAX_CAUSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0 or max_keys < 1:
            raise ValueError("RateLimiter needs interval >= 0 and max_keys >= 1.")
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [when it was last let through, events counted since]
        self._windows: OrderedDict[Hashable, list[float]] = OrderedDict()

    def hit(self, key: Hashable) -> tuple[int, float] | None:
        """None when the event is to be left out; else (events left out since the last one let
        through, seconds since that one; 0 and 0.0 for a new key)."""
        with self._lock:
            now = self._clock()
            window = self._windows.get(key)
            if window is not None and now - window[0] < self.interval:
                window[1] += 1
                return None
            result = (0, 0.0) if window is None else (int(window[1]), now - window[0])
            self._windows[key] = [now, 0]
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
            return result

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._windows.clear()


_limiter = RateLimiter()


def reset() -> None:
    """Forget every cause :func:`log_error` has seen (for tests)."""
    _limiter.clear()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def _left_out(count: int, seconds: float) -> str:
    return f" ({count:,} more like it in the {seconds:.0f} s before)" if count else ""


def log_error(
    logger: logging.Logger, message: str, error: BaseException, *, level: int = logging.ERROR
) -> bool:
    """Log ``message`` and ``error`` on ``logger``, at most once per cause per :data:`LOG_INTERVAL`.

    "The database is away" (:func:`is_database_away`) is one line; any other error also gets its
    traceback. Returns whether a line was written.
    """
    driver = _driver_error(error)
    sqlstate = getattr(driver, "sqlstate", None)
    first = _first_line(driver)
    kind = type(driver).__name__ + (f" {sqlstate}" if sqlstate else "")
    key = (logger.name, message, kind, _DIGITS.sub("#", first))
    passed = _limiter.hit(key)
    if passed is None:
        return False
    away = is_database_away(error)
    logger.log(
        level,
        "%s: %s%s: %s%s",
        message,
        "the database is away: " if away else "",
        kind,
        first,
        _left_out(*passed),
        exc_info=None if away else error,
    )
    return True


class RateLimitFilter(logging.Filter):
    """A logging filter that passes the first record of each kind per ``interval`` seconds.

    A kind is the logger, the level, the unformatted message and the exception class, so
    "Service Unavailable: %s" for every path is one kind. The next record of a kind let through
    says how many were left out. In ``LOGGING``::

        "filters": {"outages": {"()": "vectorsearch.outages.RateLimitFilter", "interval": 10}},
        "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["outages"]}},
    """

    def __init__(
        self, name: str = "", interval: float = LOG_INTERVAL, max_kinds: int = MAX_CAUSES
    ) -> None:
        super().__init__(name)
        self.limiter = RateLimiter(interval, max_kinds)

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        exc_type: Any = record.exc_info[0] if record.exc_info else None
        key = (record.name, record.levelno, str(record.msg), getattr(exc_type, "__name__", ""))
        passed = self.limiter.hit(key)
        if passed is None:
            return False
        if passed[0]:
            record.msg = record.getMessage() + _left_out(*passed)
            record.args = None
        return True
