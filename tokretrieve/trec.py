"""TREC run files: the exchange format every IR evaluator reads (trec_eval, ir_measures)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tokretrieve.search.searcher import Hit


def write_run(path: str | Path, results: Mapping[str, Sequence[Hit]],
              tag: str = "tokretrieve") -> None:
    """Write `qid Q0 docid rank score tag` lines, ranks from 1, one block per query; written
    to a temporary name and renamed, so a run file is whole or absent, never half written."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial")
    try:
        with staging.open("w", encoding="utf-8") as handle:
            for qid, hits in results.items():
                for rank, hit in enumerate(hits, start=1):
                    handle.write(f"{qid} Q0 {hit.doc_id} {rank} {hit.score:.6f} {tag}\n")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
