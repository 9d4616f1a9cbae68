"""Compiled scoring kernels: exact term-at-a-time top-k over token-major postings.

numba compiles these loops to machine code, releases the GIL, and runs a batch's queries on all
cores (`prange`). numba was chosen over a C extension because it is a pip wheel with no compiler
needed at install time, and over scipy's sparse products because those materialise a dense
(queries x documents) score matrix, while here each thread keeps one float32 accumulator of the
collection's size plus the list of documents it touched: memory stays bounded by the index plus a
per-thread buffer, whatever the batch size.

Arithmetic matches tokretrieve.search exactly: float32 products query_weight * doc_weight, added
in the query's token order, and ties broken by the lower document position, so both paths return
the same top-k bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _better(score_a: np.float32, doc_a: np.int64, score_b: np.float32, doc_b: np.int64) -> bool:
    return score_a > score_b or (score_a == score_b and doc_a < doc_b)


@numba.njit(nogil=True, cache=True)
def _sift_down(heap_scores, heap_docs, size, at):
    """Restore the min-heap (worst result at the root) below position `at`."""
    while True:
        left = 2 * at + 1
        if left >= size:
            return
        worst = left
        right = left + 1
        if right < size and _better(heap_scores[worst], heap_docs[worst],
                                    heap_scores[right], heap_docs[right]):
            worst = right
        if _better(heap_scores[at], heap_docs[at], heap_scores[worst], heap_docs[worst]):
            heap_scores[at], heap_scores[worst] = heap_scores[worst], heap_scores[at]
            heap_docs[at], heap_docs[worst] = heap_docs[worst], heap_docs[at]
            at = worst
        else:
            return


@numba.njit(nogil=True, cache=True)
def heap_offer(heap_scores, heap_docs, size, k, score, doc):
    """Offer one (score, doc) to a bounded min-heap of the k best; returns the new size.

    The root holds the worst kept result, so a better newcomer replaces it in O(log k).
    """
    if size < k:
        at = size
        heap_scores[at] = score
        heap_docs[at] = doc
        size += 1
        while at > 0:
            parent = (at - 1) // 2
            if _better(heap_scores[parent], heap_docs[parent], heap_scores[at], heap_docs[at]):
                heap_scores[at], heap_scores[parent] = heap_scores[parent], heap_scores[at]
                heap_docs[at], heap_docs[parent] = heap_docs[parent], heap_docs[at]
                at = parent
            else:
                break
    elif _better(score, doc, heap_scores[0], heap_docs[0]):
        heap_scores[0] = score
        heap_docs[0] = doc
        _sift_down(heap_scores, heap_docs, size, 0)
    return size


@numba.njit(nogil=True, cache=True)
def heap_drain(heap_scores, heap_docs, size, out_docs, out_scores):
    """Empty the heap into out_*, best first (popped worst-first into the back); returns size."""
    for position in range(size - 1, -1, -1):
        out_scores[position] = heap_scores[0]
        out_docs[position] = heap_docs[0]
        heap_scores[0] = heap_scores[position]
        heap_docs[0] = heap_docs[position]
        _sift_down(heap_scores, heap_docs, position, 0)
    return size


@numba.njit(nogil=True, cache=True)
def _query_top_k(indptr, docs, weights, tokens, query_weights, k, accumulator, seen, touched,
                 out_docs, out_scores):
    """Score one query into `accumulator`, select its top-k into out_*, reset what it touched.

    Returns the number of results (documents with a positive score, at most k).
    """
    n_touched = 0
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
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    size = 0
    for i in range(n_touched):
        doc = np.int64(touched[i])
        score = accumulator[doc]
        accumulator[doc] = 0.0
        seen[doc] = False
        if score > 0.0:
            size = heap_offer(heap_scores, heap_docs, size, k, score, doc)
    return heap_drain(heap_scores, heap_docs, size, out_docs, out_scores)


@numba.njit(nogil=True, parallel=True, cache=True)
def batch_top_k(indptr, docs, weights, n_docs, query_indptr, query_tokens, query_weights, k,
                n_threads):
    """Exact top-k of every query of a batch (CSR of query bags), queries spread over
    `n_threads` threads (numba.get_num_threads() by default in the caller).

    Returns (docs, scores, counts): (queries x k) arrays, row q valid up to counts[q].
    """
    n_queries = query_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    n_chunks = max(min(n_threads, n_queries), 1)
    for chunk in numba.prange(n_chunks):
        accumulator = np.zeros(n_docs, dtype=np.float32)
        seen = np.zeros(n_docs, dtype=np.bool_)
        touched = np.empty(n_docs, dtype=np.int32)
        for q in range(chunk, n_queries, n_chunks):
            start, end = query_indptr[q], query_indptr[q + 1]
            counts[q] = _query_top_k(indptr, docs, weights, query_tokens[start:end],
                                     query_weights[start:end], k, accumulator, seen, touched,
                                     out_docs[q], out_scores[q])
    return out_docs, out_scores, counts
