"""Index bytes on disk, measured by saving each index to a temporary folder.

Counting bytes in memory would miss each format's real overheads (headers, vocabularies, id
arrays), so every index is written by its own library and the files are summed.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import faiss
import numpy as np

from bench.quality.cache import EncodedCollection
from bench.quality.datasets import Collection
from bench.quality.systems import BM25System, DenseSystem, SparseConfig, build_sparse_index
from bench.toolkit.machine import array_bytes
from tokretrieve import Encoder
from tokretrieve.index.storage import folder_bytes


def sparse_bytes(encoder: Encoder, collection: Collection, encoded: EncodedCollection,
                 config: SparseConfig) -> dict[str, int]:
    """A tokretrieve index folder, split into what sparse search needs (postings, doc ids,
    tokenizer) and what it carries for the dense baseline and re-derivation (embeddings)."""
    with tempfile.TemporaryDirectory(prefix="bench-sparse-") as tmp:
        folder = Path(tmp) / "index"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty documents: already reported by the run
            build_sparse_index(encoder, collection, encoded.doc_embeddings, config, folder)
        return index_folder_bytes(folder)


def index_folder_bytes(folder: Path) -> dict[str, int]:
    """A written tokretrieve index's bytes, split into what sparse search reads (postings of
    either codec, doc ids, tokenizer: `search_total`) and the embeddings it carries for the
    dense baseline and re-derivation, each summed over the segment folders."""
    size = array_bytes(folder)
    postings = sum(bytes_ for name, bytes_ in size.items() if name.startswith("postings_"))
    tokenizer = sum(folder_bytes(f) for f in folder.rglob("tokenizer") if f.is_dir())
    return {
        "postings": postings,
        "doc_ids": size.get("doc_ids.npy", 0),
        "embeddings": size.get("embeddings.npy", 0),
        "tokenizer": tokenizer,
        "search_total": postings + size.get("doc_ids.npy", 0) + tokenizer,
        "folder_total": folder_bytes(folder),
    }


def dense_bytes(dense: DenseSystem) -> dict[str, int]:
    """The FAISS flat index (float32 vectors) plus the doc-id array it needs beside it."""
    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        faiss.write_index(dense.index.faiss_index, str(Path(tmp) / "dense.faiss"))
        np.save(Path(tmp) / "doc_ids.npy", np.asarray(dense.index.doc_ids))
        vectors = (Path(tmp) / "dense.faiss").stat().st_size
        return {"vectors": vectors, "search_total": folder_bytes(Path(tmp))}


def bm25_bytes(bm25: BM25System) -> dict[str, int]:
    """bm25s's saved index (CSC score matrix, vocabulary, parameters), without the corpus."""
    with tempfile.TemporaryDirectory(prefix="bench-bm25-") as tmp:
        bm25.retriever.save(tmp, show_progress=False)
        np.save(Path(tmp) / "doc_ids.npy", np.asarray(bm25.doc_ids, dtype=str))
        return {"search_total": folder_bytes(Path(tmp))}
