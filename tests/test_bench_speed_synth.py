"""The speed benchmark's own machinery: the synthetic corpus generator, the kernel harness and
the clocks.

A benchmark is only as honest as its inputs and its arithmetic: if the generator drifted from the
real token distribution, the 1 M-document numbers would describe some other workload; if the
harness called the kernel differently from the package, or miscounted the postings a query
walks, the kernel analysis would explain some other kernel; and if the percentiles were off,
every p99 in the report would be. No model is loaded here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `pytest` without `python -m` does not put the root on path
    sys.path.insert(0, str(REPO_ROOT))

from bench.speed_kernel import QueryBatch, package_top_k, traversal  # noqa: E402
from bench.speed_synth import distribution_from_bags, generate_bags  # noqa: E402
from bench.speed_timing import latency, percentile_summary, throughput  # noqa: E402
from tokretrieve.postings import postings_from_bags  # noqa: E402

# Well-separated document fractions for the head of the vocabulary, a long thin tail after it.
HEAD = [0.9, 0.7, 0.55, 0.4, 0.3]
VOCAB = 60
REAL_DOCS = 400


def hand_built_bags(seed: int = 7) -> sp.csr_matrix:
    """Small 'real' doc-major bags: every token in a document independently with its own
    fraction, one empty document, positive weights that differ per token."""
    rng = np.random.default_rng(seed)
    fractions = np.concatenate([HEAD, np.linspace(0.12, 0.01, VOCAB - len(HEAD))])
    present = rng.random((REAL_DOCS, VOCAB)) < fractions
    present[0] = False
    weights = (rng.random((REAL_DOCS, VOCAB)) + 0.1) * (1 + np.arange(VOCAB)) / VOCAB
    return sp.csr_matrix(np.where(present, weights, 0.0).astype(np.float32))


def column_fraction(bags: sp.csr_matrix) -> np.ndarray:
    return np.bincount(bags.indices, minlength=bags.shape[1]) / bags.shape[0]


@pytest.fixture(scope="module")
def real_and_synthetic():
    bags = hand_built_bags()
    distribution = distribution_from_bags(bags, seed=1)
    synthetic = generate_bags(distribution, 6000, seed=3)
    return bags, distribution, synthetic


def test_distribution_measures_the_bags(real_and_synthetic):
    bags, distribution, _ = real_and_synthetic
    assert distribution.vocab_size == VOCAB
    np.testing.assert_array_equal(distribution.lengths, np.diff(bags.indptr))
    np.testing.assert_allclose(distribution.fraction, column_fraction(bags))
    by_token = bags.tocsc()
    for token in (0, 7, VOCAB - 1):
        lo, hi = distribution.weight_indptr[token], distribution.weight_indptr[token + 1]
        assert sorted(distribution.weights[lo:hi]) == sorted(
            by_token.data[by_token.indptr[token]:by_token.indptr[token + 1]])


def test_distribution_is_the_same_from_an_index_and_ignores_stored_zeros():
    bags = hand_built_bags()
    # What the benchmark passes: the bags an index gives back (float32 keeps weights exact).
    from_index = distribution_from_bags(postings_from_bags(bags, "float32").to_bags(), seed=1)
    direct = distribution_from_bags(bags, seed=1)
    np.testing.assert_array_equal(from_index.lengths, direct.lengths)
    np.testing.assert_array_equal(from_index.fraction, direct.fraction)
    np.testing.assert_array_equal(from_index.weight_indptr, direct.weight_indptr)
    np.testing.assert_allclose(from_index.propensity, direct.propensity)
    # An explicitly stored zero is no posting, and the caller's matrix is left as it was.
    padded = bags.copy()
    padded.data[:5] = 0.0
    before = padded.data.copy()
    with_zeros = distribution_from_bags(padded, seed=1, rounds=0)
    np.testing.assert_array_equal(padded.data, before)
    assert with_zeros.lengths.sum() == bags.nnz - 5
    assert np.all(with_zeros.weights > 0)


def test_generator_keeps_bag_length_mean(real_and_synthetic):
    bags, distribution, synthetic = real_and_synthetic
    real_mean = bags.nnz / bags.shape[0]
    assert distribution.mean_length == pytest.approx(real_mean)
    assert synthetic.shape == (6000, VOCAB)
    assert synthetic.nnz / synthetic.shape[0] == pytest.approx(real_mean, rel=0.03)


def test_generator_keeps_the_most_frequent_tokens(real_and_synthetic):
    bags, _, synthetic = real_and_synthetic
    real_fraction = column_fraction(bags)
    synthetic_fraction = column_fraction(synthetic)
    top = np.argsort(-real_fraction)[:len(HEAD)]
    assert list(np.argsort(-synthetic_fraction)[:len(HEAD)]) == list(top)
    # Frequent tokens are where naive sampling without replacement goes wrong (repeats are
    # wasted on them); the calibration must bring them back to their real fraction.
    np.testing.assert_allclose(synthetic_fraction[top], real_fraction[top], atol=0.03)
    assert abs(synthetic_fraction - real_fraction).max() < 0.04


def test_generated_bags_have_unique_tokens_and_real_positive_weights(real_and_synthetic):
    bags, _, synthetic = real_and_synthetic
    assert synthetic.has_sorted_indices
    for row in range(0, synthetic.shape[0], 37):
        tokens = synthetic.indices[synthetic.indptr[row]:synthetic.indptr[row + 1]]
        assert len(np.unique(tokens)) == len(tokens)
        assert np.all(np.diff(tokens) > 0)
    assert np.all(synthetic.data > 0)
    # Each weight is one of the real weights of the same token.
    by_token = bags.tocsc()
    coo = synthetic.tocoo()
    for token, weight in list(zip(coo.col, coo.data, strict=True))[:500]:
        real = by_token.data[by_token.indptr[token]:by_token.indptr[token + 1]]
        assert weight in real


def test_generator_is_deterministic_and_handles_empty_bags(real_and_synthetic):
    _, distribution, synthetic = real_and_synthetic
    again = generate_bags(distribution, 6000, seed=3)
    assert np.array_equal(again.indptr, synthetic.indptr)
    assert np.array_equal(again.indices, synthetic.indices)
    assert np.array_equal(again.data, synthetic.data)
    other = generate_bags(distribution, 6000, seed=4)
    assert not np.array_equal(other.indices[:200], synthetic.indices[:200])
    # The real bags have an empty document, so some synthetic bags are empty too.
    assert (np.diff(synthetic.indptr) == 0).any()


def small_segment_index():
    """The hand-built bags as uint8 postings cut into segments of 64 documents (7 segments, the
    last one short), and queries mixing rare and frequent tokens, one of them empty."""
    postings = postings_from_bags(hand_built_bags(), "uint8", segment_docs=64)
    rng = np.random.default_rng(11)
    bags = [(rng.choice(VOCAB, size=size, replace=False), rng.random(size) + 0.05)
            for size in (1, 3, 8, 20, VOCAB)]
    bags.append((np.array([2, 5]), np.array([0.0, -1.0])))   # nothing positive: no hits
    return postings, bags


def test_traversal_counts_postings_documents_and_dense_segments():
    postings, bags = small_segment_index()
    stats = traversal(postings, QueryBatch.from_bags(bags))
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
    batch = QueryBatch.from_bags(bags)
    for n_threads, k in ((1, 10), (2, 10), (1, 1000), (2, 3), (1, 10)):  # buffers reused
        docs, found, counts = package_top_k(postings, batch, k, n_threads)
        assert docs.shape[1] == min(k, REAL_DOCS)
        for q, single in enumerate(batch.singles()):
            scores = postings.scores(single.tokens, single.weights)
            order = np.lexsort((np.arange(len(scores)), -scores))
            expected = [d for d in order if scores[d] > 0][:k]
            assert counts[q] == len(expected)
            np.testing.assert_array_equal(docs[q, :counts[q]], expected)
            np.testing.assert_array_equal(found[q, :counts[q]], scores[expected])


def test_percentiles_on_known_samples():
    samples = [i / 1000 for i in range(1, 101)]          # 1 ms .. 100 ms
    summary = percentile_summary(samples)
    assert summary["n"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)     # linear interpolation, numpy default
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["max_ms"] == pytest.approx(100.0)
    shuffled = percentile_summary(list(reversed(samples)))
    assert shuffled["p99_ms"] == pytest.approx(99.01)
    constant = percentile_summary([0.002] * 7)
    assert constant["p50_ms"] == pytest.approx(2.0) and constant["p99_ms"] == pytest.approx(2.0)
    assert percentile_summary([])["n"] == 0


def test_latency_runs_passes_until_enough_samples():
    calls: list[int] = []
    result = latency(calls.append, list(range(10)), min_samples=35, budget_s=60.0)
    assert calls[0] == 0                      # the untimed warm-up call
    assert len(calls) == 1 + 40               # four full passes of ten: the first with >= 35
    assert result["n"] == 40 and result["passes"] == 4
    assert len(result["per_item_s"]) == 10
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert len(result["load_avg_after"]) == 3


def test_throughput_counts_items_per_second():
    calls: list[int] = []
    result = throughput(lambda: calls.append(1), count=100, min_seconds=0.0, min_repeats=3)
    assert len(calls) == 1 + result["repeats"] and result["repeats"] >= 3
    assert result["qps"] == pytest.approx(100 / result["call_s_median"])
    assert result["qps_best"] >= result["qps"]
