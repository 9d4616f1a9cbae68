"""`python -m bench.speed.floor`: the least time an exhaustive query can take on this core, and
where the release's speed targets fall against it.

    python -m bench.speed.floor --index index/cranfield                # real, 100 k, 1 M
    python -m bench.speed.floor --index index/cranfield --sizes real,20000

The exact kernel (tokretrieve.index.kernels) walks every posting of every query token. Each
posting of a list stored in chunks costs one scatter-add into the segment's accumulator (a load,
a multiply-add, a store at a data-dependent address); each dense list (format 5, a byte per
document) one vectorized add per document it covers. So a query cannot take less than

    its chunked postings x one scatter-add + its dense lists' documents x one vectorized add,

each timed here by a bare compiled loop over data in cache: no decoding, no bounds checks, no
heap, no memory traffic. That is the *work floor* of this query on this core. The cheaper of two
scatter-adds counts: the kernel's float32 one and an int32 one (integer accumulation, the
cheapest read-modify-write measured), so the floor holds for an integer kernel too. Exact
pruning would walk fewer postings, but on these bags it could skip almost none
(bench.speed.headroom, README "Exact pruning"), so for an exact engine that adds its postings one
at a time the floor is a bound, and the gap between it and the kernel is what faster code of that
kind could win. It is this core's measured rate, not a theoretical one: LLVM compiles the bare
loops to scalar code, and no vector scatter instruction was tried.

Reported per corpus (the index's real bags, synthetic ones drawn from them, bench/speed/synth.py)
and query mode (tokens, model; the index's model encodes the queries, as bench.speed.frontier):
- the kernel's time (the index's own packed lists, one thread, k=10, one query per call) and the
  work floor, as percentiles over the queries of each query's median time, and the floor's share
  of the kernel's time;
- the memory floor: the packed words the query walks, read at the measured single-thread
  bandwidth (bench.speed.frontier.read_bandwidth);
- BM25S (numba) on the tokens queries, one thread (on `--bm25-sizes`).
Then the targets (README, Speed) at the largest size, each against the kernel and the floor;
the ratio to BM25S at the largest size it was built on.
Writes bench/results/speed/floor/<timestamp>/.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from bench.speed.frontier import (
    add_index_arguments,
    open_index,
    query_batches,
    read_bandwidth,
    real_bags,
)
from bench.speed.kernel import QueryBatch, package_top_k
from bench.speed.peers import BM25Peer
from bench.speed.synth import corpus_at, corpus_sizes
from bench.toolkit.clock import latency
from bench.toolkit.machine import index_record
from bench.toolkit.results import (
    command_line,
    finish_record,
    new_record,
    provenance,
    run_folder,
    write_record,
)
from bench.toolkit.tables import number, table
from bench.toolkit.threads import pinned
from tokretrieve.index.packing import DENSE
from tokretrieve.index.postings import PackedPostings, postings_from_bags
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "floor"
K = 10
# The rate loops: lists of RATE_DENSITY of a RATE_SPAN-document segment (the kernel's), enough of
# them for about RATE_POSTINGS postings: in cache with their accumulator, as the floor assumes.
RATE_SPAN = 65_536
RATE_DENSITY = 0.1
RATE_POSTINGS = 200_000
RATE_PASSES = 5
RATE_ROUNDS = 7
# The release's targets at 1 M documents, one thread (README, Speed).
TOKENS_P99_MS = 1.0
MODEL_P50_MS = 5.0
BM25S_RATIO = 3.0


@numba.njit(nogil=True, cache=True)
def _scatter_float(accumulator, docs, levels, weight, passes):
    for _ in range(passes):
        for i in range(docs.shape[0]):
            accumulator[docs[i]] += weight * np.float32(levels[i])


@numba.njit(nogil=True, cache=True)
def _scatter_int(accumulator, docs, levels, weight, passes):
    for _ in range(passes):
        for i in range(docs.shape[0]):
            accumulator[docs[i]] += weight * np.int32(levels[i])


@numba.njit(nogil=True, cache=True)
def _dense_add(accumulator, row, weight, passes):
    for _ in range(passes):
        for d in range(row.shape[0]):
            accumulator[d] += weight * np.float32(row[d])


def _best_ns(loop: Callable[[int], None], items: int) -> tuple[float, float]:
    """(best, median) nanoseconds per item of `loop(RATE_PASSES)` over RATE_ROUNDS calls, after
    a compiling call: the best, because a floor is what the core can do, not what a
    neighbour's burst leaves."""
    loop(1)
    seconds = []
    for _ in range(RATE_ROUNDS):
        start = time.perf_counter()
        loop(RATE_PASSES)
        seconds.append(time.perf_counter() - start)
    per_item = 1e9 / (RATE_PASSES * items)
    return min(seconds) * per_item, float(np.median(seconds)) * per_item


def machine_rates(seed: int = 0) -> dict[str, float]:
    """Nanoseconds of one scatter-add (float32, int32; `scatter_ns` the cheaper) and of one
    dense document's add, by bare compiled loops on one thread over sorted lists in cache."""
    rng = np.random.default_rng(seed)
    per_list = int(RATE_SPAN * RATE_DENSITY)
    docs = np.concatenate([np.sort(rng.choice(RATE_SPAN, per_list, replace=False))
                           for _ in range(max(RATE_POSTINGS // per_list, 1))]).astype(np.uint16)
    levels = rng.integers(1, 256, len(docs)).astype(np.uint8)
    row = rng.integers(0, 256, RATE_SPAN).astype(np.uint8)
    floats = np.zeros(RATE_SPAN, dtype=np.float32)
    ints = np.zeros(RATE_SPAN, dtype=np.int32)
    out: dict[str, float] = {}
    for name, loop, items in (
            ("scatter_float32", lambda p: _scatter_float(floats, docs, levels, np.float32(1.5),
                                                         p), len(docs)),
            ("scatter_int32", lambda p: _scatter_int(ints, docs, levels, np.int32(3), p),
             len(docs)),
            ("dense_add", lambda p: _dense_add(floats, row, np.float32(1.5), p), len(row))):
        out[f"{name}_ns"], out[f"{name}_ns_median"] = _best_ns(loop, items)
    out["scatter_ns"] = min(out["scatter_float32_ns"], out["scatter_int32_ns"])
    return out


@numba.njit(nogil=True, cache=True)
def _query_work(indptr, word_ptr, words, query_indptr, query_tokens, scattered, dense_docs,
                walked_words):  # pragma: no cover - compiled
    for q in range(query_indptr.shape[0] - 1):
        for segment in range(indptr.shape[0]):
            for i in range(query_indptr[q], query_indptr[q + 1]):
                token = query_tokens[i]
                n = indptr[segment, token + 1] - indptr[segment, token]
                if n == 0:
                    continue
                at = word_ptr[segment, token]
                walked_words[q] += word_ptr[segment, token + 1] - at
                if words[at] == DENSE:
                    dense_docs[q] += words[at + 1]
                else:
                    scattered[q] += n


def query_work(postings: PackedPostings, batch: QueryBatch) -> dict[str, np.ndarray]:
    """Per query, what the kernel must do: postings of chunked lists (one scatter-add each),
    documents covered by dense lists (one vectorized add each: a dense list runs up to its
    last document), and the packed bytes walked."""
    n = len(batch)
    scattered = np.zeros(n, dtype=np.int64)
    dense_docs = np.zeros(n, dtype=np.int64)
    walked_words = np.zeros(n, dtype=np.int64)
    _query_work(np.asarray(postings.indptr), np.asarray(postings.word_ptr),
                np.asarray(postings.words), batch.indptr, batch.tokens, scattered, dense_docs,
                walked_words)
    return {"scattered": scattered, "dense_docs": dense_docs, "bytes": walked_words * 4}


def work_floor_ms(work: dict[str, np.ndarray], rates: dict[str, float]) -> np.ndarray:
    """Each query's work floor in milliseconds: its scatter-adds and dense adds at the rates."""
    return (work["scattered"] * rates["scatter_ns"]
            + work["dense_docs"] * rates["dense_add_ns"]) / 1e6


def spread(ms: np.ndarray) -> dict[str, float]:
    """p50 / p99 / mean over the queries of per-query times in milliseconds."""
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(np.mean(ms))}


def measure_mode(postings: PackedPostings, batch: QueryBatch, rates: dict[str, float],
                 bandwidth: float) -> dict[str, Any]:
    """The kernel's per-query medians against each query's work floor and memory floor."""
    timing = latency(lambda b: package_top_k(postings, b, K, 1), batch.singles(), per_item=True)
    kernel = np.asarray(timing["per_item_s"]) * 1e3
    work = query_work(postings, batch)
    floor = work_floor_ms(work, rates)
    memory = work["bytes"] / bandwidth * 1e3
    return {"queries": len(batch), "passes": timing["passes"],
            "calls": {key: timing[key] for key in ("p50_ms", "p99_ms", "mean_ms", "n")},
            "kernel": spread(kernel), "work_floor": spread(floor),
            "memory_floor": spread(memory),
            "floor_share": float(np.median(floor / kernel)),
            "scattered_mean": float(work["scattered"].mean()),
            "dense_docs_mean": float(work["dense_docs"].mean()),
            "bytes_mean": float(work["bytes"].mean())}


def bm25s_timing(bags: sp.csr_matrix, batch: QueryBatch) -> dict[str, Any]:
    """BM25S (numba) over the bags' tokens, the tokens queries one per call, one thread."""
    bm25 = BM25Peer.build(bags.indptr, bags.indices, bags.shape[1])
    terms = bm25.queries(batch.to_bags(bags.shape[1]))
    timing = latency(lambda q: bm25.search([q], K, 1), terms, per_item=True)
    return {"calls": {key: timing[key] for key in ("p50_ms", "p99_ms", "mean_ms", "n")},
            **spread(np.asarray(timing["per_item_s"]) * 1e3)}


def measure_corpus(bags: sp.csr_matrix, scale: float, batches: dict[str, QueryBatch],
                   rates: dict[str, float], bandwidth: float, with_bm25: bool
                   ) -> dict[str, Any]:
    """Both query modes (and BM25S) on one corpus, its postings packed as an index stores them."""
    postings = postings_from_bags(bags, "uint8", scale=scale).packed()
    out: dict[str, Any] = {"documents": int(bags.shape[0]), "postings": postings.n_postings,
                           "modes": {}}
    for mode in ("tokens", "model"):
        out["modes"][mode] = stats = measure_mode(postings, batches[mode], rates, bandwidth)
        print(f"  {mode}: kernel p50 {stats['kernel']['p50_ms']:.3f} ms, work floor "
              f"{stats['work_floor']['p50_ms']:.3f} ms", flush=True)
    if with_bm25:
        out["bm25s"] = bm25s_timing(bags, batches["tokens"])
        print(f"  BM25S: p50 {out['bm25s']['p50_ms']:.3f} ms", flush=True)
    return out


def targets(corpus: dict[str, Any], bm25_corpus: dict[str, Any] | None = None
            ) -> list[dict[str, Any]]:
    """The release's speed targets: what each asks, the kernel's figure, the work floor's, and
    whether each meets it. Latency targets on `corpus`; the BM25S ratio on `bm25_corpus`
    (default `corpus`; none where it has no BM25S timing), of single-thread mean times (the
    queries per second of one thread), the floor's being the most a kernel that adds these
    postings one at a time could reach."""
    tokens, model = corpus["modes"]["tokens"], corpus["modes"]["model"]
    rows = [
        {"target": f"tokens p99 <= {TOKENS_P99_MS:g} ms", "unit": "ms",
         "kernel": tokens["kernel"]["p99_ms"], "floor": tokens["work_floor"]["p99_ms"],
         "goal": TOKENS_P99_MS, "higher_is_better": False},
        {"target": f"model p50 <= {MODEL_P50_MS:g} ms", "unit": "ms",
         "kernel": model["kernel"]["p50_ms"], "floor": model["work_floor"]["p50_ms"],
         "goal": MODEL_P50_MS, "higher_is_better": False}]
    bm25_corpus = corpus if bm25_corpus is None else bm25_corpus
    if "bm25s" in bm25_corpus:
        bm25, ours = bm25_corpus["bm25s"]["mean_ms"], bm25_corpus["modes"]["tokens"]
        where = ("" if bm25_corpus is corpus
                 else f" (at {bm25_corpus['documents']:,} documents)")
        rows.append({"target": f">= {BM25S_RATIO:g}x BM25S's queries per second{where}",
                     "unit": "x", "kernel": bm25 / ours["kernel"]["mean_ms"],
                     "floor": bm25 / ours["work_floor"]["mean_ms"],
                     "goal": BM25S_RATIO, "higher_is_better": True})
    for row in rows:
        for key in ("kernel", "floor"):
            value = row[key]
            row[f"{key}_meets"] = (value >= row["goal"] if row["higher_is_better"]
                                   else value <= row["goal"])
    return rows


def render(record: dict[str, Any]) -> str:
    rates, bandwidth = record["rates"], record["bandwidth"]["bytes_per_s"]
    lines = ["# The work floor: the least an exhaustive query takes on this core", "",
             provenance(record) + f"; index {record['index']}.", "",
             "Rates, bare compiled loops on one thread over data in cache (best of "
             f"{RATE_ROUNDS}, median in brackets): scatter-add float32 "
             f"{rates['scatter_float32_ns']:.3f} ns ({rates['scatter_float32_ns_median']:.3f}), "
             f"int32 {rates['scatter_int32_ns']:.3f} ns ({rates['scatter_int32_ns_median']:.3f})"
             f"; the floor takes {rates['scatter_ns']:.3f} ns a chunked posting; dense add "
             f"{rates['dense_add_ns']:.4f} ns a document ({rates['dense_add_ns_median']:.4f}). "
             f"Read bandwidth {bandwidth / 1e9:.1f} GB/s.", "",
             "Times: percentiles over the queries of each query's median call, one thread, "
             f"k={K}, the postings packed as an index stores them. Work floor: a query's "
             "chunked postings x the scatter-add + its dense lists' documents x the dense add. "
             "Memory floor: its packed bytes at the read bandwidth. Floor share: the median "
             "over the queries of work floor / kernel time.", ""]
    rows = []
    for name, corpus in record["corpora"].items():
        for mode, stats in corpus["modes"].items():
            kernel, floor = stats["kernel"], stats["work_floor"]
            rows.append([name, f"{corpus['documents']:,}", mode,
                         f"{stats['scattered_mean']:,.0f}", f"{stats['dense_docs_mean']:,.0f}",
                         f"{number(kernel['p50_ms'], 3)} / {number(kernel['p99_ms'], 3)}",
                         f"{number(floor['p50_ms'], 3)} / {number(floor['p99_ms'], 3)}",
                         number(stats["memory_floor"]["p50_ms"], 3),
                         f"{stats['floor_share']:.0%}"])
    lines += table(["corpus", "docs", "queries", "scatter-adds (mean)", "dense docs (mean)",
                    "kernel p50 / p99 ms", "work floor p50 / p99 ms", "memory floor p50 ms",
                    "floor share"], rows)
    bm25_rows = [[name, f"{corpus['documents']:,}",
                  f"{number(corpus['bm25s']['p50_ms'], 3)} / "
                  f"{number(corpus['bm25s']['p99_ms'], 3)}", number(corpus['bm25s']['mean_ms'], 3)]
                 for name, corpus in record["corpora"].items() if "bm25s" in corpus]
    if bm25_rows:
        lines += ["", "BM25S (numba), the tokens queries, same timing:", ""]
        lines += table(["corpus", "docs", "p50 / p99 ms", "mean ms"], bm25_rows)
    if record["corpora"]:
        by_size = sorted(record["corpora"].values(), key=lambda corpus: corpus["documents"])
        corpus = by_size[-1]
        with_bm25 = [c for c in by_size if "bm25s" in c]
        lines += ["", f"Targets at {corpus['documents']:,} documents, one thread:", ""]
        lines += table(["target", "kernel", "meets", "work floor", "meets"], [
            [row["target"], f"{number(row['kernel'], 2)} {row['unit']}",
             "yes" if row["kernel_meets"] else "no", f"{number(row['floor'], 2)} {row['unit']}",
             "yes" if row["floor_meets"] else "no"]
            for row in targets(corpus, with_bm25[-1] if with_bm25 else None)])
    return "\n".join(lines) + "\n"


def summary(record: dict[str, Any]) -> str:
    out = []
    for name, corpus in record["corpora"].items():
        for mode, stats in corpus["modes"].items():
            out.append(f"{name} {mode}: kernel p50 {stats['kernel']['p50_ms']:.3f} ms, work "
                       f"floor {stats['work_floor']['p50_ms']:.3f} ms "
                       f"({stats['floor_share']:.0%} of the kernel's time)")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.floor",
                                     description=__doc__.split("\n")[0])
    add_index_arguments(parser)
    parser.add_argument("--sizes", default="real,100000,1000000",
                        help="'real' and/or synthetic document counts (default "
                             "real,100000,1000000)")
    parser.add_argument("--bm25-sizes", default="real,100000",
                        help="the sizes BM25S is built on ('' for none; default real,100000: "
                             "its build at 1 M documents peaked at 23 GB in the speed "
                             "benchmark, this machine's whole memory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    sizes = corpus_sizes(args.sizes)
    bm25_sizes = set(corpus_sizes(args.bm25_sizes))
    index = open_index(args.index)
    if index.manifest.layout.impacts != "uint8":
        raise SystemExit(f"error: {args.index} stores float32 weights, which the packed codec "
                         "cannot hold: give an index built with uint8 impacts (the default)")
    bags, scale = real_bags(index)
    batches, _ = query_batches(index, index_encoder(index), args.corpus, ())
    record = new_record(command_line("python -m bench.speed.floor", argv),
                        **index_record(index), corpora={})
    out = run_folder(args.output, record)
    with pinned(1):
        record["rates"] = machine_rates(args.seed)
        record["bandwidth"] = read_bandwidth()
        for name in sizes:
            print(f"{name} ...", flush=True)
            record["corpora"][name] = measure_corpus(
                corpus_at(name, bags, args.seed), scale, batches, record["rates"],
                record["bandwidth"]["bytes_per_s"], name in bm25_sizes)
            write_record(out, record, render, partial=True)
    finish_record(out, record, render, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
