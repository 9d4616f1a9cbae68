"""nDCG@10, Recall@100 and MRR@10 through ir_measures (pytrec_eval underneath).

Every judged query counts: pytrec_eval only scores queries present in the run, so a query for
which a system returned nothing (a tokenized query with no known token, say) would silently drop
out of its average and flatter it. Such queries score 0 here, as they do for a user.
"""

from __future__ import annotations

from collections.abc import Mapping

import ir_measures
import numpy as np
from ir_measures import RR, R, nDCG

from bench.quality.runs import to_scored_run

MEASURES = {"nDCG@10": nDCG @ 10, "R@100": R @ 100, "MRR@10": RR @ 10}
PRIMARY = "nDCG@10"


def evaluated_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Queries with at least one relevant (grade > 0) judgment: the only ones a metric can
    reward, and the set BEIR averages over."""
    return sorted(qid for qid, grades in qrels.items() if any(g > 0 for g in grades.values()))


def per_query(qrels: Mapping[str, Mapping[str, int]],
              ranking: Mapping[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """{measure name: {query id: value}} over every evaluated query (0 where nothing returned)."""
    queries = evaluated_queries(qrels)
    values = {name: dict.fromkeys(queries, 0.0) for name in MEASURES}
    names = {str(measure): name for name, measure in MEASURES.items()}
    run = {qid: hits for qid, hits in to_scored_run(ranking).items() if hits and qid in qrels}
    judged = {qid: dict(grades) for qid, grades in qrels.items() if qid in values[PRIMARY]}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), judged, run):
        values[names[str(metric.measure)]][metric.query_id] = float(metric.value)
    return values


def mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def evaluate(qrels: Mapping[str, Mapping[str, int]],
             ranking: Mapping[str, list[tuple[str, float]]]) -> dict[str, float]:
    """Mean of each measure over the evaluated queries."""
    return {name: mean(values) for name, values in per_query(qrels, ranking).items()}
