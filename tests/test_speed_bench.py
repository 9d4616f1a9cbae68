"""The speed benchmark's own machinery: the synthetic corpus generator and the clocks.

A benchmark is only as honest as its inputs and its arithmetic: if the generator drifted from the
real token distribution, the 1 M-document numbers would describe some other workload, and if the
percentiles were off, every p99 in the report would be. No model is loaded here.
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

from bench.speed_synth import distribution_from_postings, generate_bags  # noqa: E402
from bench.speed_timing import latency, percentile_summary, throughput  # noqa: E402
from tokretrieve.search import Postings  # noqa: E402

# Well-separated document fractions for the head of the vocabulary, a long thin tail after it.
HEAD = [0.9, 0.7, 0.55, 0.4, 0.3]
VOCAB = 60
REAL_DOCS = 400


def hand_built_postings(seed: int = 7) -> tuple[Postings, sp.csr_matrix]:
    """A small 'real' index: every token in a document independently with its own fraction,
    one empty document, positive weights that differ per token."""
    rng = np.random.default_rng(seed)
    fractions = np.concatenate([HEAD, np.linspace(0.12, 0.01, VOCAB - len(HEAD))])
    present = rng.random((REAL_DOCS, VOCAB)) < fractions
    present[0] = False
    weights = (rng.random((REAL_DOCS, VOCAB)) + 0.1) * (1 + np.arange(VOCAB)) / VOCAB
    bags = sp.csr_matrix(np.where(present, weights, 0.0).astype(np.float32))
    csc = bags.tocsc()
    csc.sort_indices()
    postings = Postings(csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                        csc.data.astype(np.float32), REAL_DOCS)
    return postings, bags


@pytest.fixture(scope="module")
def real_and_synthetic():
    postings, bags = hand_built_postings()
    distribution = distribution_from_postings(postings, seed=1)
    synthetic = generate_bags(distribution, 6000, seed=3)
    return postings, bags, distribution, synthetic


def test_generator_keeps_bag_length_mean(real_and_synthetic):
    _, bags, distribution, synthetic = real_and_synthetic
    real_mean = bags.nnz / bags.shape[0]
    assert distribution.mean_length == pytest.approx(real_mean)
    assert synthetic.shape == (6000, VOCAB)
    assert synthetic.nnz / synthetic.shape[0] == pytest.approx(real_mean, rel=0.03)


def test_generator_keeps_the_most_frequent_tokens(real_and_synthetic):
    postings, _, _, synthetic = real_and_synthetic
    real_fraction = np.diff(postings.indptr) / postings.n_docs
    synthetic_fraction = np.bincount(synthetic.indices, minlength=VOCAB) / synthetic.shape[0]
    top = np.argsort(-real_fraction)[:len(HEAD)]
    assert list(np.argsort(-synthetic_fraction)[:len(HEAD)]) == list(top)
    # Frequent tokens are where naive sampling without replacement goes wrong (repeats are
    # wasted on them); the calibration must bring them back to their real fraction.
    np.testing.assert_allclose(synthetic_fraction[top], real_fraction[top], atol=0.03)
    assert abs(synthetic_fraction - real_fraction).max() < 0.04


def test_generated_bags_have_unique_tokens_and_real_positive_weights(real_and_synthetic):
    postings, _, _, synthetic = real_and_synthetic
    assert synthetic.has_sorted_indices
    for row in range(0, synthetic.shape[0], 37):
        tokens = synthetic.indices[synthetic.indptr[row]:synthetic.indptr[row + 1]]
        assert len(np.unique(tokens)) == len(tokens)
        assert np.all(np.diff(tokens) > 0)
    assert np.all(synthetic.data > 0)
    # Each weight is one of the real weights of the same token.
    coo = synthetic.tocoo()
    for token, weight in list(zip(coo.col, coo.data, strict=True))[:500]:
        real = postings.weights[postings.indptr[token]:postings.indptr[token + 1]]
        assert weight in real


def test_generator_is_deterministic_and_handles_empty_bags(real_and_synthetic):
    _, _, distribution, synthetic = real_and_synthetic
    again = generate_bags(distribution, 6000, seed=3)
    assert np.array_equal(again.indptr, synthetic.indptr)
    assert np.array_equal(again.indices, synthetic.indices)
    assert np.array_equal(again.data, synthetic.data)
    other = generate_bags(distribution, 6000, seed=4)
    assert not np.array_equal(other.indices[:200], synthetic.indices[:200])
    # The real index has an empty document, so some synthetic bags are empty too.
    assert (np.diff(synthetic.indptr) == 0).any()


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
