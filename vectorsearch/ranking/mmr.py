"""Maximal marginal relevance: rows similar to the query *and* different from each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pgvector import HalfVector, SparseVector, Vector

from ..exceptions import InvalidQuery
from .spec import check_k

if TYPE_CHECKING:
    from .queryset import VectorQuerySet

__all__ = ["mmr", "mmr_select"]


def mmr(
    queryset: VectorQuerySet[Any],
    query: Any,
    *,
    k: int = 10,
    fetch_k: int | None = None,
    lambda_mult: float = 0.5,
    **options: Any,
) -> list[Any]:
    """``k`` rows that are similar to ``query`` *and* different from each other.

    From the ``fetch_k`` nearest rows (default ``4 * k``), pick greedily the row maximising
    ``lambda_mult * sim(row, query) - (1 - lambda_mult) * max sim(row, picked)``, with cosine
    similarity. ``lambda_mult`` = 1 is plain similarity order, 0 maximal diversity. ``options``
    go to ``similar_to()``. Returns model instances, in pick order, with ``distance`` and
    ``score``.
    """
    k_ = check_k(k)
    assert k_ is not None
    fetch = check_k(4 * k_ if fetch_k is None else fetch_k, "fetch_k")
    assert fetch is not None
    if fetch < k_:
        raise InvalidQuery(f"fetch_k ({fetch}) must be at least k ({k_}).")
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, int | float):
        raise InvalidQuery(f"lambda_mult must be a number from 0 to 1, not {lambda_mult!r}.")
    if not 0.0 <= lambda_mult <= 1.0:
        raise InvalidQuery(f"lambda_mult must be from 0 to 1, not {lambda_mult!r}.")
    if queryset._fields is not None:
        raise InvalidQuery("mmr() returns model instances; call it before values().")
    ranked = queryset.similar_to(query, k=fetch, **options)
    spec = ranked._search_spec
    assert spec is not None
    if spec.vector is None:
        raise InvalidQuery("mmr() needs a query vector or instance, not an SQL expression.")
    rows = list(ranked)
    if not rows:
        return []
    target = spec.target
    if target.column is not None:
        vectors = [getattr(row, target.field.attname) for row in rows]
    else:
        vectors = [target.read_vector(row) for row in rows]
    matrix = np.stack([_dense(v) for v in vectors])
    return [rows[i] for i in mmr_select(_dense(spec.vector), matrix, k_, float(lambda_mult))]


def _dense(value: Any) -> np.ndarray[Any, Any]:
    if isinstance(value, SparseVector | Vector | HalfVector):
        return np.asarray(value.to_numpy(), dtype=np.float64)
    if isinstance(value, str):  # bit string
        return np.array([c == "1" for c in value], dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def mmr_select(
    query: np.ndarray[Any, Any], candidates: np.ndarray[Any, Any], k: int, lambda_mult: float
) -> list[int]:
    """Indices of ``k`` rows of ``candidates`` chosen by maximal marginal relevance."""
    norms = np.linalg.norm(candidates, axis=1)
    norms[norms == 0] = 1.0
    unit = candidates / norms[:, None]
    q = query / (np.linalg.norm(query) or 1.0)
    relevance = unit @ q
    pairwise = unit @ unit.T
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)
    for _ in range(min(k, len(candidates))):
        if chosen:
            marginal = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        else:
            marginal = relevance.copy()
        marginal[chosen] = -np.inf
        pick = int(np.argmax(marginal))
        chosen.append(pick)
        redundancy = np.maximum(redundancy, pairwise[pick])
    return chosen
