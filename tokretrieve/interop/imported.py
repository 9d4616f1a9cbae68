"""Bring your own bags: an index from sparse vectors another model made (SPLADE's, say).

tokretrieve's engine (exact search, live changes, hybrids, the server) serves any learned-sparse
model's bags, not only those projected through an LM head. `index_from_vectors` reads a JSONL
vector collection (`{"id", "vector": {token: weight}}`: the Anserini/Seismic shape, or a
tokretrieve export) and writes an ordinary index, without a model: its search modes are the
tokenized query (`--mode tokens`) and query bags given directly (`SparseIndex.search`).

Tokens become ids through, in order: the export's own key map (a tokretrieve export read back:
`⟦id⟧` keys, `t<id>` keys), the tokenizer the keys come from (`tokenizer=`, e.g. SPLADE's BERT
vocabulary: queries are then tokenized as that model does), or, without one, a vocabulary made
of the keys themselves in the order first met (saved as a word-level tokenizer, so tokenized
queries still work on whitespace-separated words). A tokretrieve export keeps its integer levels
and scale, so export then import gives back the very postings it came from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from tokretrieve.corpus import check_id
from tokretrieve.errors import CorpusError
from tokretrieve.index.manifest import (
    IMPORTED_METHOD,
    BagRecord,
    IndexManifest,
    ModelRecord,
    PostingsLayout,
)
from tokretrieve.index.postings import (
    MAX_SEGMENT_DOCS,
    ImpactType,
    check_layout,
    postings_from_bags,
    resolve_codec,
)
from tokretrieve.index.sparse import SparseIndex, in_memory
from tokretrieve.interop.jsonl import index_keys, read_vectors, vector_files
from tokretrieve.interop.output import METADATA, read_metadata
from tokretrieve.search.query_encoders import index_tokenizer

_ID_KEY = re.compile(r"t(\d+)")
# An imported index has no model, hence no embeddings: a one-wide placeholder PC1 direction.
_HIDDEN = 1


def index_from_vectors(source: str | Path, output: str | Path, *, tokenizer=None,
                       impacts: ImpactType = "uint8", segment_docs: int = MAX_SEGMENT_DOCS,
                       codec: str | None = None, progress: bool = True) -> SparseIndex:
    """Write an index at `output` from the vector collection at `source` (a JSONL file, a
    folder of them, or a tokretrieve export folder). `tokenizer`: a tokenizer object or the
    name of a model whose tokenizer the keys are (alias, folder, hub id). `codec`: the lists'
    storage, as `build_index`'s (None: packed for uint8 impacts, raw for float32)."""
    check_layout(impacts, segment_docs, codec)
    source = Path(source)
    files = vector_files(source)
    export = read_metadata(source) if (source / METADATA).is_file() else None
    if isinstance(tokenizer, str):
        from tokretrieve.encoding.models import load_model_tokenizer

        tokenizer = load_model_tokenizer(tokenizer)
    vocabulary = _Vocabulary(tokenizer, export)
    doc_ids, rows = [], []
    seen: set[str] = set()
    with tqdm(unit="doc", desc="importing", disable=not progress) as bar:
        for doc_id, vector in read_vectors(source):
            check_id(doc_id, f"{source}: document id")
            if doc_id in seen:
                raise CorpusError(f"{source}: document id {doc_id!r} appears twice")
            seen.add(doc_id)
            doc_ids.append(doc_id)
            rows.append({vocabulary.id(key, doc_id): float(w) for key, w in vector.items()
                         if w > 0})
            bar.update()
    if not doc_ids:
        raise CorpusError(f"{source} holds no vectors")
    bags = _bags(rows, vocabulary.size)
    scale = None
    if export is not None and impacts == "uint8":
        bags.data *= np.float32(export["scale"])  # levels back to weights, exactly
        scale = float(export["scale"])
    index = index_from_bags(doc_ids, bags, f"imported:{source.name}", _digest(files),
                            str(source.resolve()), str(source), impacts=impacts,
                            segment_docs=segment_docs, scale=scale, codec=codec)
    return index.write(output, attachments={"tokenizer": vocabulary.saver()})


def index_from_bags(doc_ids: list[str], bags: sp.csr_matrix, name: str, content_hash: str,
                    model_source: str, source: str, *, impacts: ImpactType = "uint8",
                    segment_docs: int = MAX_SEGMENT_DOCS, scale: float | None = None,
                    codec: str | None = None) -> SparseIndex:
    """An in-memory index of bags made elsewhere (documents x vocabulary CSR, positive weights,
    row i = `doc_ids[i]`), recorded as imported under the model `name` with `content_hash`:
    the one place an imported index's manifest is made, whether the bags were read from a
    vector collection (`index_from_vectors`) or computed in memory (the quality benchmark's
    SPLADE peer). `scale`: the uint8 levels' scale (default: fitted to the largest weight);
    `codec`: how `write` stores the lists (None: packed for uint8 impacts, raw for float32).
    Write it with `.write(path, attachments=...)` to keep it."""
    check_layout(impacts, segment_docs, codec)
    postings = postings_from_bags(bags, impacts, segment_docs, scale=scale)
    manifest = IndexManifest(
        doc_count=len(doc_ids), vocab_size=int(bags.shape[1]),
        model=ModelRecord(name=name, content_hash=content_hash, method=IMPORTED_METHOD,
                          max_length=0, hidden_size=_HIDDEN, source=model_source),
        bags=BagRecord(bag_size=int(np.diff(bags.indptr).max(initial=0)),
                       weighting=IMPORTED_METHOD, merge_variants=False, pc1_request=None,
                       pc1_strength=0.0),
        layout=PostingsLayout(segment_docs=segment_docs, impacts=impacts, scale=postings.scale,
                              codec=resolve_codec(codec, impacts)),
        documents_digest=None, source=source)
    return in_memory(manifest, postings, np.array(doc_ids, dtype=str),
                     np.zeros((0, _HIDDEN), dtype=np.float32),
                     np.zeros(_HIDDEN, dtype=np.float32), None)


class _Vocabulary:
    """Key -> token id, by the export's key map, a tokenizer, or growing from the keys."""

    def __init__(self, tokenizer, export: dict | None):
        self.tokenizer = tokenizer
        self.ids_style = export is not None and export.get("keys") == "ids"
        self.grows = tokenizer is None and not self.ids_style
        # an export's mapped keys name ids of its own vocabulary: not of one grown here
        self.mapped = {} if self.grows else {
            str(k): int(v) for k, v in (export or {}).get("mapped_keys", {}).items()}
        self.known = dict(tokenizer.get_vocab()) if tokenizer is not None else {}
        floor = len(tokenizer) if tokenizer is not None else 0
        self.size = 0 if self.grows else max(floor, int((export or {}).get("vocab_size", 0)))

    def id(self, key: str, doc_id: str) -> int:
        if key in self.mapped:
            return self.mapped[key]
        if self.ids_style:
            match = _ID_KEY.fullmatch(key)
            if match is None:
                raise CorpusError(f"document {doc_id!r}: key {key!r} is not a t<id> key, "
                                  "though the export says its keys are ids")
            return self._checked(int(match.group(1)), key, doc_id)
        if key in self.known:
            return self.known[key]
        if not self.grows:
            raise CorpusError(f"document {doc_id!r}: token {key!r} is not in the tokenizer's "
                              "vocabulary: give the tokenizer the bags were made with "
                              "(--tokenizer), or none to build a vocabulary from the keys")
        self.known[key] = len(self.known)
        self.size = max(self.size, len(self.known))
        return self.known[key]

    def _checked(self, token_id: int, key: str, doc_id: str) -> int:
        if token_id >= self.size:
            raise CorpusError(f"document {doc_id!r}: key {key!r} is past the export's "
                              f"vocabulary of {self.size}")
        return token_id

    def saver(self) -> Callable[[Path], object]:
        """What writes this vocabulary's tokenizer into the index (tokenized queries)."""
        if self.tokenizer is not None:
            return self.tokenizer.save_pretrained
        return lambda folder: _word_tokenizer(self.known, self.size).save_pretrained(folder)


def _word_tokenizer(vocabulary: dict[str, int], size: int):
    """A word-level tokenizer over the keys (whitespace-split queries), its unknown-word token
    past the bags' vocabulary so that no bag entry ever means "unknown"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    unknown = "[UNK]" if "[UNK]" not in vocabulary else "[UNK-IMPORTED]"
    backend = Tokenizer(models.WordLevel(vocab={**vocabulary, unknown: size}, unk_token=unknown))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=unknown)


def _bags(rows: list[dict[int, float]], vocab_size: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(indptr[-1]))
    data = np.fromiter((w for r in rows for w in r.values()), dtype=np.float32,
                       count=int(indptr[-1]))
    bags = sp.csr_matrix((data, indices, indptr), shape=(len(rows), vocab_size))
    bags.sort_indices()
    return bags


def _digest(files: list[Path]) -> str:
    """sha256 over the vector files' bytes: the imported index's "model" is its bags."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()



def query_vectors(index: SparseIndex, path: str | Path) -> tuple[list[str], sp.csr_matrix]:
    """Query bags given as a vector collection (`{"id", "vector": {token: weight}}` lines,
    e.g. SPLADE's query encoder's output, or an export's queries.jsonl): their ids and a
    (queries x vocabulary) CSR over the index's vocabulary. Keys are read as the index's
    tokenizer's tokens, `⟦id⟧` mapped keys or `t<id>` keys; an unknown token is refused."""
    tokenizer = index_tokenizer(index)
    known = {**{f"t{i}": i for i in range(index.vocab_size)},
             **index_keys(index).ids(), **tokenizer.get_vocab()}
    qids, rows = [], []
    for qid, vector in read_vectors(path):
        row = {}
        for key, weight in vector.items():
            token = known.get(key)
            if token is None or token >= index.vocab_size:
                raise CorpusError(f"{path}: query {qid!r} has token {key!r}, which is not in "
                                  f"the vocabulary of {index.path}")
            row[token] = row.get(token, 0.0) + float(weight)
        qids.append(qid)
        rows.append(row)
    if len(set(qids)) != len(qids):
        raise CorpusError(f"{path}: query ids must be unique")
    return qids, _bags(rows, index.vocab_size)
