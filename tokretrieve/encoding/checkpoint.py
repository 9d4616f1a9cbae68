"""Resumable document encoding: a crash an hour into a build loses at most one chunk.

Encoding dominates build time (minutes per thousand documents on a CPU), so a build encodes in
chunks and saves each chunk's embeddings in a hidden folder inside the target index (the build
step names it), keyed by the model's weights hash, the embedding method, the max length, the
chunk size and a hash of the documents. A rerun of the same build picks up after the last saved
chunk; any other build discards the stale chunks. The folder is removed once the index is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from tokretrieve.corpus import documents_digest
from tokretrieve.errors import check_count

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder

CHUNK_SIZE = 1024


def encode_resumable(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
                     folder: Path, progress: bool = True,
                     chunk_size: int = CHUNK_SIZE) -> np.ndarray:
    """Embeddings of `texts`, reusing chunks a previous identical run saved in `folder`."""
    spans = open_checkpoint(encoder, doc_ids, texts, folder, chunk_size)
    chunks = []
    with tqdm(total=len(texts), unit="doc", desc="encoding", disable=not progress,
              smoothing=0.1) as bar:
        for number, span in enumerate(spans):
            batch = texts[span]
            chunk = saved_chunk(folder, number)
            if chunk is None:
                chunk = encoder.embed(batch, progress=bar)
                save_chunk(folder, number, chunk)
            else:
                bar.update(len(batch))
            chunks.append(chunk)
    return stacked(chunks, encoder.model.hidden_size)


def open_checkpoint(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
                    folder: Path, chunk_size: int = CHUNK_SIZE) -> list[slice]:
    """The chunks of the documents (slices, in order), with `folder` ready to hold their
    embeddings: its saved chunks are kept when they come from the same inputs, else discarded.
    Local and sharded encoding (tokretrieve.encoding.sharded) share this, so either resumes
    the other's checkpoint."""
    chunk_size = check_count(chunk_size, "chunk_size")
    key = _build_key(encoder, doc_ids, texts, chunk_size)
    key_file = folder / "key.json"
    if not key_file.is_file() or json.loads(key_file.read_text()) != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        key_file.write_text(json.dumps(key))
    return [slice(start, start + chunk_size) for start in range(0, len(texts), chunk_size)]


def saved_chunk(folder: Path, number: int) -> np.ndarray | None:
    """Chunk `number`'s embeddings as a previous run saved them, None if it has not."""
    file = _chunk_file(folder, number)
    return np.load(file, allow_pickle=False) if file.is_file() else None


def save_chunk(folder: Path, number: int, chunk: np.ndarray) -> None:
    _save_durably(_chunk_file(folder, number), chunk)


def stacked(chunks: Sequence[np.ndarray], hidden_size: int) -> np.ndarray:
    """The chunks' embeddings as one (documents x hidden) array."""
    return (np.concatenate(chunks) if len(chunks)
            else np.zeros((0, hidden_size), dtype=np.float32))


def _chunk_file(folder: Path, number: int) -> Path:
    return folder / f"chunk-{number:06d}.npy"


def _build_key(encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
               chunk_size: int) -> dict:
    # The chunk size is part of the key: chunks of another size cover other documents.
    return {"model": encoder.model.content_hash, "method": encoder.method.record(),
            "max_length": encoder.max_length, "chunk_size": chunk_size,
            "documents": documents_digest(zip(doc_ids, texts, strict=True))}


def _save_durably(file: Path, array: np.ndarray) -> None:
    """Write to a temporary name, fsync, rename: a chunk file is either whole or absent."""
    staging = file.with_suffix(".partial")
    with staging.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, file)
