"""Query bags for other engines: a topics file encoded by one of tokretrieve's query modes.

An engine searched with tokretrieve's bags must be given the same queries tokretrieve would
search, as integers (tokretrieve.interop.bags.integer_queries). `ExportedQueries` holds them with
their per-query scales, so that the same object drives an engine's search and the tokretrieve
search it is checked against (tokretrieve.interop.agreement).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.interop.bags import dequantized, integer_queries
from tokretrieve.search.searcher import QUERY_MODES, SparseSearcher

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder


@dataclass
class ExportedQueries:
    """Queries as integer levels (int32 CSR, one row per query) and each row's scale."""

    qids: list[str]
    texts: list[str]
    levels: sp.csr_matrix
    scales: np.ndarray
    mode: str

    @classmethod
    def encode(cls, index: SparseIndex, queries: Sequence[tuple[str, str]], mode: str = "model",
               encoder: Encoder | None = None) -> ExportedQueries:
        """(qid, text) pairs encoded the way `SparseSearcher.from_index(index, mode)` would,
        then quantized to integers."""
        if mode not in QUERY_MODES:
            raise TokretrieveError(f"unknown query mode '{mode}': choose one of "
                                   f"{', '.join(QUERY_MODES)}")
        if not queries:
            raise TokretrieveError("no queries to export: the topics file is empty")
        searcher = SparseSearcher.from_index(index, mode, encoder)
        texts = [text for _, text in queries]
        bags = searcher.query_encoder.encode(texts)
        levels, scales = integer_queries(bags)
        return cls([qid for qid, _ in queries], texts, levels, scales, mode)

    def bags(self) -> sp.csr_matrix:
        """The float32 bags the levels stand for: search these with tokretrieve to get the
        ranking an engine given the integer queries must return."""
        return dequantized(self.levels, self.scales)

    def facts(self) -> dict:
        """What an export records of its queries: their mode, count and each one's scale."""
        return {"mode": self.mode, "count": len(self.qids),
                "scales": dict(zip(self.qids, self.scales.tolist(), strict=True))}

    def row(self, q: int) -> tuple[np.ndarray, np.ndarray]:
        """Query q's token ids and integer weights."""
        start, end = self.levels.indptr[q], self.levels.indptr[q + 1]
        return self.levels.indices[start:end], self.levels.data[start:end]
