"""What the ``vectorsearch_*`` commands share: argument types, a progress bar (index helpers:
:mod:`.indexing`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from django.core.management.base import CommandError, OutputWrapper

from ..exceptions import InvalidEmbedderError, NotRegistered
from ..registry import Registration, registry

# The index helpers live in .indexing; these names stay importable from here.
from .indexing import (
    IndexInfo,
    generic_index_name,
    generic_index_sql,
    human_size,
    index_info,
    registration_indexes,
)

__all__ = [
    "IndexInfo",
    "Progress",
    "fraction",
    "generic_index_name",
    "generic_index_sql",
    "human_size",
    "index_info",
    "int_list",
    "positive_int",
    "registration_indexes",
    "select_registrations",
]


def positive_int(value: str) -> int:
    """argparse ``type=``: a whole number >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def fraction(value: str) -> float:
    """argparse ``type=``: a number in (0, 1]."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be greater than 0 and at most 1, got {number}")
    return number


def int_list(value: str) -> list[int]:
    """argparse ``type=``: comma-separated whole numbers >= 1, e.g. ``10,20,40``."""
    return sorted({positive_int(part.strip()) for part in value.split(",") if part.strip()})


def select_registrations(labels: Sequence[str]) -> list[Registration]:
    """The registrations the command's labels name; CommandError listing the known ones."""
    if not list(registry):
        raise CommandError(
            "No model is registered with vectorsearch. Call vectorsearch.register(Model, "
            "fields=[...]) in your AppConfig.ready()."
        )
    try:
        chosen = registry.select(labels)
    except NotRegistered as e:
        raise CommandError(
            f"{e} Pass app_label.Model (or app_label.Model.field / @alias)."
        ) from None
    for registration in chosen:
        try:
            registration.embedder  # noqa: B018 - builds it, so a bad setting fails here
        except InvalidEmbedderError as e:
            raise CommandError(f"{registration.label}: {e}") from None
    return chosen


class Progress:
    """A one-line progress bar on a terminal; a line per 10% elsewhere (logs, cron mail)."""

    def __init__(self, out: OutputWrapper, total: int, label: str, *, enabled: bool = True) -> None:
        self.out = out
        self.total = max(total, 0)
        self.label = label
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1
        self.tty = out.isatty()

    def update(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            # Redrawn at most five times a second: a terminal is slower than a fast backfill.
            if now - self._last_draw >= 0.2 or self.done >= self.total:
                self._last_draw = now
                self.out.write("\r" + self.line(), ending="")
                self.out.flush()
        else:
            decile = 10 * self.done // self.total if self.total else 10
            if decile > self._last_decile:
                self._last_decile = decile
                self.out.write(self.line())

    def close(self) -> None:
        if self.enabled and self.tty:
            self.out.write("")

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(width * min(share, 1.0))
        bar = "#" * filled + "-" * (width - filled)
        return f"{self.label} [{bar}] {self.done:,}/{self.total:,} ({share:.0%}) {rate:,.0f} rows/s"
