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

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import IndexFormatError, TokretrieveError, check_count
from tokretrieve.index.generations import Commit
from tokretrieve.index.kernels import Scratch
from tokretrieve.index.manifest import (
    FORMAT_VERSION,
    Contents,
    IndexManifest,
    PostingsLayout,
    SegmentRecord,
)
from tokretrieve.index.postings import CODECS, SegmentedPostings, encoded
from tokretrieve.index.storage import (
    MANIFEST,
    file_digest,
    folder_bytes,
    load_array,
    save_array,
    tree_files,
)

# Scores of the rows a search could not fill (fewer than k documents share a token with the
# query); their ids are -1. FAISS pads the same way.
NO_SCORE = -np.inf
# Indexes up to this many bytes have every file's checksum verified when opened.
VERIFY_BYTES = 256 << 20
# A load that loses the race with this many commits in a row gives up.
_RACE_RETRIES = 8


def check_threads(threads: int | None) -> int:
    """The kernel's thread count: numba's current setting when None."""
    if threads is None:
        return numba.get_num_threads()
    return min(check_count(threads, "threads"), numba.config.NUMBA_NUM_THREADS)


@dataclass
class Segment:
    """One segment's arrays: postings over its documents, their ids and embeddings, and the
    index position of its first document."""

    postings: SegmentedPostings
    doc_ids: np.ndarray
    embeddings: np.ndarray
    start: int = 0

    def __len__(self) -> int:
        return self.postings.n_docs


class SparseIndex:
    """Key-token postings with their document ids, searched exactly by the compiled kernel.

    An index is one or more segments (one per build, add or compaction), their documents at
    consecutive positions, and a set of deleted positions that no search returns.
    """

    def __init__(self, manifest: IndexManifest, segments: list[Segment],
                 pc1_direction: np.ndarray, token_map: np.ndarray | None = None,
                 deleted: np.ndarray | None = None, path: Path | None = None,
                 literal_idf: np.ndarray | None = None):
        self.manifest = manifest
        self.segments = segments
        start = 0
        for segment in segments:
            segment.start = start
            start += len(segment)
        self.positions = start
        self.pc1_direction = pc1_direction
        self.token_map = token_map
        # the build's frozen literal idf per token (tokretrieve.encoding.literal), when the
        # bags carry literal weights
        self.literal_idf = literal_idf
        self.deleted = np.zeros(0, dtype=np.int64) if deleted is None else deleted
        self.path = path
        self._idf: np.ndarray | None = None
        self._positions: dict[str, int] | None = None
        self._doc_ids: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._scratch = Scratch()

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, verify: bool | None = None
             ) -> SparseIndex:
        """Open the committed generation of an index folder, memory-mapped by default.

        Every load checks what the kernel relies on (shapes, dtypes, offsets in range, finite
        PC1) and so names a damaged file instead of crashing or answering wrongly; `verify`
        also checks every file's sha256 (None: when the index is at most 256 MiB, True:
        always, False: never). A load that races a writer's commit opens the newer
        generation; a reader never mixes two.
        """
        path = Path(path)
        for _ in range(_RACE_RETRIES):
            manifest = IndexManifest.read(path)
            try:
                return _open(cls, path, manifest, mmap, verify)
            except FileNotFoundError as missing:
                if IndexManifest.read(path).contents.generation == manifest.contents.generation:
                    raise IndexFormatError(
                        f"{missing.filename} is missing: the index is damaged; run "
                        "`tokretrieve verify` and rebuild it") from None
        raise IndexFormatError(f"{path} changed {_RACE_RETRIES} times while it was opened; "
                               "open it again")

    def write(self, path: str | Path,
              attachments: Mapping[str, Callable[[Path], object]] | None = None) -> SparseIndex:
        """Commit this (in-memory) index to `path` as a new generation replacing whatever
        the folder held (tokretrieve.index.generations) and open it there.

        `attachments` are entries the segments share, written into the generation's base
        folder by their own writers (the build step saves the tokenizer as `tokenizer/` this
        way, for model-free tokenized queries).
        """
        with Commit(path) as commit:
            write_build(commit, self, attachments)
        return SparseIndex.load(path, verify=False)

    # ------------------------------------------------------------------------------ facts
    def __len__(self) -> int:
        """Live documents (deleted ones are not counted)."""
        return self.positions - len(self.deleted)

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def postings(self) -> SegmentedPostings:
        """The postings of a one-segment index (a fresh build or a compaction)."""
        if len(self.segments) != 1:
            raise TokretrieveError(f"this index has {len(self.segments)} segments: compact it "
                                   "to one (`tokretrieve compact`) to read its postings whole")
        return self.segments[0].postings

    @property
    def doc_ids(self) -> np.ndarray:
        """Document ids by position, deleted positions included (`search` never returns
        those). One segment's array is its memory map; several are joined once."""
        if self._doc_ids is None:
            self._doc_ids = (self.segments[0].doc_ids if len(self.segments) == 1 else
                             np.concatenate([np.asarray(s.doc_ids) for s in self.segments]))
        return self._doc_ids

    @property
    def embeddings(self) -> np.ndarray:
        """The dense embeddings by position (joined on each call where there are several
        segments: the dense index copies them once); (0 x hidden) for an index whose bags
        came without embeddings (synthetic or brought from elsewhere: no dense side)."""
        if len(self.segments) == 1:
            return self.segments[0].embeddings
        if any(len(s.embeddings) != len(s) for s in self.segments):
            return np.zeros((0, self.manifest.model.hidden_size), dtype=np.float32)
        return np.concatenate([np.asarray(s.embeddings) for s in self.segments])

    @property
    def bytes_on_disk(self) -> int:
        """Bytes of the files of the committed generation (0 for an index not on disk)."""
        if self.path is None:
            return 0
        files = self.manifest.contents.files
        return (_committed_bytes(self.path, self.manifest.contents) if files
                else folder_bytes(self.path))  # format 2: the folder is the index

    @property
    def deleted_mask(self) -> np.ndarray:
        """A bool per position: True where the document was deleted."""
        if self._mask is None:
            self._mask = np.zeros(self.positions, dtype=np.bool_)
            self._mask[self.deleted] = True
        return self._mask

    @property
    def idf(self) -> np.ndarray:
        """BM25's idf of each token over the live documents' bags (0 for tokens in none):
        a deleted document no longer counts, so scores equal those of a fresh build of the
        live documents."""
        if self._idf is None:
            mask = self.deleted_mask if len(self.deleted) else None
            df = sum(s.postings.document_frequency(
                None if mask is None else mask[s.start:s.start + len(s)])
                for s in self.segments).astype(np.float64)
            n = float(len(self))
            self._idf = np.where(df > 0, np.log1p((n - df + 0.5) / (df + 0.5)), 0.0)
        return self._idf

    def position(self, doc_id: str) -> int:
        """The position of a live document id (what `search` returns as ids)."""
        if self._positions is None:
            mask = self.deleted_mask
            self._positions = {str(d): i for i, d in enumerate(np.asarray(self.doc_ids))
                               if not mask[i]}
        try:
            return self._positions[doc_id]
        except KeyError:
            where = self.path or "this index"
            raise TokretrieveError(f"document id {doc_id!r} is not in {where}") from None

    def segment_of(self, position: int) -> tuple[Segment, int]:
        """The segment holding `position`, and the position within it."""
        starts = [s.start for s in self.segments]
        segment = self.segments[int(np.searchsorted(starts, position, side="right")) - 1]
        return segment, int(position) - segment.start

    def document_bag(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored bag of the document at `position`: token ids and weights, heaviest first."""
        segment, local = self.segment_of(position)
        tokens, weights = segment.postings.document(local)
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
        query = (bags.indptr.astype(np.int64), bags.indices.astype(np.int64),
                 bags.data.astype(np.float32))
        found_sums, found_ids = [], []
        for segment in self.segments:
            deleted = (self.deleted_mask[segment.start:segment.start + len(segment)]
                       if len(self.deleted) else None)
            docs, sums, counts = segment.postings.top_k(*query, k, self._scratch, n_threads,
                                                        deleted)
            valid = np.arange(docs.shape[1])[None, :] < counts[:, None]
            found_sums.append(np.where(valid, sums, NO_SCORE))
            found_ids.append(np.where(valid, docs + segment.start, -1))
        sums, ids = found_sums[0], found_ids[0]
        if len(self.segments) > 1:  # merged on the sums before the scale, which they share
            sums, ids = _merge(np.hstack(found_sums), np.hstack(found_ids), k)
        scores = np.full((len(sums), k), NO_SCORE, dtype=np.float32)
        out_ids = np.full((len(sums), k), -1, dtype=np.int64)
        scores[:, :sums.shape[1]] = sums * np.float32(self.manifest.layout.scale)
        out_ids[:, :ids.shape[1]] = ids
        return scores, out_ids

    def contributions(self, token_ids: np.ndarray, weights: np.ndarray,
                      positions: np.ndarray) -> np.ndarray:
        """(documents x query tokens) float32: each query token's share of each document's score
        (query weight x stored weight, 0 where the document lacks the token); each row sums to
        the score `search` gave. Explanations are built from this."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        impacts = np.zeros((len(positions), len(token_ids)), dtype=np.float32)
        for segment in self.segments:
            rows = np.flatnonzero((positions >= segment.start)
                                  & (positions < segment.start + len(segment)))
            impacts[rows] = segment.postings.impacts_of(token_ids, positions[rows] - segment.start)
        # the kernel's products, then the exact power-of-two scale (every segment shares it)
        return (np.asarray(weights, dtype=np.float32)[None, :] * impacts
                * np.float32(self.manifest.layout.scale))

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


def _merge(sums: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of candidates from several segments, by sum then lower
    position (the order one segment's kernel uses); padding (-1 / NO_SCORE) sorts last."""
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -sums), axis=1)[:, :k]
    return np.take_along_axis(sums, order, axis=1), np.take_along_axis(ids, order, axis=1)


def write_build(commit: Commit, index: SparseIndex,
                attachments: Mapping[str, Callable[[Path], object]] | None = None) -> None:
    """Publish `index` whole as the commit's generation: a new base entry and segments; the
    previous generation's entries are dropped by the commit after this one."""
    base = commit.new_entry("base")
    save_array(base, "pc1_direction", index.pc1_direction)
    if index.token_map is not None:
        save_array(base, "token_map", index.token_map)
    if index.literal_idf is not None:
        save_array(base, "literal_idf", index.literal_idf)
    for name, writer in (attachments or {}).items():
        writer(base / name)
    records = [write_segment(commit.new_entry("seg"), segment, commit.number,
                             index.manifest.layout.codec) for segment in index.segments]
    commit.publish(manifest_json(index.manifest, base.name, records))


def manifest_json(manifest: IndexManifest, base: str, segments: list[SegmentRecord],
                  deleted: str | None = None, deleted_count: int = 0) -> dict:
    """The manifest object of an index stored as `segments`, with shared entries in `base`
    and `deleted_count` positions listed in the file `deleted` (the commit adds the
    generation number and the checksums)."""
    contents = Contents(generation=0, base=base, segments=tuple(segments), deleted=deleted,
                        deleted_count=deleted_count)
    return replace(manifest, contents=contents,
                   doc_count=sum(s.documents for s in segments) - deleted_count,
                   postings=sum(s.postings for s in segments),
                   format_version=FORMAT_VERSION).to_json()


def write_segment(folder: Path, segment: Segment, generation: int,
                  codec: str) -> SegmentRecord:
    """Write one segment's arrays into its (new) folder, the postings in `codec` (packed
    here when they are raw); returns its manifest record."""
    save_array(folder, "doc_ids", segment.doc_ids)
    for name, array in encoded(segment.postings, codec).arrays().items():
        save_array(folder, f"postings_{name}", array)
    save_array(folder, "embeddings", segment.embeddings)
    return SegmentRecord(name=folder.name, documents=len(segment),
                         postings=segment.postings.n_postings, generation=generation)


def in_memory(manifest: IndexManifest, postings: SegmentedPostings, doc_ids: np.ndarray,
              embeddings: np.ndarray, pc1_direction: np.ndarray,
              token_map: np.ndarray | None,
              literal_idf: np.ndarray | None = None) -> SparseIndex:
    """An index not (yet) on disk, one segment, its manifest completed with the postings'
    own counts and layout (a document whose every weight rounded to level 0 counts as
    empty)."""
    empty = [str(doc_ids[i]) for i in np.flatnonzero(postings.document_lengths() == 0)]
    manifest = replace(manifest, doc_count=len(doc_ids), postings=postings.n_postings,
                       empty_documents=len(empty), empty_document_ids=tuple(empty[:100]),
                       layout=PostingsLayout(segment_docs=postings.segment_docs,
                                             impacts=postings.impact_type,
                                             scale=postings.scale,
                                             codec=manifest.layout.codec))
    return SparseIndex(manifest, [Segment(postings, doc_ids, embeddings)], pc1_direction,
                       token_map, literal_idf=literal_idf)


def _open(cls: type[SparseIndex], path: Path, manifest: IndexManifest, mmap: bool,
          verify: bool | None) -> SparseIndex:
    """Open the generation `manifest` commits, checking every array (see SparseIndex.load)."""
    contents = manifest.contents
    for name in contents.files:  # gone: damage, or a writer's clean-up that load retries after
        if not (path / name).is_file():
            raise FileNotFoundError(errno.ENOENT, "missing", str(path / name))
    if verify or (verify is None and _committed_bytes(path, contents) <= VERIFY_BYTES):
        problems = checksum_problems(path, contents)
        if problems:
            raise IndexFormatError(f"{problems[0]}; run `tokretrieve verify --index {path}` "
                                   "for every problem, and rebuild the index")
    hidden = manifest.model.hidden_size
    base = path / contents.base
    direction = load_array(base / "pc1_direction.npy", mmap=False)
    if direction.shape != (hidden,) or not np.all(np.isfinite(direction)):
        raise IndexFormatError(f"{base / 'pc1_direction.npy'} is damaged (shape "
                               f"{direction.shape} or values not finite; expected {hidden} "
                               "finite numbers); rebuild the index")
    token_map = None
    if manifest.bags.merge_variants:
        token_map = load_array(base / "token_map.npy", mmap=False)
        if (token_map.shape != (manifest.vocab_size,) or token_map.dtype.kind not in "iu"
                or token_map.min() < 0 or token_map.max() >= manifest.vocab_size):
            raise IndexFormatError(f"{base / 'token_map.npy'} is damaged; rebuild the index")
    literal_idf = None
    if manifest.bags.literal is not None:
        literal_idf = load_array(base / "literal_idf.npy", mmap=False)
        if (literal_idf.shape != (manifest.vocab_size,) or literal_idf.dtype != np.float32
                or not np.all(np.isfinite(literal_idf)) or literal_idf.min() < 0):
            raise IndexFormatError(f"{base / 'literal_idf.npy'} is damaged; rebuild the index")
    segments = [_open_segment(path / record.name, record, manifest, mmap)
                for record in contents.segments]
    deleted = None
    if contents.deleted:
        deleted = load_array(path / contents.deleted, mmap=False)
        if (deleted.dtype != np.int64 or deleted.ndim != 1
                or len(deleted) != contents.deleted_count
                or np.any(np.diff(deleted) <= 0) or (len(deleted) and (
                    deleted[0] < 0 or deleted[-1] >= contents.positions))):
            raise IndexFormatError(f"{path / contents.deleted} is damaged; rebuild the index")
    return cls(manifest, segments, direction, token_map, deleted, path, literal_idf)


def _open_segment(folder: Path, record: SegmentRecord, manifest: IndexManifest,
                  mmap: bool) -> Segment:
    layout = manifest.layout
    postings = CODECS[layout.codec].open(folder, record.documents, manifest.vocab_size,
                                         layout.impacts, float(layout.scale),
                                         int(layout.segment_docs), mmap)
    doc_ids = load_array(folder / "doc_ids.npy", mmap)
    if doc_ids.dtype.kind != "U" or doc_ids.shape != (record.documents,):
        raise IndexFormatError(f"{folder / 'doc_ids.npy'} is damaged ({doc_ids.dtype} "
                               f"{doc_ids.shape}, expected {record.documents} strings); "
                               "rebuild the index")
    embeddings = load_array(folder / "embeddings.npy", mmap)
    expected = (record.documents, manifest.model.hidden_size)
    if embeddings.dtype != np.float32 or embeddings.shape not in (expected,
                                                                  (0, expected[1])):
        raise IndexFormatError(f"{folder / 'embeddings.npy'} is damaged ({embeddings.dtype} "
                               f"{embeddings.shape}, expected float32 {expected}); rebuild "
                               "the index")
    return Segment(postings, doc_ids, embeddings)


def _committed_bytes(path: Path, contents: Contents) -> int:
    return sum((path / name).stat().st_size for name in contents.files
               if (path / name).is_file())


def verify_index(path: str | Path) -> list[str]:
    """Every problem of the index at `path`, as lines naming the file: each file's sha256
    against the manifest's, then what opening it checks (shapes, dtypes, ranges). Empty when
    the index is whole. Reads every byte: for large indexes this is the slow, full check that
    `SparseIndex.load` does only up to VERIFY_BYTES."""
    path = Path(path)
    try:
        manifest = IndexManifest.read(path)
    except IndexFormatError as error:
        if not (path / MANIFEST).is_file():
            raise  # no index here at all: nothing to list problems of
        return [str(error)]
    problems = checksum_problems(path, manifest.contents)
    if not problems:
        try:
            SparseIndex.load(path, verify=False)
        except (IndexFormatError, FileNotFoundError) as error:
            problems.append(str(error))
    return problems


def checksum_problems(path: Path, contents: Contents) -> list[str]:
    """Every file of the generation whose sha256 is not the manifest's, that is gone, or
    that has no checksum at all (format 3: a manifest that lost its checksums is damage)."""
    problems = []
    if contents.generation > 0:
        entries = [contents.base, *(s.name for s in contents.segments), contents.deleted]
        for name in sorted(tree_files(path, [e for e in entries if e]) - set(contents.files)):
            problems.append(f"{path / name} has no checksum in {MANIFEST} (damaged)")
    for name, digest in sorted(contents.files.items()):
        file = path / name
        if not file.is_file():
            problems.append(f"{file} is missing")
        elif file_digest(file) != digest:
            problems.append(f"{file} does not match its checksum (damaged)")
    return problems
