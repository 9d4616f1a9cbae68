"""Query batches for the package's kernel, and what each query costs it.

`QueryBatch` lays query bags out exactly as SparseIndex.search hands them to
tokretrieve.index.kernels.batch_top_k (negative weights dropped, duplicates summed, CSR of int64
tokens and float32 weights), so the benchmark times the package's kernel without the argument
checks and result padding around it; the per-query slices are cut once, up front, so a latency
sample is the kernel call and nothing else.

`package_top_k` calls that kernel as SparseIndex.search does (Postings.top_k), with one
tokretrieve.index.kernels.Scratch whose buffers, one set per (threads, segment size), are reused
by every later call, as an index reuses its own: no timed call allocates anything of segment size.

`traversal` counts what a query costs the segment-at-a-time kernel: postings walked (the sum of
its tokens' list lengths over all segments), distinct documents touched (accumulator entries the
selection step then offers to the heap), and segments scored the dense way (scatter-add and a
scan of the whole segment, taken when the postings walked in a segment reach 1/8 of its span).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.index.kernels import DENSE_SHARE, Scratch
from tokretrieve.index.postings import Postings, SegmentedPostings
from tokretrieve.index.sparse import clean_query_bags


@dataclass
class QueryBatch:
    """Query bags as the kernel takes them: CSR (indptr, int64 tokens, float32 weights)."""

    indptr: np.ndarray
    tokens: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_bags(cls, bags: sp.spmatrix) -> QueryBatch:
        """Query bags (queries x vocabulary, as the query encoders give them), cleaned by the
        package's own clean_query_bags, as SparseIndex.search cleans them."""
        bags = clean_query_bags(bags)
        return cls(bags.indptr.astype(np.int64), bags.indices.astype(np.int64),
                   bags.data.astype(np.float32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def query(self, q: int) -> QueryBatch:
        """A batch of one: query q alone."""
        start, end = int(self.indptr[q]), int(self.indptr[q + 1])
        return QueryBatch(np.array([0, end - start], dtype=np.int64),
                          self.tokens[start:end].copy(), self.weights[start:end].copy())

    def singles(self) -> list[QueryBatch]:
        return [self.query(q) for q in range(len(self))]

    def to_bags(self, vocab_size: int) -> sp.csr_matrix:
        """The batch as a queries x vocabulary CSR again."""
        return sp.csr_matrix((self.weights, self.tokens, self.indptr),
                             shape=(len(self), vocab_size))

    def mean_length(self) -> float:
        return float(np.diff(self.indptr).mean()) if len(self) else 0.0


def stored_levels(postings: Postings) -> sp.csr_matrix:
    """The stored uint8 levels as doc-major bags (docs x vocab CSR, uint8): weight / scale,
    exact because the scale is a power of two."""
    levels = postings.to_bags()
    levels.data = np.rint(levels.data / np.float32(postings.scale)).astype(np.uint8)
    return levels


# The package keeps one Scratch per index; the benchmark calls from one Python thread.
_SCRATCH = Scratch()


def package_top_k(postings: SegmentedPostings, batch: QueryBatch, k: int,
                  n_threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postings.top_k, as SparseIndex.search calls it, on `n_threads` buffers (set numba's
    thread count to match). Returns (docs, sums before the scale, counts)."""
    return postings.top_k(batch.indptr, batch.tokens, batch.weights, k, _SCRATCH, n_threads)


def traversal(postings: SegmentedPostings, batch: QueryBatch) -> dict[str, np.ndarray]:
    """Per query: postings walked, distinct documents touched, segments scored dense (packed
    lists decoded first, segment by segment, into the raw offsets)."""
    docs = (np.asarray(postings.docs) if isinstance(postings, Postings) else
            np.concatenate([postings.block(s)[1] for s in range(postings.n_segments)]))
    walked, touched, dense = _traversal(np.asarray(postings.indptr), docs,
                                        postings.n_docs, postings.segment_docs, batch.indptr,
                                        batch.tokens)
    return {"postings": walked, "touched": touched, "dense_segments": dense}


@numba.njit(nogil=True, cache=True)
def _traversal(indptr, docs, n_docs, segment_docs, query_indptr,
               query_tokens):  # pragma: no cover - compiled
    n_queries = query_indptr.shape[0] - 1
    n_segments = indptr.shape[0]
    walked = np.zeros(n_queries, dtype=np.int64)
    touched = np.zeros(n_queries, dtype=np.int64)
    dense = np.zeros(n_queries, dtype=np.int64)
    stamp = np.full(max(min(segment_docs, n_docs), 1), -1, dtype=np.int64)
    for q in range(n_queries):
        for segment in range(n_segments):
            span = min(segment_docs, n_docs - segment * segment_docs)
            mark = q * n_segments + segment
            in_segment = 0
            for i in range(query_indptr[q], query_indptr[q + 1]):
                token = query_tokens[i]
                in_segment += indptr[segment, token + 1] - indptr[segment, token]
                for p in range(indptr[segment, token], indptr[segment, token + 1]):
                    local = docs[p]
                    if stamp[local] != mark:
                        stamp[local] = mark
                        touched[q] += 1
            walked[q] += in_segment
            if in_segment > 0 and in_segment * DENSE_SHARE >= span:
                dense[q] += 1
    return walked, touched, dense
