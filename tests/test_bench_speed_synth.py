"""The speed benchmark's synthetic corpus generator against the distribution it draws from.

A benchmark is only as honest as its inputs: if the generator drifted from the real token
distribution, the 1 M-document numbers would describe some other workload. No model is loaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from speed_bags import HEAD, VOCAB, hand_built_bags

from bench.speed.synth import corpus_at, corpus_sizes, distribution_from_bags, generate_bags
from tokretrieve.index.postings import postings_from_bags


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


def test_corpus_sizes_and_corpus_at():
    """'real' is the real bags themselves; a count is a synthetic corpus of that many
    documents with the real bags' weight dtype; anything else is refused by name."""
    assert corpus_sizes("real, 100,") == ["real", "100"]
    with pytest.raises(SystemExit, match="'1e3'"):
        corpus_sizes("real,1e3")
    real = hand_built_bags()
    assert corpus_at("real", real) is real
    levels = real.copy()
    levels.data = np.minimum(levels.data * 100, 255).astype(np.uint8)
    synthetic = corpus_at("50", levels, seed=2)
    assert synthetic.shape == (50, real.shape[1]) and synthetic.data.dtype == np.uint8
