"""An index as exports meet it after changes: two segments (a build and an add), several
postings blocks each, deleted documents in both, and ids whose UTF-8 bytes outnumber their
characters (`ü` takes two), for the engine routes' tests (Milvus, OpenSearch)."""

from __future__ import annotations

from pathlib import Path

from refimpl import random_texts

from tokretrieve import SparseIndex, add_documents, build_index, delete_documents
from tokretrieve.encoding.encoder import Encoder

FIRST = [(f"a{i}", t) for i, t in enumerate(random_texts(40, seed=71, low=3, high=14))]
FIRST.append(("ü" * 12 + "-long", "a document whose id is longer in bytes than in characters"))
SECOND = [(f"b{i}", t) for i, t in enumerate(random_texts(25, seed=72, low=3, high=14))]
GONE = ["a3", "a17", "a30", "b2", "b11"]
QUERIES = [(f"q{i}", t) for i, t in enumerate(random_texts(60, seed=73, low=1, high=6))]


def changed_index(encoder: Encoder, path: Path) -> SparseIndex:
    """Build FIRST in postings blocks of 8 documents, add SECOND, delete GONE."""
    build_index(FIRST, encoder, path, segment_docs=8, progress=False)
    add_documents(path, SECOND, encoder, progress=False)
    return delete_documents(path, GONE)
