"""BM25 over the collection's texts (bm25s), as a searcher a hybrid can fuse with.

The lexical baseline IR users compare against, and the part of a hybrid that brings what an
embedding lacks: exact term matches weighted by their rarity (sparse and dense of one model both
come from the same embedding, so fusing them adds little; bench/README.md measures both).

It is built in memory from the texts (an index stores none) with bm25s's defaults and English
stopwords, the configuration the benchmark reports; bm25s is the `bm25` extra. Tokenizing and
scoring are separate steps (`tokenize`, `search_tokens`) so that a benchmark can time each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.search.searcher import BatchSearcher, Hit


class BM25Searcher(BatchSearcher):
    """bm25s over (id, text) pairs, with the Searcher interface (hits have no matched tokens:
    BM25 explains nothing the text does not show)."""

    def __init__(self, docs: Iterable[tuple[str, str]]):
        try:
            import bm25s
        except ImportError:
            raise TokretrieveError("BM25 needs the 'bm25' extra: pip install "
                                   "'tokretrieve[bm25]'") from None
        docs = list(docs)
        if not docs:
            raise TokretrieveError("BM25 needs documents: the collection is empty")
        self._bm25s = bm25s
        self.doc_ids = [doc_id for doc_id, _ in docs]
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize([text for _, text in docs], stopwords="en",
                                            show_progress=False), show_progress=False)

    def tokenize(self, queries: Sequence[str]) -> list[list[str]]:
        """Queries as term strings (bm25s maps them onto the index vocabulary)."""
        return self._bm25s.tokenize(list(queries), stopwords="en", return_ids=False,
                                    show_progress=False)

    def search_tokens(self, query_tokens: Sequence[Sequence[str]], k: int,
                      n_threads: int = 0) -> list[list[tuple[str, float]]]:
        """(doc id, score) of the top k documents of each tokenized query, best first;
        documents sharing no term with the query (score 0) are not returned, as a sparse index
        never returns them either."""
        known = [list(tokens) for tokens in query_tokens]
        present = [i for i, tokens in enumerate(known) if tokens]
        out: list[list[tuple[str, float]]] = [[] for _ in known]
        if not present:
            return out
        rows, scores = self.retriever.retrieve([known[i] for i in present],
                                               k=min(k, len(self.doc_ids)),
                                               show_progress=False, n_threads=n_threads)
        for i, row, score in zip(present, rows, scores, strict=True):
            out[i] = [(self.doc_ids[int(r)], float(s)) for r, s in zip(row, score, strict=True)
                      if s > 0]
        return out

    def batch_search(self, queries: Sequence[str], qids: Sequence[str], k: int = 10,
                     threads: int | None = None, explain: bool = True) -> dict[str, list[Hit]]:
        """{qid: hits} (see search_tokens)."""
        k = check_count(k, "k")
        queries, qids = list(queries), [str(q) for q in qids]
        if len(queries) != len(qids):
            raise TokretrieveError(f"{len(queries)} queries but {len(qids)} query ids")
        found = self.search_tokens(self.tokenize(queries), k, threads or 0)
        return {qid: [Hit(doc, score, []) for doc, score in hits]
                for qid, hits in zip(qids, found, strict=True)}
