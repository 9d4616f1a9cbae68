"""The build step, where encoding meets the index: encode, calibrate, write.

    documents -> Encoder.embed (resumable) -> PC1 fitted on the corpus -> Encoder.bags
              -> postings -> SparseIndex on disk (with the embeddings, v1 and the tokenizer)

The encoder's BagRecipe says how embeddings become bags (bag size, weighting); the build adds
what only the corpus can give: the PC1 direction and strength (fixed, the model's measured
default multiple of the mean norm, or calibrated: "auto"), and the variant map. Everything that
shaped the index goes into its manifest (tokretrieve.index.manifest), so a later build with the
same inputs can reuse it and one with other inputs says what differs.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from tokretrieve.corpus import check_id, check_unicode, check_unique, documents_digest
from tokretrieve.encoding.alignment import Calibration, calibrate_pc1_strength
from tokretrieve.encoding.checkpoint import CHUNK_SIZE, encode_resumable
from tokretrieve.encoding.encoder import Encoder
from tokretrieve.encoding.literal import LiteralFit, fit_literal, mixed_bags
from tokretrieve.encoding.projection import PC1Adjustment, first_principal_direction
from tokretrieve.encoding.sharded import encode_on_cluster
from tokretrieve.encoding.vocabulary import variant_map
from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.index.generations import CHECKPOINT, Commit, index_manifest_json
from tokretrieve.index.live import append, changing, check_new_ids
from tokretrieve.index.manifest import BagRecord, IndexManifest, ModelRecord, PostingsLayout
from tokretrieve.index.postings import (
    MAX_SEGMENT_DOCS,
    ImpactType,
    check_layout,
    postings_from_bags,
    resolve_codec,
    saturated,
)
from tokretrieve.index.sparse import SparseIndex, in_memory, write_build
from tokretrieve.search.query_encoders import index_encoder

PC1Request = float | Literal["auto"] | None


def build_index(docs: Iterable[tuple[str, str]], encoder: Encoder,
                path: str | Path = "index/default", *, pc1_strength: PC1Request = None,
                merge_variants: bool = False, impacts: ImpactType = "uint8",
                segment_docs: int = MAX_SEGMENT_DOCS, codec: str | None = None,
                source: str = "",
                progress: bool = True, cluster: str | None = None, shards: int | None = None,
                chunk_size: int = CHUNK_SIZE) -> SparseIndex:
    """Encode `docs` ((id, text) pairs) with `encoder` and write the index to `path`.

    - `pc1_strength`: λ in embedding units; None takes the model's measured default (a multiple
      of the corpus's mean embedding norm) or, for a model without one, calibrates; "auto"
      always calibrates on a corpus sample (tokretrieve.encoding.alignment, no relevance data).
    - `merge_variants` folds case and word-boundary variants of a token into one entry.
    - `impacts` / `segment_docs` / `codec`: the postings layout (tokretrieve.index.postings;
      codec "packed" bit-packs the lists, tokretrieve.index.packing: about half the bytes;
      None: packed for uint8 impacts, raw for float32).
    - `cluster` / `shards`: encode on the Dask cluster whose scheduler is at `cluster` ("local"
      starts one on 127.0.0.1), in `shards` tasks of whole chunks (tokretrieve.encoding.sharded);
      the index is the one a single-process build writes, PC1 and λ fitted on all documents.
    - `chunk_size`: documents encoded and saved at a time, what a rerun resumes from and a
      shard is made of; the same chunks give the same embeddings, sharded or not.
    `reusable_index` tells beforehand whether the index already at `path` has the same inputs.

    Writing is atomic (the previous index at `path` stays until the new one is complete) and
    encoding resumes after the last saved chunk when an interrupted build is rerun.
    """
    check_pc1_request(pc1_strength)
    check_layout(impacts, segment_docs, codec)
    check_count(chunk_size, "chunk_size")
    if (cluster is None) != (shards is None):
        raise TokretrieveError("sharded encoding needs both a cluster (a scheduler address or "
                               "'local') and a number of shards")
    if shards is not None:
        check_count(shards, "shards")
    records = _checked_records(docs, source)
    path = Path(path)
    doc_ids = [doc_id for doc_id, _ in records]
    texts = [text for _, text in records]
    # The writer lock is held from before encoding to the commit: a second build of the same
    # path is refused at once, not after minutes of encoding, and never shares the checkpoint.
    with Commit(path) as commit:
        checkpoint = path / CHECKPOINT
        if cluster is not None and shards is not None:
            embeddings = encode_on_cluster(encoder, doc_ids, texts, checkpoint, cluster,
                                           shards, progress, chunk_size)
        else:
            embeddings = encode_resumable(encoder, doc_ids, texts, checkpoint, progress,
                                          chunk_size)
        index = index_from_embeddings(doc_ids, embeddings, encoder, pc1_strength=pc1_strength,
                                      merge_variants=merge_variants, impacts=impacts,
                                      segment_docs=segment_docs, codec=codec, source=source,
                                      texts=texts,
                                      documents_digest=documents_digest(records))
        write_build(commit, index, _attachments(encoder))
        shutil.rmtree(checkpoint, ignore_errors=True)
    return SparseIndex.load(path, verify=False)


def add_documents(path: str | Path, docs: Iterable[tuple[str, str]],
                  encoder: Encoder | None = None, *, update: bool = False,
                  progress: bool = True) -> SparseIndex:
    """Encode `docs` ((id, text) pairs) and add them to the index at `path` in one commit
    (tokretrieve.index.live): a new segment, bags made with the index's recipe, PC1 direction,
    λ and quantization scale. An id already there is refused unless `update` (then its old
    version is deleted in the same commit). `encoder` defaults to the index's model by the
    name its manifest records; another model's weights are refused.

    The new segment records its drift (`SegmentRecord.drift`): the cosine between the added
    documents' own PC1 and the index's, their mean norm over the indexed documents', and how
    many weights went past the top quantization level. When these stray far (README: when to
    rebuild), a rebuild fits PC1 and λ to the whole collection again.
    """
    records = _checked_records(docs, "documents")
    with changing(path) as (commit, index):
        ids = [doc_id for doc_id, _ in records]
        check_new_ids(index, ids, update)  # before minutes of encoding, not after
        encoder = index_encoder(index, encoder)  # with the build's frozen literal statistics
        texts = [text for _, text in records]
        embeddings = encoder.embed(texts, progress=progress)
        bags = encoder.document_bags(texts, embeddings)
        layout = index.manifest.layout
        drift = {**embedding_drift(index, embeddings),
                 "saturated_weights": saturated(bags, float(layout.scale), layout.impacts)}
        return append(commit, index, ids, bags, embeddings, update=update, drift=drift)


def embedding_drift(index: SparseIndex, embeddings: np.ndarray) -> dict[str, float]:
    """How far new embeddings stray from those the index's PC1 and λ were fitted on: the
    |cosine| between their first principal direction and the index's, and their mean norm
    over the mean norm of the index's live documents (λ is a multiple of that norm)."""
    present = embeddings[np.any(embeddings, axis=1)].astype(np.float64)
    if len(present) == 0:
        return {"pc1_cosine": float("nan"), "norm_ratio": float("nan")}
    # v1 of the added embeddings as the top eigenvector of their (hidden x hidden) Gram matrix:
    # the same direction as first_principal_direction's SVD (up to sign, which |cosine|
    # ignores) at a fraction of its cost for a large add.
    _, vectors = np.linalg.eigh(present.T @ present)
    cosine = abs(float(vectors[:, -1] @ np.asarray(index.pc1_direction, dtype=np.float64)))
    norms = [np.linalg.norm(np.asarray(s.embeddings[i:i + 65536]), axis=1)
             for s in index.segments for i in range(0, len(s), 65536)]
    live = np.concatenate(norms)[~index.deleted_mask]
    indexed = float(live[live > 0].mean()) if np.any(live > 0) else float("nan")
    return {"pc1_cosine": round(cosine, 6),
            "norm_ratio": round(float(np.linalg.norm(present, axis=1).mean()) / indexed, 6)}


def index_from_embeddings(doc_ids: Sequence[str], embeddings: np.ndarray, encoder: Encoder,
                          path: str | Path | None = None, *, pc1_strength: PC1Request = None,
                          merge_variants: bool = False, impacts: ImpactType = "uint8",
                          segment_docs: int = MAX_SEGMENT_DOCS, codec: str | None = None,
                          source: str = "", texts: Sequence[str] | None = None,
                          documents_digest: str | None = None) -> SparseIndex:
    """An index from document embeddings `encoder` already computed: fit PC1, project, store.

    Projection and top-k are a small matrix product, so every variant of bag size, weighting
    and λ comes from one encoding pass. With `path=None` nothing is written (the index lives in
    memory). `texts` calibrate λ ("auto", or a model without a measured default; without
    texts such a model gets λ = 0), and give the literal weights their tokens: a recipe with
    literal weights (the model's default, or asked for) needs them.
    """
    check_pc1_request(pc1_strength)
    check_layout(impacts, segment_docs, codec)
    codec = resolve_codec(codec, impacts)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(doc_ids), encoder.model.hidden_size):
        raise TokretrieveError(
            f"embeddings have shape {embeddings.shape}, expected "
            f"({len(doc_ids)}, {encoder.model.hidden_size}) for these documents and model")
    if encoder.literal is not None and (texts is None or len(texts) != len(doc_ids)):
        raise TokretrieveError(
            "literal weights need the documents' texts, one per document: pass texts=..., "
            "or build without them (encoder.with_bags(literal=False))")
    strength, calibration = _resolve_strength(pc1_strength, encoder, embeddings, texts)
    present = np.any(embeddings, axis=1)
    direction = (first_principal_direction(embeddings[present]) if present.any()
                 else np.zeros(embeddings.shape[1], dtype=np.float32))
    token_map = (variant_map(encoder.tokenizer, encoder.model.vocab_size)
                 if merge_variants else None)
    fitted = encoder.with_bags(adjustment=PC1Adjustment(direction, strength), token_map=token_map)
    bags, literal_fit = fitted.bags(embeddings), None
    if fitted.literal is not None:
        counts = fitted.token_counts(texts)  # type: ignore[arg-type]
        literal_fit = fit_literal(counts, bags, fitted.literal)
        bags = mixed_bags(counts, bags, literal_fit, fitted.literal, fitted.literal_stopwords())
    postings = postings_from_bags(bags, impacts, segment_docs)
    manifest = _manifest(encoder, len(doc_ids), pc1_strength, merge_variants, impacts,
                         segment_docs, documents_digest, strength, calibration, source,
                         literal_fit, codec)
    ids = np.array(doc_ids, dtype=str)
    index = in_memory(manifest, postings, ids, embeddings, direction, token_map,
                      literal_fit.idf if literal_fit else None)
    _warn_empty(index.manifest)
    if path is None:
        return index
    return index.write(path, attachments=_attachments(encoder))


def _attachments(encoder: Encoder) -> dict:
    """What a build stores beside the arrays: the tokenizer, for model-free queries."""
    return {"tokenizer": encoder.tokenizer.save_pretrained}


def reusable_index(path: str | Path, docs: Sequence[tuple[str, str]], encoder: Encoder, *,
                   pc1_strength: PC1Request = None, merge_variants: bool = False,
                   impacts: ImpactType = "uint8", segment_docs: int = MAX_SEGMENT_DOCS,
                   codec: str | None = None) -> tuple[SparseIndex | None, list[str]]:
    """The index at `path` and what differs between the inputs that shaped it and those of
    `build_index` with these arguments, as 'field: old -> new' lines: (index, []) means the
    build would write the same index, (None, []) that there is no index there, (None, [why])
    that the one there cannot be opened (another format version, damage). `docs` is read
    whole: pass a sequence, and the same one to `build_index`.

    Compared before encoding: the model (weights hash, method, max length, dtype), the bag
    recipe (bag size, weighting, the λ *asked for*, variant merging, the literal weights'
    settings), the postings layout and
    a digest of the documents (ids and texts, in order; not the path they came from).
    """
    check_pc1_request(pc1_strength)
    check_layout(impacts, segment_docs, codec)
    records = _checked_records(docs, "documents")
    path = Path(path)
    if index_manifest_json(path) is None:  # refuses a folder that is not an index
        return None, []
    try:
        existing = SparseIndex.load(path)
    except TokretrieveError as error:  # an index from another version, or a damaged one
        return None, [f"the index there cannot be opened ({error})"]
    wanted = _manifest(encoder, len(records), pc1_strength, merge_variants, impacts,
                       segment_docs, documents_digest(records),
                       codec=resolve_codec(codec, impacts))
    return existing, existing.manifest.differences(wanted)


def _manifest(encoder: Encoder, doc_count: int, pc1_request: PC1Request, merge_variants: bool,
              impacts: ImpactType, segment_docs: int, digest: str | None,
              strength: float = float("nan"), calibration: Calibration | None = None,
              source: str = "", literal_fit: LiteralFit | None = None,
              codec: str = "raw") -> IndexManifest:
    """The manifest of a build with these inputs. What only the build finds out (λ resolved
    from a request, the quantization scale, the counts) takes no part in comparisons: it is NaN
    here until known, and `in_memory` fills the postings' own counts and layout."""
    return IndexManifest(
        doc_count=doc_count, vocab_size=encoder.model.vocab_size, model=model_record(encoder),
        bags=bag_record(encoder, pc1_request, merge_variants, strength, calibration,
                        literal_fit),
        layout=PostingsLayout(segment_docs=segment_docs, impacts=impacts, scale=float("nan"),
                              codec=codec),
        documents_digest=digest, source=source)


def model_record(encoder: Encoder) -> ModelRecord:
    model = encoder.model
    return ModelRecord(name=model.name, content_hash=model.content_hash,
                       method=encoder.method.name, recipe=encoder.method.record(),
                       max_length=encoder.max_length,
                       hidden_size=model.hidden_size, dtype=encoder.dtype, source=model.source)


def bag_record(encoder: Encoder, pc1_request: PC1Request, merge_variants: bool,
               strength: float, calibration: Calibration | None,
               literal_fit: LiteralFit | None = None) -> BagRecord:
    literal = encoder.literal
    return BagRecord(bag_size=encoder.recipe.bag_size, weighting=encoder.weighting,
                     literal=literal and literal.record(),
                     literal_fit=literal_fit and literal_fit.record(),
                     merge_variants=bool(merge_variants),
                     pc1_request=None if pc1_request is None else (
                         "auto" if pc1_request == "auto" else float(pc1_request)),
                     pc1_strength=float(strength),
                     calibration=calibration and calibration.manifest_record())


def check_pc1_request(pc1_strength: PC1Request) -> None:
    """A λ is a finite number, "auto" or None (the model's default)."""
    if pc1_strength is None or pc1_strength == "auto":
        return
    if isinstance(pc1_strength, bool | str) or not np.isfinite(pc1_strength):
        raise TokretrieveError(f"pc1_strength must be a finite number, 'auto' or None, got "
                               f"{pc1_strength!r}")


def _resolve_strength(request: PC1Request, encoder: Encoder, embeddings: np.ndarray,
                      texts: Sequence[str] | None) -> tuple[float, Calibration | None]:
    """λ for this corpus: as given, the model's multiple of the mean norm, or calibrated."""
    relative = encoder.model.default_pc1_relative
    if request is not None and request != "auto":
        return float(request), None
    if request is None and relative is not None:
        present = embeddings[np.any(embeddings, axis=1)]
        mean_norm = float(np.linalg.norm(present, axis=1).mean()) if len(present) else 0.0
        return relative * mean_norm, None
    if texts is None:
        if request == "auto":
            raise TokretrieveError("pc1_strength='auto' calibrates on the documents' texts: "
                                   "pass texts=")
        return 0.0, None  # no measured default and nothing to calibrate on: no adjustment
    try:
        calibration = calibrate_pc1_strength(encoder, texts, embeddings=embeddings)
    except TokretrieveError as error:
        if request == "auto":
            raise
        warnings.warn(f"PC1 strength left at 0: calibration impossible ({error})", stacklevel=3)
        return 0.0, None
    return calibration.strength, calibration


def _warn_empty(manifest: IndexManifest) -> None:
    empty = manifest.empty_document_ids
    if manifest.empty_documents:
        shown = ", ".join(repr(d) for d in empty[:5])
        more = " ..." if manifest.empty_documents > 5 else ""
        warnings.warn(f"{manifest.empty_documents} document(s) have empty bags (empty or "
                      f"whitespace-only text): {shown}{more}", stacklevel=3)


def _checked_records(docs: Iterable[tuple[str, str]], source: str) -> list[tuple[str, str]]:
    records = check_unique(_check_records(docs), source or "documents")
    if not records:
        raise TokretrieveError("no documents to index: the collection is empty")
    return records


def _check_records(docs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    records = []
    for position, record in enumerate(docs):
        try:
            doc_id, text = record
        except (TypeError, ValueError):
            raise TokretrieveError(f"document {position} is not an (id, text) pair") from None
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise TokretrieveError(f"document {position} has an empty or non-string id")
        check_id(doc_id, f"document {position}: id")
        if not isinstance(text, str):
            raise TokretrieveError(f"document {doc_id!r} has a {type(text).__name__} text, "
                                   "not a string")
        check_unicode(text, f"document {position} ({doc_id!r}): the text")
        records.append((doc_id, text))
    return records
