"""`python -m bench`: the retrieval benchmark from the command line.

    python -m bench                                  # Cranfield, minilm and smollm2
    python -m bench --dataset irds:beir/scifact/test --model minilm
    python -m bench --quick                          # smoke run: 300 docs, small grids
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.datasets import DEFAULT_DATASET, REPO_ROOT, resolve_spec, unavailable_reason
from bench.report import ratio_table, summary_table
from bench.runner import Options, run_dataset
from bench.systems import SparseConfig
from tokretrieve.projection import WEIGHTINGS

DEFAULT_MODELS = ("minilm", "smollm2")
QUICK_LIMIT_DOCS = 300


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Sparse (model / tokens queries), dense, BM25 and RRF hybrids on BEIR "
                    "folders or ir_datasets ids; writes results.json, report.md, TREC runs and "
                    "PNG plots to <output>/<dataset>/<timestamp>/.")
    parser.add_argument("--dataset", action="append", metavar="SPEC",
                        help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or "
                             f"irds:<id>; repeatable (default {DEFAULT_DATASET}, relative to "
                             "the repository root)")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="alias (minilm, smollm2), model folder, .gguf file or hub id; "
                             f"repeatable (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default <output>/cache)")
    parser.add_argument("--max-length", type=int, default=256,
                        help="tokens per text, prompt included (default 256)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=100, help="hits kept per query")
    parser.add_argument("--limit-docs", type=int, default=None,
                        help="first N documents only (queries keep judgments among them)")
    parser.add_argument("--limit-queries", type=int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_LIMIT_DOCS} docs unless --limit-docs, small "
                             "sweep grids, 10 timing queries")
    parser.add_argument("--no-sweep", action="store_true", help="skip the lever sweeps")
    parser.add_argument("--k", type=int, default=None, help="sparse bag size of the "
                        "'defaults' rows (default: the package's)")
    parser.add_argument("--pc1-strength", type=float, default=None)
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=None)
    parser.add_argument("--token-weighting", choices=("idf", "count"), default="idf")
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
    base = SparseConfig()
    overrides = {"k": args.k, "pc1_strength": args.pc1_strength, "weighting": args.weighting,
                 "token_weighting": args.token_weighting}
    base = SparseConfig(**{**base.as_dict(),
                           **{k: v for k, v in overrides.items() if v is not None}})
    limit_docs = args.limit_docs or (QUICK_LIMIT_DOCS if args.quick else None)
    return Options(
        models=args.model or list(DEFAULT_MODELS),
        output=args.output,
        cache_dir=args.cache_dir or args.output / "cache",
        max_length=args.max_length, batch_size=args.batch_size, depth=args.depth,
        limit_docs=limit_docs, limit_queries=args.limit_queries, quick=args.quick,
        sweep=not args.no_sweep, base=base, identical_ids=args.keep_identical_ids,
        refresh_cache=args.refresh_cache,
        timing_queries=10 if args.quick else args.timing_queries, rrf_k=args.rrf_k,
        forward_sample=8 if args.quick else 64, threads=args.threads, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    options = options_from(args, command.strip())
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
