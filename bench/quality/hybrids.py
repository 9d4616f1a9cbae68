"""Grids of systems chosen honestly: linear hybrids and the paper's union query.

A grid maps a setting (a fusion weight, an (M, weighting) pair) to a ranking. Every setting is
scored on all judged queries (the in-sample figure: the best setting on the very queries it is
measured on) and under 2-fold cross-validation (the setting chosen on the even-positioned
queries and scored on the odd ones, and the other way round: the held-out figure), the same folds
as the sparse levers'.

- Linear hybrids: two systems' rankings fused by the package's normalised linear combination
  (tokretrieve.search.fusion.linear_fusion), weight w for the first and 1 - w for the second.
- Union queries (tokretrieve.search.query_encoders.UnionQueryEncoder): the query's literal tokens
  with its top M aligned ones, each weighing 1 (the paper's) or its idf.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from bench.quality.metrics import PRIMARY, evaluate, evaluated_queries, per_query
from bench.quality.runs import Ranking
from tokretrieve.search.fusion import linear_fusion

WEIGHTS = tuple(round(i / 10, 1) for i in range(11))
UNION_GRID = tuple((m, weighting) for m in (4, 16, 64) for weighting in ("count", "idf"))


def grid_choice(qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[Hashable, Ranking],
                preference: Callable[[Hashable], float] = lambda key: 0.0) -> dict:
    """nDCG@10 of every setting, the in-sample best with its measures and ranking, and the
    2-fold cross-validated choice per fold with the held-out nDCG@10. Ties between settings go
    to the higher `preference`."""
    scores = {key: per_query(qrels, ranking)[PRIMARY] for key, ranking in rankings.items()}
    queries = evaluated_queries(qrels)

    def mean(key: Hashable, subset: Sequence[str]) -> float:
        return float(np.mean([scores[key][q] for q in subset])) if subset else 0.0

    def best_on(subset: Sequence[str]) -> Hashable:
        return max(rankings, key=lambda key: (mean(key, subset), preference(key)))

    best = best_on(queries)
    halves = [queries[0::2], queries[1::2]]
    folds, total = [], 0.0
    for fold, (train, test) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        chosen = best_on(train)
        held_out = mean(chosen, test)
        total += held_out * len(test)
        folds.append({"fold": fold, "setting": chosen, "train_ndcg": mean(chosen, train),
                      "held_out_ndcg": held_out, "test_queries": len(test)})
    return {"grid": {str(key): mean(key, queries) for key in rankings}, "setting": best,
            "metrics": evaluate(qrels, rankings[best]), "ranking": rankings[best],
            "cv": {"folds": folds, "held_out_ndcg": total / max(len(queries), 1)}}


def linear_hybrid(qrels: Mapping[str, Mapping[str, int]], left: Ranking, right: Ranking,
                  depth: int, weights: Sequence[float] = WEIGHTS) -> dict:
    """The grid record of one pair over fusion weights (ties toward an even mix)."""
    fused = {w: linear_fusion([left, right], depth, weights=[w, 1 - w]) for w in weights}
    record = grid_choice(qrels, fused, preference=lambda w: -abs(float(w) - 0.5))
    record["weight"] = record.pop("setting")
    for fold in record["cv"]["folds"]:
        fold["weight"] = fold.pop("setting")
    return record
