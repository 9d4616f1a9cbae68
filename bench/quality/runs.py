"""Rankings as every system returns them, the identical-id rule, and TREC run files.

A ranking maps a query id to its hits, best first, as (doc id, score). Keeping the order explicit
(rather than a doc -> score dict) lets fused runs, whose scores tie often, be evaluated in the
order the system returned them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from tokretrieve.search import Hit
from tokretrieve.trec import write_run

Ranking = dict[str, list[tuple[str, float]]]


def drop_identical_ids(ranking: Mapping[str, list[tuple[str, float]]]) -> Ranking:
    """Remove hits whose document id equals the query id.

    BEIR's evaluator does this by default (ArguAna and Quora have queries that are themselves
    documents, which would trivially rank first). Applied to every system alike, it never
    favours one of them.
    """
    return {qid: [(doc, score) for doc, score in hits if doc != qid]
            for qid, hits in ranking.items()}


def finalize(ranking: Mapping[str, list[tuple[str, float]]], depth: int,
             identical_ids: bool = False) -> Ranking:
    """The ranking every system hands to evaluation: identical ids dropped unless kept, then cut
    to `depth`. Systems retrieve depth + 1 so a dropped hit does not shorten the list."""
    kept = dict(ranking) if identical_ids else drop_identical_ids(ranking)
    return {qid: list(hits[:depth]) for qid, hits in kept.items()}


def to_scored_run(ranking: Mapping[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    """The {query: {doc: score}} form evaluators read, with scores that strictly follow the
    returned order: trec_eval re-sorts by score and breaks ties by doc id, which would
    otherwise re-rank tied hits differently from the system."""
    return {qid: {doc: float(len(hits) - rank) for rank, (doc, _) in enumerate(hits)}
            for qid, hits in ranking.items()}


def write_trec_run(ranking: Mapping[str, list[tuple[str, float]]], path: str | Path,
                   tag: str) -> Path:
    """Write `qid Q0 docid rank score tag` lines (ranks from 1), readable by trec_eval."""
    if not tag or any(ch.isspace() for ch in tag):
        raise ValueError(f"a run tag must be one non-empty word, got {tag!r}")
    path = Path(path)
    write_run(path, {qid: [Hit(doc, score, []) for doc, score in hits]
                     for qid, hits in ranking.items()}, tag=tag)
    return path


def read_trec_run(lines: Iterable[str]) -> Ranking:
    """Parse run-file lines back into a ranking, ordered by the rank column."""
    rows: dict[str, list[tuple[int, str, float]]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6 or fields[1] != "Q0":
            raise ValueError(f"line {number}: expected 'qid Q0 docid rank score tag'")
        rows.setdefault(fields[0], []).append((int(fields[3]), fields[2], float(fields[4])))
    return {qid: [(doc, score) for _, doc, score in sorted(hits)] for qid, hits in rows.items()}
