"""Compatibility: the query API moved to :mod:`vectorsearch.ranking` (import from ``vectorsearch``)."""

from .ranking.mmr import mmr_select
from .ranking.planner import Strategy
from .ranking.queryset import VectorManager, VectorQuerySet

__all__ = ["Strategy", "VectorManager", "VectorQuerySet", "mmr_select"]
