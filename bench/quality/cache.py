"""Encode a collection once per model and keep the embeddings on disk.

Model forward passes are nearly all of the benchmark's cost (SmolLM2 needs minutes for Cranfield
on two cores), while every sparse variant, the dense baseline and every sweep point derive from
the same document and query embeddings. So each (collection, model, max length) is encoded once;
the cache records the model's content hash, its whole recipe and the ids it covers, and is
re-encoded when any of them no longer matches. The forward-pass timings measured at encoding
time travel with it.

The cached query embeddings reach the package's query path as an ordinary precomputed query
encoder (bench.quality.systems): their bags are made once per index by
`ModelQueryEncoder.from_embeddings`, so no sweep point calls the model; only the cost
measurements run it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.quality.datasets import Collection
from bench.toolkit.clock import timed
from tokretrieve import Encoder


@dataclass
class EncodedCollection:
    """Document and query embeddings of one collection under one model."""

    doc_embeddings: np.ndarray
    query_embeddings: np.ndarray
    doc_seconds: float
    query_seconds: float
    encoded_at: str
    from_cache: bool
    path: Path

    @property
    def docs_per_second(self) -> float:
        return len(self.doc_embeddings) / self.doc_seconds if self.doc_seconds else 0.0


def model_slug(model: str) -> str:
    """A file-name-safe form of an alias, folder or hub id."""
    name = Path(model).name if Path(model).exists() else model
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def cache_path(cache_dir: Path, collection: Collection, model: str, max_length: int) -> Path:
    limit = f"-limit{collection.limit_docs}" if collection.limit_docs is not None else ""
    return Path(cache_dir) / (f"{collection.name}{limit}-{model_slug(model)}-{max_length}.npz")


def encode_collection(encoder: Encoder, collection: Collection, model: str, cache_dir: Path,
                      refresh: bool = False) -> EncodedCollection:
    """Embeddings of the collection's documents (document side) and queries (query side,
    `is_query=True`), read from the cache when it matches this model and these ids."""
    path = cache_path(cache_dir, collection, model, encoder.max_length)
    if not refresh:
        cached = _read_cache(path, encoder, collection)
        if cached is not None:
            return cached
    docs, doc_seconds = timed(lambda: encoder.embed([text for _, text in collection.docs],
                                                    progress=True))
    queries, query_seconds = timed(lambda: encoder.embed(
        [text for _, text in collection.queries], is_query=True, progress=True))
    encoded_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(staging, doc_embeddings=docs, query_embeddings=queries,
             doc_ids=np.array(collection.doc_ids, dtype=str),
             query_ids=np.array(collection.query_ids, dtype=str),
             content_hash=np.array(encoder.model.content_hash),
             max_length=np.array(encoder.max_length),
             method=np.array(json.dumps(encoder.method.record(), sort_keys=True)),
             doc_seconds=np.array(doc_seconds), query_seconds=np.array(query_seconds),
             encoded_at=np.array(encoded_at))
    staging.replace(path)  # a killed run never leaves a half-written cache behind
    return EncodedCollection(docs, queries, doc_seconds, query_seconds, encoded_at, False, path)


def _read_cache(path: Path, encoder: Encoder, collection: Collection) -> EncodedCollection | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            matches = (
                str(data["content_hash"]) == encoder.model.content_hash
                and int(data["max_length"]) == encoder.max_length
                and str(data["method"]) == json.dumps(encoder.method.record(), sort_keys=True)
                and data["doc_ids"].tolist() == collection.doc_ids
                and data["query_ids"].tolist() == collection.query_ids
            )
            if not matches:
                return None
            return EncodedCollection(
                data["doc_embeddings"], data["query_embeddings"], float(data["doc_seconds"]),
                float(data["query_seconds"]), str(data["encoded_at"]), True, path)
    except (OSError, KeyError, ValueError):
        return None  # unreadable or from an older layout: encode afresh
