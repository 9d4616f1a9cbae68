"""Generations: how an index folder changes without a reader ever seeing half a change.

An index folder holds immutable entries, each written by one generation and named after it, and
one `manifest.json` naming the entries of the current generation with every file's sha256:

    manifest.json        the commit point: generation N, its segments, deletions, checksums
    base-000001/         files the segments share: PC1 direction, variant map, tokenizer/
    seg-000001/          a segment: doc_ids, postings_indptr/docs/impacts, embeddings
    seg-000004/          ... one more per `add`; a compaction writes one for all
    deleted-000005.npy   the deleted document positions of generation 5
    writer.lock          held by the one process writing (tokretrieve.index.storage)

A commit (build, add, delete, compact) takes the lock, writes its new entries under names of
generation N + 1, fsyncs them, then replaces `manifest.json` by one rename: that rename is the
commit. A crash before it leaves generation N as it was (the next writer removes the orphaned
entries); after it, N + 1 is whole. Entries of N are kept until the commit after, so a reader
that read manifest N just before the rename still finds its files; one that loses that race
rereads the manifest (SparseIndex.load). Only entries in tokretrieve's own namespace are ever
removed: files a user put in an index folder stay where they are.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from tokretrieve.errors import IndexFormatError
from tokretrieve.index.manifest import FORMAT, LEGACY_ENTRIES
from tokretrieve.index.storage import (
    LOCK,
    MANIFEST,
    fsync_dir,
    fsync_tree,
    read_json,
    tree_digests,
    write_json_durably,
    writer_lock,
)

# Entries a generation may own; anything else in an index folder is the user's.
_OWNED = re.compile(r"(base|seg)-\d{6}|deleted-\d{6}\.npy")
_NUMBERED = re.compile(r"(?:base|seg|deleted)-(\d{6})(?:\.npy)?")
CHECKPOINT = ".encoding"  # resumable encoding of the build in progress (encoding.checkpoint)


def owned(name: str) -> bool:
    return bool(_OWNED.fullmatch(name)) or name in LEGACY_ENTRIES


def index_manifest_json(path: Path) -> dict | None:
    """The manifest object of the tokretrieve index at `path`; None where there is none yet
    (no folder, an empty one, or one holding only an interrupted first build's entries).

    Anything else is refused: a folder with other files and no manifest, or a manifest that is
    not a tokretrieve one, belongs to someone else and is never written into.
    """
    if not path.exists():
        return None
    if not path.is_dir():
        raise IndexFormatError(f"{path} exists and is not a folder: choose another path for "
                               "the index")
    file = path / MANIFEST
    if file.is_file():
        try:
            data = read_json(file)
        except IndexFormatError:
            raise IndexFormatError(f"refusing to write an index into {path}: its {MANIFEST} is "
                                   "not valid JSON, so it cannot be told from someone else's "
                                   "files; if it was a tokretrieve index, remove the folder"
                                   ) from None
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return data
        raise IndexFormatError(f"refusing to write an index into {path}: its {MANIFEST} is "
                               "not a tokretrieve manifest; choose another path")
    foreign = sorted(p.name for p in path.iterdir()
                     if not (owned(p.name) or p.name in (LOCK, CHECKPOINT)
                             or p.name.startswith(f".{MANIFEST}.")))
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise IndexFormatError(f"refusing to write an index into {path}: it holds files that "
                               f"are not an index ({shown}); choose another path")
    return None


class Commit:
    """One commit to the index at `path`, as a context manager holding the writer lock.

    Inside it, `current` is the manifest object of the committed generation (None for a new
    index) and `new_entry(kind)` gives a fresh folder for generation `number`; `publish(data)`
    commits a manifest object whose contents (its top-level generation keys) name the entries.
    Leaving without publishing, or by an exception, removes what this commit wrote.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = None
        self._written: list[Path] = []
        self.current: dict | None = None
        self.number = 0

    def __enter__(self) -> Commit:
        index_manifest_json(self.path)  # refuse a foreign folder before creating anything
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = writer_lock(self.path)
        self._lock.__enter__()
        try:
            self.current = index_manifest_json(self.path)  # reread under the lock
            self.number = _committed_number(self.current, self.path) + 1
            self._remove_unreferenced(keep=self._referenced(self.current))
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            for entry in self._written:
                _remove(entry)
        finally:
            self._lock.__exit__(kind, error, trace)

    def new_entry(self, kind: str) -> Path:
        """A new empty folder `kind-NNNNNN` (kind: base or seg) of this generation."""
        entry = self.path / f"{kind}-{self.number:06d}"
        _remove(entry)
        entry.mkdir()
        self._written.append(entry)
        return entry

    def new_file(self, stem: str) -> Path:
        """A new file name `stem-NNNNNN.npy` of this generation (written by the caller)."""
        file = self.path / f"{stem}-{self.number:06d}.npy"
        self._written.append(file)
        return file

    def publish(self, data: dict) -> dict:
        """Checksum and fsync the entries `data` names, then commit it as manifest.json.

        Checksums of entries kept from the current generation are carried over (a format-2
        index, which has none, gets them computed now); then entries neither this generation
        nor the previous one names are removed.
        """
        previous = self._checksums(self.current)
        names = _entries_of(data)
        files = {}
        for name in sorted(names):
            known = {f: d for f, d in previous.items() if f.split("/")[0] == name}
            entry = self.path / name
            if self.path / name in self._written or not known:
                fsync_tree(entry)
                known = tree_digests(self.path, name)
            files.update(known)
        data = {**data, "generation": self.number, "files": files}
        fsync_dir(self.path)
        write_json_durably(self.path / MANIFEST, data)
        self._written.clear()
        self._remove_unreferenced(keep=names | self._referenced(self.current))
        self.current = data
        return data

    def _checksums(self, data: dict | None) -> dict[str, str]:
        files = data.get("files") if data else None
        return dict(files) if isinstance(files, dict) else {}

    def _referenced(self, data: dict | None) -> set[str]:
        return _entries_of(data) if data else set()

    def _remove_unreferenced(self, keep: set[str]) -> None:
        for entry in self.path.iterdir():
            if owned(entry.name) and entry.name not in keep:
                _remove(entry)
            elif entry.name.startswith(f".{MANIFEST}.") and entry.name.endswith(".partial"):
                entry.unlink(missing_ok=True)


def _entries_of(data: dict) -> set[str]:
    """The top-level entries a manifest object names (formats 1 and 2: fixed root files).

    A damaged manifest (one no reader can open) names what it still can: a rebuild over it
    must go through, and what it no longer names it keeps no reader from.
    """
    if "segments" not in data:
        return set(LEGACY_ENTRIES)
    segments = data["segments"] if isinstance(data["segments"], list) else []
    names = {data.get("base"), data.get("deleted"),
             *(s.get("name") for s in segments if isinstance(s, dict))}
    return {name for name in names if isinstance(name, str) and name}


def _committed_number(data: dict | None, path: Path) -> int:
    """The generation number `data` commits (0: no index yet). A damaged number is taken to
    be the highest of the entries in the folder, so that the next commit reuses no name."""
    if data is None:
        return 0
    try:
        number = int(data.get("generation", 0))
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number >= 0:
        return number
    numbers = [int(m.group(1)) for entry in path.iterdir()
               if (m := _NUMBERED.fullmatch(entry.name))]
    return max(numbers, default=0)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    elif entry.exists() or entry.is_symlink():
        os.unlink(entry)
