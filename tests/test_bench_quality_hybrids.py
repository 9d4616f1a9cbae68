"""bench.quality.hybrids: the weight grid, the in-sample choice and 2-fold CV, on rankings and
judgments small enough to work out by hand."""

from __future__ import annotations

import math

import pytest

from bench.quality.hybrids import linear_hybrid


def test_weights_are_chosen_in_sample_and_held_out():
    """Two queries, one relevant document each: q1 is answered by the left system only, q2 by
    the right only. In sample, an even mix serves both; under CV each fold trains on one query,
    whose best weights (ties broken toward 0.5) fail the other query."""
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    left = {"q1": [("a", 2.0), ("x", 1.0)], "q2": [("x", 2.0), ("b", 1.0)]}
    right = {"q1": [("x", 2.0), ("a", 1.0)], "q2": [("b", 2.0), ("x", 1.0)]}
    record = linear_hybrid(qrels, left, right, depth=2, weights=(0.0, 0.5, 1.0))
    # w = 0.5: both documents of a query tie at 0.5; the better best rank wins: a (left's
    # first) for q1, b (right's first) for q2, so nDCG@10 = 1 for both queries.
    second = 1 / math.log2(3)  # nDCG@10 of the one relevant document at rank 2
    assert record["grid"] == {"0.0": pytest.approx(0.5 * (second + 1)),
                              "0.5": pytest.approx(1.0),
                              "1.0": pytest.approx(0.5 * (1 + second))}
    assert record["weight"] == 0.5 and record["metrics"]["nDCG@10"] == pytest.approx(1.0)
    # fold 0 trains on q1 (0.5 and 1.0 both give 1; 0.5 is nearer the middle) and so on
    assert [f["weight"] for f in record["cv"]["folds"]] == [0.5, 0.5]
    assert record["cv"]["held_out_ndcg"] == pytest.approx(1.0)
