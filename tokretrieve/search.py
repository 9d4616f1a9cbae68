"""Search results, and the exact top-k selection of a score vector.

A document's score is the dot product of the query bag and the document bag (the compiled
kernel in tokretrieve.kernels, or Postings.scores as its reference); ties are broken by the
document's position in the index, so results are deterministic.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tokretrieve.projection import check_top_k


class Hit(NamedTuple):
    """One result: the document, its score, and the matched tokens with their contributions."""

    doc_id: str
    score: float
    matched: list[tuple[str, float]]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best positive scores, best first, ties by lower index."""
    k = check_top_k(k)
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > k:
        # Keep every candidate tied with the k-th score so the tie-break below sees them all.
        kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return chosen, scores[chosen]
