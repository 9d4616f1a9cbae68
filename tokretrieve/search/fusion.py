"""Hybrid search: several searchers over the same documents, their rankings fused.

Two fusions, both over each searcher's top `depth` hits per query:
- reciprocal-rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009), the default: score(d) = sum
  over searchers of weight / (rrf_k + rank(d)), ranks from 1. It needs no calibration between a
  sparse dot product, a cosine and BM25, whose scales have nothing in common.
- a normalised linear combination: each searcher's scores are min-max scaled to [0, 1] over its
  own top `depth` for the query (a document it did not return counts 0), then summed with the
  weights. It keeps how far apart the scores are, which ranks alone forget.

A fused hit keeps the matched tokens of the first searcher (in the order given) that returned it,
so hits of a sparse + dense hybrid still explain themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.search.bm25 import BM25Searcher
from tokretrieve.search.query_encoders import index_encoder
from tokretrieve.search.searcher import (
    BatchSearcher,
    DenseSearcher,
    Hit,
    Searcher,
    SparseSearcher,
)

if TYPE_CHECKING:  # torch loads with the model, never for tokenized queries
    from tokretrieve.encoding.encoder import Encoder

Fusion = Literal["rrf", "linear"]
FUSIONS = ("rrf", "linear")
HYBRID_PARTS = ("model", "tokens", "union", "dense", "bm25")
RRF_K = 60
Ranking = Mapping[str, Sequence[tuple[str, float]]]


def reciprocal_rank_fusion(rankings: Sequence[Ranking], depth: int, k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> dict[str, list]:
    """Fuse rankings ({qid: [(doc id, score)], best first}) query by query. Ties go to the
    document with the better best rank, then to the smaller doc id: a fused run is
    deterministic."""
    if k < 0:
        raise TokretrieveError(f"RRF k must be non-negative, got {k}")
    weights = _weights(weights, len(rankings))

    def contributions(ranking: Sequence[tuple[str, float]]) -> list[float]:
        return [1.0 / (k + rank) for rank in range(1, len(ranking) + 1)]

    return _fuse(rankings, weights, depth, contributions)


def linear_fusion(rankings: Sequence[Ranking], depth: int,
                  weights: Sequence[float] | None = None) -> dict[str, list]:
    """Fuse rankings by the weighted sum of their min-max normalised scores (a searcher whose
    scores for a query are all equal gives each of its documents 1)."""
    weights = _weights(weights, len(rankings))

    def contributions(ranking: Sequence[tuple[str, float]]) -> list[float]:
        scores = [score for _, score in ranking]
        low, high = min(scores), max(scores)
        return [1.0 if high == low else (score - low) / (high - low) for score in scores]

    return _fuse(rankings, weights, depth, contributions)


def _fuse(rankings, weights, depth, contributions) -> dict[str, list]:
    depth = check_count(depth, "depth")
    fused: dict[str, list] = {}
    for qid in sorted({qid for ranking in rankings for qid in ranking}):
        scores: dict[str, float] = {}
        best: dict[str, int] = {}
        for ranking, weight in zip(rankings, weights, strict=True):
            hits = list(ranking.get(qid, []))[:depth]
            for rank, ((doc, _), share) in enumerate(zip(hits, contributions(hits) if hits
                                                         else [], strict=True), start=1):
                scores[doc] = scores.get(doc, 0.0) + weight * share
                best[doc] = min(best.get(doc, rank), rank)
        order = sorted(scores, key=lambda doc: (-scores[doc], best[doc], doc))[:depth]
        fused[qid] = [(doc, scores[doc]) for doc in order]
    return fused


def part_searcher(index: SparseIndex, part: str, encoder: Encoder | None,
                  docs: Iterable[tuple[str, str]] = ()) -> Searcher | BM25Searcher:
    """The searcher of one part over `index`: sparse by query mode ("model", "tokens",
    "union"), "dense" (the index's embeddings), or "bm25" over the live documents' texts in
    `docs`. `encoder` is the index's model (None: loaded where a part needs it; tokens then
    read the tokenizer the index saved)."""
    if part == "dense":
        return DenseSearcher.from_index(index, encoder=encoder)
    if part == "bm25":
        return BM25Searcher(live_documents(index, docs))
    return SparseSearcher.from_index(index, mode=part, encoder=encoder)


def live_documents(index: SparseIndex, docs: Iterable[tuple[str, str]]
                   ) -> list[tuple[str, str]]:
    """The (id, text) pairs of `docs` whose id is a live document of `index`, in index order:
    BM25 must rank the documents the index holds, no more (a deleted or never-added id would
    be a hit no other part can return) and no fewer (a missing text is refused, naming it)."""
    texts = dict(docs)
    mask = index.deleted_mask
    live = [str(d) for i, d in enumerate(np.asarray(index.doc_ids)) if not mask[i]]
    missing = [d for d in live if d not in texts]
    if missing:
        shown = ", ".join(repr(d) for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise TokretrieveError(f"{len(missing)} document(s) of the index have no text in the "
                               f"collection given for BM25: {shown}")
    return [(d, texts[d]) for d in live]


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    weights = [float(w) for w in weights]
    if len(weights) != n or any(not w >= 0 for w in weights) or not any(weights):
        raise TokretrieveError(f"fusion weights must be {n} non-negative numbers, not all 0; "
                               f"got {weights}")
    return weights


class HybridSearcher(BatchSearcher):
    """Searchers over the same documents (sparse + dense of one model, sparse + BM25, sparse
    in both query modes, any Searcher), fused by `fusion` with per-searcher `weights`; the Searcher
    interface: `search(text, k)` and `batch_search(texts, qids, k)` return Hits."""

    def __init__(self, searchers: Sequence[Searcher], fusion: Fusion = "rrf",
                 weights: Sequence[float] | None = None, depth: int = 100,
                 rrf_k: int = RRF_K):
        if len(searchers) < 2:
            raise TokretrieveError("a hybrid needs at least two searchers")
        if fusion not in FUSIONS:
            raise TokretrieveError(f"unknown fusion '{fusion}': choose one of "
                                   f"{', '.join(FUSIONS)}")
        self.searchers = list(searchers)
        self.fusion = fusion
        self.weights = _weights(weights, len(self.searchers))
        self.depth = check_count(depth, "depth")
        self.rrf_k = rrf_k

    @classmethod
    def from_index(cls, index: str | Path | SparseIndex,
                   parts: Sequence[str] = ("model", "dense"), encoder: Encoder | None = None,
                   fusion: Fusion = "rrf", weights: Sequence[float] | None = None,
                   depth: int = 100,
                   docs: Iterable[tuple[str, str]] | None = None) -> HybridSearcher:
        """A hybrid over one index: `parts` among "model", "tokens" (sparse, by query mode),
        "dense" (the same model's embeddings) and "bm25" (over `docs`, the (id, text) pairs of
        the collection: an index stores no texts), with the index's model (`encoder`, or
        loaded by the name its manifest records) shared between them."""
        index = index if isinstance(index, SparseIndex) else SparseIndex.load(index)
        unknown = [p for p in parts if p not in HYBRID_PARTS]
        if unknown:
            raise TokretrieveError(f"unknown hybrid part(s) {', '.join(unknown)}: choose "
                                   f"among {', '.join(HYBRID_PARTS)}")
        if "bm25" in parts and docs is None:
            raise TokretrieveError("a hybrid with bm25 needs the collection's texts (docs=, "
                                   "--corpus): an index stores none")
        if encoder is None and any(p in ("model", "union", "dense") for p in parts):
            encoder = index_encoder(index)  # loaded once, for every part that needs it

        return cls([part_searcher(index, part, encoder, docs or ()) for part in parts], fusion,
                   weights, depth)

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10,
                     threads: int | None = None, explain: bool = True) -> dict[str, list[Hit]]:
        """{qid: fused hits}, each searcher asked for max(k, depth) hits per query."""
        k = check_count(k, "k")
        runs = [searcher.batch_search(queries, qids, max(k, self.depth), threads=threads,
                                      explain=explain) for searcher in self.searchers]
        rankings = [{qid: [(h.doc_id, h.score) for h in hits] for qid, hits in run.items()}
                    for run in runs]
        fused = (reciprocal_rank_fusion(rankings, self.depth, self.rrf_k, self.weights)
                 if self.fusion == "rrf" else linear_fusion(rankings, self.depth, self.weights))
        out = {}
        for qid in (str(q) for q in qids):
            matched: dict[str, list] = {}
            for run in runs:  # the first searcher that explains a hit does (dense cannot)
                for hit in run.get(qid, []):
                    if not matched.get(hit.doc_id):
                        matched[hit.doc_id] = hit.matched
            out[qid] = [Hit(doc, score, matched[doc])
                        for doc, score in fused.get(qid, [])[:k]]
        return out
