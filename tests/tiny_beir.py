"""A 5-document BEIR folder whose BM25 rankings and metrics are worked out by hand, for the
quality benchmark's tests (its words are in the tiny test tokenizer's vocabulary, so the tiny
models of conftest.py can encode it)."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = {
    "d1": "wing flutter supersonic speed",
    "d2": "boundary layer heat transfer",
    "d3": "heat conduction shell",
    "d4": "wing flutter vibration",
    "d5": "rocket nozzle gas temperature",
}
QUERIES = {
    "q1": "conduction",  # only d3 has the word
    "q2": "flutter",  # d1 and d4; the shorter d4 ranks first, the relevant d1 second
    "d4": "flutter vibration",  # shares its id with d4, which matches best
    "q9": "rocket",  # judged, but nothing relevant: not a query the benchmark can score
}
QRELS = [("q1", "d3", 2), ("q2", "d1", 1), ("d4", "d1", 1), ("q9", "d5", 0)]


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id, text in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid, text in QUERIES.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
