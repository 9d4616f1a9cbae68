"""The speed benchmark's measurements: how fast tokretrieve indexes and searches, next to
BM25S and FAISS (`python -m bench.speed`, bench/speed/__main__.py, drives them).

Why it is built this way:
- Speed depends on the postings a query walks, so the larger corpora are synthetic bags drawn from
  the real Cranfield index's distribution (bag lengths, each token's fraction of documents, its
  weights; bench/speed/synth.py), not uniform noise that would make every list short.
- Every size runs every system in the same process, one after another, on the same bags and
  the same 225 Cranfield queries, so the ratios compare like with like; the load average is
  recorded with every number because the machine is shared.
- tokretrieve is timed at its kernel (tokretrieve.index.kernels.batch_top_k, called as
  SparseIndex.search calls it) for the comparison with BM25S's and FAISS's id/score results, and
  at its public API (SparseIndex.search, arrays in and out; SparseSearcher.search, text in and
  Hit lists with matched tokens out) for what a user pays.
- Indexing is timed from doc-major bags (what the encoder produces) to a written, fsynced index
  folder, through the package's own postings_from_bags, in_memory and SparseIndex.write:
  encoding is excluded, as the comparison with BM25S (which gets the same bags) needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from bench.speed.kernel import QueryBatch, package_top_k, traversal
from bench.speed.peers import BM25_BACKENDS, BM25Peer, DensePeer, unit_rows
from bench.speed.synth import TokenDistribution, distribution_from_bags, generate_bags
from bench.toolkit import REPO_ROOT, RESULTS_DIR
from bench.toolkit.clock import (
    current_rss_mb,
    latency,
    load_average,
    peak_rss_mb,
    reset_peak_rss,
    throughput,
    timed,
)
from bench.toolkit.machine import array_bytes
from bench.toolkit.threads import pinned
from tokretrieve import (
    Encoder,
    ModelQueryEncoder,
    SparseIndex,
    SparseSearcher,
    TokenQueryEncoder,
    build_index,
)
from tokretrieve.corpus import read_documents, read_queries
from tokretrieve.errors import TokretrieveError
from tokretrieve.index.postings import SegmentedPostings, postings_from_bags
from tokretrieve.index.sparse import in_memory
from tokretrieve.index.storage import folder_bytes

DEFAULT_OUTPUT = RESULTS_DIR / "speed"
CACHE = DEFAULT_OUTPUT / "cache"
DEMO_INDEX = REPO_ROOT / "index" / "cranfield"
MODEL = "minilm"
KS = (10, 1000)
MODES = ("tokens", "model")
TARGETS = {"qps_vs_bm25s": 3.0, "end_to_end_vs_dense": 20.0, "p99_ms_1m": 2.0,
           "bytes_vs_dense": 0.1, "postings_per_s": 5e6}


@dataclasses.dataclass
class Clocks:
    """How long each measurement may run; --quick shrinks them all."""

    latency_budget_s: float = 15.0
    latency_min_samples: int = 1000
    throughput_min_s: float = 1.0
    api_budget_s: float = 8.0


@dataclasses.dataclass
class RealSource:
    """The real index the synthetic sizes imitate, its model, and the real queries."""

    index: SparseIndex
    encoder: Encoder
    queries: list[tuple[str, str]]
    distribution: TokenDistribution | None = None

    @property
    def path(self) -> Path:
        return self.index.path

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.queries]


# ---------------------------------------------------------------------------------------- setup
def usable_index(path: Path, encoder: Encoder, bag_size: int) -> SparseIndex | None:
    """The index at `path` if it opens in this tokretrieve's format and was built by our model
    (same weights, same method) with bags of `bag_size` tokens; None otherwise (rebuild)."""
    if not (path / "manifest.json").is_file():
        return None
    try:
        index = SparseIndex.load(path)
    except TokretrieveError:
        return None  # an older format, or damaged
    model, bags = index.manifest.model, index.manifest.bags
    if (model.name != MODEL or model.content_hash != encoder.model.content_hash
            or model.method != encoder.method.name or bags.bag_size != bag_size):
        return None
    return index


def real_source(corpus: Path, bag_size: int, index_path: Path | None,
                n_queries: int | None) -> RealSource:
    """Open (or build once, with the model and the package's defaults) the real minilm index of
    Cranfield, and read the queries."""
    if not (corpus / "queries.jsonl").is_file():
        raise SystemExit(f"error: {corpus} has no queries.jsonl: the benchmark needs the "
                         "Cranfield BEIR folder (--corpus) for its 225 queries")
    print(f"loading {MODEL} ...", flush=True)
    encoder = Encoder.load(MODEL, bag_size=bag_size)
    cache = CACHE / f"cranfield-{MODEL}-bag{bag_size}"
    if index_path:
        index = usable_index(index_path, encoder, bag_size)
        if index is None:
            raise SystemExit(f"error: --index {index_path} is not a loadable {MODEL} index "
                             f"with bags of {bag_size} tokens")
    else:
        index = next((index for index in (usable_index(path, encoder, bag_size)
                                          for path in (DEMO_INDEX, cache)) if index), None)
    if index is None:
        print(f"real bags: building {cache} from {corpus} with the package defaults "
              f"(bags of {bag_size}; 1-3 minutes, once)", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the two empty Cranfield documents
            index = build_index(read_documents(corpus), encoder, cache, source=str(corpus),
                                progress=True)
    print(f"real bags: {index.path} ({len(index):,} docs, bags of "
          f"{index.manifest.bags.bag_size}, {index.manifest.layout.impacts} impacts, "
          f"{index.manifest.layout.codec} lists)", flush=True)
    queries = read_queries(corpus)
    return RealSource(index, encoder, queries[:n_queries] if n_queries else queries)


# ------------------------------------------------------------------------------------- indexing
def synthetic_ids(n: int) -> list[str]:
    return [f"syn{i:07d}" for i in range(n)]


def index_bags(path: Path, bags: sp.csr_matrix, doc_ids: Sequence[str], real: RealSource,
               source: str) -> dict[str, Any]:
    """Doc-major bags to a loadable index folder, timed step by step, the way the build step
    (tokretrieve.build.index_from_embeddings) does it after projection:
    tokretrieve.index.postings.postings_from_bags (the real index's impact type and segment
    size), tokretrieve.index.sparse.in_memory (the manifest completed from the postings, empty
    documents counted), then SparseIndex.write (arrays, tokenizer, manifest; every file
    fsynced, then committed as one generation).

    The manifest is the real index's, with the fields that describe these documents replaced
    (count, source, creation time; no digest, the bags come from no texts): same model, bag
    recipe and layout, so the synthetic index opens and is queried exactly like the real one.
    embeddings.npy is an empty (0 x hidden) placeholder, because the format requires the file and
    synthetic bags have no embeddings (the dense side is measured separately, as FAISS).
    """
    layout = real.index.manifest.layout
    manifest = dataclasses.replace(
        real.index.manifest, doc_count=int(bags.shape[0]), source=source, documents_digest=None,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    reset_peak_rss()
    clock = [time.perf_counter()]
    postings = postings_from_bags(bags, layout.impacts, int(layout.segment_docs))
    clock.append(time.perf_counter())
    index = in_memory(manifest, postings, np.array(doc_ids, dtype=str),
                      np.zeros((0, real.encoder.model.hidden_size), dtype=np.float32),
                      np.asarray(real.index.pc1_direction), real.index.token_map,
                      real.index.literal_idf)
    clock.append(time.perf_counter())
    index.write(path, attachments={"tokenizer": real.encoder.tokenizer.save_pretrained})
    clock.append(time.perf_counter())
    total = clock[-1] - clock[0]
    entries = int(bags.nnz)
    return {
        "bag_entries": entries, "postings": postings.n_postings,
        "dropped_zero_levels": entries - postings.n_postings,
        "empty_documents": index.manifest.empty_documents,
        "impacts": str(postings.impacts.dtype), "scale": postings.scale,
        "segment_docs": postings.segment_docs, "segments": postings.n_segments,
        "build_postings_s": clock[1] - clock[0], "manifest_s": clock[2] - clock[1],
        "write_s": clock[3] - clock[2], "total_s": total,
        "postings_per_s": entries / total if total > 0 else float("inf"),
        "build_postings_per_s": entries / (clock[1] - clock[0]),
        "peak_rss_mb": peak_rss_mb(), "load_avg": load_average(),
    }


def sparse_bytes(path: Path) -> dict[str, int]:
    """What sparse search reads (postings, ids, tokenizer, maps) vs. the whole folder, from the
    files on disk."""
    sizes = array_bytes(path)
    files = sorted(name for name in sizes if name.startswith("postings_"))  # either codec's
    postings = sum(sizes[name] for name in files)
    search = folder_bytes(path) - sizes.get("embeddings.npy", 0)
    return {"postings": postings,
            "postings_files": {name.removesuffix(".npy"): sizes[name] for name in files},
            "doc_ids": sizes.get("doc_ids.npy", 0),
            "postings_and_ids": postings + sizes.get("doc_ids.npy", 0), "search_total": search}


def elias_fano_estimate(postings: SegmentedPostings) -> dict[str, float]:
    """Bytes the same postings would take with Elias-Fano document offsets instead of uint16:
    2 + ceil(log2(span / n)) bits per posting of each (segment, token) list of n postings over a
    segment of `span` documents (the usual bound); impacts and indptr as stored. How far the
    stored layout is from a compressed one."""
    indptr = np.asarray(postings.indptr)
    lengths = np.diff(indptr, axis=1).astype(np.float64)           # (segments, vocab)
    spans = np.array([postings.segment_span(s)[1] for s in range(postings.n_segments)],
                     dtype=np.float64)[:, None]
    present = lengths > 0
    per_posting = 2.0 + np.maximum(0.0, np.ceil(np.log2(np.maximum(spans, 1.0)
                                                        / np.where(present, lengths, 1.0))))
    docs_bytes = float((lengths * per_posting)[present].sum() / 8)
    impacts_bytes = float(postings.n_postings * np.dtype(postings.impact_type).itemsize)
    indptr_bytes = float(indptr.nbytes)
    return {"docs_elias_fano": docs_bytes,
            "docs_uint16": float(postings.n_postings * 2),
            "impacts": impacts_bytes, "indptr": indptr_bytes,
            "total": docs_bytes + impacts_bytes + indptr_bytes}


# -------------------------------------------------------------------------------------- queries
def query_bags(index: SparseIndex, encoder: Encoder, texts: Sequence[str]) -> dict[str, Any]:
    """Both modes' bags for this index (idf over its own bags), and the count bags BM25S gets,
    from the package's query encoders; queries with no usable token are left out of the
    tokens-mode batches (they would time an empty call)."""
    tokens = TokenQueryEncoder.for_index(index, "idf", tokenizer=encoder.tokenizer).encode(texts)
    counts = TokenQueryEncoder.for_index(index, "count",
                                         tokenizer=encoder.tokenizer).encode(texts)
    usable = np.flatnonzero(np.diff(tokens.indptr) > 0)
    return {"tokens": tokens[usable], "counts": counts[usable],
            "model": ModelQueryEncoder.for_index(index, encoder).encode(texts),
            "skipped_tokens": len(texts) - len(usable)}


def traversal_summary(stats: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, values in stats.items():
        values = np.asarray(values, dtype=np.float64)
        out[name] = {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                     "p99": float(np.percentile(values, 99)), "max": float(values.max())}
    return out


def latency_fit(per_query_s: Sequence[float], stats: dict[str, np.ndarray]) -> dict[str, float]:
    """Least squares: per-query time = fixed + a * postings walked + b * documents touched
    (b is NaN when every query touches about the same number of documents)."""
    y = np.asarray(per_query_s, dtype=np.float64) * 1e9
    walked = np.asarray(stats["postings"], dtype=np.float64)
    touched = np.asarray(stats["touched"], dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 4:
        return {}
    columns = [np.ones(ok.sum()), walked[ok]]
    # When every query touches (almost) every document, as model-mode queries do, `touched` is
    # a constant and the three-term fit is degenerate: fit fixed + postings only.
    varies = touched[ok].std() > 0.01 * max(touched[ok].mean(), 1.0)
    if varies:
        columns.append(touched[ok])
    design = np.column_stack(columns)
    coef, *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    predicted = design @ coef
    if not varies:
        coef = np.append(coef, np.nan)
    ss_res = float(((y[ok] - predicted) ** 2).sum())
    ss_tot = float(((y[ok] - y[ok].mean()) ** 2).sum())
    return {"fixed_us": coef[0] / 1e3, "ns_per_posting": coef[1], "ns_per_touched": coef[2],
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "ns_per_posting_overall": float(y[ok].sum() / max(walked[ok].sum(), 1))}


# ------------------------------------------------------------------------------------ one size
def measure_size(size: str, real: RealSource, args: argparse.Namespace, clocks: Clocks,
                 scratch_root: Path, query_vectors: np.ndarray | None) -> dict[str, Any]:
    """Index, load and search one corpus size with every system; returns its results record."""
    all_threads = numba.config.NUMBA_NUM_THREADS
    result: dict[str, Any] = {"size": size, "load_avg_start": load_average(), "peak_rss_mb": {}}
    folder = Path(tempfile.mkdtemp(prefix=f"speed-{size}-", dir=scratch_root))
    bar = tqdm(total=8, desc=f"size {size}", unit="step", leave=True)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    try:
        # 1. the bags
        bar.set_postfix_str("bags")
        reset_peak_rss()
        if size == "cranfield":
            bags = real.index.postings.to_bags()
            doc_ids: list[str] = [str(d) for d in real.index.doc_ids]
            result.update(synthetic=False, generate_s=0.0)
        else:
            if real.distribution is None:
                real.distribution, seconds = timed(lambda: distribution_from_bags(
                    real.index.postings.to_bags(), seed=args.seed))
                result["calibration_s"] = seconds
            bags, seconds = timed(lambda: generate_bags(real.distribution, int(size),
                                                        seed=args.seed + int(size)))
            doc_ids = synthetic_ids(int(size))
            result.update(synthetic=True, generate_s=seconds)
        n_docs = bags.shape[0]
        result.update(n_docs=n_docs, bag_entries=int(bags.nnz),
                      mean_bag=float(bags.nnz / max(n_docs, 1)))
        result["peak_rss_mb"]["bags"] = peak_rss_mb()
        step("indexing")

        # 2. indexing: bags -> segmented token-major postings -> fsynced folder
        index_path = folder / "sparse"
        source = (f"synthetic: {n_docs} bags drawn from {real.path} (seed {args.seed})"
                  if result["synthetic"] else str(real.path))
        result["indexing"] = index_bags(index_path, bags, doc_ids, real, source)
        result["postings"] = result["indexing"]["postings"]
        # BM25S needs only the bags' tokens: drop the weights now (2 GB at 1 M x 512).
        doc_indptr, doc_tokens, vocab_size = bags.indptr, bags.indices, bags.shape[1]
        del bags
        gc.collect()
        step("bm25s build")

        # 3. BM25S build on the same bags' tokens
        bm25_info: dict[str, Any] = {}
        term_of_token = None
        if not args.no_bm25:
            reset_peak_rss()
            start = time.perf_counter()
            peer = BM25Peer.build(doc_indptr, doc_tokens, vocab_size, "numba",
                                  progress=n_docs > 50_000)
            seconds = time.perf_counter() - start
            bm25_info["build_s"] = seconds
            bm25_info["postings_per_s"] = len(doc_tokens) / seconds
            bm25_info["build_peak_rss_mb"] = peak_rss_mb()
            bm25_info["build_load_avg"] = load_average()
            peer.save(folder / "bm25s")
            bm25_info["bytes"] = folder_bytes(folder / "bm25s")
            term_of_token = peer.term_of_token
            del peer
        del doc_indptr, doc_tokens
        gc.collect()
        step("sparse load")

        # 4. load (memory-mapped) and the query bags
        loads = []
        for _ in range(5):
            index, seconds = timed(lambda: SparseIndex.load(index_path))
            loads.append(seconds)
        result["load_s"] = {"sparse": float(np.median(loads))}
        result["bytes"] = {"sparse": sparse_bytes(index_path),
                           "sparse_elias_fano_estimate": elias_fano_estimate(index.postings)}
        with pinned(all_threads):
            bags_by_mode = query_bags(index, real.encoder, real.texts)
        batches = {mode: QueryBatch.from_bags(bags_by_mode[mode]) for mode in MODES}
        postings = index.postings
        result["queries"] = {
            mode: {"n": len(batches[mode]), "mean_tokens": batches[mode].mean_length(),
                   **traversal_summary(traversal(postings, batches[mode]))}
            for mode in MODES}
        result["queries"]["skipped_tokens"] = bags_by_mode["skipped_tokens"]
        step("tokretrieve")

        # 5. tokretrieve: kernel latency (1 thread), batch QPS (all threads), API latency
        reset_peak_rss()
        tok: dict[str, Any] = {}
        stats = {mode: traversal(postings, batches[mode]) for mode in MODES}
        for mode in MODES:
            singles = batches[mode].singles()
            tok[mode] = {}
            for k in KS:
                with pinned(1):
                    lat = latency(lambda b, k=k: package_top_k(postings, b, k, 1), singles,
                                  clocks.latency_min_samples, clocks.latency_budget_s,
                                  per_item=True)
                with pinned(all_threads):
                    qps = throughput(
                        lambda k=k, mode=mode: package_top_k(postings, batches[mode], k,
                                                             all_threads),
                        len(batches[mode]), clocks.throughput_min_s)
                per_query = lat.pop("per_item_s")
                tok[mode][str(k)] = {"latency": lat, "batch": qps}
                if k == KS[0]:
                    tok[mode]["fit_k10"] = latency_fit(per_query, stats[mode])
            rows = [bags_by_mode[mode][q] for q in range(bags_by_mode[mode].shape[0])]
            with pinned(1):
                tok[mode]["api_search_k10"] = latency(
                    lambda bag: index.search(bag, KS[0]), rows, clocks.latency_min_samples,
                    clocks.api_budget_s)
        result["tokretrieve"] = tok
        result["peak_rss_mb"]["tokretrieve_search"] = peak_rss_mb()
        result["rss_mb_after_search"] = current_rss_mb()
        step("bm25s search")

        # 6. BM25S search, both backends, on the memory-mapped index
        if not args.no_bm25 and term_of_token is not None:
            reset_peak_rss()
            queries = None
            for backend in BM25_BACKENDS:
                peer, seconds = timed(lambda backend=backend: BM25Peer.load(
                    folder / "bm25s", term_of_token, n_docs, backend))
                bm25_info.setdefault("load_s", {})[backend] = seconds
                queries = peer.queries(bags_by_mode["counts"])
                per_backend: dict[str, Any] = {}
                for k in KS:
                    with pinned(1):
                        lat = latency(lambda q, k=k, peer=peer: peer.search([q], k, 0), queries,
                                      clocks.latency_min_samples, clocks.latency_budget_s)
                    with pinned(all_threads):
                        qps = throughput(
                            lambda k=k, peer=peer, queries=queries: peer.search(queries, k,
                                                                                all_threads),
                            len(queries), clocks.throughput_min_s)
                    per_backend[str(k)] = {"latency": lat, "batch": qps}
                bm25_info[backend] = per_backend
                del peer
                gc.collect()
            bm25_info["mean_query_terms"] = (float(np.mean([len(q) for q in queries]))
                                             if queries else 0.0)
            bm25_info["search_peak_rss_mb"] = peak_rss_mb()
            result["bm25s"] = bm25_info
        step("faiss")

        # 7. FAISS flat on vectors of the model's width; end-to-end dense with the forward pass
        if not args.no_dense and query_vectors is not None:
            result["faiss"] = dense_side(size, real, n_docs, folder, query_vectors, clocks,
                                         all_threads, args.seed)
        step("end to end")

        # 8. end to end, one query at a time on one thread: text in, top-10 ids out
        result["end_to_end"] = end_to_end(index, real, folder, clocks,
                                          dense=not args.no_dense and query_vectors is not None)
        step("done")
    finally:
        bar.close()
        shutil.rmtree(folder, ignore_errors=True)
    result["load_avg_end"] = load_average()
    return result


def dense_side(size: str, real: RealSource, n_docs: int, folder: Path,
               query_vectors: np.ndarray, clocks: Clocks, all_threads: int,
               seed: int) -> dict[str, Any]:
    """FAISS IndexFlatIP: build, bytes, load, latency (1 thread) and batch QPS."""
    reset_peak_rss()
    info: dict[str, Any] = {}
    embeddings = np.asarray(real.index.embeddings)
    with pinned(all_threads):
        if size == "cranfield" and embeddings.shape[0] == n_docs:
            peer, seconds = timed(lambda: DensePeer.from_vectors(embeddings))
            info["vectors"] = "real minilm document embeddings"
        else:
            peer, seconds = timed(lambda: DensePeer.random(
                n_docs, query_vectors.shape[1], seed + n_docs, progress=n_docs > 50_000))
            info["vectors"] = "random unit vectors (a flat index's speed ignores the values)"
    info["build_s"] = seconds
    file = folder / "dense.faiss"
    peer.save(file)
    np.save(folder / "dense_ids.npy", np.array(synthetic_ids(n_docs)
                                               if size != "cranfield" else real.index.doc_ids))
    info["bytes"] = {"vectors": file.stat().st_size,
                     "with_ids": file.stat().st_size + (folder / "dense_ids.npy").stat().st_size}
    del peer
    gc.collect()
    peer, seconds = timed(lambda: DensePeer.load(file))
    info["load_s"] = seconds
    for k in KS:
        with pinned(1):
            lat = latency(lambda v, k=k: peer.search(v[None, :], k), list(query_vectors),
                          clocks.latency_min_samples, clocks.latency_budget_s)
        with pinned(all_threads):
            qps = throughput(lambda k=k: peer.search(query_vectors, k), len(query_vectors),
                             clocks.throughput_min_s)
        info[str(k)] = {"latency": lat, "batch": qps}
    info["peak_rss_mb"] = peak_rss_mb()
    return info


def end_to_end(index: SparseIndex, real: RealSource, folder: Path, clocks: Clocks,
               dense: bool) -> dict[str, Any]:
    """Per query, one thread, text in and top-10 out: tokens mode (tokenize + kernel), model
    mode (forward pass + projection + kernel), dense (forward pass + FAISS); and the public API
    (SparseSearcher.search in tokens mode, which also lists each hit's matched tokens)."""
    postings = index.postings
    texts = real.texts
    encoder = real.encoder
    tokens = TokenQueryEncoder.for_index(index, "idf", tokenizer=encoder.tokenizer)
    model = ModelQueryEncoder.for_index(index, encoder)
    searcher = SparseSearcher(index, tokens, encoder.tokenizer)
    # SparseSearcher.search refuses a query with no usable token (the kernel just finds nothing)
    searchable = [text for text, row in zip(texts, tokens.encode(texts), strict=True)
                  if row.nnz]
    out: dict[str, Any] = {}

    def sparse_tokens(text: str) -> object:
        return package_top_k(postings, QueryBatch.from_bags(tokens.encode([text])), KS[0], 1)

    def sparse_model(text: str) -> object:
        return package_top_k(postings, QueryBatch.from_bags(model.encode([text])), KS[0], 1)

    with pinned(1):
        out["tokens"] = latency(sparse_tokens, texts, clocks.latency_min_samples,
                                clocks.latency_budget_s)
        out["model"] = latency(sparse_model, texts, clocks.latency_min_samples,
                               clocks.latency_budget_s)
        out["api_tokens"] = latency(lambda text: searcher.search(text, KS[0]), searchable,
                                    clocks.latency_min_samples, clocks.api_budget_s)
        out["embed_1thread"] = latency(lambda text: encoder.embed([text], is_query=True), texts,
                                       clocks.latency_min_samples, clocks.api_budget_s)
        out["tokenize_1thread"] = latency(lambda text: tokens.encode([text]), texts,
                                          clocks.latency_min_samples, clocks.api_budget_s)
        if dense:
            peer = DensePeer.load(folder / "dense.faiss")

            def dense_query(text: str) -> object:
                return peer.search(unit_rows(encoder.embed([text], is_query=True)), KS[0])

            out["dense"] = latency(dense_query, texts, clocks.latency_min_samples,
                                   clocks.latency_budget_s)
    out["embed_all_threads"] = latency(lambda text: encoder.embed([text], is_query=True), texts,
                                       clocks.latency_min_samples, clocks.api_budget_s)
    return out


THREADING_SETUPS = {
    "libgomp default (spinning waits)": {"OMP_WAIT_POLICY": None, "NUMBA_THREADING_LAYER": None},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER": None},
    "NUMBA_THREADING_LAYER=workqueue": {"OMP_WAIT_POLICY": None,
                                        "NUMBA_THREADING_LAYER": "workqueue"},
}


def threading_probe(index_path: Path, corpus: Path) -> dict[str, Any]:
    """The real index's tokens-mode batch (k=10, all threads) in a fresh process per threading
    setup (bench/speed/threads_probe.py): evidence for how the package should start its
    threads."""
    out: dict[str, Any] = {}
    for name, changes in tqdm(THREADING_SETUPS.items(), desc="threading probe", leave=False):
        env = dict(os.environ)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          env.get("PYTHONPATH")]))
        try:
            done = subprocess.run([sys.executable, "-m", "bench.speed.threads_probe",
                                   str(index_path),
                                   str(corpus)], env=env, cwd=REPO_ROOT, capture_output=True,
                                  text=True, timeout=300, check=True)
            out[name] = json.loads(done.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, json.JSONDecodeError, IndexError) as error:
            out[name] = {"error": str(error)[:500]}
    return out


# ----------------------------------------------------------------------------------------- ratios
def ratios_and_targets(sizes: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """tokretrieve / peer for every size, and each issue target with what was reached."""
    ratios = []
    for r in sizes:
        row: dict[str, Any] = {"size": r["size"], "n_docs": r["n_docs"]}
        tok = r["tokretrieve"]
        for k in map(str, KS):
            if "bm25s" in r:
                best = max(BM25_BACKENDS, key=lambda b, k=k: r["bm25s"][b][k]["batch"]["qps"])
                row[f"qps_vs_bm25s_k{k}"] = (tok["tokens"][k]["batch"]["qps"]
                                             / r["bm25s"][best][k]["batch"]["qps"])
                row[f"bm25s_backend_k{k}"] = best
                row[f"p50_vs_bm25s_k{k}"] = (r["bm25s"][best][k]["latency"]["p50_ms"]
                                             / tok["tokens"][k]["latency"]["p50_ms"])
            if "faiss" in r:
                row[f"qps_vs_faiss_k{k}"] = (tok["tokens"][k]["batch"]["qps"]
                                             / r["faiss"][k]["batch"]["qps"])
                row[f"model_qps_vs_faiss_k{k}"] = (tok["model"][k]["batch"]["qps"]
                                                   / r["faiss"][k]["batch"]["qps"])
        e2e = r["end_to_end"]
        if "dense" in e2e:
            row["e2e_dense_over_tokens_p50"] = e2e["dense"]["p50_ms"] / e2e["tokens"]["p50_ms"]
            row["e2e_dense_over_model_p50"] = e2e["dense"]["p50_ms"] / e2e["model"]["p50_ms"]
        if "faiss" in r:
            row["bytes_sparse_over_dense"] = (r["bytes"]["sparse"]["postings_and_ids"]
                                              / r["faiss"]["bytes"]["with_ids"])
            row["bytes_estimate_over_dense"] = (
                r["bytes"]["sparse_elias_fano_estimate"]["total"]
                + r["bytes"]["sparse"]["doc_ids"]) / r["faiss"]["bytes"]["with_ids"]
        if "bm25s" in r:
            row["indexing_vs_bm25s"] = (r["indexing"]["postings_per_s"]
                                        / r["bm25s"]["postings_per_s"])
        ratios.append(row)

    targets = []
    largest = max(sizes, key=lambda r: r["n_docs"])
    million = next((r for r in sizes if r["n_docs"] == 1_000_000), None)
    for row in ratios:
        for k in map(str, KS):
            if f"qps_vs_bm25s_k{k}" in row:
                targets.append(_target(f"tokens QPS vs BM25S, k={k}", row["size"],
                                       row[f"qps_vs_bm25s_k{k}"], ">=", TARGETS["qps_vs_bm25s"],
                                       "x"))
        if "e2e_dense_over_tokens_p50" in row:
            targets.append(_target("end-to-end p50, dense / tokens", row["size"],
                                   row["e2e_dense_over_tokens_p50"], ">=",
                                   TARGETS["end_to_end_vs_dense"], "x"))
        if "bytes_sparse_over_dense" in row:
            targets.append(_target("index bytes, sparse / dense", row["size"],
                                   row["bytes_sparse_over_dense"], "<=",
                                   TARGETS["bytes_vs_dense"], "x"))
    p99_size = million or largest
    for mode in MODES:
        for k in map(str, KS):
            targets.append(_target(f"p99 latency, {mode} mode, k={k}, 1 thread", p99_size["size"],
                                   p99_size["tokretrieve"][mode][k]["latency"]["p99_ms"], "<",
                                   TARGETS["p99_ms_1m"], "ms"))
    for r in sizes:
        targets.append(_target("indexing throughput (postings/s)", r["size"],
                               r["indexing"]["postings_per_s"], ">=", TARGETS["postings_per_s"],
                               ""))
    return ratios, targets


def _target(name: str, size: str, value: float, op: str, goal: float, unit: str) -> dict:
    met = {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]
    return {"target": name, "size": size, "value": value, "goal": f"{op} {goal:g}{unit}",
            "met": bool(met), "gap": value / goal if goal else float("nan")}
