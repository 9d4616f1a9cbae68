"""The benchmark's measures against values computed by hand (trec_eval conventions: linear gain,
log2(rank + 1) discount, RR of the first relevant hit, recall over all relevant documents)."""

from __future__ import annotations

import math

import pytest

from bench.quality.metrics import evaluate, evaluated_queries, per_query

QRELS = {
    "q1": {"d1": 1, "d2": 0, "d3": 2},  # two relevant documents, one judged non-relevant
    "q2": {"d4": 1},
    "q3": {"d5": 0},  # nothing relevant: no measure can reward it, so it is not averaged
}


def test_relevant_at_rank_two_gives_rr_half_and_hand_computed_ndcg():
    ranking = {"q1": [("d2", 4.0), ("d3", 3.0), ("d9", 2.0), ("d1", 1.0)]}
    values = per_query(QRELS, ranking)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)  # d3 (grade 2) at rank 2, d1 (grade 1) at 4
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert values["MRR@10"]["q1"] == pytest.approx(0.5)
    assert values["nDCG@10"]["q1"] == pytest.approx(dcg / ideal)
    assert values["R@100"]["q1"] == pytest.approx(1.0)


def test_queries_without_hits_count_as_zero_and_unjudgeable_ones_are_left_out():
    ranking = {"q1": [("d3", 1.0)]}  # q2 returned nothing; q3 has no relevant document
    assert evaluated_queries(QRELS) == ["q1", "q2"]
    means = evaluate(QRELS, ranking)
    ndcg_q1 = (2 / math.log2(2)) / (2 / math.log2(2) + 1 / math.log2(3))
    assert means["nDCG@10"] == pytest.approx(ndcg_q1 / 2)
    assert means["MRR@10"] == pytest.approx(0.5)
    assert means["R@100"] == pytest.approx(0.25)  # q1 finds 1 of 2, q2 none


def test_rank_cutoffs_apply():
    ranking = {"q2": [(f"x{i}", 100.0 - i) for i in range(10)] + [("d4", 1.0)]}
    values = per_query(QRELS, ranking)
    assert values["MRR@10"]["q2"] == 0.0  # first relevant at rank 11
    assert values["nDCG@10"]["q2"] == 0.0
    assert values["R@100"]["q2"] == 1.0


def test_tied_scores_are_evaluated_in_the_order_returned():
    # trec_eval alone would break this tie by doc id (descending) and put d2 first.
    qrels = {"q": {"d2": 1}}
    values = per_query(qrels, {"q": [("d1", 1.0), ("d2", 1.0)]})
    assert values["MRR@10"]["q"] == pytest.approx(0.5)
    assert values["nDCG@10"]["q"] == pytest.approx(1 / math.log2(3))
