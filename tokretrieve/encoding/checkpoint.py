"""Resumable document encoding: a crash an hour into a build loses at most one chunk.

Encoding dominates build time (minutes per thousand documents on a CPU), so a build encodes in
chunks and saves each chunk's embeddings in a hidden folder inside the target index (the build
step names it), keyed by the model's weights hash, the embedding method, the max length and a
hash of the documents. A rerun of the same build picks up after the last saved chunk; any other
build discards the stale chunks. The folder is removed once the index is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tokretrieve.corpus import documents_digest
from tokretrieve.encoding.encoder import Encoder

CHUNK_SIZE = 1024


def encode_resumable(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
                     folder: Path, progress: bool = True,
                     chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Embeddings of `texts`, reusing chunks a previous identical run saved in `folder`."""
    key = _build_key(encoder, doc_ids, texts)
    key_file = folder / "key.json"
    if not key_file.is_file() or json.loads(key_file.read_text()) != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        key_file.write_text(json.dumps(key))
    chunks = []
    with tqdm(total=len(texts), unit="doc", desc="encoding", disable=not progress,
              smoothing=0.1) as bar:
        for number, start in enumerate(range(0, len(texts), chunk_size)):
            file = folder / f"chunk-{number:06d}.npy"
            batch = texts[start:start + chunk_size]
            if file.is_file():
                chunk = np.load(file, allow_pickle=False)
                bar.update(len(batch))
            else:
                chunk = encoder.embed(batch, progress=bar)
                _save_durably(file, chunk)
            chunks.append(chunk)
    return (np.concatenate(chunks) if chunks
            else np.zeros((0, encoder.model.hidden_size), dtype=np.float32))


def _build_key(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str]) -> dict:
    return {"model": encoder.model.content_hash, "method": encoder.method.name,
            "max_length": encoder.max_length,
            "documents": documents_digest(zip(doc_ids, texts, strict=True))}


def _save_durably(file: Path, array: np.ndarray) -> None:
    """Write to a temporary name, fsync, rename: a chunk file is either whole or absent."""
    staging = file.with_suffix(".partial")
    with staging.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, file)
