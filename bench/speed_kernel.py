"""Query batches for the package's kernel, where its time goes, and prototype kernels.

`QueryBatch` lays query bags out exactly as SparseIndex.search_bags hands them to
tokretrieve.kernels.batch_top_k (non-positive weights dropped, CSR of tokens), so the benchmark
times the package's kernel without the Hit objects around it; the per-query slices are cut once,
up front, so a latency sample is the kernel call and nothing else.

`traversal` counts what a query costs the term-at-a-time kernel: postings walked (the sum of its
tokens' document frequencies) and distinct documents touched (accumulator entries that the
selection step then scans). The prototypes are copies of the package's kernel with one change each,
checked for identical results, so the report can say what a change to the package would buy:
- `scratch`: per-thread accumulators allocated once and reused, instead of per call (a 1 M-doc
  index allocates, page-faults and frees ~9 MB on every call);
- `lean`: the same, and no separate `seen` array (a zero accumulator marks an untouched document;
  every contribution is positive, so this is exact), one memory stream fewer per posting;
- `accumulate`: the lean accumulation without top-k selection, to split scoring from selection;
- `dense`: no `seen` array and no touched list: a bare scatter-add (the bookkeeping per posting
  costs more than the add itself), then one scan of the whole accumulator for the top-k and a
  memset; it pays once a query walks a fair share of the collection;
- `adaptive`: `dense` when the query walks at least n_docs / 8 postings, else `lean`;
- `maxscore` (pruned_top_k): exact MaxScore-style pruning, to test whether skipping the
  low-bound lists pays on this weight distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from tokretrieve.kernels import batch_top_k, heap_drain, heap_offer
from tokretrieve.search import Postings


@dataclass
class QueryBatch:
    """Query bags as the kernel takes them: CSR (indptr, int64 tokens, float32 weights)."""

    indptr: np.ndarray
    tokens: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_bags(cls, bags: Sequence[tuple[np.ndarray, np.ndarray]]) -> QueryBatch:
        """Clean bags the way SparseIndex._clean_bag does (drop non-positive weights)."""
        tokens, weights = [], []
        for ids, w in bags:
            ids = np.asarray(ids, dtype=np.int64).ravel()
            w = np.asarray(w, dtype=np.float32).ravel()
            keep = w > 0
            tokens.append(ids[keep])
            weights.append(w[keep])
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        indptr = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return cls(indptr,
                   np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64),
                   np.concatenate(weights) if weights else np.zeros(0, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def query(self, q: int) -> QueryBatch:
        """A batch of one: query q alone."""
        start, end = int(self.indptr[q]), int(self.indptr[q + 1])
        return QueryBatch(np.array([0, end - start], dtype=np.int64),
                          self.tokens[start:end].copy(), self.weights[start:end].copy())

    def singles(self) -> list[QueryBatch]:
        return [self.query(q) for q in range(len(self))]

    def mean_length(self) -> float:
        return float(np.diff(self.indptr).mean()) if len(self) else 0.0


def package_top_k(postings: Postings, batch: QueryBatch, k: int,
                  n_threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tokretrieve.kernels.batch_top_k with the arguments search_bags gives it."""
    return batch_top_k(postings.indptr, postings.docs, postings.weights, postings.n_docs,
                       batch.indptr, batch.tokens, batch.weights,
                       min(k, max(postings.n_docs, 1)), n_threads)


def traversal(postings: Postings, batch: QueryBatch) -> dict[str, np.ndarray]:
    """Per query: postings walked and distinct documents touched."""
    walked, touched = _traversal(np.asarray(postings.indptr), np.asarray(postings.docs),
                                 postings.n_docs, batch.indptr, batch.tokens)
    return {"postings": walked, "touched": touched}


@numba.njit(nogil=True, cache=True)
def _traversal(indptr, docs, n_docs, query_indptr, query_tokens):  # pragma: no cover
    n_queries = query_indptr.shape[0] - 1
    walked = np.zeros(n_queries, dtype=np.int64)
    touched = np.zeros(n_queries, dtype=np.int64)
    stamp = np.full(max(n_docs, 1), -1, dtype=np.int64)
    for q in range(n_queries):
        for i in range(query_indptr[q], query_indptr[q + 1]):
            token = query_tokens[i]
            walked[q] += indptr[token + 1] - indptr[token]
            for p in range(indptr[token], indptr[token + 1]):
                doc = docs[p]
                if stamp[doc] != q:
                    stamp[doc] = q
                    touched[q] += 1
    return walked, touched


class Scratch:
    """Per-thread buffers kept between calls (what the prototypes assume the package would
    keep on the index object)."""

    def __init__(self, n_docs: int, n_threads: int):
        self.accumulator = np.zeros((n_threads, max(n_docs, 1)), dtype=np.float32)
        self.seen = np.zeros((n_threads, max(n_docs, 1)), dtype=np.bool_)
        self.touched = np.zeros((n_threads, max(n_docs, 1)), dtype=np.int32)
        self.n_threads = n_threads


VARIANTS = ("scratch", "lean", "accumulate", "dense", "adaptive")
DENSE_SHARE = 8  # dense when a query walks at least n_docs / DENSE_SHARE postings
PRUNED = "maxscore"


def prototype_top_k(variant: str, postings: Postings, batch: QueryBatch, k: int,
                    scratch: Scratch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one prototype kernel (see the module docstring) on all of `scratch`'s threads."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    return _prototype_batch(np.asarray(postings.indptr), np.asarray(postings.docs),
                            np.asarray(postings.weights), batch.indptr, batch.tokens,
                            batch.weights, min(k, max(postings.n_docs, 1)),
                            VARIANTS.index(variant), scratch.accumulator, scratch.seen,
                            scratch.touched, postings.n_docs)


@numba.njit(nogil=True, cache=True)
def _select(accumulator, seen, touched, n_touched, k, out_docs, out_scores,
            use_seen):  # pragma: no cover - compiled
    """The package's heap selection over touched documents, resetting them as it goes."""
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    for i in range(n_touched):
        doc = np.int64(touched[i])
        score = accumulator[doc]
        accumulator[doc] = 0.0
        if use_seen:
            seen[doc] = False
        if not score > 0.0:
            continue
        size = heap_offer(heap_scores, heap_docs, size, k, score, doc)
    return heap_drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(nogil=True, cache=True)
def _select_dense(accumulator, n_docs, k, out_docs, out_scores):  # pragma: no cover - compiled
    """Heap selection over every document's accumulator entry, then one memset.

    Documents are scanned in ascending order, so a document whose score equals the heap's worst
    has the higher id and loses: one strict comparison against a threshold (0 until the heap is
    full, then the worst kept score) decides, a branch that is almost never taken.
    """
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    threshold = np.float32(0.0)
    for doc in range(n_docs):
        score = accumulator[doc]
        if score > threshold:
            # Past the threshold a later (higher-id) document is strictly better than the root.
            size = heap_offer(heap_scores, heap_docs, size, k, score, doc)
            if size == k:
                threshold = heap_scores[0]
    accumulator[:n_docs] = 0.0
    return heap_drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(nogil=True, cache=True)
def _prototype_query(indptr, docs, weights, tokens, query_weights, k, variant, accumulator,
                     seen, touched, n_docs, out_docs, out_scores):  # pragma: no cover - compiled
    n_touched = 0
    if variant == 4:  # adaptive: dense when the postings cover a large share of the documents
        walked = 0
        for i in range(tokens.shape[0]):
            walked += indptr[tokens[i] + 1] - indptr[tokens[i]]
        variant = 3 if walked * DENSE_SHARE >= n_docs else 1
    if variant == 3:  # dense: no touched list, scan everything
        for i in range(tokens.shape[0]):
            token = tokens[i]
            weight = np.float32(query_weights[i])
            for p in range(indptr[token], indptr[token + 1]):
                accumulator[docs[p]] += weight * weights[p]
        return _select_dense(accumulator, n_docs, k, out_docs, out_scores)
    if variant == 0:  # scratch: the package's loop, buffers reused
        for i in range(tokens.shape[0]):
            token = tokens[i]
            weight = np.float32(query_weights[i])
            for p in range(indptr[token], indptr[token + 1]):
                doc = docs[p]
                if not seen[doc]:
                    seen[doc] = True
                    touched[n_touched] = doc
                    n_touched += 1
                accumulator[doc] += weight * weights[p]
        return _select(accumulator, seen, touched, n_touched, k, out_docs, out_scores, True)
    for i in range(tokens.shape[0]):  # lean / accumulate: zero accumulator = untouched
        token = tokens[i]
        weight = np.float32(query_weights[i])
        for p in range(indptr[token], indptr[token + 1]):
            doc = docs[p]
            contribution = weight * weights[p]
            if accumulator[doc] == 0.0:
                if contribution > 0.0:
                    touched[n_touched] = doc
                    n_touched += 1
                    accumulator[doc] = contribution
            else:
                accumulator[doc] += contribution
    if variant == 2:
        for i in range(n_touched):
            accumulator[touched[i]] = 0.0
        return 0
    return _select(accumulator, seen, touched, n_touched, k, out_docs, out_scores, False)


@numba.njit(nogil=True, parallel=True, cache=True)
def _prototype_batch(indptr, docs, weights, query_indptr, query_tokens, query_weights, k,
                     variant, accumulators, seens, toucheds, n_docs):  # pragma: no cover
    n_queries = query_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    n_chunks = max(min(accumulators.shape[0], n_queries), 1)
    for chunk in numba.prange(n_chunks):
        for q in range(chunk, n_queries, n_chunks):
            start, end = query_indptr[q], query_indptr[q + 1]
            counts[q] = _prototype_query(indptr, docs, weights, query_tokens[start:end],
                                         query_weights[start:end], k, variant,
                                         accumulators[chunk], seens[chunk], toucheds[chunk],
                                         n_docs, out_docs[q], out_scores[q])
    return out_docs, out_scores, counts


# ------------------------------------------------------------------------ exact dynamic pruning
PRUNE_SLACK = 1e-4


def token_max_weights(postings: Postings) -> np.ndarray:
    """Each token's largest document weight (0 for empty lists): the per-list upper bound a
    pruned kernel needs. A package change would store it beside indptr (4 bytes x vocab)."""
    indptr = np.asarray(postings.indptr)
    weights = np.asarray(postings.weights)
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    if len(nonempty):
        out[nonempty] = np.maximum.reduceat(weights, indptr[nonempty])
    return out


def pruned_top_k(postings: Postings, max_weight: np.ndarray, batch: QueryBatch, k: int,
                 scratch: Scratch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k with MaxScore-style pruning (term-at-a-time), same results as the package.

    Tokens are walked in decreasing order of their bound (query weight x the list's largest
    weight). As soon as the bounds of the tokens still to walk sum below the current k-th
    partial score, no untouched document can reach the top-k: the rest of the lists are only
    probed (galloping search) for the few candidates that still can. The final candidates are
    rescored in the query's own token order, so scores and ties match the package bit for bit.
    """
    return _pruned_batch(np.asarray(postings.indptr), np.asarray(postings.docs),
                         np.asarray(postings.weights), max_weight, batch.indptr, batch.tokens,
                         batch.weights, min(k, max(postings.n_docs, 1)), scratch.accumulator,
                         scratch.touched, PRUNE_SLACK)


@numba.njit(nogil=True, cache=True)
def _kth_best(accumulator, touched, n_touched, k):  # pragma: no cover - compiled
    """The k-th largest accumulator value among the touched documents (0 if fewer)."""
    if n_touched < k:
        return 0.0
    heap = np.empty(k, dtype=np.float32)
    size = 0
    for i in range(n_touched):
        value = accumulator[touched[i]]
        if size < k:
            at = size
            heap[at] = value
            size += 1
            while at > 0:
                parent = (at - 1) // 2
                if heap[parent] > heap[at]:
                    heap[parent], heap[at] = heap[at], heap[parent]
                    at = parent
                else:
                    break
        elif value > heap[0]:
            heap[0] = value
            at = 0
            while True:
                left = 2 * at + 1
                if left >= size:
                    break
                small = left
                if left + 1 < size and heap[left + 1] < heap[left]:
                    small = left + 1
                if heap[small] < heap[at]:
                    heap[small], heap[at] = heap[at], heap[small]
                    at = small
                else:
                    break
    return heap[0]


@numba.njit(nogil=True, cache=True)
def _find(docs, start, end, doc):  # pragma: no cover - compiled
    """Position of `doc` in the ascending docs[start:end], or -1."""
    at = start + np.searchsorted(docs[start:end], doc)
    if at < end and docs[at] == doc:
        return at
    return -1


@numba.njit(nogil=True, cache=True)
def _pruned_query(indptr, docs, weights, max_weight, tokens, query_weights, k, accumulator,
                  touched, slack, out_docs, out_scores):  # pragma: no cover - compiled
    n = tokens.shape[0]
    bound = np.empty(n, dtype=np.float64)
    for i in range(n):
        bound[i] = np.float64(query_weights[i]) * np.float64(max_weight[tokens[i]])
    order = np.argsort(-bound, kind="mergesort")
    rest = np.zeros(n + 1, dtype=np.float64)       # rest[i]: bounds of order[i:] summed
    for i in range(n - 1, -1, -1):
        rest[i] = rest[i + 1] + bound[order[i]]
    n_touched = 0
    top = 0.0
    switch = n
    theta = 0.0
    checks = 0
    for i in range(n):
        token = tokens[order[i]]
        weight = np.float32(query_weights[order[i]])
        for p in range(indptr[token], indptr[token + 1]):
            doc = docs[p]
            contribution = weight * weights[p]
            value = accumulator[doc]
            if value == 0.0:
                if contribution > 0.0:
                    touched[n_touched] = doc
                    n_touched += 1
                    accumulator[doc] = contribution
                    if contribution > top:
                        top = contribution
            else:
                value += contribution
                accumulator[doc] = value
                if value > top:
                    top = value
        remaining = rest[i + 1] * (1.0 + slack)
        # theta <= top, so only then can the k-th partial score exceed the remaining bounds.
        if i + 1 < n and remaining < top * (1.0 - slack) and checks < 4:
            checks += 1
            theta = _kth_best(accumulator, touched, n_touched, k)
            if remaining < theta * (1.0 - slack):
                switch = i + 1
                break
    # Candidates: documents whose partial score plus the remaining bounds can still reach theta.
    if switch < n:
        floor = theta * (1.0 - slack) / (1.0 + slack) - rest[switch] * (1.0 + slack)
        n_cand = 0
        for i in range(n_touched):
            if accumulator[touched[i]] >= floor:
                n_cand += 1
        candidates = np.empty(n_cand, dtype=np.int64)
        n_cand = 0
        for i in range(n_touched):
            if accumulator[touched[i]] >= floor:
                candidates[n_cand] = touched[i]
                n_cand += 1
        candidates.sort()
        for j in range(switch, n):
            token = tokens[order[j]]
            weight = np.float32(query_weights[order[j]])
            start, end = indptr[token], indptr[token + 1]
            at = start
            for c in range(n_cand):
                doc = candidates[c]
                # Gallop from the last position (candidates ascend, so does the list), then
                # binary-search the bracket: docs[low] < doc <= docs[high] (or high = end).
                if at < end and docs[at] < doc:
                    low = at
                    step = 1
                    high = low + 1
                    while high < end and docs[high] < doc:
                        low = high
                        step *= 2
                        high = low + step
                    if high > end:
                        high = end
                    at = low + 1 + np.searchsorted(docs[low + 1:high], doc)
                if at >= end:
                    break
                if docs[at] == doc:
                    accumulator[doc] += weight * weights[at]
    else:
        candidates = np.empty(n_touched, dtype=np.int64)
        for i in range(n_touched):
            candidates[i] = touched[i]
    # Documents within rounding of the k-th partial score are rescored exactly, in query order.
    approx = np.empty(candidates.shape[0], dtype=np.float32)
    for c in range(candidates.shape[0]):
        approx[c] = accumulator[candidates[c]]
    for i in range(n_touched):
        accumulator[touched[i]] = 0.0
    if candidates.shape[0] == 0:
        return 0
    kth = 0.0
    if candidates.shape[0] > k:
        kth = np.partition(-approx, k - 1)[k - 1] * -1.0
    cut = kth * (1.0 - 4.0 * slack)
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    for c in range(candidates.shape[0]):
        if not approx[c] > 0.0 or approx[c] < cut:
            continue
        doc = candidates[c]
        score = np.float32(0.0)
        for i in range(n):
            token = tokens[i]
            at = _find(docs, indptr[token], indptr[token + 1], doc)
            if at >= 0:
                score += np.float32(query_weights[i]) * weights[at]
        if not score > 0.0:
            continue
        size = heap_offer(heap_scores, heap_docs, size, k, score, doc)
    return heap_drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(nogil=True, parallel=True, cache=True)
def _pruned_batch(indptr, docs, weights, max_weight, query_indptr, query_tokens, query_weights,
                  k, accumulators, toucheds, slack):  # pragma: no cover - compiled
    n_queries = query_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    n_chunks = max(min(accumulators.shape[0], n_queries), 1)
    for chunk in numba.prange(n_chunks):
        for q in range(chunk, n_queries, n_chunks):
            start, end = query_indptr[q], query_indptr[q + 1]
            counts[q] = _pruned_query(indptr, docs, weights, max_weight,
                                      query_tokens[start:end], query_weights[start:end], k,
                                      accumulators[chunk], toucheds[chunk], slack,
                                      out_docs[q], out_scores[q])
    return out_docs, out_scores, counts
