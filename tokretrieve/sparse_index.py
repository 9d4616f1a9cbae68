"""The key-token inverted index: build from documents, store on disk, search.

Documents are encoded once to dense embeddings (kept in the index, so the dense baseline and any
other sparse variant need no re-encoding); PC1 is estimated from those embeddings; each embedding
becomes a bag of its top-k positive tokens; the bags are stored token-major for scoring.

Queries come in two modes. `model` encodes the query with the LLM exactly like a document (same
method, same PC1 adjustment) and is the paper's setting. `tokens` only tokenizes the query, with
the tokenizer saved inside the index, so it loads no model weights at all: the cheap path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.alignment import Calibration, calibrate_pc1_strength
from tokretrieve.checkpoint import checkpoint_path, encode_resumable
from tokretrieve.corpus import check_unique
from tokretrieve.encoder import Encoder, bag_tokens, token_text
from tokretrieve.errors import EmptyQueryError, IndexFormatError, TokretrieveError
from tokretrieve.kernels import Scratch, gather_impacts
from tokretrieve.models import load_tokenizer
from tokretrieve.postings import (
    MAX_SEGMENT_DOCS,
    ImpactType,
    Postings,
    check_layout,
    postings_from_bags,
    postings_from_token_major,
)
from tokretrieve.projection import (
    PC1Adjustment,
    Weighting,
    check_top_k,
    check_weighting,
    first_principal_direction,
)
from tokretrieve.search import Hit
from tokretrieve.storage import (
    FORMAT_VERSION,
    atomic_directory,
    check_manifest_keys,
    check_replaceable,
    load_array,
    read_manifest,
    save_array,
    write_manifest,
)
from tokretrieve.vocabulary import variant_map

FORMAT = "tokretrieve.sparse"
# k = 512 gave the best nDCG@10 of every k tried (8..512) for both offline models on Cranfield,
# in both query modes (bench/README.md); --k 128 quarters the index for about -0.03 nDCG@10.
DEFAULT_K = 512
REQUIRED_KEYS = ("doc_count", "postings", "vocab_size", "model", "projection", "source",
                 "empty_documents", "created", "postings_format")
REQUIRED_SECTIONS = {
    "model": ("name", "source", "content_hash", "method", "max_length", "hidden_size"),
    "projection": ("k", "weighting", "pc1_strength", "merge_variants", "calibration"),
    "postings_format": ("segment_docs", "impacts", "scale"),
}
# Format 1 (one int32/float32 token-major list) is still read, converted in memory.
READABLE_VERSIONS = (1, FORMAT_VERSION)
QueryMode = Literal["model", "tokens"]
QUERY_MODES = ("model", "tokens")
TokenWeighting = Literal["idf", "count"]


class SparseIndex:
    """A key-token index on disk, opened memory-mapped, searched exactly."""

    def __init__(self, path: Path, manifest: dict, postings: Postings, doc_ids: np.ndarray,
                 embeddings: np.ndarray, pc1_direction: np.ndarray,
                 token_map: np.ndarray | None = None, encoder: Encoder | None = None):
        self.path = path
        self.manifest = manifest
        self.postings = postings
        self.doc_ids = doc_ids
        self.embeddings = embeddings
        self.pc1_direction = pc1_direction
        self.token_map = token_map
        self._encoder = encoder
        self._tokenizer = None
        self._idf: np.ndarray | None = None
        self._token_texts: dict[int, str] = {}
        self._scratch = Scratch()

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, docs: Iterable[tuple[str, str]], encoder: Encoder,
              path: str | Path = "index/default", k: int = DEFAULT_K,
              weighting: Weighting | None = None,
              pc1_strength: float | Literal["auto"] | None = None,
              merge_variants: bool = False, progress: bool = True,
              source: str = "", impacts: ImpactType = "uint8",
              segment_docs: int = MAX_SEGMENT_DOCS) -> SparseIndex:
        """Encode `docs` ((id, text) pairs) and write the index to `path`, atomically.

        Encoding saves its progress in chunks beside `path`: rerunning an interrupted build
        resumes where it stopped (see tokretrieve.checkpoint). `pc1_strength="auto"` picks λ by
        the key-token alignment of a corpus sample (tokretrieve.alignment, no relevance data) and
        records the choice and its curve in the manifest. `weighting=None` and
        `pc1_strength=None` take the model's measured defaults (models.ALIASES); a model without
        them gets its family's weighting and a calibrated λ. `impacts` is how weights are
        stored (tokretrieve.postings): "uint8" levels (1 byte per weight, not 4; nDCG unchanged
        in our measurements) or the exact "float32" weights; `segment_docs` is the postings'
        segment size, smaller only to test segment boundaries on small collections.
        """
        k = check_top_k(k)
        check_weighting(weighting or encoder.model.default_weighting)
        check_layout(impacts, segment_docs)
        asked_auto = pc1_strength == "auto"
        records = check_unique(_check_records(docs), source or "documents")
        if not records:
            raise TokretrieveError("no documents to index: the collection is empty")
        check_replaceable(Path(path))  # refuse before minutes of encoding, not after
        doc_ids = [doc_id for doc_id, _ in records]
        texts = [text for _, text in records]
        checkpoint = checkpoint_path(Path(path))
        embeddings = encode_resumable(encoder, doc_ids, texts, checkpoint, progress)
        calibration = None
        if asked_auto or (pc1_strength is None and encoder.model.default_pc1_relative is None):
            try:
                calibration = calibrate_pc1_strength(encoder, texts, embeddings=embeddings)
                pc1_strength = calibration.strength
            except TokretrieveError as error:
                if asked_auto:
                    raise
                warnings.warn(f"PC1 strength left at 0: calibration impossible ({error})",
                              stacklevel=2)
                pc1_strength = 0.0
        index = cls.from_embeddings(doc_ids, embeddings, encoder, path, k, weighting,
                                    pc1_strength, merge_variants, source, calibration, impacts,
                                    segment_docs)
        shutil.rmtree(checkpoint, ignore_errors=True)
        return index

    @classmethod
    def from_embeddings(cls, doc_ids: Sequence[str], embeddings: np.ndarray, encoder: Encoder,
                        path: str | Path | None = "index/default", k: int = DEFAULT_K,
                        weighting: Weighting | None = None,
                        pc1_strength: float | None = None,
                        merge_variants: bool = False, source: str = "",
                        calibration: Calibration | None = None, impacts: ImpactType = "uint8",
                        segment_docs: int = MAX_SEGMENT_DOCS) -> SparseIndex:
        """Derive an index from dense embeddings already computed by `encoder`.

        Projection and top-k are a small matrix product, so every variant of k, weighting and
        PC1 strength comes from one encoding pass. With `path=None` nothing is written.
        `merge_variants` folds case and word-boundary variants of a token into one entry
        (see tokretrieve.vocabulary), in documents and queries alike. A `calibration` that chose
        `pc1_strength` is recorded in the manifest. `pc1_strength=None` is the model's default
        multiple of the mean embedding norm (0 where it has none). `impacts` and
        `segment_docs` set the postings layout (tokretrieve.postings).
        """
        k = check_top_k(k)
        weighting = check_weighting(weighting or encoder.model.default_weighting)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(doc_ids), encoder.model.hidden_size):
            raise TokretrieveError(
                f"embeddings have shape {embeddings.shape}, expected "
                f"({len(doc_ids)}, {encoder.model.hidden_size}) for these documents and model")
        present = np.any(embeddings, axis=1)
        relative = encoder.model.default_pc1_relative
        if pc1_strength is None:
            mean_norm = float(np.linalg.norm(embeddings[present], axis=1).mean()
                              if present.any() else 0.0)
            pc1_strength = (relative or 0.0) * mean_norm
        if isinstance(pc1_strength, str) or not np.isfinite(pc1_strength):
            raise TokretrieveError(f"pc1_strength must be a finite number, got {pc1_strength!r}")
        direction = (first_principal_direction(embeddings[present]) if present.any()
                     else np.zeros(embeddings.shape[1], dtype=np.float32))
        adjustment = PC1Adjustment(direction, float(pc1_strength))
        token_map = (variant_map(encoder.tokenizer, encoder.model.vocab_size)
                     if merge_variants else None)
        bags = merge_tokens(encoder.bags(embeddings, k, weighting, adjustment), token_map)
        postings = postings_from_bags(bags, impacts, segment_docs)
        del bags
        empty = [doc_ids[i] for i in np.flatnonzero(postings.document_lengths() == 0)]
        if empty:
            shown = ", ".join(repr(d) for d in empty[:5])
            warnings.warn(f"{len(empty)} document(s) have empty bags (empty or whitespace-only "
                          f"text): {shown}{' ...' if len(empty) > 5 else ''}", stacklevel=2)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            "doc_count": len(doc_ids),
            "postings": postings.n_postings,
            "empty_documents": len(empty),
            "empty_document_ids": empty[:100],
            "vocab_size": encoder.model.vocab_size,
            "model": _model_record(encoder),
            "projection": {"k": k, "weighting": weighting, "pc1_strength": float(pc1_strength),
                           "merge_variants": bool(merge_variants),
                           "calibration": calibration and calibration.manifest_record()},
            "postings_format": postings_format(postings),
        }
        ids = np.array(doc_ids, dtype=str)
        if path is None:
            return cls(Path(), manifest, postings, ids, embeddings, direction, token_map, encoder)
        write_index(path, manifest, postings, ids, embeddings, direction, token_map,
                    encoder.tokenizer)
        return cls.load(path, encoder=encoder)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None,
             mmap: bool = True) -> SparseIndex:
        """Open an index folder (memory-mapped by default). `encoder` serves `model` queries;
        without one, the index's own model is loaded on the first such query."""
        path = Path(path)
        manifest = read_manifest(path, FORMAT, versions=READABLE_VERSIONS)
        version_1 = manifest["format_version"] == 1
        skipped = "postings_format" if version_1 else None  # format 1 had no such record
        check_manifest_keys(path, manifest, [key for key in REQUIRED_KEYS if key != skipped],
                            {name: keys for name, keys in REQUIRED_SECTIONS.items()
                             if name != skipped})
        if encoder is not None:
            _check_same_model(manifest, encoder, path)
        n_docs = int(manifest["doc_count"])
        if version_1:
            warnings.warn(f"{path} is a format-1 index, converted in memory on every load; "
                          "rebuild it to open it memory-mapped", stacklevel=2)
            postings = postings_from_token_major(load_array(path, "postings_indptr", False),
                                                 load_array(path, "postings_docs", False),
                                                 load_array(path, "postings_weights", False),
                                                 n_docs)
            manifest = {**manifest, "postings_format": postings_format(postings)}
        else:
            layout = manifest["postings_format"]
            postings = Postings(load_array(path, "postings_indptr", mmap),
                                load_array(path, "postings_docs", mmap),
                                load_array(path, "postings_impacts", mmap),
                                float(layout["scale"]), n_docs, int(layout["segment_docs"]))
        doc_ids = load_array(path, "doc_ids", mmap)
        if (len(doc_ids) != n_docs or postings.vocab_size != manifest["vocab_size"]
                or postings.n_segments != max(-(-n_docs // postings.segment_docs), 1)
                or postings.impacts.dtype != np.dtype(manifest["postings_format"]["impacts"])):
            raise IndexFormatError(f"{path}: arrays disagree with the manifest; rebuild the index")
        token_map = (load_array(path, "token_map", mmap=False)
                     if manifest["projection"]["merge_variants"] else None)
        return cls(path, manifest, postings, doc_ids, load_array(path, "embeddings", mmap),
                   load_array(path, "pc1_direction", mmap=False), token_map, encoder)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self.postings.n_docs

    @property
    def k(self) -> int:
        return int(self.manifest["projection"]["k"])

    @property
    def weighting(self) -> Weighting:
        return self.manifest["projection"]["weighting"]

    @property
    def adjustment(self) -> PC1Adjustment:
        """The PC1 adjustment documents got; model-mode queries get the same."""
        return PC1Adjustment(np.asarray(self.pc1_direction),
                             float(self.manifest["projection"]["pc1_strength"]))

    @property
    def encoder(self) -> Encoder:
        """The index's model, loaded on first use and checked against the recorded hash."""
        if self._encoder is None:
            record = self.manifest["model"]
            encoder = Encoder.load(record["name"], method=record["method"],
                                   max_length=record["max_length"],
                                   dtype=record.get("dtype", "float32"))
            _check_same_model(self.manifest, encoder, self.path)
            self._encoder = encoder
        return self._encoder

    @property
    def tokenizer(self):
        if self._encoder is not None:
            return self._encoder.tokenizer
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(str(self.path / "tokenizer"))
        return self._tokenizer

    @property
    def idf(self) -> np.ndarray:
        """BM25's idf of each token over the document bags (0 for tokens in no bag)."""
        if self._idf is None:
            df = self.postings.document_frequency().astype(np.float64)
            n = float(len(self))
            self._idf = np.where(df > 0, np.log1p((n - df + 0.5) / (df + 0.5)), 0.0)
        return self._idf

    # ------------------------------------------------------------------ queries
    def query_bag(self, query: str, mode: QueryMode = "model", query_k: int | None = None,
                  token_weighting: TokenWeighting = "idf") -> tuple[np.ndarray, np.ndarray]:
        """A query as (token ids, weights): encoded by the model, or only tokenized."""
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query {query!r} is empty")
        if mode == "model":
            return self.model_query_bags([query], query_k, token_weighting)[0]
        if mode == "tokens":
            return self.token_query_bag(query, token_weighting)
        raise TokretrieveError(f"unknown query mode '{mode}': choose one of "
                               f"{', '.join(QUERY_MODES)}")

    def model_query_bags(self, queries: Sequence[str], query_k: int | None = None,
                         token_weighting: TokenWeighting = "idf"
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Queries encoded like documents (PromptEOL/SGPT query side), batched; with "idf" each
        query token's weight is also multiplied by its idf over the document bags, so tokens
        that every bag shares count for little."""
        encoder = self.encoder
        embeddings = encoder.embed(queries, is_query=True)
        query_k = self.k if query_k is None else check_top_k(query_k)
        bags = merge_tokens(encoder.bags(embeddings, query_k,
                                         self.weighting, self.adjustment), self.token_map)
        return [self._weigh(bags.indices[bags.indptr[i]:bags.indptr[i + 1]].astype(np.int64),
                            bags.data[bags.indptr[i]:bags.indptr[i + 1]], token_weighting)
                for i in range(len(queries))]

    def _weigh(self, tokens: np.ndarray, weights: np.ndarray,
               token_weighting: TokenWeighting) -> tuple[np.ndarray, np.ndarray]:
        if token_weighting == "idf":
            return tokens, weights * self.idf[tokens].astype(np.float32)
        if token_weighting == "count":
            return tokens, weights
        raise TokretrieveError(f"unknown token weighting '{token_weighting}': "
                               "choose idf or count")

    def token_query_bag(self, query: str, token_weighting: TokenWeighting = "idf"
                        ) -> tuple[np.ndarray, np.ndarray]:
        """The query's own tokens, no model call. A leading space makes the first word take the
        same word-initial form (e.g. 'Ġheat') as the rest, as it has inside documents."""
        tokenizer = self.tokenizer
        ids = np.array(tokenizer(" " + query.strip(), add_special_tokens=False)["input_ids"],
                       dtype=np.int64)
        special = np.array(tokenizer.all_special_ids, dtype=np.int64)
        ids = ids[(ids < self.postings.vocab_size) & ~np.isin(ids, special)]
        if self.token_map is not None:
            ids = self.token_map[ids].astype(np.int64)
        if len(ids) == 0:
            raise EmptyQueryError(f"query {query!r} tokenizes to no usable token")
        tokens, counts = np.unique(ids, return_counts=True)
        return self._weigh(tokens, counts.astype(np.float32), token_weighting)

    def search(self, query: str, k: int = 10, mode: QueryMode = "model",
               **bag_options) -> list[Hit]:
        """The k best documents for `query`, with the tokens that matched."""
        check_top_k(k)
        return self.search_bag(*self.query_bag(query, mode, **bag_options), k=k)

    def batch_search(self, queries: Sequence[str], k: int = 10, mode: QueryMode = "model",
                     query_k: int | None = None, token_weighting: TokenWeighting = "idf",
                     matched: bool = True) -> list[list[Hit]]:
        """Search many queries; model-mode queries are encoded in batches. A query that is
        empty or tokenizes to nothing gets no hits (and a warning) rather than failing the batch.
        `matched=False` leaves each hit's matched-token list empty: listing them costs several
        times the scoring itself, for callers that only rank (evaluation, run files).
        """
        check_top_k(k)
        if mode == "model":
            present = [i for i, q in enumerate(queries) if isinstance(q, str) and q.strip()]
            bags = dict(zip(present, self.model_query_bags(
                [queries[i] for i in present], query_k, token_weighting), strict=True))
        else:
            bags = {}
            for i, query in enumerate(queries):
                with contextlib.suppress(EmptyQueryError):
                    bags[i] = self.query_bag(query, mode, token_weighting=token_weighting)
        if len(bags) < len(queries):
            warnings.warn(f"{len(queries) - len(bags)} query(ies) were empty or tokenized to "
                          "nothing and got no hits", stacklevel=2)
        ranked = iter(self.search_bags([bags[i] for i in sorted(bags)], k=k, matched=matched))
        return [next(ranked) if i in bags else [] for i in range(len(queries))]

    def search_bag(self, token_ids: np.ndarray, weights: np.ndarray, k: int = 10) -> list[Hit]:
        """Exact top-k for one query bag given as token ids and weights."""
        return self.search_bags([(token_ids, weights)], k)[0]

    def search_bags(self, bags: Sequence[tuple[np.ndarray, np.ndarray]],
                    k: int = 10, matched: bool = True) -> list[list[Hit]]:
        """Exact top-k for many query bags at once, scored in parallel by the compiled kernel.

        Tokens with a non-positive weight are ignored: they cannot raise a score. With
        `matched=False` the hits carry no matched-token lists (ranking only, much faster).
        """
        k = check_top_k(k)
        cleaned = [self._clean_bag(ids, weights) for ids, weights in bags]
        lengths = np.array([len(ids) for ids, _ in cleaned], dtype=np.int64)
        query_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        query_tokens = (np.concatenate([ids for ids, _ in cleaned]) if cleaned
                        else np.zeros(0, dtype=np.int64))
        query_weights = (np.concatenate([w for _, w in cleaned]) if cleaned
                         else np.zeros(0, dtype=np.float32))
        docs, scores, counts = self.postings.top_k(query_indptr, query_tokens, query_weights,
                                                   k, self._scratch, numba.get_num_threads())
        if not matched:
            return [[Hit(str(self.doc_ids[doc]), float(score), []) for doc, score
                     in zip(docs[q, :counts[q]].tolist(), scores[q, :counts[q]].tolist(),
                            strict=True)] for q in range(len(cleaned))]
        return [self._hits(ids, weights, docs[q, :counts[q]], scores[q, :counts[q]])
                for q, (ids, weights) in enumerate(cleaned)]

    def _clean_bag(self, token_ids: np.ndarray,
                   weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        token_ids = np.asarray(token_ids, dtype=np.int64).ravel()
        weights = np.asarray(weights, dtype=np.float32).ravel()
        if token_ids.shape != weights.shape:
            raise TokretrieveError(f"a query bag has {len(token_ids)} tokens but "
                                   f"{len(weights)} weights")
        if len(token_ids) and (token_ids.min() < 0 or token_ids.max() >= self.postings.vocab_size):
            raise TokretrieveError(f"query token ids must lie in [0, {self.postings.vocab_size})")
        if not np.all(np.isfinite(weights)):
            raise TokretrieveError("query bag weights must be finite numbers")
        keep = weights > 0
        return token_ids[keep], weights[keep]

    def _hits(self, token_ids: np.ndarray, weights: np.ndarray, docs: np.ndarray,
              scores: np.ndarray) -> list[Hit]:
        postings = self.postings
        impacts = gather_impacts(postings.indptr, postings.docs, postings.impacts,
                                 postings.segment_docs, token_ids, np.asarray(docs, np.int64))
        # the kernel's products, then the exact power-of-two scale
        contributions = weights[None, :] * impacts * np.float32(postings.scale)
        hits = []
        for row, (doc, score) in enumerate(zip(docs.tolist(), scores.tolist(), strict=True)):
            columns = np.flatnonzero(contributions[row])
            columns = columns[np.argsort(-contributions[row, columns], kind="stable")]
            hits.append(Hit(str(self.doc_ids[doc]), float(score),
                            [(self._token_text(int(token_ids[c])), float(contributions[row, c]))
                             for c in columns]))
        return hits

    def _token_text(self, token_id: int) -> str:
        """Decoded token, cached: decoding is the slow part of listing matched tokens."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = token_text(self.tokenizer, token_id)
        return text

    def explain(self, text: str, k: int | None = None,
                is_query: bool = False) -> list[tuple[str, float]]:
        """The key tokens this index would store for `text` (same k, weighting and PC1)."""
        if is_query:
            bag_ids, bag_weights = self.model_query_bags([text], k, "count")[0]
        else:
            encoder = self.encoder
            bag = merge_tokens(encoder.bags(encoder.embed([text]),
                                            self.k if k is None else k, self.weighting,
                                            self.adjustment), self.token_map)
            bag_ids, bag_weights = bag.indices, bag.data
        return bag_tokens(self.tokenizer, bag_ids, bag_weights)

    def document_bag(self, doc_id: str) -> list[tuple[str, float]]:
        """The stored bag of one document, heaviest token first (a scan of the postings)."""
        matches = np.flatnonzero(np.asarray(self.doc_ids) == doc_id)
        if len(matches) == 0:
            raise TokretrieveError(f"document id {doc_id!r} is not in {self.path}")
        return bag_tokens(self.tokenizer, *self.postings.document(int(matches[0])))


def merge_tokens(bags: sp.csr_matrix, token_map: np.ndarray | None) -> sp.csr_matrix:
    """Re-key bag columns through `token_map`, summing the weights of merged variants."""
    if token_map is None:
        return bags
    merged = sp.csr_matrix((bags.data, token_map[bags.indices], bags.indptr), shape=bags.shape)
    merged.sum_duplicates()
    return merged


def postings_format(postings: Postings) -> dict:
    """The manifest record of a postings layout."""
    return {"segment_docs": postings.segment_docs, "impacts": str(postings.impacts.dtype),
            "scale": postings.scale}


def write_index(path: str | Path, manifest: dict, postings: Postings, doc_ids: np.ndarray,
                embeddings: np.ndarray, pc1_direction: np.ndarray,
                token_map: np.ndarray | None, tokenizer) -> None:
    """Write an index folder atomically (tokretrieve.storage): the arrays, the tokenizer for
    `tokens` queries, and last the manifest."""
    with atomic_directory(path) as staging:
        save_array(staging, "doc_ids", doc_ids)
        save_array(staging, "postings_indptr", postings.indptr)
        save_array(staging, "postings_docs", postings.docs)
        save_array(staging, "postings_impacts", postings.impacts)
        save_array(staging, "embeddings", embeddings)
        save_array(staging, "pc1_direction", pc1_direction)
        if token_map is not None:
            save_array(staging, "token_map", token_map)
        tokenizer.save_pretrained(staging / "tokenizer")
        write_manifest(staging, manifest)


def _model_record(encoder: Encoder) -> dict:
    model = encoder.model
    return {
        "name": model.name,
        "source": model.source,
        "content_hash": model.content_hash,
        "method": encoder.method.name,
        "max_length": encoder.max_length,
        "hidden_size": model.hidden_size,
        "dtype": encoder.dtype,
    }


def _check_same_model(manifest: dict, encoder: Encoder, path: Path) -> None:
    """Refuse to mix an index with a model, or embedding method, other than the one that built
    it: the query bags would live in another space and the scores would be meaningless."""
    record = manifest["model"]
    if encoder.model.content_hash != record["content_hash"]:
        raise IndexFormatError(
            f"{path} was built with model '{record['name']}' (sha256 "
            f"{record['content_hash'][:12]}), not '{encoder.model.name}' (sha256 "
            f"{encoder.model.content_hash[:12]}): load the index without an encoder, or rebuild")
    if encoder.method.name != record["method"]:
        raise IndexFormatError(f"{path} embeds with method '{record['method']}', the encoder "
                               f"with '{encoder.method.name}'")


def _check_records(docs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    records = []
    for position, record in enumerate(docs):
        try:
            doc_id, text = record
        except (TypeError, ValueError):
            raise TokretrieveError(f"document {position} is not an (id, text) pair") from None
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise TokretrieveError(f"document {position} has an empty or non-string id")
        if not isinstance(text, str):
            raise TokretrieveError(f"document {doc_id!r} has a {type(text).__name__} text, "
                                   "not a string")
        records.append((doc_id, text))
    return records
