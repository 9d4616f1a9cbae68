"""`python -m bench.serve`: the HTTP server under load: throughput and latency of concurrent
clients in both query modes while a writer changes the index, the consistency of every answer,
and what micro-batching model queries buys.

    python -m bench.serve                              # Cranfield, minilm (cached embeddings)
    python -m bench.serve --quick                      # smoke run: 2 s per setting, 1 and 4 clients
    python -m bench.serve --clients 1,4,16 --seconds 10 --windows 0,0.005

What is measured and why: bench/serve/load.py. Writes
bench/results/serve/<timestamp>/results.json and report.md and prints the tables.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP; server too)

# isort: split
import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.serve.load import ProbeTokens, Setting, Workload, run_setting
from bench.serve.report import render_report, summary_lines
from bench.toolkit.cached import (
    add_collection_arguments,
    build_from_embeddings,
    load_embeddings,
    open_collection,
    record_fields,
    scratch_folder,
)
from bench.toolkit.cli import one_of, parse_list, positive_int
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record
from tokretrieve import SparseIndex
from tokretrieve.serve import Limits

MODES = ("tokens", "model")
DEFAULTS = {"clients": "1,4,16", "seconds": 10.0, "windows": f"0,{Limits.batch_window_s:g}"}
QUICK = {"clients": "1,4", "seconds": 2.0, "windows": f"0,{Limits.batch_window_s:g}"}


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve",
        description="Queries/s and p50/p99 latency of the HTTP server at several client counts "
                    "in both query modes while a writer adds and deletes documents, the "
                    "consistency of every answer with its generation, and model-mode figures "
                    "with the micro-batching window at 0 and at its default.")
    add_collection_arguments(parser, "serve")
    parser.add_argument("--clients", default=None,
                        help=f"concurrent clients per setting (default {DEFAULTS['clients']})")
    parser.add_argument("--seconds", type=non_negative, default=None,
                        help=f"timed seconds per setting (default {DEFAULTS['seconds']:g})")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="query modes (default tokens,model)")
    parser.add_argument("--windows", default=None,
                        help=f"batch windows in seconds of the model-mode settings (default "
                             f"{DEFAULTS['windows']}; tokens queries are never batched and run "
                             "at the default only)")
    parser.add_argument("--write-rate", type=non_negative, default=2.0,
                        help="writer commits per second, adds and deletes in turn (default 2; "
                             "0: no writer)")
    parser.add_argument("--k", type=positive_int, default=10, help="hits per query (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s per setting, 1 and 4 clients")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else DEFAULTS
    clients = parse_list(args.clients or base["clients"], positive_int, "--clients")
    windows = parse_list(args.windows or base["windows"], non_negative, "--windows")
    seconds = base["seconds"] if args.seconds is None else args.seconds
    if seconds <= 0:
        raise SystemExit("error: --seconds must be positive")
    return {"clients": clients, "windows": windows, "seconds": seconds,
            "modes": parse_list(args.modes, one_of(MODES), "--modes"),
            "write_rate": args.write_rate,
            "k": args.k, "seed": args.seed, "quick": args.quick,
            "default_window_s": Limits.batch_window_s}


def plan(settings: dict[str, Any]) -> list[Setting]:
    """Tokens settings at the default window, then per client count the model settings at
    every window next to one another (a window comparison is then made minutes apart at
    most, under the same load of the machine)."""
    out = []
    if "tokens" in settings["modes"]:
        out += [Setting("tokens", settings["default_window_s"], c) for c in settings["clients"]]
    if "model" in settings["modes"]:
        out += [Setting("model", w, c) for c in settings["clients"] for w in settings["windows"]]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    opened = open_collection(args)
    if opened is None:
        return 1
    spec, collection = opened
    print(f"[serve] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} queries; loading {args.model}", flush=True)
    encoder, encoded = load_embeddings(args, collection)
    scratch_root = scratch_folder(args)
    record = new_record(command_line("python -m bench.serve", argv), settings=settings,
                        **record_fields(args, spec, collection, encoder, encoded))
    out_dir = run_folder(args.output, record)
    texts = dict(collection.docs)
    with tempfile.TemporaryDirectory(prefix="bench-serve-", dir=scratch_root) as scratch:
        root = Path(scratch)
        index = build_from_embeddings(root / "base", collection.doc_ids,
                                      encoded.doc_embeddings, encoder,
                                      [text for _, text in collection.docs])
        record["index"] = {"documents": len(index), "bytes": index.bytes_on_disk,
                           "bag_size": index.manifest.bags.bag_size,
                           "weighting": index.manifest.bags.weighting}
        base = SparseIndex.load(root / "base")
        tokens = ProbeTokens(encoder.tokenizer,
                             base.segments[0].postings.document_frequency(None))
        # The writer adds copies of the collection's texts under new ids (documents of the
        # collection's kind, encoded by the server's model like any add).
        work = Workload(index=root / "base", corpus=spec, base_ids=collection.doc_ids,
                        texts=texts, queries=[text for _, text in collection.queries],
                        add_texts=[text for _, text in collection.docs[::-1]], tokens=tokens,
                        seconds=settings["seconds"], write_rate=settings["write_rate"],
                        k=settings["k"], seed=settings["seed"])
        del encoder, base  # the server holds its own model; this process only sends requests
        record["runs"] = []
        for setting in plan(settings):
            print(f"[serve] {setting.label}: {settings['seconds']:g} s", flush=True)
            result = run_setting(setting, work, root)
            record["runs"].append(result)
            load = result["load"]
            batching = result["batching"]
            print(f"[serve]   {load['qps']:.1f} q/s, p50 {load['p50_ms']:.1f} ms, p99 "
                  f"{load['p99_ms']:.1f} ms, {result['error_count']} errors"
                  + (f", mean batch {batching['mean']:.2f}" if batching else ""), flush=True)
            write_record(out_dir, record, render_report, partial=True)
    finish_record(out_dir, record, render_report, lambda done: "\n".join(summary_lines(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
