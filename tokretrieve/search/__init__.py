"""Searching: a query encoder (tokretrieve.encoding) paired with an index (tokretrieve.index).

With the build step (tokretrieve.build), this is the only place where the two meet.
"""

from tokretrieve.search.fusion import HybridSearcher, linear_fusion, reciprocal_rank_fusion
from tokretrieve.search.query_encoders import (
    DenseQueryEncoder,
    ModelQueryEncoder,
    PrecomputedQueryEncoder,
    QueryEncoder,
    TokenQueryEncoder,
    index_encoder,
)
from tokretrieve.search.searcher import DenseSearcher, Hit, Searcher, SparseSearcher

__all__ = ["DenseQueryEncoder", "DenseSearcher", "Hit", "HybridSearcher", "ModelQueryEncoder",
           "PrecomputedQueryEncoder", "QueryEncoder", "Searcher", "SparseSearcher",
           "TokenQueryEncoder", "index_encoder", "linear_fusion", "reciprocal_rank_fusion"]
