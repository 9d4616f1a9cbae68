"""Reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009).

RRF needs no score calibration between a sparse dot product, a cosine and BM25, which is why it is
the hybrid of choice here: score(d) = sum over input rankings of 1 / (k + rank(d)), ranks from 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.quality.runs import Ranking

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Mapping[str, list[tuple[str, float]]]],
                           depth: int, k: int = RRF_K) -> Ranking:
    """Fuse rankings query by query. Ties go to the document with the better best rank, then to
    the smaller doc id, so a fused run is deterministic."""
    if k < 0:
        raise ValueError(f"RRF k must be non-negative, got {k}")
    fused: Ranking = {}
    for qid in sorted({qid for ranking in rankings for qid in ranking}):
        scores: dict[str, float] = {}
        best: dict[str, int] = {}
        for ranking in rankings:
            for rank, (doc, _) in enumerate(ranking.get(qid, []), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
                best[doc] = min(best.get(doc, rank), rank)
        order = sorted(scores, key=lambda doc: (-scores[doc], best[doc], doc))[:depth]
        fused[qid] = [(doc, scores[doc]) for doc in order]
    return fused
