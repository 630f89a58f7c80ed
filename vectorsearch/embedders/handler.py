"""``vectorsearch.embedders["default"]``: one embedder instance per alias, built from settings.

Like Django's ``storages``: ``VECTORSEARCH_EMBEDDERS = {alias: {"BACKEND": ..., "OPTIONS": ...}}``,
imported with ``import_string``, cached per alias, reset when a test changes the setting.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from ..exceptions import InvalidEmbedderError
from .base import BaseEmbedder

__all__ = ["DEFAULT_EMBEDDERS", "EmbedderHandler", "embedders"]

DEFAULT_EMBEDDER_ALIAS = "default"
DEFAULT_EMBEDDERS: dict[str, dict[str, Any]] = {
    DEFAULT_EMBEDDER_ALIAS: {
        "BACKEND": "vectorsearch.embedders.HashingEmbedder",
        "OPTIONS": {"dimensions": 384},
    }
}


class EmbedderHandler:
    """Maps an alias to its embedder; ``handler[alias]`` builds it on first use."""

    def __init__(self, embedders: dict[str, dict[str, Any]] | None = None) -> None:
        self._configured = embedders
        self._instances: dict[str, BaseEmbedder] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> dict[str, dict[str, Any]]:
        """The given dict, else ``VECTORSEARCH_EMBEDDERS``, else :data:`DEFAULT_EMBEDDERS`."""
        configured = self._configured
        if configured is None:
            configured = getattr(settings, "VECTORSEARCH_EMBEDDERS", None) or DEFAULT_EMBEDDERS
        if not isinstance(configured, dict) or not all(
            isinstance(v, dict) for v in configured.values()
        ):
            raise InvalidEmbedderError(
                "VECTORSEARCH_EMBEDDERS must be a dict of alias -> {'BACKEND': 'dotted.path', "
                "'OPTIONS': {...}}."
            )
        return configured

    def __getitem__(self, alias: str) -> BaseEmbedder:
        try:
            return self._instances[alias]
        except KeyError:
            pass
        with self._lock:
            if alias not in self._instances:
                self._instances[alias] = self.create(alias)
            return self._instances[alias]

    def __contains__(self, alias: object) -> bool:
        return alias in self.settings

    def __iter__(self) -> Any:
        return iter(self.settings)

    def all(self) -> list[BaseEmbedder]:
        return [self[alias] for alias in self]

    def create(self, alias: str) -> BaseEmbedder:
        """A new embedder for ``alias``; :class:`InvalidEmbedderError` saying what to fix."""
        configured = self.settings
        if alias not in configured:
            raise InvalidEmbedderError(
                f"Could not find an embedder called {alias!r} in VECTORSEARCH_EMBEDDERS; "
                f"configured: {', '.join(sorted(configured)) or 'none'}."
            )
        params = configured[alias]
        unknown = sorted(set(params) - {"BACKEND", "OPTIONS"})
        if unknown or "BACKEND" not in params:
            raise InvalidEmbedderError(
                f"VECTORSEARCH_EMBEDDERS[{alias!r}] needs 'BACKEND' (a dotted path) and optional "
                f"'OPTIONS' (a dict){'; unknown keys: ' + ', '.join(unknown) if unknown else ''}."
            )
        try:
            backend = import_string(params["BACKEND"])
        except ImportError as e:
            raise InvalidEmbedderError(
                f"Could not import embedder backend {params['BACKEND']!r} for alias {alias!r}: {e}"
            ) from e
        if not (isinstance(backend, type) and issubclass(backend, BaseEmbedder)):
            raise InvalidEmbedderError(
                f"{params['BACKEND']!r} (embedder {alias!r}) is not a subclass of "
                "vectorsearch.embedders.BaseEmbedder."
            )
        options = params.get("OPTIONS") or {}
        if not isinstance(options, dict):
            raise InvalidEmbedderError(
                f"VECTORSEARCH_EMBEDDERS[{alias!r}]['OPTIONS'] must be a dict."
            )
        try:
            return backend(alias=alias, **options)
        except TypeError as e:
            raise InvalidEmbedderError(f"Embedder {alias!r}: bad OPTIONS: {e}") from e

    def reset(self) -> None:
        with self._lock:
            self._instances.clear()


embedders = EmbedderHandler()


@receiver(setting_changed)
def _reset_embedders(*, setting: str, **kwargs: Any) -> None:
    if setting == "VECTORSEARCH_EMBEDDERS":
        embedders.reset()
