"""Exact scoring of query bags against token-major postings.

A document's score is the dot product of the query bag and the document bag. Scoring walks only
the postings of the query's tokens (term-at-a-time), accumulating into one float32 buffer of the
collection's size per query; the top-k are then selected exactly. Ties are broken by the
document's position in the index, so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tokretrieve.projection import check_top_k


class Hit(NamedTuple):
    """One result: the document, its score, and the matched tokens with their contributions."""

    doc_id: str
    score: float
    matched: list[tuple[str, float]]


@dataclass
class Postings:
    """Token-major (CSC) postings: for token t, docs[indptr[t]:indptr[t+1]] ascending."""

    indptr: np.ndarray
    docs: np.ndarray
    weights: np.ndarray
    n_docs: int

    @property
    def vocab_size(self) -> int:
        return len(self.indptr) - 1

    def document_frequency(self) -> np.ndarray:
        return np.diff(self.indptr)

    def scores(self, token_ids: np.ndarray, token_weights: np.ndarray) -> np.ndarray:
        """Dot products of one query bag with every document (float32, one per document)."""
        scores = np.zeros(self.n_docs, dtype=np.float32)
        for token, weight in zip(token_ids.tolist(), token_weights.tolist(), strict=True):
            start, end = self.indptr[token], self.indptr[token + 1]
            if start == end:
                continue
            # A posting list names each document once, so this fancy-indexed add is exact.
            scores[self.docs[start:end]] += np.float32(weight) * self.weights[start:end]
        return scores

    def contributions(self, token_ids: np.ndarray, token_weights: np.ndarray,
                      docs: np.ndarray) -> np.ndarray:
        """(docs x query tokens) float32 matrix of query weight x document weight, 0 where the
        document lacks the token: one binary search per token for all `docs` at once."""
        docs = np.asarray(docs, dtype=np.int64)
        out = np.zeros((len(docs), len(token_ids)), dtype=np.float32)
        for column, (token, weight) in enumerate(zip(token_ids.tolist(), token_weights.tolist(),
                                                     strict=True)):
            start, end = int(self.indptr[token]), int(self.indptr[token + 1])
            if start == end:
                continue
            posting_docs = self.docs[start:end]
            at = np.minimum(np.searchsorted(posting_docs, docs), end - start - 1)
            found = posting_docs[at] == docs
            out[found, column] = np.float32(weight) * self.weights[start + at[found]]
        return out


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
