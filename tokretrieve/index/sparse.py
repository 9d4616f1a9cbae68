"""The key-token inverted index on disk: open it memory-mapped, search it exactly.

An index is what the build step (tokretrieve.build) wrote: the documents' bags as segmented
token-major postings (tokretrieve.index.postings), their ids, the dense embeddings they came from
and the PC1 direction they were adjusted by, plus the manifest (tokretrieve.index.manifest). It
knows no model: it opens, searches and reports with numpy and the compiled kernel alone. Turning
text into query bags, and token ids back into text, is the searchers' job (tokretrieve.search).

`search` has FAISS's signature: a batch of query bags (a queries x vocabulary CSR matrix) and k
in, (scores, ids) arrays out, ids being document positions (`doc_ids[ids]` names them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import IndexFormatError, TokretrieveError, check_count
from tokretrieve.index.kernels import Scratch, gather_impacts
from tokretrieve.index.manifest import FORMAT, FORMAT_VERSION, IndexManifest, PostingsLayout
from tokretrieve.index.postings import Postings
from tokretrieve.index.storage import (
    atomic_directory,
    load_array,
    read_manifest,
    save_array,
    write_manifest,
)

# Scores of the rows a search could not fill (fewer than k documents share a token with the
# query); their ids are -1. FAISS pads the same way.
NO_SCORE = -np.inf


def check_threads(threads: int | None) -> int:
    """The kernel's thread count: numba's current setting when None."""
    if threads is None:
        return numba.get_num_threads()
    return min(check_count(threads, "threads"), numba.config.NUMBA_NUM_THREADS)


class SparseIndex:
    """Key-token postings with their document ids, searched exactly by the compiled kernel."""

    def __init__(self, manifest: IndexManifest, postings: Postings, doc_ids: np.ndarray,
                 embeddings: np.ndarray, pc1_direction: np.ndarray,
                 token_map: np.ndarray | None = None, path: Path | None = None):
        self.manifest = manifest
        self.postings = postings
        self.doc_ids = doc_ids
        self.embeddings = embeddings
        self.pc1_direction = pc1_direction
        self.token_map = token_map
        self.path = path
        self._idf: np.ndarray | None = None
        self._positions: dict[str, int] | None = None
        self._scratch = Scratch()

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> SparseIndex:
        """Open an index folder, memory-mapped by default (opening costs no reading)."""
        path = Path(path)
        manifest = IndexManifest.from_json(
            read_manifest(path, FORMAT, versions=(FORMAT_VERSION,)), path)
        layout = manifest.layout
        postings = Postings(load_array(path, "postings_indptr", mmap),
                            load_array(path, "postings_docs", mmap),
                            load_array(path, "postings_impacts", mmap),
                            float(layout.scale), manifest.doc_count, int(layout.segment_docs))
        doc_ids = load_array(path, "doc_ids", mmap)
        if (len(doc_ids) != manifest.doc_count or postings.vocab_size != manifest.vocab_size
                or postings.n_segments != max(-(-manifest.doc_count // postings.segment_docs), 1)
                or postings.impacts.dtype != np.dtype(layout.impacts)):
            raise IndexFormatError(f"{path}: arrays disagree with the manifest; rebuild the index")
        token_map = (load_array(path, "token_map", mmap=False)
                     if manifest.bags.merge_variants else None)
        return cls(manifest, postings, doc_ids, load_array(path, "embeddings", mmap),
                   load_array(path, "pc1_direction", mmap=False), token_map, path)

    def write(self, path: str | Path,
              attachments: Mapping[str, Callable[[Path], object]] | None = None) -> SparseIndex:
        """Write this index to `path` atomically (tokretrieve.index.storage) and open it there.

        `attachments` are folders written beside the arrays by their own writers (the build step
        saves the tokenizer as `tokenizer/` this way, for model-free tokenized queries); the
        manifest is written last, so a folder with a manifest is always complete.
        """
        with atomic_directory(path) as staging:
            save_array(staging, "doc_ids", self.doc_ids)
            save_array(staging, "postings_indptr", self.postings.indptr)
            save_array(staging, "postings_docs", self.postings.docs)
            save_array(staging, "postings_impacts", self.postings.impacts)
            save_array(staging, "embeddings", self.embeddings)
            save_array(staging, "pc1_direction", self.pc1_direction)
            if self.token_map is not None:
                save_array(staging, "token_map", self.token_map)
            for name, writer in (attachments or {}).items():
                writer(staging / name)
            write_manifest(staging, self.manifest.to_json())
        return SparseIndex.load(path)

    # ------------------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return self.postings.n_docs

    @property
    def vocab_size(self) -> int:
        return self.postings.vocab_size

    @property
    def idf(self) -> np.ndarray:
        """BM25's idf of each token over the document bags (0 for tokens in no bag)."""
        if self._idf is None:
            df = self.postings.document_frequency().astype(np.float64)
            n = float(len(self))
            self._idf = np.where(df > 0, np.log1p((n - df + 0.5) / (df + 0.5)), 0.0)
        return self._idf

    def position(self, doc_id: str) -> int:
        """The position of a document id in the index (what `search` returns as ids)."""
        if self._positions is None:
            self._positions = {str(d): i for i, d in enumerate(np.asarray(self.doc_ids))}
        try:
            return self._positions[doc_id]
        except KeyError:
            where = self.path or "this index"
            raise TokretrieveError(f"document id {doc_id!r} is not in {where}") from None

    def document_bag(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored bag of the document at `position`: token ids and weights, heaviest first."""
        tokens, weights = self.postings.document(int(position))
        order = np.argsort(-weights, kind="stable")
        return tokens[order], weights[order]

    # ------------------------------------------------------------------------------ search
    def search(self, queries: sp.spmatrix | sp.sparray, k: int = 10,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of a batch of query bags (queries x vocabulary, any weights).

        Returns (scores, ids), both (queries x k): float32 dot products best first, and int64
        document positions, ties broken by the lower position. Rows with fewer than k matching
        documents end with ids -1 and scores -inf. Tokens with a non-positive weight are
        ignored (they cannot raise a score). `threads` spreads the batch over that many kernel
        threads (default: numba's setting).
        """
        k = check_count(k, "k")
        n_threads = check_threads(threads)
        bags = self._check_queries(queries)
        docs, scores, counts = self.postings.top_k(
            bags.indptr.astype(np.int64), bags.indices.astype(np.int64),
            bags.data.astype(np.float32), k, self._scratch, n_threads)
        out_scores = np.full((bags.shape[0], k), NO_SCORE, dtype=np.float32)
        out_ids = np.full((bags.shape[0], k), -1, dtype=np.int64)
        width = docs.shape[1]
        valid = np.arange(width)[None, :] < counts[:, None]
        out_scores[:, :width] = np.where(valid, scores, NO_SCORE)
        out_ids[:, :width] = np.where(valid, docs, -1)
        return out_scores, out_ids

    def contributions(self, token_ids: np.ndarray, weights: np.ndarray,
                      positions: np.ndarray) -> np.ndarray:
        """(documents x query tokens) float32: each query token's share of each document's score
        (query weight x stored weight, 0 where the document lacks the token); each row sums to
        the score `search` gave. Explanations are built from this."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        postings = self.postings
        impacts = gather_impacts(postings.indptr, postings.docs, postings.impacts,
                                 postings.segment_docs, token_ids,
                                 np.asarray(positions, dtype=np.int64))
        # the kernel's products, then the exact power-of-two scale
        return (np.asarray(weights, dtype=np.float32)[None, :] * impacts
                * np.float32(postings.scale))

    def _check_queries(self, queries: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
        if not sp.issparse(queries):
            raise TokretrieveError("a sparse index searches query bags: a (queries x vocabulary) "
                                   "scipy.sparse matrix, as Encoder.encode_query returns")
        if queries.shape[1] != self.vocab_size:
            raise TokretrieveError(f"query bags have {queries.shape[1]} columns, the index's "
                                   f"vocabulary {self.vocab_size}: encode them with its model")
        return clean_query_bags(queries)


def clean_query_bags(queries: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Query bags as the kernel reads them: a float32 CSR copy, non-positive weights dropped
    (they cannot raise a score), then duplicate tokens summed; non-finite weights refused."""
    bags = sp.csr_matrix(queries, dtype=np.float32, copy=True)
    if not np.all(np.isfinite(bags.data)):
        raise TokretrieveError("query bag weights must be finite numbers")
    bags.data[bags.data < 0] = 0
    bags.eliminate_zeros()
    bags.sum_duplicates()
    return bags


def in_memory(manifest: IndexManifest, postings: Postings, doc_ids: np.ndarray,
              embeddings: np.ndarray, pc1_direction: np.ndarray,
              token_map: np.ndarray | None) -> SparseIndex:
    """An index not (yet) on disk, its manifest completed with the postings' own counts and
    layout (a document whose every weight rounded to level 0 counts as empty)."""
    empty = [str(doc_ids[i]) for i in np.flatnonzero(postings.document_lengths() == 0)]
    manifest = replace(manifest, doc_count=len(doc_ids), postings=postings.n_postings,
                       empty_documents=len(empty), empty_document_ids=tuple(empty[:100]),
                       layout=PostingsLayout(segment_docs=postings.segment_docs,
                                             impacts=str(postings.impacts.dtype),
                                             scale=postings.scale))
    return SparseIndex(manifest, postings, doc_ids, embeddings, pc1_direction, token_map)
