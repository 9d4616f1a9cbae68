"""The compiled top-k kernel against brute force, on random bags full of ties.

Weights and query weights are small integers, so every float32 sum is exact and a float64
dense product is an independent, exact answer; ties are everywhere, and must go to the lower
document position. Segment sizes from 1 document to larger than the collection make queries
cross segment boundaries, and queries from one rare token to the whole vocabulary drive both
of the kernel's ways of scoring a segment (touched-list and dense scan).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from refimpl import brute_force_ranking, postings_scores, top_k

from tokretrieve.index.kernels import SCAN_BLOCK, Scratch
from tokretrieve.index.postings import postings_from_bags

N_DOCS, VOCAB = 203, 40


def random_bags(seed: int, density: float = 0.15) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 4, size=(N_DOCS, VOCAB)) * (rng.random((N_DOCS, VOCAB)) < density)
    dense[rng.integers(0, N_DOCS, size=10)] = 0  # some empty documents
    return sp.csr_matrix(dense.astype(np.float32))


def random_queries(seed: int, bags: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    df = np.diff(bags.tocsc().indptr)
    rare = int(np.flatnonzero(df > 0)[np.argmin(df[df > 0])])
    queries = [(np.array([rare]), np.array([2.0])),              # one short list
               (np.arange(VOCAB), np.ones(VOCAB)),                # every list
               (np.zeros(0, dtype=np.int64), np.zeros(0)),        # empty
               (np.array([int(np.argmin(df))]), np.array([1.0]))]  # a token in no document
    for _ in range(20):
        tokens = rng.choice(VOCAB, size=rng.integers(1, 12), replace=False)
        queries.append((np.sort(tokens), rng.integers(1, 5, size=len(tokens)).astype(float)))
    return queries


def stored(bags: sp.csr_matrix, segment_docs: int, codec: str):
    """The bags' postings: raw float32 weights, or packed uint8 levels (the bags' small
    integer weights times a power-of-two scale: sums stay exact)."""
    if codec == "raw":
        return postings_from_bags(bags, "float32", segment_docs)
    return postings_from_bags(bags, "uint8", segment_docs).packed()


def run_kernel(postings, queries, k, threads, deleted=None):
    lengths = [len(tokens) for tokens, _ in queries]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([t for t, _ in queries]).astype(np.int64)
    weights = np.concatenate([w for _, w in queries]).astype(np.float32)
    scratch = Scratch()
    docs, sums, counts = postings.top_k(indptr, tokens, weights, k, scratch, threads, deleted)
    accumulators, _ = scratch.buffers(threads, min(postings.segment_docs, postings.n_docs))
    assert not accumulators.any()  # left zeroed for the next call
    return [(docs[q, :counts[q]].tolist(), (sums[q, :counts[q]] * postings.scale).tolist())
            for q in range(len(queries))]


@pytest.mark.parametrize("codec", ["raw", "packed"])
@pytest.mark.parametrize("segment_docs", [1, 7, 64, 65536])
@pytest.mark.parametrize("threads", [1, 3])
def test_kernel_equals_brute_force_with_ties(segment_docs, threads, codec):
    bags = random_bags(seed=segment_docs)
    postings = stored(bags, segment_docs, codec)
    matrix = bags.toarray().astype(np.float64)
    queries = random_queries(seed=threads, bags=bags)
    for k in (1, 5, 50, N_DOCS):
        for (tokens, weights), (docs, scores) in zip(
                queries, run_kernel(postings, queries, k, threads), strict=True):
            vector = np.zeros(VOCAB)
            vector[tokens] = weights
            exact = matrix @ vector
            assert docs == brute_force_ranking(exact, k)
            assert scores == exact[docs].tolist()


@pytest.mark.parametrize("codec", ["raw", "packed"])
@pytest.mark.parametrize("segment_docs", [1, 7, 65536])
@pytest.mark.parametrize("threads", [1, 2])
def test_deleted_documents_are_skipped_exactly(segment_docs, threads, codec):
    """With a third of the documents marked deleted, the kernel returns the brute-force top-k
    of the others (ties to the lower position), full to k while enough others match."""
    bags = random_bags(seed=segment_docs + 100)
    postings = stored(bags, segment_docs, codec)
    deleted = np.random.default_rng(4).random(N_DOCS) < 1 / 3
    matrix = bags.toarray().astype(np.float64)
    matrix[deleted] = 0  # a deleted document can never score
    queries = random_queries(seed=threads + 7, bags=bags)
    for k in (1, 5, N_DOCS):
        for (tokens, weights), (docs, scores) in zip(
                queries, run_kernel(postings, queries, k, threads, deleted), strict=True):
            vector = np.zeros(VOCAB)
            vector[tokens] = weights
            exact = matrix @ vector
            assert docs == brute_force_ranking(exact, k)
            assert not deleted[docs].any()
            assert scores == exact[docs].tolist()


@pytest.mark.parametrize("segment_docs", [5, 65536])
def test_uint8_impacts_equal_their_numpy_reference(segment_docs):
    """Real-valued weights, quantized: the kernel returns exactly the top-k of
    Postings.scores (same float32 arithmetic) and its scores bit for bit."""
    rng = np.random.default_rng(11)
    bags = random_bags(seed=3, density=0.3)
    bags.data = rng.gamma(0.5, 2.0, size=bags.nnz).astype(np.float32)
    postings = postings_from_bags(bags, "uint8", segment_docs)
    assert postings.impacts.dtype == np.uint8 and postings.impacts.max() <= 255
    assert np.log2(postings.scale) == int(np.log2(postings.scale))  # a power of two
    queries = [(t, w * rng.random(len(w))) for t, w in random_queries(seed=5, bags=bags)]
    for (tokens, weights), (docs, scores) in zip(queries, run_kernel(postings, queries, 10, 2),
                                                 strict=True):
        expected_docs, expected_scores = top_k(
            postings_scores(postings, tokens, weights.astype(np.float32)), 10)
        assert docs == expected_docs.tolist()
        assert scores == expected_scores.tolist()


def test_uint8_levels_are_within_half_a_step_of_the_weights():
    """Each stored weight is the original rounded to the nearest multiple of the scale; the
    largest weight keeps at least 7 bits (level >= 128)."""
    rng = np.random.default_rng(2)
    bags = random_bags(seed=9, density=0.3)
    bags.data = rng.lognormal(size=bags.nnz).astype(np.float32)
    before = bags.copy()
    postings = postings_from_bags(bags, "uint8", 16)
    assert (bags != before).nnz == 0  # the caller's bags are not rewritten
    stored = postings.to_bags()
    original = bags.toarray()
    kept = stored.toarray()
    assert np.all(np.abs(kept - original)[kept > 0] <= postings.scale / 2 + 1e-7)
    assert np.all(original[(kept == 0) & (original > 0)] < postings.scale / 2 + 1e-7)
    assert 128 <= postings.impacts.max() <= 255


@pytest.mark.parametrize("codec", ["raw", "packed"])
@pytest.mark.parametrize("segment_docs", [300, 65536])
def test_dense_scan_skips_blocks_without_losing_a_winner(segment_docs, codec):
    """Segments of several SCAN_BLOCK blocks and a short last one, scored the dense way: the
    winners sit one per block here and there (a block's first and last position, the short
    last block), their ties at the k-th score in later blocks, and deleted documents that
    would win; the kernel still returns the brute-force top-k, so no block that holds a
    winner is skipped and a skipped block holds none."""
    n_docs = 3 * SCAN_BLOCK + 37
    rng = np.random.default_rng(21)
    dense = rng.integers(1, 3, size=(n_docs, 6)) * (rng.random((n_docs, 6)) < 0.7)
    winners = [0, SCAN_BLOCK - 1, SCAN_BLOCK + 5, 2 * SCAN_BLOCK, n_docs - 1, n_docs - 30]
    dense[winners] = 9
    dense[[3, 2 * SCAN_BLOCK + 7, n_docs - 2]] = 8  # ties of one another, below the winners
    deleted = np.zeros(n_docs, dtype=bool)
    deleted[[SCAN_BLOCK + 1, 2 * SCAN_BLOCK + 100]] = True
    dense[deleted] = 10  # would win, but are deleted
    bags = sp.csr_matrix(dense.astype(np.float32))
    postings = stored(bags, segment_docs, codec)
    queries = [(np.arange(6), np.ones(6)), (np.array([1, 4]), np.array([3.0, 1.0]))]
    matrix = np.where(deleted[:, None], 0, dense).astype(np.float64)
    for k in (1, 4, 8, 12):
        for (tokens, weights), (docs, scores) in zip(
                queries, run_kernel(postings, queries, k, 1, deleted), strict=True):
            exact = matrix[:, tokens] @ weights
            assert docs == brute_force_ranking(exact, k)
            assert scores == exact[docs].tolist()
