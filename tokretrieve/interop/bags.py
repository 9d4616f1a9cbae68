"""Bags as they leave an index: document bags streamed block by block, query bags as integers.

Every route out of tokretrieve (JSONL files for Anserini and Seismic, Milvus, OpenSearch) reads
the same two things from here:

- `document_bags`: the live documents' stored bags, a few thousand documents at a time, so
  an export of any size holds that many documents' bags in memory. Weights are the
  stored integer impact levels (uint8 indexes) with the index's power-of-two scale beside them:
  level x scale is the stored weight exactly, so an engine that sums integers reproduces
  tokretrieve's scores divided by the scale.
- `integer_queries`: query bags (float weights, as the query encoders give them) quantized to
  integer levels 1..255 with one power-of-two scale per query. Other engines take integer query
  weights (Anserini truncates floats); with a power-of-two scale the quantized query is itself a
  bag tokretrieve searches exactly, so an engine's ranking can be checked against
  tokretrieve's for the very same query (tokretrieve.interop.agreement).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.postings import quantization_scale
from tokretrieve.index.sparse import SparseIndex, clean_query_bags

# Integer query weights go up to this level (the documents' uint8 range).
QUERY_LEVELS = 255
# Documents gathered per step of an export.
BLOCK_DOCS = 4096


@dataclass
class DocumentBlock:
    """Some live documents' bags: ids, and a (documents x vocabulary) CSR of impact levels
    (int32; sorted tokens per row). Stored weight = level x the index's scale."""

    doc_ids: list[str]
    levels: sp.csr_matrix


def integer_impacts(index: SparseIndex) -> float:
    """The index's power-of-two scale, after checking its impacts are integer levels (an
    index built with `impacts="float32"` stores weights no integer engine can take)."""
    layout = index.manifest.layout
    if layout.impacts != "uint8":
        raise TokretrieveError(f"{index.path or 'this index'} stores {layout.impacts} weights; "
                               "exports carry integer impacts: build it with uint8 impacts "
                               "(the default)")
    return float(layout.scale)


def document_bags(index: SparseIndex, block_docs: int = BLOCK_DOCS
                  ) -> Iterator[DocumentBlock]:
    """The live documents' bags in position order, `block_docs` documents at a time.

    Postings are token-major, so the documents of a range are gathered by one pass over their
    postings block's document offsets (uint16, the smallest array there is; decoded once per
    block when the lists are packed); what a step holds is the range's own postings, whatever
    the size of the collection.
    """
    integer_impacts(index)
    deleted = index.deleted_mask
    for segment in index.segments:
        postings = segment.postings
        for block in range(postings.n_segments):
            base, span = postings.segment_span(block)
            starts, offsets, impacts = postings.block(block)
            for first in range(0, span, block_docs):
                last = min(first + block_docs, span)
                at = np.flatnonzero((offsets >= first) & (offsets < last))
                tokens = np.searchsorted(starts, at, side="right") - 1
                levels = np.asarray(impacts[at]).astype(np.int32)
                rows = offsets[at].astype(np.int64) - first
                matrix = sp.csr_matrix((levels, (rows, tokens)),
                                       shape=(last - first, postings.vocab_size))
                matrix.sort_indices()
                where = segment.start + base
                live = ~deleted[where + first:where + last]
                ids = np.asarray(segment.doc_ids[base + first:base + last])
                if not live.all():
                    matrix, ids = matrix[live], ids[live]
                yield DocumentBlock([str(d) for d in ids], matrix)


def integer_queries(bags: sp.spmatrix | sp.sparray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Query bags as integer levels (int32 CSR, 1..255, rows as given) and each row's
    power-of-two scale: level x scale is the quantized weight, the heaviest token of a row
    landing in 128..255. Tokens whose weight rounds to level 0 are dropped, as they are from
    documents; non-positive weights are dropped first (they cannot raise a score)."""
    bags = clean_query_bags(bags)
    scales = np.ones(bags.shape[0], dtype=np.float64)
    data = np.zeros(bags.nnz, dtype=np.int32)
    for row in range(bags.shape[0]):
        start, end = bags.indptr[row], bags.indptr[row + 1]
        if end == start:
            continue
        weights = bags.data[start:end].astype(np.float64)
        scales[row] = quantization_scale(float(weights.max()), QUERY_LEVELS)
        data[start:end] = np.minimum(np.rint(weights / scales[row]), QUERY_LEVELS)
    levels = sp.csr_matrix((data, bags.indices.copy(), bags.indptr.copy()), shape=bags.shape)
    levels.eliminate_zeros()
    return levels, scales


def dequantized(levels: sp.csr_matrix, scales: np.ndarray) -> sp.csr_matrix:
    """The float32 query bags that integer levels stand for (level x its row's scale): what
    tokretrieve searches to get the ranking an integer engine should return."""
    bags = sp.csr_matrix(levels, dtype=np.float32, copy=True)
    bags.data *= np.repeat(scales, np.diff(bags.indptr)).astype(np.float32)
    return bags
