"""Token-major postings, split into document-range segments, with quantized impacts.

Two codecs store the lists: raw arrays (`Postings`, below) and bit-packed words
(`PackedPostings`, tokretrieve.index.packing; format 4's default for uint8 levels, about half
the bytes). Both share the list offsets and answer every read and search the same, bit for bit.

Raw layout (format version 2 on). Documents are cut into segments of `segment_docs` consecutive
positions (65,536 by default). Inside a segment, each token's postings list the documents that
hold it, as uint16 offsets from the segment's first document, ascending:

    token t, segment s:  docs[indptr[s, t]:indptr[s, t + 1]]   (+ s * segment_docs)
                         impacts[same slice]                    (x scale = the stored weight)

Why segments: a uint16 offset halves the bytes of an int32 document id, and the scoring kernel
works one segment at a time with an accumulator of segment size (256 KB of float32), which stays
in the CPU's L2 cache however large the collection; per-query scratch memory is bounded by the
segment, not the corpus.

Why power-of-two scales: an impact is a uint8 level (or a float32 weight, scale 1). The kernel
sums query weight x impact in float32 and multiplies the sum by the scale at the end; with a
power-of-two scale that multiplication is exact, so ranking by the integer-level sums and by the
dequantized weights is the same ranking (the tests' numpy reference reproduces the kernel bit for
bit). uint8 keeps at least 7 significant bits of every weight (the largest maps to 128..255);
on Cranfield it changed nDCG@10 by at most 0.0006 in either query mode for both offline models
(bench/README.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import IndexFormatError, TokretrieveError
from tokretrieve.index.kernels import (
    Scratch,
    batch_top_k,
    gather_impacts,
    gather_packed_impacts,
)
from tokretrieve.index.packing import DENSE_SHARE, PAD_WORDS, pack, unpack_segment
from tokretrieve.index.storage import fsync_tree, load_array, save_array

ImpactType = Literal["uint8", "float32"]
IMPACT_TYPES = ("uint8", "float32")
# The largest segment whose offsets fit in uint16.
MAX_SEGMENT_DOCS = 65536
_NONE_DELETED = np.zeros(0, dtype=np.bool_)
# What the kernel gets for a packed index's raw arrays (a raw index's packed ones are None).
_NO_DOCS, _NO_IMPACTS = np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint8)
# The per-segment list offsets among a codec's FILES (the others hold the lists themselves).
_OFFSET_FILES = ("indptr", "word_ptr")


class SegmentedPostings:
    """What every codec's postings share: the list offsets (`indptr`, see the module
    docstring), the scale, the documents and their segments, and the reads built on one
    segment's raw arrays (`block`). Subclasses store the lists (Postings: raw arrays,
    PackedPostings: bit-packed words) and score them."""

    codec: ClassVar[str]
    # The arrays a segment stores, as postings_<name>.npy, in the order of the fields.
    FILES: ClassVar[tuple[str, ...]]
    indptr: np.ndarray
    scale: float
    n_docs: int
    segment_docs: int

    def __post_init__(self) -> None:
        # Nothing writes an index's arrays once they exist; read-only views of them all keep
        # one compiled kernel for lists in memory and lists memory-mapped (_read_only).
        for name in self.FILES:
            setattr(self, name, _read_only(getattr(self, name)))

    @property
    def vocab_size(self) -> int:
        return self.indptr.shape[1] - 1

    @property
    def n_segments(self) -> int:
        return self.indptr.shape[0]

    @property
    def n_postings(self) -> int:
        return int(self.indptr[-1, -1])  # there is always at least one segment

    @property
    def impact_type(self) -> str:
        """What an impact is: "uint8" levels or "float32" weights."""
        raise NotImplementedError

    def block(self, segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One segment's raw lists: (list starts from 0, int64 vocab + 1; uint16 offsets;
        impacts)."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays an index segment stores, by file name (postings_<name>.npy)."""
        return {name: getattr(self, name) for name in self.FILES}

    @classmethod
    def open(cls, folder: Path, n_docs: int, vocab_size: int, impacts: str, scale: float,
             segment_docs: int, mmap: bool = True) -> SegmentedPostings:
        """The postings stored in `folder` (postings_<name>.npy for each of FILES),
        memory-mapped by default, checked (`check`) before the kernel may walk them."""
        postings = cls(*(load_array(folder / f"postings_{name}.npy", mmap)
                         for name in cls.FILES),
                       float(scale), n_docs, segment_docs)
        postings.check(folder, vocab_size, impacts)
        return postings

    def check(self, folder: Path, vocab_size: int, impacts: str) -> None:
        """Refuse arrays the kernel could not walk safely."""
        raise NotImplementedError

    def top_k(self, query_indptr: np.ndarray, query_tokens: np.ndarray,
              query_weights: np.ndarray, k: int, scratch: Scratch, n_threads: int,
              deleted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-k of a batch of query bags (CSR: int64 indptr and tokens, float32
        weights, positive) by the compiled kernel on `n_threads` of `scratch`'s buffers,
        documents marked in `deleted` (a bool per document, or None) left out.

        Returns (docs, sums, counts): (queries x min(k, n_docs)) arrays, row q valid up to
        counts[q]; sums are before the scale (`weights` applies it; a power of two: exact), so
        that results of several segments sharing the scale merge without rounding.
        """
        accumulators, touched = scratch.buffers(n_threads, min(self.segment_docs, self.n_docs))
        lists = self.arrays()
        docs, sums, counts = batch_top_k(
            lists["indptr"], lists.get("docs", _NO_DOCS), lists.get("impacts", _NO_IMPACTS),
            lists.get("word_ptr"), lists.get("words"), self.n_docs,
            self.segment_docs, query_indptr, query_tokens, query_weights,
            min(k, max(self.n_docs, 1)), _NONE_DELETED if deleted is None else deleted,
            accumulators, touched)
        if len(counts) and counts.min() < 0:
            raise _damaged()
        return docs, sums, counts

    def impacts_of(self, tokens: np.ndarray, hit_docs: np.ndarray) -> np.ndarray:
        """(hit docs x tokens) float32 impacts of the given documents (positions in these
        postings) for the given tokens, 0 where a document lacks the token."""
        raise NotImplementedError

    def document_frequency(self, deleted: np.ndarray | None = None) -> np.ndarray:
        """Number of documents holding each token (int64, one per vocabulary entry), those
        marked in `deleted` (a bool per document) left out: one pass over each block that
        holds a deleted document."""
        indptr = np.asarray(self.indptr)
        df = (indptr[:, 1:] - indptr[:, :-1]).sum(axis=0)
        if deleted is None:
            return df
        for segment in range(self.n_segments):
            base, span = self.segment_span(segment)
            gone = np.asarray(deleted[base:base + span], dtype=bool)
            if not gone.any():
                continue
            starts, docs, _ = self.block(segment)
            at = np.flatnonzero(gone[docs])
            tokens = np.searchsorted(starts, at, side="right") - 1
            df -= np.bincount(tokens, minlength=self.vocab_size)
        return df

    def weights(self, impacts: np.ndarray) -> np.ndarray:
        """Stored weights (float32) of some impacts: impact x scale, exact."""
        return np.asarray(impacts).astype(np.float32) * np.float32(self.scale)

    def segment_span(self, segment: int) -> tuple[int, int]:
        """First document position of `segment` and its number of documents."""
        base = segment * self.segment_docs
        return base, min(self.segment_docs, self.n_docs - base)

    def document_lengths(self) -> np.ndarray:
        """Number of stored tokens of each document (int64, one per document)."""
        lengths = np.zeros(self.n_docs, dtype=np.int64)
        for segment in range(self.n_segments):
            base, span = self.segment_span(segment)
            lengths[base:base + span] = np.bincount(self.block(segment)[1], minlength=span)
        return lengths

    def to_bags(self) -> sp.csr_matrix:
        """The stored weights as doc-major bags (docs x vocab CSR, float32, sorted columns)."""
        tokens, docs, impacts = [], [], []
        for segment in range(self.n_segments):
            starts, offsets, levels = self.block(segment)
            tokens.append(np.repeat(np.arange(self.vocab_size, dtype=np.int32), np.diff(starts)))
            docs.append(offsets.astype(np.int64) + segment * self.segment_docs)
            impacts.append(levels)
        coo = sp.coo_matrix((self.weights(np.concatenate(impacts)),
                             (np.concatenate(docs), np.concatenate(tokens))),
                            shape=(self.n_docs, self.vocab_size))
        bags = coo.tocsr()
        bags.sort_indices()
        return bags

    def document(self, doc: int) -> tuple[np.ndarray, np.ndarray]:
        """One document's bag (token ids ascending, float32 weights): a scan of its segment."""
        segment, offset = divmod(int(doc), self.segment_docs)
        starts, docs, impacts = self.block(segment)
        at = np.flatnonzero(docs == offset)
        tokens = np.searchsorted(starts, at, side="right") - 1
        return tokens, self.weights(impacts[at])

    def _check_indptr(self, folder: Path, vocab_size: int, total: int | None) -> None:
        """Refuse list offsets of the wrong dtype or shape, or not increasing from 0 to the
        `total` postings (None: to whatever the last offset is)."""
        n_blocks = max(-(-self.n_docs // self.segment_docs), 1)
        indptr = self.indptr
        if indptr.dtype != np.int64 or indptr.shape != (n_blocks, vocab_size + 1):
            _refuse(folder, "postings_indptr", f"{indptr.dtype} {indptr.shape}, expected "
                                                f"int64 {(n_blocks, vocab_size + 1)}")
        bounds = np.asarray(indptr)
        _check_offsets(folder, "postings_indptr", bounds,
                       int(bounds[-1, -1]) if total is None else total)


@dataclass
class Postings(SegmentedPostings):
    """Segmented token-major postings as raw arrays (see the module docstring)."""

    codec: ClassVar[str] = "raw"
    FILES: ClassVar[tuple[str, ...]] = ("indptr", "docs", "impacts")
    indptr: np.ndarray        # int64 (n_segments, vocab + 1), offsets into docs / impacts
    docs: np.ndarray          # uint16 offsets within the segment
    impacts: np.ndarray       # uint8 levels or float32 weights
    scale: float              # a power of two: weight = impact * scale
    n_docs: int
    segment_docs: int = MAX_SEGMENT_DOCS

    @property
    def impact_type(self) -> str:
        return str(self.impacts.dtype)

    def block(self, segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        row = np.asarray(self.indptr[segment])
        start, end = int(row[0]), int(row[-1])
        return row - start, np.asarray(self.docs[start:end]), np.asarray(self.impacts[start:end])

    def impacts_of(self, tokens: np.ndarray, hit_docs: np.ndarray) -> np.ndarray:
        return gather_impacts(self.indptr, self.docs, self.impacts, self.segment_docs, tokens,
                              hit_docs)

    def packed(self, dense_share: float | None = DENSE_SHARE) -> PackedPostings:
        """These postings in the packed codec (tokretrieve.index.packing): uint8 levels only
        (float32 weights have no small integers to pack); lists dense from `dense_share` of
        their documents, None: none, as format 4 packed them."""
        check_codec("packed", str(self.impacts.dtype))
        word_ptr, words = pack(self.indptr, self.docs, self.impacts, dense_share)
        return PackedPostings(np.asarray(self.indptr), word_ptr, words, self.scale, self.n_docs,
                              self.segment_docs)

    def check(self, folder: Path, vocab_size: int, impacts: str) -> None:
        """Refuse arrays the kernel could not walk safely: wrong dtypes or shapes, offsets that
        decrease or overrun, document offsets past their block (the kernel would write outside
        its accumulator). Reads the offsets of partial blocks only (a full block's uint16
        offsets are in range by their type), so opening stays cheap."""
        docs = self.docs
        if docs.dtype != np.uint16 or docs.ndim != 1:
            _refuse(folder, "postings_docs", f"{docs.dtype} of {docs.ndim} dimensions, "
                                             "expected uint16")
        self._check_indptr(folder, vocab_size, len(docs))
        if self.impacts.dtype != np.dtype(impacts) or self.impacts.shape != docs.shape:
            _refuse(folder, "postings_impacts", f"{self.impacts.dtype} {self.impacts.shape}, "
                                                f"expected {impacts} {docs.shape}")
        bounds = np.asarray(self.indptr)
        for block in range(self.n_segments):
            _, span = self.segment_span(block)
            start, end = int(bounds[block, 0]), int(bounds[block, -1])
            if span < MAX_SEGMENT_DOCS and end > start and int(np.max(docs[start:end])) >= span:
                _refuse(folder, "postings_docs", f"a document offset past the {span} "
                                                 f"documents of block {block}")
        if self.impacts.dtype == np.float32 and not np.all(np.isfinite(self.impacts)):
            _refuse(folder, "postings_impacts", "weights that are not finite")


@dataclass
class PackedPostings(SegmentedPostings):
    """Segmented token-major postings, bit-packed (tokretrieve.index.packing): `indptr` still
    counts each list's postings, `word_ptr` gives its first word. uint8 impacts only."""

    codec: ClassVar[str] = "packed"
    FILES: ClassVar[tuple[str, ...]] = ("indptr", "word_ptr", "words")
    indptr: np.ndarray        # int64 (n_segments, vocab + 1): postings before each list
    word_ptr: np.ndarray      # int64 (n_segments, vocab + 1): words before each list
    words: np.ndarray         # uint32, PAD_WORDS zero words at the end
    scale: float
    n_docs: int
    segment_docs: int = MAX_SEGMENT_DOCS

    @property
    def impact_type(self) -> str:
        return "uint8"

    def block(self, segment: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        row = np.asarray(self.indptr[segment])
        raw = unpack_segment(self.indptr, self.word_ptr, self.words, segment,
                             self.segment_span(segment)[1])
        if raw is None:
            raise _damaged()
        return row - row[0], *raw

    def impacts_of(self, tokens: np.ndarray, hit_docs: np.ndarray) -> np.ndarray:
        impacts, whole = gather_packed_impacts(self.indptr, self.word_ptr, self.words,
                                               self.n_docs, self.segment_docs, tokens, hit_docs)
        if not whole:
            raise _damaged()
        return impacts

    def check(self, folder: Path, vocab_size: int, impacts: str) -> None:
        """Refuse arrays the kernel could not walk safely: wrong dtypes or shapes, list starts
        that decrease or leave less than PAD_WORDS words at the end. A chunk's own words are
        checked as the kernel decodes them (a damaged one stops the search with an error),
        so opening stays cheap."""
        if impacts != "uint8":
            _refuse(folder, "postings_words", f"packed postings of {impacts} impacts, which "
                                              "the packed codec cannot hold")
        self._check_indptr(folder, vocab_size, None)
        words, word_ptr = self.words, self.word_ptr
        if words.dtype != np.uint32 or words.ndim != 1 or len(words) < PAD_WORDS:
            _refuse(folder, "postings_words", f"{words.dtype} {words.shape}, expected uint32 "
                                              f"of at least {PAD_WORDS} words")
        if word_ptr.dtype != np.int64 or word_ptr.shape != self.indptr.shape:
            _refuse(folder, "postings_word_ptr", f"{word_ptr.dtype} {word_ptr.shape}, expected "
                                                 f"int64 {self.indptr.shape}")
        _check_offsets(folder, "postings_word_ptr", np.asarray(word_ptr),
                       len(words) - PAD_WORDS)


def _check_offsets(folder: Path, name: str, bounds: np.ndarray, total: int) -> None:
    """Refuse per-segment list offsets that do not run from 0 to `total`, segment after
    segment, never decreasing."""
    if (bounds[0, 0] != 0 or bounds[-1, -1] != total
            or np.any(bounds[1:, 0] != bounds[:-1, -1]) or np.any(np.diff(bounds) < 0)):
        _refuse(folder, name, f"offsets not increasing from 0 to {total}")


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of an index array. numba compiles a kernel once per signature, and a
    writable array is another type than a read-only (memory-mapped) one: viewing both alike
    keeps one compiled kernel (tens of seconds of compiling, the first time) for either."""
    view = array.view()
    view.flags.writeable = False
    return view


def _refuse(folder: Path, name: str, why: str) -> None:
    raise IndexFormatError(f"{folder / name}.npy is damaged ({why}); run `tokretrieve "
                           "verify` and rebuild the index")


def _damaged() -> IndexFormatError:
    return IndexFormatError("packed postings are damaged (a chunk decodes past its list or "
                            "segment); run `tokretrieve verify` and rebuild the index")


CODECS: dict[str, type[SegmentedPostings]] = {"raw": Postings, "packed": PackedPostings}


def resolve_codec(codec: str | None, impacts: str) -> str:
    """The codec a build stores: `codec` when given (checked), else packed for uint8 impacts
    (half the raw bytes at about the raw time, README Speed) and raw for float32 weights
    (which the packed codec cannot hold)."""
    if codec is None:
        return "packed" if impacts == "uint8" else "raw"
    check_codec(codec, impacts)
    return codec


def check_codec(codec: str, impacts: str) -> None:
    """Refuse a codec the format does not know, or one that cannot hold the impact type
    (before any encoding)."""
    if codec not in CODECS:
        raise TokretrieveError(f"unknown postings codec {codec!r}: choose one of "
                               f"{', '.join(CODECS)}")
    if codec == "packed" and impacts != "uint8":
        raise TokretrieveError(f"packed postings hold uint8 impacts, not {impacts}: build "
                               "with uint8 impacts or the raw codec")


def encoded(postings: SegmentedPostings, codec: str) -> SegmentedPostings:
    """`postings` stored in `codec`: themselves when they already are, packed when raw
    (postings are built raw, and packed when written)."""
    if postings.codec == codec:
        return postings
    if isinstance(postings, Postings) and codec == "packed":
        return postings.packed()
    raise TokretrieveError(f"{postings.codec} postings cannot be re-encoded as {codec}; "
                           "rebuild them from their bags (to_bags)")


def check_layout(impacts: str, segment_docs: int, codec: str | None = None) -> None:
    """Refuse an impact type, segment size or codec the format cannot hold (before any
    encoding; None: the default codec, see `resolve_codec`)."""
    if impacts not in IMPACT_TYPES:
        raise TokretrieveError(f"unknown impact type '{impacts}': choose one of "
                               f"{', '.join(IMPACT_TYPES)}")
    if (isinstance(segment_docs, bool) or not isinstance(segment_docs, int | np.integer)
            or not 1 <= segment_docs <= MAX_SEGMENT_DOCS):
        raise TokretrieveError(f"segment_docs must be an integer in [1, {MAX_SEGMENT_DOCS}], "
                               f"got {segment_docs!r}")
    resolve_codec(codec, impacts)


def postings_from_bags(bags: sp.csr_matrix, impacts: ImpactType = "uint8",
                       segment_docs: int = MAX_SEGMENT_DOCS,
                       scale: float | None = None) -> Postings:
    """Doc-major bags (docs x vocab, positive weights) to segmented token-major postings.

    uint8 impacts: the scale is the smallest power of two that maps the largest weight to at
    most 255, or the `scale` given (an index's own, so that documents added later share its
    levels; weights above 255 x scale then stay at 255, see `saturated`); weights that round
    to level 0 are dropped (they would add nothing to any score).
    """
    check_layout(impacts, segment_docs)
    bags = sp.csr_matrix(bags)
    n_docs, vocab = bags.shape
    if impacts == "uint8" and scale is None:
        scale = quantization_scale(float(bags.data.max()) if bags.nnz else 0.0)
    scale = 1.0 if impacts == "float32" else scale
    n_segments = max(-(-n_docs // segment_docs), 1)
    indptr = np.zeros((n_segments, vocab + 1), dtype=np.int64)
    docs = np.empty(bags.nnz, dtype=np.uint16)
    values = np.empty(bags.nnz, dtype=np.dtype(impacts))
    filled = 0
    for segment in range(n_segments):
        starts, offsets, levels = block_postings(
            bags[segment * segment_docs:(segment + 1) * segment_docs], impacts, scale)
        end = filled + len(offsets)
        indptr[segment] = filled + starts
        docs[filled:end] = offsets
        values[filled:end] = levels
        filled = end
    return Postings(indptr, docs[:filled], values[:filled], scale, n_docs, segment_docs)


def block_postings(bags: sp.csr_matrix, impacts: ImpactType, scale: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block's postings from its documents' bags (at most `segment_docs` rows): each
    token's list start (int64, vocab + 1), the uint16 document offsets, and the impacts
    (uint8 levels at `scale`, zero levels dropped; or float32 weights)."""
    data = np.asarray(bags.data, dtype=np.float32)
    if impacts == "uint8":
        levels = np.rint(np.minimum(data / np.float32(scale), 255)).astype(np.uint8)
    else:
        levels = data
    block = _drop_zero_levels(sp.csr_matrix(bags), levels).tocsc()
    block.sort_indices()
    return block.indptr.astype(np.int64), block.indices.astype(np.uint16), block.data


class PostingsWriter:
    """Postings written to a folder as they come, one block of `segment_docs` documents at a
    time, in bounded memory: the bags of at most one block are held, each block's postings
    go straight to the end of their .npy files, and only the (blocks x vocab + 1) list
    offsets stay in memory until `finish`. For collections whose bags do not fit in memory at
    once (a uint8 index of 10 M documents of 512 tokens has 15 GB of raw postings). The
    arrays are the ones `postings_from_bags` gives for the same bags (`.packed()` of them for
    the packed codec: each block is packed on its own, as the packer does), in the same .npy
    files an index segment holds (the headers, whose shapes are known only at the end, have a
    fixed size and are written last).

    `codec`: as `build_index`'s (None: packed for uint8 impacts, raw for float32 weights).
    uint8 impacts need their `scale` up front (a stream has no maximum to take it from).
    The folder is created if missing; files of an earlier writer in it are overwritten.
    """

    HEADER_BYTES = 128  # a multiple of 64, as numpy aligns its own headers

    def __init__(self, folder: str | Path, vocab_size: int, impacts: ImpactType = "uint8",
                 segment_docs: int = MAX_SEGMENT_DOCS, scale: float | None = None,
                 codec: str | None = None):
        check_layout(impacts, segment_docs, codec)
        if impacts == "uint8" and not (scale and scale > 0 and math.log2(scale).is_integer()):
            raise TokretrieveError(f"uint8 impacts need a power-of-two scale, got {scale!r} "
                                   "(quantization_scale gives one from the largest weight)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.vocab_size, self.impacts, self.segment_docs = vocab_size, impacts, segment_docs
        self.codec = resolve_codec(codec, impacts)
        self.scale = 1.0 if impacts == "float32" else float(scale)
        self.n_docs = 0
        # Per block: each list's first posting, and (packed) its first word.
        self._starts: list[np.ndarray] = []
        self._word_starts: list[np.ndarray] = []
        self._pending: list[sp.csr_matrix] = []
        self._pending_docs = 0
        streamed = [name for name in CODECS[self.codec].FILES if name not in _OFFSET_FILES]
        self._files = {name: (self.folder / f"postings_{name}.npy").open("wb")
                       for name in streamed}
        self._written = 0  # postings so far
        self._words = 0    # packed words so far (before the final padding)
        for handle in self._files.values():
            handle.write(bytes(self.HEADER_BYTES))

    def add(self, bags: sp.csr_matrix) -> None:
        """Append the bags of the next documents (any number of rows, `vocab_size` columns)."""
        bags = sp.csr_matrix(bags)
        if bags.shape[1] != self.vocab_size:
            raise TokretrieveError(f"bags of {bags.shape[1]} tokens for postings of "
                                   f"{self.vocab_size}")
        self._pending.append(bags)
        self._pending_docs += bags.shape[0]
        self.n_docs += bags.shape[0]
        if self._pending_docs < self.segment_docs:
            return
        held = sp.vstack(self._pending, format="csr")
        start = 0
        while held.shape[0] - start >= self.segment_docs:
            self._write_block(held[start:start + self.segment_docs])
            start += self.segment_docs
        self._pending, self._pending_docs = [held[start:]], held.shape[0] - start

    def finish(self) -> SegmentedPostings:
        """Write the last (partial) block, the padding words (packed), the list offsets and
        the headers; fsync the files and return the postings memory-mapped from them."""
        if self._pending_docs or not self._starts:
            empty = sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
            self._write_block(sp.vstack([empty, *self._pending], format="csr"))
        self._pending = []
        lengths = {"docs": (np.uint16, self._written), "impacts": (self.impacts, self._written),
                   "words": (np.uint32, self._words + PAD_WORDS)}
        if "words" in self._files:
            self._files["words"].write(bytes(4 * PAD_WORDS))
        for name, handle in self._files.items():
            dtype, length = lengths[name]
            handle.seek(0)
            handle.write(_npy_header(np.dtype(dtype), length, self.HEADER_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        offsets = {"indptr": self._starts, "word_ptr": self._word_starts}
        for name in CODECS[self.codec].FILES:
            if name in _OFFSET_FILES:
                save_array(self.folder, f"postings_{name}", np.vstack(offsets[name]))
                fsync_tree(self.folder / f"postings_{name}.npy")
        return CODECS[self.codec].open(self.folder, self.n_docs, self.vocab_size, self.impacts,
                                       self.scale, self.segment_docs)

    def _write_block(self, bags: sp.csr_matrix) -> None:
        starts, offsets, levels = block_postings(bags, self.impacts, self.scale)
        self._starts.append(self._written + starts)
        self._written += len(offsets)
        if self.codec == "packed":
            word_ptr, words = pack(starts[None, :], offsets, levels)
            self._word_starts.append(self._words + word_ptr[0])
            self._files["words"].write(words[:len(words) - PAD_WORDS].tobytes())
            self._words += len(words) - PAD_WORDS
            return
        for name, values in (("docs", offsets), ("impacts", levels)):
            self._files[name].write(np.ascontiguousarray(values).tobytes())


def _npy_header(dtype: np.dtype, length: int, size: int) -> bytes:
    """A .npy version 1.0 header of exactly `size` bytes for a 1-d array (space-padded, as
    numpy pads its own)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": (length,)})
    body = size - 10  # magic (6), version (2), header length (2)
    return (b"\x93NUMPY\x01\x00" + body.to_bytes(2, "little")
            + text.ljust(body - 1).encode("latin1") + b"\n")


def quantization_scale(top: float, levels: int = 255) -> float:
    """The smallest power of two that maps the weight `top` to at most `levels` (1 when
    there is no positive weight): weights / scale round to integer levels, the largest in
    (levels / 2, levels]."""
    return 2.0 ** math.ceil(math.log2(top / levels)) if top > 0 else 1.0


def saturated(bags: sp.csr_matrix, scale: float, impacts: str) -> int:
    """How many weights of `bags` exceed what uint8 impacts at `scale` can hold (they are
    stored as 255): documents added to an index outside the range of those it was built on."""
    if impacts != "uint8":
        return 0
    return int(np.count_nonzero(np.asarray(bags.data, dtype=np.float32)
                                / np.float32(scale) > 255.5))


def _drop_zero_levels(bags: sp.csr_matrix, levels: np.ndarray) -> sp.csr_matrix:
    """`bags` with `levels` as data, without the zero levels; the caller's arrays are left
    untouched (scipy's eliminate_zeros would rewrite the shared indices in place)."""
    keep = levels > 0
    if keep.all():
        return sp.csr_matrix((levels, bags.indices, bags.indptr), shape=bags.shape)
    rows = np.repeat(np.arange(bags.shape[0]), np.diff(bags.indptr))
    indptr = np.zeros(bags.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=bags.shape[0]), out=indptr[1:])
    return sp.csr_matrix((levels[keep], bags.indices[keep], indptr), shape=bags.shape)
