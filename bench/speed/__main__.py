"""`python -m bench.speed`: how fast tokretrieve indexes and searches, next to BM25S and FAISS.

    python -m bench.speed                                   # cranfield, 100 k and 1 M documents
    python -m bench.speed --sizes cranfield,100000          # fewer sizes
    python -m bench.speed --quick                           # smoke run: cranfield + 20 k

What is measured and why: bench/speed/runner.py. Writes
bench/results/speed/<timestamp>/results.json and report.md and prints the summary table.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import dataclasses
import datetime as dt
import gc
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np

from bench.speed.peers import unit_rows
from bench.speed.report import render_report, summary_lines
from bench.speed.runner import (
    DEFAULT_OUTPUT,
    KS,
    MODEL,
    MODES,
    TARGETS,
    Clocks,
    measure_size,
    ratios_and_targets,
    real_source,
    threading_probe,
)
from bench.toolkit import CRANFIELD
from bench.toolkit.clock import load_average
from bench.toolkit.results import command_line, new_record, run_folder, write_record
from bench.toolkit.threads import pinned
from tokretrieve.encoding.encoder import DEFAULT_BAG_SIZE

DEFAULT_SIZES = "cranfield,100000,1000000"
QUICK_SIZES = "cranfield,20000"


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
    parser.add_argument("--corpus", type=Path, default=CRANFIELD,
                        help="Cranfield BEIR folder: its queries, and its documents when the "
                             "real index must be built (default ../shared/data/cranfield)")
    parser.add_argument("--index", type=Path, default=None,
                        help=f"an existing {MODEL} index of that corpus (default: index/cranfield "
                             f"if it is a {MODEL} index with bags of --bag-size tokens, else a "
                             "cached build under bench/results/speed/cache/)")
    parser.add_argument("--bag-size", type=int, default=DEFAULT_BAG_SIZE,
                        help="tokens per document bag of the real index (default: the "
                             f"package's, {DEFAULT_BAG_SIZE}); the synthetic sizes follow it")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="results go to <output>/<timestamp>/ (default bench/results/speed)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    clocks = Clocks()
    n_queries = args.queries
    if args.quick:
        clocks = Clocks(latency_budget_s=2.0, latency_min_samples=100, throughput_min_s=0.2,
                        api_budget_s=1.0)
        n_queries = n_queries or 50
    scratch_root = args.scratch or Path(tempfile.gettempdir())
    scratch_root.mkdir(parents=True, exist_ok=True)

    record = new_record(command_line("python -m bench.speed", argv),
                        settings={"sizes": sizes, "ks": list(KS), "modes": list(MODES),
                                  "quick": args.quick, "seed": args.seed,
                                  "bag_size": args.bag_size,
                                  "clocks": dataclasses.asdict(clocks),
                                  "threads_batch": numba.config.NUMBA_NUM_THREADS,
                                  "targets": TARGETS})
    out_dir = run_folder(args.output, record)
    real = real_source(args.corpus, args.bag_size, args.index, n_queries)
    manifest = real.index.manifest
    record["real"] = {"index": str(real.path), "docs": len(real.index),
                      "postings": manifest.postings,
                      "layout": dataclasses.asdict(manifest.layout),
                      "bags": {key: getattr(manifest.bags, key) for key in
                               ("bag_size", "weighting", "pc1_strength", "merge_variants")},
                      "model": manifest.model.name,
                      "queries": len(real.queries), "corpus": str(args.corpus)}
    query_vectors = None
    if not args.no_dense:
        with pinned(numba.config.NUMBA_NUM_THREADS):
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
