"""`python -m bench.quality` (or `python -m bench`): the retrieval benchmark from the command line.

    python -m bench.quality                          # Cranfield, minilm and smollm2
    python -m bench.quality --dataset irds:beir/scifact/test --model minilm
    python -m bench.quality --quick                  # smoke run: 300 docs, small grids
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.quality.datasets import DEFAULT_DATASET, resolve_spec, unavailable_reason
from bench.quality.report import ratio_table, summary_table
from bench.quality.runner import Options, run_dataset
from bench.quality.systems import SparseConfig
from bench.toolkit import RESULTS_DIR
from bench.toolkit.results import command_line
from tokretrieve.encoding.models import model_config
from tokretrieve.encoding.projection import WEIGHTINGS
from tokretrieve.errors import TokretrieveError

DEFAULT_MODELS = ("minilm", "smollm2")
DEFAULT_OUTPUT = RESULTS_DIR / "quality"
QUICK_LIMIT_DOCS = 300


def parse_args(argv: Sequence[str] | None = None,
               prog: str = "python -m bench.quality") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Sparse (model / tokens queries), dense, BM25 and RRF hybrids on BEIR "
                    "folders or ir_datasets ids; writes results.json, report.md, TREC runs and "
                    "PNG plots to <output>/<dataset>/<timestamp>/.")
    parser.add_argument("--dataset", action="append", metavar="SPEC",
                        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or "
                             f"irds:<id>; repeatable (default {DEFAULT_DATASET})")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="alias (minilm, smollm2), model folder, .gguf file or hub id; "
                             f"repeatable (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="results go to <output>/<dataset>/<timestamp>/ (default "
                             "bench/results/quality)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default <output>/cache, git-ignored)")
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per text, prompt included (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=100, help="hits kept per query")
    parser.add_argument("--limit-docs", type=int, default=None,
                        help="first N documents only (queries keep judgments among them)")
    parser.add_argument("--limit-queries", type=int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_LIMIT_DOCS} docs unless --limit-docs, small "
                             "sweep grids, 10 timing queries, short throughput clocks")
    parser.add_argument("--no-sweep", action="store_true", help="skip the lever sweeps")
    parser.add_argument("--small-grid", action="store_true",
                        help="sweep --quick's small grids over the whole collection (for big "
                             "vocabularies, where every point re-derives costly bags)")
    parser.add_argument("--bag-size", type=int, default=None,
                        help="sparse bag size (tokens kept per document) of the 'defaults' rows "
                             "(default: the package's)")
    parser.add_argument("--pc1-strength", type=float, default=None)
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=None)
    parser.add_argument("--token-weighting", choices=("idf", "count"), default=None,
                        help="query-token weighting (default: the index's, per query mode)")
    parser.add_argument("--keep-identical-ids", action="store_true",
                        help="do not drop hits whose doc id equals the query id")
    parser.add_argument("--refresh-cache", action="store_true",
                        help="re-encode even when cached embeddings match")
    parser.add_argument("--timing-queries", type=int, default=100,
                        help="queries encoded one by one for per-query encoding time")
    parser.add_argument("--rrf-k", type=int, default=60)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for encoding (default: torch's choice)")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace, command: str) -> Options:
    overrides = {"bag_size": args.bag_size, "pc1_strength": args.pc1_strength,
                 "weighting": args.weighting, "token_weighting": args.token_weighting}
    base = SparseConfig(**{key: value for key, value in overrides.items() if value is not None})
    limit_docs = args.limit_docs or (QUICK_LIMIT_DOCS if args.quick else None)
    return Options(
        models=args.model or list(DEFAULT_MODELS),
        output=args.output,
        cache_dir=args.cache_dir or args.output / "cache",
        max_length=args.max_length, batch_size=args.batch_size, depth=args.depth,
        limit_docs=limit_docs, limit_queries=args.limit_queries, quick=args.quick,
        small_grid=args.small_grid,
        sweep=not args.no_sweep, base=base, identical_ids=args.keep_identical_ids,
        refresh_cache=args.refresh_cache,
        timing_queries=10 if args.quick else args.timing_queries, rrf_k=args.rrf_k,
        forward_sample=8 if args.quick else 64, throughput_min_s=0.2 if args.quick else 1.0,
        threads=args.threads, command=command)


def main(argv: Sequence[str] | None = None, prog: str = "python -m bench.quality") -> int:
    args = parse_args(argv, prog)
    options = options_from(args, command_line(prog, argv))
    try:  # a bad model name is refused now, not after a collection's other work
        for model in options.models:
            model_config(model)
    except TokretrieveError as error:
        raise SystemExit(f"error: --model: {error}") from None
    specs = args.dataset or [DEFAULT_DATASET]
    status = 0
    for given in specs:
        spec = resolve_spec(given)
        reason = unavailable_reason(spec)
        if reason is not None:
            print(f"[bench] skipping {given}: {reason}", file=sys.stderr)
            if args.dataset:
                status = 1  # a collection asked for by name must exist
            continue
        folder, results = run_dataset(spec, options)
        print(f"\n{results['dataset']['name']}: {options.command}\n")
        print(summary_table(results))
        print()
        print(ratio_table(results))
        print(f"\nreport: {folder / 'report.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
