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

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Sleeping OpenMP waits (as in bench.speed and bench.live); the server process inherits it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime as dt
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.live.__main__ import parse_list, positive_int
from bench.quality.cache import encode_collection
from bench.quality.datasets import load_collection, resolve_spec, unavailable_reason
from bench.serve.load import ProbeTokens, Setting, Workload, run_setting
from bench.serve.report import render_report, summary_lines
from bench.toolkit import CRANFIELD, RESULTS_DIR
from bench.toolkit.clock import load_average
from bench.toolkit.machine import model_record
from bench.toolkit.results import command_line, new_record, run_folder, write_record
from tokretrieve import Encoder, SparseIndex
from tokretrieve.build import index_from_embeddings
from tokretrieve.serve import Limits

DEFAULT_OUTPUT = RESULTS_DIR / "serve"
DEFAULT_CACHE = RESULTS_DIR / "quality" / "cache"
MODES = ("tokens", "model")
DEFAULTS = {"clients": "1,4,16", "seconds": 10.0, "windows": f"0,{Limits.batch_window_s:g}"}
QUICK = {"clients": "1,4", "seconds": 2.0, "windows": f"0,{Limits.batch_window_s:g}"}


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(text)
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve",
        description="Queries/s and p50/p99 latency of the HTTP server at several client counts "
                    "in both query modes while a writer adds and deletes documents, the "
                    "consistency of every answer with its generation, and model-mode figures "
                    "with the micro-batching window at 0 and at its default.")
    parser.add_argument("--corpus", default=str(CRANFIELD),
                        help="BEIR folder (corpus, queries, qrels; default "
                             "../shared/data/cranfield)")
    parser.add_argument("--model", default="minilm",
                        help="alias, model folder or hub id (default minilm)")
    parser.add_argument("--max-length", type=positive_int, default=256,
                        help="tokens per text of the cached embeddings (default 256)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="embedding cache, shared with bench.quality (default "
                             "bench/results/quality/cache; encoded there when missing)")
    parser.add_argument("--refresh-cache", action="store_true")
    parser.add_argument("--limit-docs", type=positive_int, default=None,
                        help="first N documents only (smoke runs; its own cache file)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="results go to <output>/<timestamp>/ (default bench/results/serve)")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where the indexes are written (default: system temp)")
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
            "modes": parse_list(args.modes, mode, "--modes"), "write_rate": args.write_rate,
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
    spec = resolve_spec(args.corpus)
    reason = unavailable_reason(spec)
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    collection = load_collection(spec, args.limit_docs)
    print(f"[serve] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} queries; loading {args.model}", flush=True)
    encoder = Encoder.load(args.model, max_length=args.max_length)
    encoded = encode_collection(encoder, collection, args.model, args.cache_dir,
                                refresh=args.refresh_cache)
    scratch_root = args.scratch or Path(tempfile.gettempdir())
    scratch_root.mkdir(parents=True, exist_ok=True)
    record = new_record(
        command_line("python -m bench.serve", argv), settings=settings,
        collection={"name": collection.name, "spec": spec, "documents": len(collection.docs),
                    "queries": len(collection.queries), "limit_docs": args.limit_docs},
        model=model_record(args.model, encoder),
        embeddings={"path": str(encoded.path), "from_cache": encoded.from_cache,
                    "encoded_at": encoded.encoded_at})
    out_dir = run_folder(args.output, record)
    texts = dict(collection.docs)
    with tempfile.TemporaryDirectory(prefix="bench-serve-", dir=scratch_root) as scratch:
        root = Path(scratch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # documents with empty bags (Cranfield has two)
            index = index_from_embeddings(collection.doc_ids, encoded.doc_embeddings, encoder,
                                          path=root / "base")
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
    record["load_avg_end"] = load_average()
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_record(out_dir, record, render_report, partial=False)
    print()
    print("\n".join(summary_lines(record)))
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
