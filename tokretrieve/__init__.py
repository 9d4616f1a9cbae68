"""tokretrieve: token-aligned sparse retrieval from LLM embedders (arXiv 2406.17378).

A dense text embedding sent through the LM head of its backbone ranks the text's key tokens
first; keeping the top positive tokens turns the dense embedder into a sparse retriever.

The data path runs one way: `tokretrieve.encoding` (text -> embedding -> bag), `tokretrieve.index`
(bags -> postings -> scores; vectors -> FAISS), joined only by `tokretrieve.build` (encode,
calibrate, write) and `tokretrieve.search` (a query encoder plus an index).

Names are imported on first use, so that `import tokretrieve.index` loads numpy, scipy and numba
only: an index opens and searches without torch or transformers, and without FAISS until the
dense index is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOME = {
    "add_documents": "tokretrieve.build",
    "build_index": "tokretrieve.build",
    "index_from_embeddings": "tokretrieve.build",
    "read_documents": "tokretrieve.corpus",
    "read_qrels": "tokretrieve.corpus",
    "read_queries": "tokretrieve.corpus",
    "BagRecipe": "tokretrieve.encoding.encoder",
    "Encoder": "tokretrieve.encoding.encoder",
    "CorpusError": "tokretrieve.errors",
    "EmptyQueryError": "tokretrieve.errors",
    "IndexBusyError": "tokretrieve.errors",
    "IndexFormatError": "tokretrieve.errors",
    "ModelLoadError": "tokretrieve.errors",
    "TokretrieveError": "tokretrieve.errors",
    "DenseIndex": "tokretrieve.index",
    "IndexManifest": "tokretrieve.index",
    "SparseIndex": "tokretrieve.index",
    "compact_index": "tokretrieve.index",
    "delete_documents": "tokretrieve.index",
    "verify_index": "tokretrieve.index",
    "DenseQueryEncoder": "tokretrieve.search",
    "DenseSearcher": "tokretrieve.search",
    "Hit": "tokretrieve.search",
    "HybridSearcher": "tokretrieve.search",
    "ModelQueryEncoder": "tokretrieve.search",
    "PrecomputedQueryEncoder": "tokretrieve.search",
    "QueryEncoder": "tokretrieve.search",
    "Searcher": "tokretrieve.search",
    "SparseSearcher": "tokretrieve.search",
    "TokenQueryEncoder": "tokretrieve.search",
    "index_encoder": "tokretrieve.search",
    "write_run": "tokretrieve.trec",
}

__all__ = [
    "BagRecipe",
    "CorpusError",
    "DenseIndex",
    "DenseQueryEncoder",
    "DenseSearcher",
    "EmptyQueryError",
    "Encoder",
    "Hit",
    "HybridSearcher",
    "IndexBusyError",
    "IndexFormatError",
    "IndexManifest",
    "ModelLoadError",
    "ModelQueryEncoder",
    "PrecomputedQueryEncoder",
    "QueryEncoder",
    "Searcher",
    "SparseIndex",
    "SparseSearcher",
    "TokenQueryEncoder",
    "TokretrieveError",
    "__version__",
    "add_documents",
    "build_index",
    "compact_index",
    "delete_documents",
    "index_encoder",
    "index_from_embeddings",
    "read_documents",
    "read_qrels",
    "read_queries",
    "verify_index",
    "write_run",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'tokretrieve' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from tokretrieve.build import add_documents, build_index, index_from_embeddings
    from tokretrieve.corpus import read_documents, read_qrels, read_queries
    from tokretrieve.encoding.encoder import BagRecipe, Encoder
    from tokretrieve.errors import (
        CorpusError,
        EmptyQueryError,
        IndexBusyError,
        IndexFormatError,
        ModelLoadError,
        TokretrieveError,
    )
    from tokretrieve.index import (
        DenseIndex,
        IndexManifest,
        SparseIndex,
        compact_index,
        delete_documents,
        verify_index,
    )
    from tokretrieve.search import (
        DenseQueryEncoder,
        DenseSearcher,
        Hit,
        HybridSearcher,
        ModelQueryEncoder,
        PrecomputedQueryEncoder,
        QueryEncoder,
        Searcher,
        SparseSearcher,
        TokenQueryEncoder,
        index_encoder,
    )
    from tokretrieve.trec import write_run
