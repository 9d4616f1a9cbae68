"""Linear hybrids: two systems' rankings fused by the package's normalised linear combination
(tokretrieve.search.fusion.linear_fusion), the weight chosen honestly.

For each pair, every weight w of a grid (w for the first system, 1 - w for the second) is scored
on all judged queries (the in-sample figure: the best w on the very queries it is measured on)
and under 2-fold cross-validation (w chosen on the even-positioned queries and scored on the
odd ones, and the other way round: the held-out figure), the same folds as the sparse levers'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bench.quality.metrics import PRIMARY, evaluate, evaluated_queries, per_query
from bench.quality.runs import Ranking
from tokretrieve.search.fusion import linear_fusion

WEIGHTS = tuple(round(i / 10, 1) for i in range(11))


def linear_hybrid(qrels: Mapping[str, Mapping[str, int]], left: Ranking, right: Ranking,
                  depth: int, weights: Sequence[float] = WEIGHTS) -> dict:
    """The record of one pair: nDCG@10 at every weight, the in-sample best and its measures,
    and the 2-fold cross-validated choice per fold with the held-out nDCG@10."""
    fused = {w: linear_fusion([left, right], depth, weights=[w, 1 - w]) for w in weights}
    scores = {w: per_query(qrels, ranking)[PRIMARY] for w, ranking in fused.items()}
    queries = evaluated_queries(qrels)

    def mean(w: float, subset: Sequence[str]) -> float:
        return float(np.mean([scores[w][q] for q in subset])) if subset else 0.0

    best = max(weights, key=lambda w: (mean(w, queries), -abs(w - 0.5)))
    halves = [queries[0::2], queries[1::2]]
    folds, total = [], 0.0
    for fold, (train, test) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        chosen = max(weights, key=lambda w: (mean(w, train), -abs(w - 0.5)))
        held_out = mean(chosen, test)
        total += held_out * len(test)
        folds.append({"fold": fold, "weight": chosen, "train_ndcg": mean(chosen, train),
                      "held_out_ndcg": held_out, "test_queries": len(test)})
    return {"grid": {str(w): mean(w, queries) for w in weights}, "weight": best,
            "metrics": evaluate(qrels, fused[best]), "ranking": fused[best],
            "cv": {"folds": folds, "held_out_ndcg": total / max(len(queries), 1)}}
