"""The speed benchmark's kernel harness: queries laid out as the package lays them out, the
package's kernel called as SparseIndex.search calls it, and the traversal counts.

If the harness called the kernel differently from the package, or miscounted the postings a
query walks, the kernel analysis would explain some other kernel. No model is loaded.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from refimpl import postings_scores
from speed_bags import REAL_DOCS, VOCAB, hand_built_bags

from bench.speed.kernel import QueryBatch, package_top_k, traversal
from tokretrieve.index.postings import postings_from_bags


def as_bags(rows: list[tuple[np.ndarray, np.ndarray]]) -> sp.csr_matrix:
    """(token ids, weights) rows as a queries x vocabulary CSR, stored entries kept as given
    (zeros and negatives included), as a query encoder could hand them over."""
    indptr = np.cumsum([0] + [len(tokens) for tokens, _ in rows])
    indices = np.concatenate([tokens for tokens, _ in rows]).astype(np.int32)
    data = np.concatenate([weights for _, weights in rows]).astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), VOCAB))


def small_segment_index():
    """The hand-built bags as uint8 postings cut into segments of 64 documents (7 segments, the
    last one short), and queries mixing rare and frequent tokens, one of them empty."""
    postings = postings_from_bags(hand_built_bags(), "uint8", segment_docs=64)
    rng = np.random.default_rng(11)
    bags = [(rng.choice(VOCAB, size=size, replace=False), rng.random(size) + 0.05)
            for size in (1, 3, 8, 20, VOCAB)]
    bags.append((np.array([2, 5]), np.array([0.0, -1.0])))   # nothing positive: no hits
    return postings, bags


def test_query_batch_cleans_bags_as_search_does():
    # Negative and zero weights go, duplicate tokens are summed, order within a row is kept.
    bags = as_bags([(np.array([4, 1, 4, 7]), np.array([0.5, -2.0, 0.25, 0.0])),
                    (np.array([3]), np.array([1.5]))])
    batch = QueryBatch.from_bags(bags)
    np.testing.assert_array_equal(batch.indptr, [0, 1, 2])
    np.testing.assert_array_equal(batch.tokens, [4, 3])
    np.testing.assert_array_equal(batch.weights, np.float32([0.75, 1.5]))
    assert batch.tokens.dtype == np.int64 and batch.weights.dtype == np.float32
    single = batch.query(1)
    np.testing.assert_array_equal(single.indptr, [0, 1])
    np.testing.assert_array_equal(single.tokens, [3])
    assert batch.mean_length() == 1.0 and len(batch.singles()) == 2


def test_traversal_counts_postings_documents_and_dense_segments():
    postings, bags = small_segment_index()
    stats = traversal(postings, QueryBatch.from_bags(as_bags(bags)))
    reference = postings.to_bags().toarray() > 0                 # docs x vocab: stored postings
    spans = [postings.segment_span(s) for s in range(postings.n_segments)]
    for q, (tokens, weights) in enumerate(bags):
        tokens = tokens[weights > 0]
        held = reference[:, tokens]
        assert stats["postings"][q] == held.sum()
        assert stats["touched"][q] == held.any(axis=1).sum()
        walked = [held[base:base + span].sum() for base, span in spans]
        assert stats["dense_segments"][q] == sum(
            1 for w, (_, span) in zip(walked, spans, strict=True) if w and w * 8 >= span)
    assert stats["dense_segments"].max() > 0 and stats["touched"][0] < REAL_DOCS  # both paths


def test_package_top_k_matches_the_reference_on_reused_buffers():
    postings, bags = small_segment_index()
    batch = QueryBatch.from_bags(as_bags(bags))
    for n_threads, k in ((1, 10), (2, 10), (1, 1000), (2, 3), (1, 10)):  # buffers reused
        docs, found, counts = package_top_k(postings, batch, k, n_threads)
        assert docs.shape[1] == min(k, REAL_DOCS)
        for q, single in enumerate(batch.singles()):
            scores = postings_scores(postings, single.tokens, single.weights)
            order = np.lexsort((np.arange(len(scores)), -scores))
            expected = [d for d in order if scores[d] > 0][:k]
            assert counts[q] == len(expected)
            np.testing.assert_array_equal(docs[q, :counts[q]], expected)
            np.testing.assert_array_equal(found[q, :counts[q]] * np.float32(postings.scale),
                                          scores[expected])
