"""Compiled scoring kernels: exact term-at-a-time top-k over segmented postings.

numba compiles these loops to machine code, releases the GIL, and runs a batch's queries on all
cores (`prange`). numba was chosen over a C extension because it is a pip wheel with no compiler
needed at install time, and over scipy's sparse products because those materialise a dense
(queries x documents) score matrix.

A query is scored one document segment at a time (tokretrieve.index.postings): its postings in the
segment are added into a float32 accumulator of segment size (L2-resident), the segment's
positive sums are offered to one bounded heap of the k best, and the accumulator is zeroed for
the next segment. Two ways to do a segment, chosen by the work it needs:
- sparse: remember each document the first time it is touched (a zero accumulator means
  untouched: every product is positive, or underflows to 0 and adds nothing), then visit only
  those;
- dense: when the query walks at least 1/8 as many postings as the segment has documents, the
  bookkeeping per posting costs more than a plain scatter-add followed by one scan of the
  accumulator, so do that (p99 3x lower on 1 M synthetic documents when this was measured
  against the touched-list way alone, in the benchmark's former prototype kernels). The scan
  counts a block of SCAN_BLOCK scores above the heap's floor in one vectorized loop and
  walks only the blocks that hold one: once the heap is full, that is a few blocks a segment
  (README, Speed: "The scan").
Lists are raw (uint16 offsets, impacts) or packed (tokretrieve.index.packing): a packed list
is decoded 512 postings at a time into two small buffers, then scattered the same way, so both
give the same sums; a dense packed list (format 5: a byte per document) is added in one
vectorized pass, its zero levels adding nothing.

numba caches each kernel with the stamp of its own file only, not of the packing functions it
inlines: a change to tokretrieve/index/packing.py or lane_decoders.py must also drop the
cached kernels (lane_codegen.py does for the decoders), or edit this file.

Accumulators and touched lists are allocated once per thread by `Scratch` and reused, so a call
allocates nothing of collection size. Memory: the index (memory-mapped) plus, per thread, one
segment's accumulator and touched list and a k-sized heap.

Arithmetic matches the tests' numpy reference (tests/refimpl.py) exactly: float32 products
query_weight * impact, added in the query's token order, times the power-of-two scale at the
end; ties go to the lower document position, so both return the same top-k bit for bit.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from tokretrieve.index.lane_codegen import CHUNK
from tokretrieve.index.packing import ADD, TRACK, WRITE, walk_list

# A segment is scored the dense way when the query walks at least span / DENSE_SHARE postings.
DENSE_SHARE = 8
# Scores the dense way's scan tests at once (one vectorized count) before any one of them.
SCAN_BLOCK = 256


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


class Scratch(threading.local):
    """Per-thread scoring buffers, kept between calls (one set per calling Python thread, so
    concurrent searches on one index never share an accumulator), one set per shape, so
    switching thread counts back and forth allocates nothing after the first call of each."""

    def buffers(self, n_threads: int, segment_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """(accumulators, touched): zeroed float32 and uint16 arrays, one row per kernel
        thread. The kernel leaves every accumulator zeroed again when it returns."""
        shape = (max(n_threads, 1), max(segment_docs, 1))
        if not hasattr(self, "_by_shape"):
            self._by_shape: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        if shape not in self._by_shape:
            self._by_shape[shape] = (np.zeros(shape, dtype=np.float32),
                                     np.zeros(shape, dtype=np.uint16))
        return self._by_shape[shape]


@numba.njit(nogil=True, cache=True)
def _segment_top_k(indptr, docs, impacts, word_ptr, words, segment, base, span, tokens,
                   query_weights, k, deleted, accumulator, touched, gaps, levels, spare,
                   heap_scores, heap_docs, size):
    """Score one query over one segment and offer the positive sums of documents not marked
    in `deleted` (empty: none are) to the heap; returns the heap's new size, or -1 when a
    packed chunk is damaged. The lists are raw (docs / impacts; word_ptr / words None) or
    packed (word_ptr / words; docs / impacts empty); gaps / levels: the decoder's buffers,
    spare: an empty uint8 array, what walk_list writes in a mode the kernel does not use. The
    accumulator is left zeroed."""
    any_deleted = deleted.shape[0] > 0
    walked = 0
    for i in range(tokens.shape[0]):
        token = tokens[i]
        walked += indptr[segment, token + 1] - indptr[segment, token]
    if walked == 0:
        return size
    if walked * DENSE_SHARE >= span:
        for i in range(tokens.shape[0]):
            token = tokens[i]
            weight = np.float32(query_weights[i])
            if words is None:
                for p in range(indptr[segment, token], indptr[segment, token + 1]):
                    accumulator[docs[p]] += weight * np.float32(impacts[p])
            elif walk_list(indptr, word_ptr, words, segment, token, span, ADD, weight,
                           accumulator, touched, 0, spare, gaps, levels) < 0:
                accumulator[:span] = 0.0
                return -1
        # Ascending positions, after every document already in the heap: a score equal to the
        # heap's worst loses its tie, so only a strictly better one is offered. A block of
        # SCAN_BLOCK scores is first counted against the floor in one vectorized loop, and only
        # a block with a score above it is walked (once the heap is full, few scores beat its
        # floor: most blocks are skipped whole). In a walked block, one test per document
        # against the floor keeps the branch predictable (testing score > 0 first mispredicts
        # on about half of the documents: 4x slower).
        floor = heap_scores[0] if size == k else np.float32(0.0)
        for start in range(0, span, SCAN_BLOCK):
            stop = min(start + SCAN_BLOCK, span)
            block = accumulator[start:stop]
            above = 0
            for j in range(block.shape[0]):  # from 0: no negative-index test, so no gathers
                above += block[j] > floor
            if above == 0:
                continue
            for local in range(start, stop):
                score = accumulator[local]
                if score > floor and not (any_deleted and deleted[base + local]):
                    size = heap_offer(heap_scores, heap_docs, size, k, score, base + local)
                    if size == k:
                        floor = heap_scores[0]
        accumulator[:span] = 0.0
        return size
    n_touched = np.int64(0)
    for i in range(tokens.shape[0]):
        token = tokens[i]
        weight = np.float32(query_weights[i])
        if words is None:
            for p in range(indptr[segment, token], indptr[segment, token + 1]):
                local = docs[p]
                if accumulator[local] == 0.0:
                    touched[n_touched] = local
                    n_touched += 1
                accumulator[local] += weight * np.float32(impacts[p])
            continue
        n_touched = walk_list(indptr, word_ptr, words, segment, token, span, TRACK, weight,
                              accumulator, touched, n_touched, spare, gaps, levels)
        if n_touched < 0:  # the documents touched so far are lost: zero the whole span
            accumulator[:span] = 0.0
            return -1
    # Touched in no particular order, so a score equal to the heap's worst may still win its
    # tie (lower position): offer scores >= the floor. A document touched twice (zero product
    # first) is offered once: its second visit reads 0.
    floor = heap_scores[0] if size == k else np.float32(0.0)
    for i in range(n_touched):
        local = np.int64(touched[i])
        score = accumulator[local]
        accumulator[local] = 0.0
        if score >= floor and score > 0.0 and not (any_deleted and deleted[base + local]):
            size = heap_offer(heap_scores, heap_docs, size, k, score, base + local)
            if size == k:
                floor = heap_scores[0]
    return size


@numba.njit(nogil=True, cache=True)
def _chunk_top_k(indptr, docs, impacts, word_ptr, words, n_docs, segment_docs, query_indptr,
                 query_tokens, query_weights, k, deleted, accumulator, touched, chunk, n_chunks,
                 out_docs, out_sums, counts):
    """One thread's share of `batch_top_k`: queries chunk, chunk + n_chunks, ... into their
    rows of out_docs / out_sums / counts. A function of its own, outside the parallel loop:
    compiled inside it, the packed lists' loop measured 1.1x slower."""
    heap_scores = np.empty(k, dtype=np.float32)
    heap_docs = np.empty(k, dtype=np.int64)
    gaps = np.empty(CHUNK, dtype=np.uint32)
    levels = np.empty(CHUNK, dtype=np.uint32)
    spare = np.zeros(0, dtype=np.uint8)
    for q in range(chunk, query_indptr.shape[0] - 1, n_chunks):
        start, end = query_indptr[q], query_indptr[q + 1]
        size = np.int64(0)
        for segment in range(indptr.shape[0]):
            base = segment * segment_docs
            size = _segment_top_k(indptr, docs, impacts, word_ptr, words, segment, base,
                                  min(segment_docs, n_docs - base), query_tokens[start:end],
                                  query_weights[start:end], k, deleted, accumulator, touched,
                                  gaps, levels, spare, heap_scores, heap_docs, size)
            if size < 0:
                break
        counts[q] = -1 if size < 0 else heap_drain(heap_scores, heap_docs, size, out_docs[q],
                                                   out_sums[q])


@numba.njit(nogil=True, parallel=True, cache=True)
def batch_top_k(indptr, docs, impacts, word_ptr, words, n_docs, segment_docs, query_indptr,
                query_tokens, query_weights, k, deleted, accumulators, touched):
    """Exact top-k of every query of a batch (CSR of query bags), queries spread over the
    threads that `accumulators` / `touched` have rows for (see Scratch), over raw lists
    (docs / impacts; word_ptr / words None) or packed ones (word_ptr / words, see
    tokretrieve.index.packing; docs / impacts empty). Documents whose `deleted` entry is
    true are never returned (an empty `deleted`: none is deleted).

    None, not empty arrays, for a raw index's word_ptr / words: numba types None apart and
    drops the branches that test `words is None`, so a raw index's first search compiles no
    packed decoder (numba prunes on a None argument only, hence empty arrays the other way).

    Returns (docs, sums, counts): (queries x k) arrays, row q valid up to counts[q]; sums are
    before the scale. counts[q] is -1 where a packed chunk the query walked is damaged.
    """
    n_queries = query_indptr.shape[0] - 1
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_sums = np.zeros((n_queries, k), dtype=np.float32)
    counts = np.zeros(n_queries, dtype=np.int64)
    n_chunks = max(min(accumulators.shape[0], n_queries), 1)
    for chunk in numba.prange(n_chunks):
        _chunk_top_k(indptr, docs, impacts, word_ptr, words, n_docs, segment_docs,
                     query_indptr, query_tokens, query_weights, k, deleted,
                     accumulators[chunk], touched[chunk], chunk, n_chunks, out_docs, out_sums,
                     counts)
    return out_docs, out_sums, counts


@numba.njit(nogil=True, cache=True)
def gather_impacts(indptr, docs, impacts, segment_docs, tokens, hit_docs):
    """(hit docs x tokens) float32 impacts of the given documents for the given tokens, 0 where
    a document lacks the token: one binary search per pair, for listing matched tokens."""
    out = np.zeros((hit_docs.shape[0], tokens.shape[0]), dtype=np.float32)
    for r in range(hit_docs.shape[0]):
        segment = hit_docs[r] // segment_docs
        local = hit_docs[r] - segment * segment_docs
        for c in range(tokens.shape[0]):
            start, end = indptr[segment, tokens[c]], indptr[segment, tokens[c] + 1]
            at = start + np.searchsorted(docs[start:end], local)
            if at < end and docs[at] == local:
                out[r, c] = np.float32(impacts[at])
    return out


@numba.njit(nogil=True, cache=True)
def gather_packed_impacts(indptr, word_ptr, words, n_docs, segment_docs, tokens, hit_docs):
    """`gather_impacts` over packed lists: each (segment, token) list that a hit document's
    segment holds is decoded once, then searched for each of those documents. Returns
    (impacts, whole): whole is False when a chunk is damaged."""
    out = np.zeros((hit_docs.shape[0], tokens.shape[0]), dtype=np.float32)
    gaps = np.empty(CHUNK, dtype=np.uint32)
    levels = np.empty(CHUNK, dtype=np.uint32)
    list_docs = np.empty(min(segment_docs, n_docs), dtype=np.uint16)
    list_levels = np.empty(min(segment_docs, n_docs), dtype=np.uint8)
    no_floats = np.zeros(0, dtype=np.float32)
    segments = hit_docs // segment_docs
    for segment in np.unique(segments):
        base = segment * segment_docs
        span = min(segment_docs, n_docs - base)
        for c in range(tokens.shape[0]):
            n = indptr[segment, tokens[c] + 1] - indptr[segment, tokens[c]]
            if n == 0:
                continue
            if walk_list(indptr, word_ptr, words, segment, tokens[c], span, WRITE,
                         np.float32(0), no_floats, list_docs, 0, list_levels, gaps,
                         levels) < 0:
                return out, False
            for r in range(hit_docs.shape[0]):
                if segments[r] == segment:
                    at = np.searchsorted(list_docs[:n], hit_docs[r] - base)
                    if at < n and list_docs[at] == hit_docs[r] - base:
                        out[r, c] = np.float32(list_levels[at])
    return out, True
