"""Collections to benchmark on: BEIR folders and ir_datasets ids, loaded into one shape.

The benchmark must run on whatever collections a machine has (here only Cranfield, offline), so a
dataset spec that is absent is reported and skipped rather than failing the whole suite. Only
judged queries are searched: a query without relevant documents cannot score and would only add
encoding time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bench.toolkit import CRANFIELD, REPO_ROOT
from tokretrieve.corpus import IRDS_PREFIX, read_documents, read_qrels, read_queries

DEFAULT_DATASET = str(CRANFIELD)


@dataclass
class Collection:
    """Documents, judged queries and their relevance judgments, under one name."""

    name: str
    spec: str
    docs: list[tuple[str, str]]
    queries: list[tuple[str, str]]
    qrels: dict[str, dict[str, int]]
    limit_docs: int | None = None

    @property
    def doc_ids(self) -> list[str]:
        return [doc_id for doc_id, _ in self.docs]

    @property
    def query_ids(self) -> list[str]:
        return [query_id for query_id, _ in self.queries]


def resolve_spec(spec: str) -> str:
    """A folder spec as given when it exists, else relative to the repository root (so a
    `../shared/...` spec works from anywhere), or an `irds:` id unchanged."""
    if spec.startswith(IRDS_PREFIX):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return str(path.resolve())


def dataset_name(spec: str) -> str:
    """A file-system-safe name for result folders: the folder's name or the ir_datasets id."""
    raw = spec[len(IRDS_PREFIX):] if spec.startswith(IRDS_PREFIX) else Path(spec).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "dataset"


def unavailable_reason(spec: str) -> str | None:
    """Why a spec cannot be benchmarked here (None when it can), checked before any model load
    so a missing collection costs nothing."""
    if spec.startswith(IRDS_PREFIX):
        return None  # ir_datasets downloads on first use; a failure surfaces when loading
    path = Path(spec)
    if not path.is_dir():
        return f"{path} does not exist"
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")
               if not (path / name).is_file()]
    if missing:
        return f"{path} is not a BEIR folder (missing {', '.join(missing)})"
    return None


def load_collection(spec: str, limit_docs: int | None = None,
                    limit_queries: int | None = None) -> Collection:
    """Read a collection; with `limit_docs`, keep the first documents and only the judgments and
    queries that still have a relevant document among them (for smoke runs)."""
    docs = read_documents(spec)
    queries = read_queries(spec)
    qrels = read_qrels(spec)
    if limit_docs is not None:
        docs = docs[:limit_docs]
        kept = {doc_id for doc_id, _ in docs}
        qrels = {qid: {d: g for d, g in judged.items() if d in kept}
                 for qid, judged in qrels.items()}
    judged = {qid for qid, grades in qrels.items() if any(g > 0 for g in grades.values())}
    queries = [(qid, text) for qid, text in queries if qid in judged and text.strip()]
    if limit_queries is not None:
        queries = queries[:limit_queries]
    kept_queries = {qid for qid, _ in queries}
    qrels = {qid: grades for qid, grades in qrels.items() if qid in kept_queries}
    return Collection(dataset_name(spec), spec, docs, queries, qrels, limit_docs)
