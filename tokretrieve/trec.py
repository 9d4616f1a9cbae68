"""TREC run files: the exchange format every IR evaluator reads (trec_eval, ir_measures)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tokretrieve.corpus import check_id
from tokretrieve.search.searcher import Hit


def write_run(path: str | Path, results: Mapping[str, Sequence[Hit]],
              tag: str = "tokretrieve") -> None:
    """Write `qid Q0 docid rank score tag` lines, ranks from 1, one block per query; written
    to a temporary name and renamed, so a run file is whole or absent, never half written.
    Evaluators re-sort each query's lines by score, so scores are written exactly; and they
    split lines at whitespace, so the ids and the tag are refused if they hold any."""
    path = Path(path)
    check_id(tag, "run tag")
    staging = path.with_name(f".{path.name}.partial")
    try:
        with staging.open("w", encoding="utf-8") as handle:
            for qid, hits in results.items():
                check_id(qid, "query id")
                for rank, hit in enumerate(hits, start=1):
                    check_id(hit.doc_id, f"document id (query {qid!r}, rank {rank})")
                    handle.write(f"{qid} Q0 {hit.doc_id} {rank} {_score_text(hit.score)} "
                                 f"{tag}\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def _score_text(score: float) -> str:
    """The shortest decimal that reads back as exactly `score`. A fixed number of decimals
    ties scores that differ (a small model's are around 1e-6), and evaluators break ties by
    doc id, which re-ranks the run. Index scores are float32, whose shortest form is short
    ('3.1e-06'); any other float (a fused score, say) keeps its double precision."""
    single = np.float32(score)
    return str(single) if float(single) == score else repr(float(score))
