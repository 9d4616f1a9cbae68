"""Indexing and scoring: bags -> postings -> scores, and dense vectors -> FAISS.

Nothing here loads a model (no torch, no transformers): an index opens, searches and reports
with numpy, numba and FAISS alone. `SparseIndex` and `DenseIndex` share one signature,
`search(queries, k) -> (scores, ids)`; `postings` holds the on-disk layout, `kernels` the
compiled scoring, `manifest` the records that describe an index, `storage` atomic folders.
"""

from tokretrieve.index.dense import DenseIndex
from tokretrieve.index.manifest import IndexManifest
from tokretrieve.index.sparse import SparseIndex

__all__ = ["DenseIndex", "IndexManifest", "SparseIndex"]
