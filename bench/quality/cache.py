"""Encode a collection once per model and keep the embeddings on disk.

Model forward passes are nearly all of the benchmark's cost (SmolLM2 needs minutes for Cranfield
on two cores), while every sparse variant, the dense baseline and every sweep point derive from
the same document and query embeddings. So each (collection, model, max length) is encoded once;
the cache records the model's content hash and the ids it covers, and is re-encoded when either
no longer matches. The forward-pass timings measured at encoding time travel with it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.datasets import Collection
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
    start = time.perf_counter()
    docs = encoder.embed([text for _, text in collection.docs], progress=True)
    doc_seconds = time.perf_counter() - start
    start = time.perf_counter()
    queries = encoder.embed([text for _, text in collection.queries], is_query=True,
                            progress=True)
    query_seconds = time.perf_counter() - start
    encoded_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(staging, doc_embeddings=docs, query_embeddings=queries,
             doc_ids=np.array(collection.doc_ids, dtype=str),
             query_ids=np.array(collection.query_ids, dtype=str),
             content_hash=np.array(encoder.model.content_hash),
             max_length=np.array(encoder.max_length),
             method=np.array(encoder.method.name),
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
                and str(data["method"]) == encoder.method.name
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


class CachedEncoder:
    """An Encoder stand-in whose `embed` serves stored query embeddings.

    Handing it to `SparseIndex.from_embeddings` lets `SparseIndex.model_query_bags` (the
    package's own query path: PC1 adjustment, weighting, token merging) run on cached embeddings,
    so no sweep point calls the model and no bench code re-implements the query path. Inside
    `live()` it calls the real model, for timing what a query really costs. Everything else is
    delegated to the wrapped Encoder.
    """

    def __init__(self, encoder: Encoder, query_texts: list[str], query_embeddings: np.ndarray):
        self._encoder = encoder
        self._stored = {text: row for text, row in zip(query_texts, query_embeddings,
                                                        strict=True)}
        self._live = False

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    @property
    def tokenizer(self):
        return self._encoder.tokenizer

    def embed(self, texts, is_query: bool = False, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if self._live or not is_query or any(text not in self._stored for text in texts):
            return self._encoder.embed(texts, is_query=is_query, progress=progress)
        if not texts:
            return np.zeros((0, self._encoder.model.hidden_size), dtype=np.float32)
        return np.stack([self._stored[text] for text in texts])

    def bags(self, *args, **kwargs):
        return self._encoder.bags(*args, **kwargs)

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Within this block, `embed` runs the model even for stored texts."""
        self._live = True
        try:
            yield
        finally:
            self._live = False
