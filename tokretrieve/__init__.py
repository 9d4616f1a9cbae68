"""tokretrieve: token-aligned sparse retrieval from LLM embedders (arXiv 2406.17378).

A dense text embedding sent through the LM head of its backbone ranks the text's key tokens
first; keeping the top-k positive tokens turns the dense embedder into a sparse retriever.
"""

from tokretrieve.dense import DenseIndex
from tokretrieve.encoder import Encoder
from tokretrieve.errors import (
    CorpusError,
    EmptyQueryError,
    IndexFormatError,
    ModelLoadError,
    TokretrieveError,
)
from tokretrieve.search import Hit
from tokretrieve.sparse_index import SparseIndex

__version__ = "0.1.0"

__all__ = [
    "CorpusError",
    "DenseIndex",
    "EmptyQueryError",
    "Encoder",
    "Hit",
    "IndexFormatError",
    "ModelLoadError",
    "SparseIndex",
    "TokretrieveError",
    "__version__",
]
