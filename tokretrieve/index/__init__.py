"""Indexing and scoring: bags -> postings -> scores, and dense vectors -> FAISS.

Nothing here loads a model (no torch, no transformers): an index opens, searches and reports
with numpy, scipy and numba alone, and FAISS loads with `DenseIndex`, on first use.
`SparseIndex` and `DenseIndex` share one signature, `search(queries, k) -> (scores, ids)`;
`postings` holds the on-disk layout, `kernels` the compiled scoring, `manifest` the records
that describe an index, `generations` how a folder changes by atomic commits, `live` the
changes (delete, compact; adding documents needs a model: tokretrieve.build.add_documents),
`storage` files, checksums and the writer's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokretrieve.index.live import compact_index, delete_documents
from tokretrieve.index.manifest import IndexManifest
from tokretrieve.index.sparse import SparseIndex, verify_index

__all__ = ["DenseIndex", "IndexManifest", "SparseIndex", "compact_index", "delete_documents",
           "verify_index"]


def __getattr__(name: str) -> Any:
    """DenseIndex on first use: FAISS loads with it, not for a sparse search."""
    if name != "DenseIndex":
        raise AttributeError(f"module 'tokretrieve.index' has no attribute {name!r}")
    from tokretrieve.index.dense import DenseIndex

    globals()[name] = DenseIndex
    return DenseIndex


if TYPE_CHECKING:
    from tokretrieve.index.dense import DenseIndex
