"""Changing an index in place: add, delete, update and compact, one commit each.

Each change is one generation (tokretrieve.index.generations) written under the writer lock:
- add: the new documents' bags become a new segment, quantized at the index's own scale (so a
  level means the same weight in every segment) and adjusted with the index's PC1 direction and
  λ, which stay those of the build (`drift` records how far new documents stray from them);
- delete: the positions of the deleted documents go into the generation's deleted set, which
  every search skips; the segments are not rewritten;
- update: delete and add in the same commit;
- compact: the live documents of every segment, in position order, become one segment and the
  deleted set empties, so the index answers as a fresh build of those documents at the same PC1
  direction, λ and scale would; it may also store the lists in another codec (a raw index of
  format 3 becomes a packed one of format 5 without encoding anything again).

Bags come in ready-made: this module knows no model (tokretrieve.build.add_documents encodes).
A commit reopens the index it just wrote without hashing it again: publishing computed those
checksums from the files themselves a moment before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import IndexFormatError, TokretrieveError
from tokretrieve.index.generations import Commit
from tokretrieve.index.postings import check_codec, postings_from_bags
from tokretrieve.index.sparse import Segment, SparseIndex, manifest_json, write_segment


@contextlib.contextmanager
def changing(path) -> Iterator[tuple[Commit, SparseIndex]]:
    """Hold the writer lock on the existing index at `path` and open its committed state."""
    with Commit(path) as commit:
        if commit.current is None:
            raise IndexFormatError(f"{path} holds no index yet: build one with "
                                   "`tokretrieve index` before changing it")
        if commit.current.get("format_version") == 2:
            raise IndexFormatError(f"{path} was written by an earlier tokretrieve (format 2): "
                                   "rebuild it (`tokretrieve index --rebuild`) to change it "
                                   "in place")
        yield commit, SparseIndex.load(path)


def append(commit: Commit, index: SparseIndex, doc_ids: Sequence[str], bags: sp.csr_matrix,
           embeddings: np.ndarray, *, update: bool = False,
           drift: dict | None = None) -> SparseIndex:
    """Commit `doc_ids` with their bags and embeddings as a new segment. An id the index
    already holds is refused unless `update`, which deletes its old version in the commit."""
    ids = np.array(doc_ids, dtype=str)
    present = check_new_ids(index, ids.tolist(), update)
    layout = index.manifest.layout
    postings = postings_from_bags(bags, layout.impacts, int(layout.segment_docs),
                                  scale=float(layout.scale))
    record = replace(write_segment(commit.new_entry("seg"), Segment(
        postings, ids, np.asarray(embeddings, dtype=np.float32)), commit.number, layout.codec),
        drift=drift)
    empty = [str(ids[i]) for i in np.flatnonzero(postings.document_lengths() == 0)]
    manifest = replace(index.manifest, empty_documents=index.manifest.empty_documents + len(empty),
                       empty_document_ids=(index.manifest.empty_document_ids
                                           + tuple(empty))[:100])
    gone = [index.position(d) for d in present]
    return _commit(commit, index, manifest, [*index.manifest.contents.segments, record], gone)


def check_new_ids(index: SparseIndex, doc_ids: Sequence[str], update: bool) -> list[str]:
    """The ids among `doc_ids` the index already holds, refused unless `update` (checked before
    any encoding); `doc_ids` must be non-empty and distinct."""
    if len(doc_ids) == 0:
        raise TokretrieveError("no documents to add")
    if len(set(doc_ids)) != len(doc_ids):
        raise TokretrieveError("the documents to add repeat an id: each id may be added once")
    present = [d for d in doc_ids if _has(index, d)]
    if present and not update:
        shown = ", ".join(repr(d) for d in present[:5]) + (" ..." if len(present) > 5 else "")
        raise TokretrieveError(f"{len(present)} document(s) to add are already in "
                               f"{index.path}: {shown}; add with update=True (--update) to "
                               "replace them")
    return present


def delete(commit: Commit, index: SparseIndex, doc_ids: Sequence[str]) -> SparseIndex:
    """Commit the deletion of `doc_ids`; an id the index does not hold is refused, naming it."""
    unknown = [d for d in doc_ids if not _has(index, d)]
    if unknown:
        shown = ", ".join(repr(d) for d in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise TokretrieveError(f"{len(unknown)} id(s) to delete are not in {index.path}: "
                               f"{shown}")
    if not doc_ids:
        raise TokretrieveError("no document ids to delete")
    return _commit(commit, index, index.manifest, list(index.manifest.contents.segments),
                   [index.position(d) for d in doc_ids])


def compact(commit: Commit, index: SparseIndex, codec: str | None = None) -> SparseIndex:
    """Commit the live documents, in position order, as one segment with no deletions, its
    lists in `codec` (None: the index's own)."""
    live = np.flatnonzero(~index.deleted_mask)
    if len(live) == 0:
        raise TokretrieveError(f"every document of {index.path} is deleted: build a new index "
                               "instead of compacting an empty one")
    layout = index.manifest.layout
    if codec is not None:
        check_codec(codec, layout.impacts)
        layout = replace(layout, codec=codec)
    bags = sp.vstack([s.postings.to_bags() for s in index.segments]).tocsr()[live]
    postings = postings_from_bags(bags, layout.impacts, int(layout.segment_docs),
                                  scale=float(layout.scale))
    embeddings = np.asarray(index.embeddings)
    segment = Segment(postings, np.asarray(index.doc_ids)[live],
                      embeddings[live] if len(embeddings) else embeddings)
    record = write_segment(commit.new_entry("seg"), segment, commit.number, layout.codec)
    empty = [str(segment.doc_ids[i]) for i in np.flatnonzero(postings.document_lengths() == 0)]
    manifest = replace(index.manifest, layout=layout, empty_documents=len(empty),
                       empty_document_ids=tuple(empty[:100]))
    data = manifest_json(manifest, index.manifest.contents.base, [record])
    commit.publish(data)
    return SparseIndex.load(commit.path, verify=False)


def delete_documents(path, doc_ids: Sequence[str]) -> SparseIndex:
    """Delete documents from the index at `path` (one commit); returns the index after it."""
    with changing(path) as (commit, index):
        return delete(commit, index, list(doc_ids))


def compact_index(path, codec: str | None = None) -> SparseIndex:
    """Merge the segments of the index at `path` and drop its deleted documents; `codec`
    ("raw" or "packed"; None: the index's own) re-encodes the lists on the way."""
    with changing(path) as (commit, index):
        return compact(commit, index, codec)


def _has(index: SparseIndex, doc_id: str) -> bool:
    try:
        index.position(doc_id)
    except TokretrieveError:
        return False
    return True


def _commit(commit: Commit, index: SparseIndex, manifest, segments: list,
            newly_deleted: list[int]) -> SparseIndex:
    """Publish `segments` with the index's deleted positions plus `newly_deleted`."""
    deleted = np.union1d(index.deleted, np.asarray(newly_deleted, dtype=np.int64))
    name = None
    if len(deleted):
        file = commit.new_file("deleted")
        np.save(file, deleted.astype(np.int64), allow_pickle=False)
        name = file.name
    commit.publish(manifest_json(replace(manifest, documents_digest=None),
                                 index.manifest.contents.base, segments, name, len(deleted)))
    return SparseIndex.load(commit.path, verify=False)
