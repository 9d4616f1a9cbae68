"""`python -m bench.speed`: how fast tokretrieve indexes and searches, next to BM25S and FAISS.

    python -m bench.speed                                   # cranfield, 100 k and 1 M documents
    python -m bench.speed --sizes cranfield,100000          # fewer sizes
    python -m bench.speed --quick                           # smoke run: cranfield + 20 k

Why it is built this way:
- Speed depends on the postings a query walks, so the larger corpora are synthetic bags drawn from
  the real Cranfield index's distribution (bag lengths, each token's fraction of documents, its
  weights; bench/speed_synth.py), not uniform noise that would make every list short.
- Every size runs every system in the same process, one after another, on the same bags and
  the same 225 Cranfield queries, so the ratios compare like with like; the load average is
  recorded with every number because the machine is shared.
- tokretrieve is timed at its kernel (tokretrieve.kernels.batch_top_k, called as search_bags
  calls it) for the comparison with BM25S's and FAISS's id/score results, and at its public API
  (search_bags / search, which also builds Hit lists with matched tokens) for what a user pays.
- Indexing is timed from doc-major bags (what the encoder produces) to a written, fsynced index
  folder, through the package's own postings_from_bags and write_index: encoding is excluded,
  as the comparison with BM25S (which gets the same bags) needs.

Writes <output>/<timestamp>/results.json and report.md and prints the summary table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# OpenMP threads that spin at barriers (libgomp's default) fight the other jobs of a shared,
# oversubscribed machine and made batch calls ~40x slower here; sleeping waits measure the
# engines, not the scheduler. Set before numba, torch or FAISS start their thread pools; the
# threading probe (bench/speed_threads.py) records what the default would have given.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss
import numba
import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from bench.records import write_record
from bench.speed_kernel import QueryBatch, package_top_k, traversal
from bench.speed_peers import BM25_BACKENDS, BM25Peer, DensePeer, unit_rows
from bench.speed_report import render_report, summary_lines
from bench.speed_synth import TokenDistribution, distribution_from_bags, generate_bags
from bench.speed_timing import (
    current_rss_mb,
    latency,
    load_average,
    peak_rss_mb,
    reset_peak_rss,
    throughput,
    timed,
)
from tokretrieve import Encoder, SparseIndex
from tokretrieve.corpus import read_documents, read_queries
from tokretrieve.errors import EmptyQueryError, IndexFormatError
from tokretrieve.postings import Postings, postings_from_bags
from tokretrieve.sparse_index import DEFAULT_K, postings_format, write_index
from tokretrieve.storage import FORMAT_VERSION, folder_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "data" / "cranfield"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "speed"
DEMO_INDEX = REPO_ROOT / "index" / "cranfield"
DEFAULT_SIZES = "cranfield,100000,1000000"
QUICK_SIZES = "cranfield,20000"
MODEL = "minilm"
KS = (10, 1000)
MODES = ("tokens", "model")
POSTINGS_FILES = ("postings_indptr.npy", "postings_docs.npy", "postings_impacts.npy")
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
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.speed",
        description="Indexing throughput, index bytes, load time, latency and QPS of tokretrieve "
                    "(tokens and model query modes) against BM25S and FAISS on the real "
                    "Cranfield bags and synthetic corpora drawn from their distribution.")
    parser.add_argument("--sizes", default=None,
                        help=f"comma-separated: 'cranfield' and/or document counts (default "
                             f"{DEFAULT_SIZES}; {QUICK_SIZES} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small sizes, short clocks, fewer queries")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="Cranfield BEIR folder: its queries, and its documents when the "
                             "real index must be built (default ../shared/data/cranfield)")
    parser.add_argument("--index", type=Path, default=None,
                        help=f"an existing {MODEL} index of that corpus (default: index/cranfield "
                             f"if it is a {MODEL} index with bags of --k tokens, else a cached "
                             "build under bench/results/speed/cache/)")
    parser.add_argument("--k", type=int, default=None,
                        help=f"bag size of the real index (default: the package's, {DEFAULT_K}); "
                             "the synthetic sizes follow it")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where the temporary indexes are written (default: system temp)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=None,
                        help="use only the first N queries (default all 225; 50 with --quick)")
    parser.add_argument("--no-bm25", action="store_true", help="skip BM25S")
    parser.add_argument("--no-dense", action="store_true", help="skip FAISS")
    return parser.parse_args(argv)


def parse_sizes(text: str) -> list[str]:
    """Validate --sizes: 'cranfield' or positive integers (underscores allowed)."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "cranfield":
            sizes.append(part)
            continue
        try:
            n = int(part.replace("_", ""))
        except ValueError:
            raise SystemExit(f"error: --sizes: '{part}' is neither 'cranfield' nor a document "
                             "count") from None
        if n <= 0:
            raise SystemExit(f"error: --sizes: {n} is not a positive document count")
        sizes.append(str(n))
    if not sizes:
        raise SystemExit("error: --sizes is empty")
    return sizes


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, threads, memory, versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = float("nan")
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as h:
        memory_gib = int(h.readline().split()[1]) / 2**20
    versions = {}
    for package in ("tokretrieve", "numpy", "scipy", "numba", "faiss-cpu", "bm25s", "torch",
                    "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_gib": round(memory_gib, 1),
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "python": platform.python_version(),
            "platform": platform.platform(), "packages": versions}


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run numba, FAISS and torch on `n` threads, then restore their settings."""
    before = (numba.get_num_threads(), faiss.omp_get_max_threads(), torch.get_num_threads())
    numba.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])
        torch.set_num_threads(before[2])


def _usable_index(path: Path, encoder: Encoder, k: int) -> SparseIndex | None:
    """The index at `path` if it loads (in any format version this tokretrieve reads), is built
    by our model and has bags of `k` tokens; None otherwise (other settings: rebuild)."""
    if not (path / "manifest.json").is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an older format warns that it is converted
            index = SparseIndex.load(path, encoder=encoder)
    except (IndexFormatError, KeyError, ValueError):
        return None
    if index.manifest["model"]["name"] != MODEL or index.k != k:
        return None
    return index


def _current(index: SparseIndex) -> bool:
    return index.manifest["format_version"] == FORMAT_VERSION


def upgrade_index(index: SparseIndex, encoder: Encoder, path: Path) -> SparseIndex:
    """An older-format index rebuilt in the current format at `path` from the embeddings it
    stores, with its own projection settings (same bags, no encoding pass)."""
    projection = index.manifest["projection"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two empty Cranfield documents
        return SparseIndex.from_embeddings(
            [str(d) for d in index.doc_ids], np.asarray(index.embeddings), encoder, path=path,
            k=index.k, weighting=index.weighting, pc1_strength=projection["pc1_strength"],
            merge_variants=bool(projection["merge_variants"]),
            source=index.manifest.get("source", ""))


def real_source(args: argparse.Namespace, n_queries: int | None) -> RealSource:
    """Open (or build once, with the model and the package's defaults) the real minilm index of
    Cranfield, and read the queries. An index in an older format is rebuilt once into the
    cache from its stored embeddings."""
    if not (args.corpus / "queries.jsonl").is_file():
        raise SystemExit(f"error: {args.corpus} has no queries.jsonl: the benchmark needs the "
                         "Cranfield BEIR folder (--corpus) for its 225 queries")
    print(f"loading {MODEL} ...", flush=True)
    encoder = Encoder.load(MODEL)
    k = args.k or DEFAULT_K
    cache = DEFAULT_OUTPUT / "cache" / f"cranfield-{MODEL}-k{k}"
    if args.index:
        found = [index for index in [_usable_index(args.index, encoder, k)] if index]
        if not found:
            raise SystemExit(f"error: --index {args.index} is not a loadable {MODEL} index "
                             f"with k={k}")
    else:
        found = [index for index in (_usable_index(path, encoder, k)
                                     for path in (DEMO_INDEX, cache)) if index]
    index = next((index for index in found if _current(index)), None)
    if index is None and found:
        old = found[0]
        print(f"real bags: {old.path} is format {old.manifest['format_version']}; rebuilding "
              f"it as format {FORMAT_VERSION} into {cache} from its stored embeddings", flush=True)
        index = upgrade_index(old, encoder, cache)
    if index is None:
        print(f"real bags: building {cache} from {args.corpus} with the package defaults "
              f"(k={k}; 1-3 minutes, once)", flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the two empty Cranfield documents
            index = SparseIndex.build(read_documents(args.corpus), encoder, path=cache, k=k,
                                      source=str(args.corpus), progress=True)
    print(f"real bags: {index.path} ({len(index):,} docs, k={index.k}, "
          f"{index.postings.impacts.dtype} impacts)", flush=True)
    queries = read_queries(args.corpus)
    return RealSource(index, encoder, queries[:n_queries] if n_queries else queries)


# ------------------------------------------------------------------------------------- indexing
def synthetic_ids(n: int) -> list[str]:
    return [f"syn{i:07d}" for i in range(n)]


def index_bags(path: Path, bags: sp.csr_matrix, doc_ids: Sequence[str], real: RealSource,
               source: str) -> dict[str, Any]:
    """Doc-major bags to a loadable index folder, timed step by step, the way
    SparseIndex.from_embeddings does it after encoding: tokretrieve.postings.postings_from_bags
    (the real index's impact type and segment size), the empty-document check on the postings,
    then tokretrieve.sparse_index.write_index (doc id array, arrays, tokenizer, manifest; every
    file fsynced, the folder swapped in atomically).

    embeddings.npy is an empty (0 x hidden) placeholder, because the format requires the file and
    synthetic bags have no embeddings (the dense side is measured separately, as FAISS).
    """
    layout = real.index.manifest["postings_format"]
    reset_peak_rss()
    clock = [time.perf_counter()]
    postings = postings_from_bags(bags, layout["impacts"], int(layout["segment_docs"]))
    clock.append(time.perf_counter())
    empty = np.flatnonzero(postings.document_lengths() == 0)
    clock.append(time.perf_counter())
    ids = np.array(doc_ids, dtype=str)
    manifest = {**real.index.manifest, "format_version": FORMAT_VERSION,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "source": source, "doc_count": int(bags.shape[0]),
                "postings": postings.n_postings, "empty_documents": len(empty),
                "empty_document_ids": [str(ids[i]) for i in empty[:100]],
                "postings_format": postings_format(postings)}
    write_index(path, manifest, postings, ids,
                np.zeros((0, real.encoder.model.hidden_size), dtype=np.float32),
                np.asarray(real.index.pc1_direction), real.index.token_map,
                real.encoder.tokenizer)
    clock.append(time.perf_counter())
    total = clock[-1] - clock[0]
    entries = int(bags.nnz)
    return {
        "bag_entries": entries, "postings": postings.n_postings,
        "dropped_zero_levels": entries - postings.n_postings,
        "impacts": str(postings.impacts.dtype), "scale": postings.scale,
        "segment_docs": postings.segment_docs, "segments": postings.n_segments,
        "build_postings_s": clock[1] - clock[0], "empty_check_s": clock[2] - clock[1],
        "write_s": clock[3] - clock[2], "total_s": total,
        "postings_per_s": entries / total if total > 0 else float("inf"),
        "build_postings_per_s": entries / (clock[1] - clock[0]),
        "peak_rss_mb": peak_rss_mb(), "load_avg": load_average(),
    }


def sparse_bytes(path: Path) -> dict[str, int]:
    """What sparse search reads (postings, ids, tokenizer, maps) vs. the whole folder, from the
    files on disk."""
    sizes = {f.name: f.stat().st_size for f in path.iterdir() if f.is_file()}
    postings = sum(sizes.get(name, 0) for name in POSTINGS_FILES)
    search = folder_bytes(path) - sizes.get("embeddings.npy", 0)
    return {"postings": postings,
            **{name.removesuffix(".npy"): sizes.get(name, 0) for name in POSTINGS_FILES},
            "doc_ids": sizes.get("doc_ids.npy", 0),
            "postings_and_ids": postings + sizes.get("doc_ids.npy", 0), "search_total": search}


def elias_fano_estimate(postings: Postings) -> dict[str, float]:
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
    impacts_bytes = float(postings.n_postings * postings.impacts.dtype.itemsize)
    indptr_bytes = float(indptr.nbytes)
    return {"docs_elias_fano": docs_bytes,
            "docs_uint16": float(postings.n_postings * postings.docs.dtype.itemsize),
            "impacts": impacts_bytes, "indptr": indptr_bytes,
            "total": docs_bytes + impacts_bytes + indptr_bytes}


# -------------------------------------------------------------------------------------- queries
def query_bags(index: SparseIndex, texts: Sequence[str]) -> dict[str, Any]:
    """Both modes' bags for this index (idf over its own bags), and the count bags BM25S gets."""
    tokens, counts, skipped = [], [], 0
    for text in texts:
        try:
            tokens.append(index.token_query_bag(text))
            counts.append(index.token_query_bag(text, token_weighting="count"))
        except EmptyQueryError:
            skipped += 1
    model = index.model_query_bags(list(texts))
    return {"tokens": tokens, "model": model, "counts": counts, "skipped_tokens": skipped}


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


def strip_samples(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "per_item_s"}


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
            index, seconds = timed(lambda: SparseIndex.load(index_path, encoder=real.encoder))
            loads.append(seconds)
        result["load_s"] = {"sparse": float(np.median(loads))}
        result["bytes"] = {"sparse": sparse_bytes(index_path),
                           "sparse_elias_fano_estimate": elias_fano_estimate(index.postings)}
        with threads(all_threads):
            bags_by_mode = query_bags(index, real.texts)
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
                with threads(1):
                    lat = latency(lambda b, k=k: package_top_k(postings, b, k, 1), singles,
                                  clocks.latency_min_samples, clocks.latency_budget_s)
                with threads(all_threads):
                    qps = throughput(
                        lambda k=k, mode=mode: package_top_k(postings, batches[mode], k,
                                                             all_threads),
                        len(batches[mode]), clocks.throughput_min_s)
                tok[mode][str(k)] = {"latency": strip_samples(lat), "batch": qps}
                if k == KS[0]:
                    tok[mode]["fit_k10"] = latency_fit(lat["per_item_s"], stats[mode])
            with threads(1):
                api = latency(lambda bag: index.search_bags([bag], k=KS[0]), bags_by_mode[mode],
                              clocks.latency_min_samples, clocks.api_budget_s)
            tok[mode]["api_search_bags_k10"] = strip_samples(api)
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
                    with threads(1):
                        lat = latency(lambda q, k=k, peer=peer: peer.search([q], k, 0), queries,
                                      clocks.latency_min_samples, clocks.latency_budget_s)
                    with threads(all_threads):
                        qps = throughput(
                            lambda k=k, peer=peer, queries=queries: peer.search(queries, k,
                                                                                all_threads),
                            len(queries), clocks.throughput_min_s)
                    per_backend[str(k)] = {"latency": strip_samples(lat), "batch": qps}
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
    with threads(all_threads):
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
        with threads(1):
            lat = latency(lambda v, k=k: peer.search(v[None, :], k), list(query_vectors),
                          clocks.latency_min_samples, clocks.latency_budget_s)
        with threads(all_threads):
            qps = throughput(lambda k=k: peer.search(query_vectors, k), len(query_vectors),
                             clocks.throughput_min_s)
        info[str(k)] = {"latency": strip_samples(lat), "batch": qps}
    info["peak_rss_mb"] = peak_rss_mb()
    return info


def end_to_end(index: SparseIndex, real: RealSource, folder: Path, clocks: Clocks,
               dense: bool) -> dict[str, Any]:
    """Per query, one thread, text in and top-10 out: tokens mode (tokenize + kernel), model
    mode (forward pass + projection + kernel), dense (forward pass + FAISS); and the public API
    (SparseIndex.search, which also lists matched tokens)."""
    postings = index.postings
    texts = real.texts
    encoder = real.encoder
    out: dict[str, Any] = {}

    def sparse_tokens(text: str) -> object:
        return package_top_k(postings, QueryBatch.from_bags([index.token_query_bag(text)]),
                             KS[0], 1)

    def sparse_model(text: str) -> object:
        return package_top_k(postings, QueryBatch.from_bags(index.model_query_bags([text])),
                             KS[0], 1)

    with threads(1):
        out["tokens"] = strip_samples(latency(sparse_tokens, texts, clocks.latency_min_samples,
                                              clocks.latency_budget_s))
        out["model"] = strip_samples(latency(sparse_model, texts, clocks.latency_min_samples,
                                             clocks.latency_budget_s))
        out["api_tokens"] = strip_samples(latency(
            lambda text: index.search(text, k=KS[0], mode="tokens"), texts,
            clocks.latency_min_samples, clocks.api_budget_s))
        out["embed_1thread"] = strip_samples(latency(
            lambda text: encoder.embed([text], is_query=True), texts,
            clocks.latency_min_samples, clocks.api_budget_s))
        out["tokenize_1thread"] = strip_samples(latency(
            index.token_query_bag, texts, clocks.latency_min_samples, clocks.api_budget_s))
        if dense:
            peer = DensePeer.load(folder / "dense.faiss")

            def dense_query(text: str) -> object:
                return peer.search(unit_rows(encoder.embed([text], is_query=True)), KS[0])

            out["dense"] = strip_samples(latency(dense_query, texts, clocks.latency_min_samples,
                                                 clocks.latency_budget_s))
    out["embed_all_threads"] = strip_samples(latency(
        lambda text: encoder.embed([text], is_query=True), texts, clocks.latency_min_samples,
        clocks.api_budget_s))
    return out


THREADING_SETUPS = {
    "libgomp default (spinning waits)": {"OMP_WAIT_POLICY": None, "NUMBA_THREADING_LAYER": None},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER": None},
    "NUMBA_THREADING_LAYER=workqueue": {"OMP_WAIT_POLICY": None,
                                        "NUMBA_THREADING_LAYER": "workqueue"},
}


def threading_probe(index_path: Path, corpus: Path) -> dict[str, Any]:
    """The real index's tokens-mode batch (k=10, all threads) in a fresh process per threading
    setup (bench/speed_threads.py): evidence for how the package should start its threads."""
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
            done = subprocess.run([sys.executable, "-m", "bench.speed_threads", str(index_path),
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


# ------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = "python -m bench.speed" + (" " + shlex.join(given) if given else "")
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    clocks = Clocks()
    n_queries = args.queries
    if args.quick:
        clocks = Clocks(latency_budget_s=2.0, latency_min_samples=100, throughput_min_s=0.2,
                        api_budget_s=1.0)
        n_queries = n_queries or 50
    started = dt.datetime.now()
    out_dir = args.output / started.strftime("%Y%m%d-%H%M%S")
    scratch_root = args.scratch or Path(tempfile.gettempdir())
    scratch_root.mkdir(parents=True, exist_ok=True)

    record: dict[str, Any] = {"command": command, "started": started.isoformat(timespec="seconds"),
                              "machine": machine(), "load_avg_start": load_average(),
                              "environment": {k: os.environ.get(k) for k in (
                                  "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER",
                                  "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
                              "settings": {"sizes": sizes, "ks": list(KS), "modes": list(MODES),
                                           "quick": args.quick, "seed": args.seed,
                                           "clocks": dataclasses.asdict(clocks),
                                           "threads_batch": numba.config.NUMBA_NUM_THREADS,
                                           "targets": TARGETS}}
    real = real_source(args, n_queries)
    record["real"] = {"index": str(real.path), "docs": len(real.index),
                      "postings": int(real.index.manifest["postings"]),
                      "postings_format": real.index.manifest["postings_format"],
                      "projection": {key: real.index.manifest["projection"].get(key) for key in
                                     ("k", "weighting", "pc1_strength", "merge_variants")},
                      "model": real.index.manifest["model"]["name"],
                      "queries": len(real.queries), "corpus": str(args.corpus)}
    query_vectors = None
    if not args.no_dense:
        with threads(numba.config.NUMBA_NUM_THREADS):
            query_vectors = unit_rows(real.encoder.embed(real.texts, is_query=True))

    results = []
    for size in sizes:
        print(f"\n== {size} ==", flush=True)
        result = measure_size(size, real, args, clocks, scratch_root, query_vectors)
        gc.collect()
        results.append(result)
        record["sizes"] = results
        # a crash in a later size keeps these
        write_record(out_dir, record, render_report, partial=True)
    record["threading_probe"] = threading_probe(real.path, args.corpus)
    if real.distribution is not None:
        d = real.distribution
        top = np.argsort(-d.fraction)[:10]
        record["real"]["distribution"] = {
            "mean_bag": d.mean_length, "active_tokens": int((d.fraction > 0).sum()),
            "top_token_fractions": [round(float(x), 4) for x in d.fraction[top]]}
    record["ratios"], record["targets"] = ratios_and_targets(results)
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    record["load_avg_end"] = load_average()
    write_record(out_dir, record, render_report, partial=False)
    print()
    print("\n".join(summary_lines(record)))
    print(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
