"""The served index: searchers over the newest committed generation, never a mix of two.

A request takes one `Snapshot` (an opened generation with its searchers) and answers from it to
the end, so every response is consistent with one committed generation, which it names. A new
generation (a commit of this server or of another process: `tokretrieve add` beside a running
server) is noticed by the manifest's file identity changing (a commit replaces manifest.json by
a rename) and opened once, under a lock; requests already running keep their snapshot.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.manifest import IndexManifest
from tokretrieve.index.sparse import SparseIndex
from tokretrieve.index.storage import MANIFEST
from tokretrieve.search.bm25 import BM25Searcher
from tokretrieve.search.fusion import HYBRID_PARTS, HybridSearcher, part_searcher
from tokretrieve.search.query_encoders import index_encoder
from tokretrieve.search.searcher import Searcher

if TYPE_CHECKING:  # an encoder is handed in; importing its module would load torch
    from tokretrieve.encoding.encoder import Encoder

MODES = HYBRID_PARTS  # every searcher a hybrid can fuse is also a mode of its own
# A query mode, or a hybrid: ("hybrid", parts, fusion, weights or None).
Mode = str | tuple


@dataclass(eq=False)  # hashed by identity: a batch of queries is keyed by its snapshot
class Snapshot:
    """One committed generation, opened, with a searcher per query mode."""

    index: SparseIndex
    generation: int
    encoder: Encoder | None
    texts: dict[str, str]  # the server's {id: text}, shared by every snapshot
    _searchers: dict[str, Searcher | BM25Searcher] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def searcher(self, mode: Mode) -> Searcher | BM25Searcher | HybridSearcher:
        """The searcher of `mode`, made on first use (the dense side copies the embeddings
        into FAISS: only when asked for); a hybrid fuses the searchers of its parts."""
        if isinstance(mode, tuple):
            _, parts, fusion, weights = mode
            return HybridSearcher([self.searcher(part) for part in parts], fusion, weights)
        if mode not in MODES:
            raise TokretrieveError(f"unknown mode '{mode}': choose one of {', '.join(MODES)}")
        if mode == "bm25" and not self.texts:
            raise TokretrieveError("bm25 needs the collection's texts, and this server has "
                                   "none: start it with --corpus")
        if mode in ("model", "union", "dense") and self.encoder is None:
            raise TokretrieveError(f"mode '{mode}' needs the index's model, and this server "
                                   "runs without one (--no-model): use mode 'tokens'")
        with self._lock:
            if mode not in self._searchers:  # bm25: over the live documents of this generation
                self._searchers[mode] = part_searcher(self.index, mode, self.encoder,
                                                      self.texts.items())
            return self._searchers[mode]


class ServedIndex:
    """The index folder a server answers from, reopened when a new generation is committed."""

    def __init__(self, path: str | Path, load_model: bool = True,
                 texts: dict[str, str] | None = None):
        self.path = Path(path)
        self.texts = {} if texts is None else texts
        self._lock = threading.Lock()
        # The manifest's identity is taken before the load it describes: a commit in between
        # is then seen by the next request, which opens the index again.
        self._identity = self._manifest_identity()
        index = SparseIndex.load(self.path)
        # The model is loaded once, for the server's life (every generation has the same one).
        self.encoder = index_encoder(index) if load_model else None
        self._snapshot = Snapshot(index, index.manifest.contents.generation, self.encoder,
                                  self.texts)

    def current(self) -> Snapshot:
        """The newest committed generation (opened again only when manifest.json changed)."""
        if self._manifest_identity() != self._identity:
            with self._lock:
                identity = self._manifest_identity()
                if identity != self._identity:
                    self._serve(SparseIndex.load(self.path), identity)
        return self._snapshot

    def reopen(self, index: SparseIndex) -> Snapshot:
        """Serve `index`, which a commit of this server has just returned. The manifest is
        taken as seen only if it still commits that generation (another writer may have
        committed since: then the next request opens the newer one)."""
        with self._lock:
            identity = self._manifest_identity()
            committed = IndexManifest.read(self.path).contents.generation
            generation = index.manifest.contents.generation
            self._serve(index, identity if committed == generation else None)
            return self._snapshot

    def _serve(self, index: SparseIndex, identity: tuple[int, int, int] | None) -> None:
        """Serve `index` unless it is no newer than the snapshot served (whose searchers are
        warm: the same generation is not opened twice)."""
        if index.manifest.contents.generation > self._snapshot.generation:
            self._snapshot = Snapshot(index, index.manifest.contents.generation, self.encoder,
                                      self.texts)
        self._identity = identity

    def _manifest_identity(self) -> tuple[int, int, int]:
        stat = os.stat(self.path / MANIFEST)
        return stat.st_ino, stat.st_mtime_ns, stat.st_size
