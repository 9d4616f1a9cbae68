"""The tests' own oracles (tests/refimpl.py) against hand-computed answers: a reference that is
wrong would let a wrong kernel pass."""

from __future__ import annotations

import numpy as np
from refimpl import brute_force_ranking, top_k


def test_top_k_with_ties_by_hand():
    """refimpl.top_k (the kernel tests' reference selection): best positive scores first, ties
    to the lower index, never a zero or negative score."""
    scores = np.array([0.0, 3.0, 1.0, 3.0, 3.0, -1.0, 2.0, 1.0], dtype=np.float32)
    assert top_k(scores, 1)[0].tolist() == [1]
    assert top_k(scores, 2)[0].tolist() == [1, 3]
    assert top_k(scores, 4)[0].tolist() == [1, 3, 4, 6]
    assert top_k(scores, 5)[0].tolist() == [1, 3, 4, 6, 2]
    chosen, values = top_k(scores, 100)
    assert chosen.tolist() == [1, 3, 4, 6, 2, 7]
    assert values.tolist() == [3.0, 3.0, 3.0, 2.0, 1.0, 1.0]
    assert top_k(np.zeros(5, dtype=np.float32), 3)[0].tolist() == []


def test_top_k_matches_brute_force_on_random_ties():
    """Many random small-integer scores (lots of ties) against a plain sort."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        scores = rng.integers(-2, 5, size=rng.integers(1, 40)).astype(np.float32)
        k = int(rng.integers(1, 45))
        assert top_k(scores, k)[0].tolist() == brute_force_ranking(scores, k)
