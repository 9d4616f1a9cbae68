"""Sweeps of the sparse levers on one set of cached embeddings.

Every point re-derives the document bags from the stored embeddings (`tokretrieve.build.
index_from_embeddings(path=None)`) and re-scores all queries with the shipped kernel, so a point
costs seconds, not an encoding pass. Two kinds of sweep:

- one lever at a time from the package defaults: each lever's own effect, for the plots;
- coordinate ascent per query mode (sweep each lever at the current best, keep the best, repeat
  until a full round changes nothing), from two starts: the best settings found. Its last round
  has swept every lever around the optimum, which gives the "around the best" tables for free.

Choosing settings on the very queries that score them flatters the winner, so the ascent is also
run under 2-fold cross-validation (tune on half the queries, score the other half), and that
held-out figure is the honest one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm.auto import tqdm

from bench.quality.datasets import Collection
from bench.quality.metrics import MEASURES, PRIMARY, evaluated_queries, mean, per_query
from bench.quality.runs import finalize
from bench.quality.systems import MODES, SparseConfig, SparseSystem
from tokretrieve.encoding.projection import WEIGHTINGS

BAG_SIZES = (8, 16, 32, 64, 128, 256, 512)
# PC1 strength as fractions of the mean document-embedding norm: the scale that makes one grid
# fit SmolLM2 (norms ~50: 0, -10, -20, -40, -60, -100) and MiniLM (norms ~1-2) alike.
PC1_FRACTIONS = (0.2, 0.0, -0.1, -0.2, -0.4, -0.8, -1.2, -2.0)
TOKEN_WEIGHTINGS = ("idf", "count")
QUICK_BAG_SIZES = (32, 128, 512)
QUICK_PC1_FRACTIONS = (0.0, -0.4, -1.2)
# Literal weights (tokretrieve.encoding.literal): off, or their alpha (the aligned bag's share),
# BM25's k1 = 1.2 and b = 0.75 fixed: a grid over k1 and b as well reached 0.361 nDCG@10 in
# sample on Cranfield with MiniLM but only 0.348 under 2-fold CV, so only alpha and the stop
# words are swept.
LITERAL = (False, 0.2, 0.3, 0.5, 1.0)
QUICK_LITERAL = (False, 0.3)


def pc1_grid(mean_norm: float, fractions: Sequence[float] = PC1_FRACTIONS) -> list[float]:
    """Absolute PC1 strengths for this model's embedding scale (3 significant digits)."""
    return [float(f"{fraction * mean_norm:.3g}") if fraction else 0.0 for fraction in fractions]


def levers(mean_norm: float, quick: bool = False) -> dict[str, list]:
    """The values each lever is swept over (token weighting, a query-side lever, is scored at
    every point for free)."""
    return {
        "bag_size": list(QUICK_BAG_SIZES if quick else BAG_SIZES),
        "pc1_strength": pc1_grid(mean_norm, QUICK_PC1_FRACTIONS if quick else PC1_FRACTIONS),
        "weighting": list(WEIGHTINGS),
        "merge_variants": [False, True],
        "literal": list(QUICK_LITERAL if quick else LITERAL),
        "literal_stopwords": [False, True],
    }


@dataclass
class Point:
    """One document-side configuration, scored in both query modes with both query-token
    weightings ("model:idf", "model:count", "tokens:idf", "tokens:count")."""

    config: SparseConfig
    postings: int
    seconds: float
    means: dict[str, dict[str, float]]  # run name -> measure -> mean
    ndcg: dict[str, dict[str, float]]  # run name -> query id -> nDCG@10


def run_name(mode: str, config: SparseConfig) -> str:
    """Which of a point's runs a (mode, config) pair reads."""
    return f"{mode}:{config.query_weighting(mode)}"


RUNS = tuple(f"{mode}:{weighting}" for mode in MODES for weighting in TOKEN_WEIGHTINGS)


@dataclass
class SweepEvaluator:
    """Scores sparse configurations on one collection, remembering every point."""

    system_factory: Callable[[SparseConfig], SparseSystem]
    collection: Collection
    depth: int
    identical_ids: bool = False
    points: dict[tuple, Point] = field(default_factory=dict)
    progress: tqdm | None = None

    def evaluate(self, config: SparseConfig) -> Point:
        key = config.index_key()
        if key in self.points:
            return self.points[key]
        start = time.perf_counter()
        system = self.system_factory(replace(config, token_weighting="idf"))
        means, ndcg = {}, {}
        for mode in MODES:
            for weighting in TOKEN_WEIGHTINGS:
                name = f"{mode}:{weighting}"
                ranking = finalize(system.search_all(mode, self.depth, weighting), self.depth,
                                   self.identical_ids)
                values = per_query(self.collection.qrels, ranking)
                means[name] = {measure: mean(values[measure]) for measure in MEASURES}
                ndcg[name] = values[PRIMARY]
        point = Point(system.config, system.postings,
                      time.perf_counter() - start, means, ndcg)
        self.points[key] = point
        if self.progress is not None:
            self.progress.update(1)
        return point

    def score(self, config: SparseConfig, mode: str, queries: Sequence[str] | None = None
              ) -> float:
        """Mean nDCG@10 of a (config, mode) over `queries` (all evaluated queries if None)."""
        values = self.evaluate(config).ndcg[run_name(mode, config)]
        chosen = values.keys() if queries is None else queries
        return float(np.mean([values[q] for q in chosen])) if values else 0.0


def one_at_a_time(evaluator: SweepEvaluator, base: SparseConfig,
                  grid: dict[str, list]) -> dict[str, list[tuple[object, Point]]]:
    """Each lever over its values with every other lever at `base`."""
    return {lever: [(value, evaluator.evaluate(replace(base, **{lever: value})))
                    for value in values]
            for lever, values in grid.items()}


def ascend(evaluator: SweepEvaluator, start: SparseConfig, grid: dict[str, list], mode: str,
           queries: Sequence[str] | None = None, max_rounds: int = 5) -> SparseConfig:
    """Coordinate ascent on mean nDCG@10 for one query mode, the query-token weighting being
    one more lever. The weighting goes first: it sets the regime in which bag size and λ act. Ties
    keep the current value, so the result is deterministic."""
    order = ["weighting", *(lever for lever in grid if lever != "weighting")]
    full = {lever: grid[lever] for lever in order if lever in grid}
    full["token_weighting"] = list(TOKEN_WEIGHTINGS)
    best = start
    best_score = evaluator.score(best, mode, queries)
    for _ in range(max_rounds):
        changed = False
        for lever, values in full.items():
            for value in values:
                candidate = replace(best, **{lever: value})
                score = evaluator.score(candidate, mode, queries)
                if score > best_score + 1e-12:
                    best, best_score, changed = candidate, score, True
        if not changed:
            break
    return best


def tune(evaluator: SweepEvaluator, base: SparseConfig, grid: dict[str, list], mode: str,
         queries: Sequence[str] | None = None) -> SparseConfig:
    """Coordinate ascent from two starts, keeping the better end point: the defaults, and the
    best one-lever-at-a-time point (a fixed set of configurations, scored on `queries` only, so
    the procedure stays clean under cross-validation). One start alone can stall in a local
    optimum: from SmolLM2's log1p_relu defaults, tokenized queries climbed to bags of 32 and
    logit weights, 0.012 below the 512-token shifted setting that a second start finds."""
    neighbours = [replace(base, **{lever: value}, token_weighting=weighting)
                  for lever, values in grid.items() for value in values
                  for weighting in TOKEN_WEIGHTINGS]
    second = max(neighbours, key=lambda config: evaluator.score(config, mode, queries))
    ends = [ascend(evaluator, start, grid, mode, queries)
            for start in dict.fromkeys([base, second])]
    return max(ends, key=lambda config: evaluator.score(config, mode, queries))


@dataclass
class CrossValidation:
    """2-fold cross-validated nDCG@10 of the tuning procedure for one mode."""

    mode: str
    folds: list[dict]
    held_out_ndcg: float


def cross_validate(evaluator: SweepEvaluator, start: SparseConfig, grid: dict[str, list],
                   mode: str) -> CrossValidation:
    """Tune on the even-positioned queries, score the odd ones, and the other way round."""
    queries = evaluated_queries(evaluator.collection.qrels)
    halves = [queries[0::2], queries[1::2]]
    folds, total = [], 0.0
    for fold, (train, test) in enumerate([(halves[0], halves[1]), (halves[1], halves[0])]):
        chosen = tune(evaluator, start, grid, mode, train)
        held_out = evaluator.score(chosen, mode, test)
        total += held_out * len(test)
        folds.append({"fold": fold, "config": chosen.as_dict(), "train_queries": len(train),
                      "test_queries": len(test), "held_out_ndcg": held_out,
                      "train_ndcg": evaluator.score(chosen, mode, train)})
    return CrossValidation(mode, folds, total / max(len(queries), 1))
