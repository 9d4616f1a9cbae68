"""Does another engine return what tokretrieve returns? The check every export route passes.

An engine given exported bags (integer document levels, integer query levels) should score each
document by the integer dot product, which is tokretrieve's score divided by the index's scale
and the query's scale (both powers of two: the division is exact). `compare` checks two things
per query, independently of each other:

1. every (document, score) the engine returned: its score equals tokretrieve's exact score of
   that document for that query (taken from the postings, not from tokretrieve's ranking);
2. the engine's score sequence equals tokretrieve's top-k score sequence.

When both hold, the two rankings can differ only in the order of documents with equal scores,
and in which of the documents tied at the k-th score made the cut: engines break ties their own
way (tokretrieve by index position, Lucene by its internal docid). Such queries are counted as
`tie_order`, not as disagreements; anything else is a `mismatch`, reported with its first
differing rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.queries import ExportedQueries

# Engine scores are float32 sums of integers; a score within this of the integer is that integer.
SCORE_TOLERANCE = 1e-3


@dataclass
class Agreement:
    """How many queries an engine answered exactly like tokretrieve, and how the rest differ."""

    queries: int = 0
    identical: int = 0
    tie_order: int = 0
    tied_positions: int = 0
    mismatches: list[str] = field(default_factory=list)
    max_score_error: float = 0.0

    @property
    def agrees(self) -> bool:
        return not self.mismatches

    def summary(self) -> dict:
        return {"queries": self.queries, "identical": self.identical,
                "tie_order": self.tie_order, "tied_positions": self.tied_positions,
                "mismatched": len(self.mismatches), "mismatches": self.mismatches[:10],
                "max_score_error": self.max_score_error}


def tokretrieve_rankings(index: SparseIndex, queries: ExportedQueries, k: int
                         ) -> list[list[tuple[str, float]]]:
    """tokretrieve's top-k of the exported queries, scores in the engines' integer units."""
    scores, ids = index.search(queries.bags(), k)
    doc_ids = index.doc_ids
    scale = float(index.manifest.layout.scale)
    return [[(str(doc_ids[i]), float(s) / (scale * queries.scales[q]))
             for s, i in zip(scores[q], ids[q], strict=True) if i >= 0]
            for q in range(len(queries.qids))]


def compare(index: SparseIndex, queries: ExportedQueries,
            engine: Mapping[str, Sequence[tuple[str, float]]], k: int) -> Agreement:
    """Check an engine's results (qid -> [(doc id, score), ...] best first, scores in integer
    units) against tokretrieve's top-k of the same exported queries."""
    expected = tokretrieve_rankings(index, queries, k)
    agreement = Agreement()
    for q, qid in enumerate(queries.qids):
        got = list(engine.get(qid, []))[:k]
        agreement.queries += 1
        exact = _exact_scores(index, queries, q, [doc for doc, _ in got])
        errors = [abs(score - true) if np.isfinite(true) else float("inf")
                  for (_, score), true in zip(got, exact, strict=True)]
        agreement.max_score_error = max([agreement.max_score_error, *errors])
        wrong_score = next((r for r, e in enumerate(errors) if e > SCORE_TOLERANCE), None)
        want = expected[q]
        same_scores = len(got) == len(want) and all(
            round(a) == round(b) for (_, a), (_, b) in zip(got, want, strict=True))
        if wrong_score is not None or not same_scores:
            rank = wrong_score if wrong_score is not None else next(
                (r for r, (a, b) in enumerate(zip(got, want, strict=False))
                 if round(a[1]) != round(b[1])), min(len(got), len(want)))
            agreement.mismatches.append(f"{qid} (rank {rank + 1})")
        elif [doc for doc, _ in got] == [doc for doc, _ in want]:
            agreement.identical += 1
        else:
            agreement.tie_order += 1
            agreement.tied_positions += sum(a[0] != b[0] for a, b in zip(got, want,
                                                                           strict=True))
    return agreement


def _exact_scores(index: SparseIndex, queries: ExportedQueries, q: int,
                  doc_ids: list[str]) -> list[float]:
    """tokretrieve's score of each document for query q, in integer units (NaN for an id the
    index does not hold live: any score for it is an error)."""
    tokens, levels = queries.row(q)
    known = [_live_position(index, d) for d in doc_ids]
    positions = np.array([p for p in known if p >= 0], dtype=np.int64)
    impacts = index.contributions(tokens, levels.astype(np.float32), positions)
    sums = iter((impacts.sum(axis=1, dtype=np.float64)
                 / float(index.manifest.layout.scale)).tolist())
    return [next(sums) if p >= 0 else float("nan") for p in known]


def _live_position(index: SparseIndex, doc_id: str) -> int:
    try:
        return index.position(doc_id)
    except ValueError:  # not in the index, or deleted
        return -1
