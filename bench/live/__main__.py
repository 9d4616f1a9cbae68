"""`python -m bench.live`: what adding, deleting and compacting an index cost, and what its
segments and deleted documents cost searches and quality.

    python -m bench.live                              # Cranfield, minilm (cached embeddings)
    python -m bench.live --quick                      # smoke run: fewer states and repeats
    python -m bench.live --segments 1,4,16 --repeats 3

What is measured and why: bench/live/measure.py. Writes
bench/results/live/<timestamp>/results.json and report.md and prints the tables.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.live.measure import (
    DEPTH,
    Clocks,
    K,
    QuerySet,
    filesystem,
    measure_adds,
    measure_deletes,
    quality_rows,
    segment_series,
)
from bench.live.report import render_report, summary_lines
from bench.toolkit.cached import (
    add_collection_arguments,
    load_embeddings,
    open_collection,
    record_fields,
    scratch_folder,
)
from bench.toolkit.cli import parse_list, positive_int
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record

DEFAULTS = {"batches": "10,100,1000", "deletes": "1,10,100", "segments": "1,2,4,8,16",
            "deleted": "10,30", "first": "50,20,5", "repeats": 7}
QUICK = {"batches": "10,100", "deletes": "1,10", "segments": "1,4", "deleted": "10,30",
         "first": "50,5", "repeats": 2}


def percentage(text: str) -> float:
    value = float(text)
    if not 0 < value < 100:
        raise ValueError(text)
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live",
        description="Add throughput, delete cost, search latency as segments and deletions "
                    "grow, compaction time, and nDCG@10 of build + adds against one build, "
                    "from cached embeddings (encoding excluded).")
    add_collection_arguments(parser, "live")
    parser.add_argument("--batches", default=None,
                        help=f"documents per add commit (default {DEFAULTS['batches']})")
    parser.add_argument("--deletes", default=None,
                        help=f"ids per delete commit (default {DEFAULTS['deletes']})")
    parser.add_argument("--segments", default=None,
                        help=f"segment counts of the latency series (default "
                             f"{DEFAULTS['segments']})")
    parser.add_argument("--deleted", default=None,
                        help=f"cumulative percentages deleted in each series (default "
                             f"{DEFAULTS['deleted']})")
    parser.add_argument("--first", default=None,
                        help=f"percentages of the first build before adding the rest "
                             f"(default {DEFAULTS['first']})")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help=f"timed commits per measurement, after one warm-up (default "
                             f"{DEFAULTS['repeats']})")
    parser.add_argument("--latency-samples", type=positive_int, default=None,
                        help=f"samples per latency measurement, in passes over the queries "
                             f"(default {Clocks.latency_min_samples}; 200 with --quick)")
    parser.add_argument("--latency-budget", type=float, default=None,
                        help=f"seconds after which a latency measurement stops early (default "
                             f"{Clocks.latency_budget_s:g}; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer sizes, segment counts and repeats, short clocks")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """The lists and counts a run uses: each option as given, else --quick's or the default."""
    base = QUICK if args.quick else DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return base[name] if value is None else value

    clocks = Clocks(latency_min_samples=200, latency_budget_s=1.0) if args.quick else Clocks()
    if args.latency_samples is not None:
        clocks.latency_min_samples = args.latency_samples
    if args.latency_budget is not None:
        clocks.latency_budget_s = args.latency_budget
    return {"batches": parse_list(pick("batches"), positive_int, "--batches"),
            "deletes": parse_list(pick("deletes"), positive_int, "--deletes"),
            "segments": parse_list(pick("segments"), positive_int, "--segments"),
            "deleted": sorted(x / 100 for x in parse_list(pick("deleted"), percentage,
                                                          "--deleted")),
            "first": parse_list(pick("first"), percentage, "--first"),
            "repeats": pick("repeats"), "seed": args.seed, "quick": args.quick,
            "k": K, "depth": DEPTH, "latency": dataclasses.asdict(clocks)}


def check_sizes(settings: dict[str, Any], n_docs: int) -> None:
    """Refuse sizes the collection cannot hold, before anything is built."""
    for name, limit, values in (("--batches", n_docs - 1, settings["batches"]),
                                ("--deletes", n_docs, settings["deletes"]),
                                ("--segments", n_docs, settings["segments"])):
        too_big = [v for v in values if v > limit]
        if too_big:
            raise SystemExit(f"error: {name} {too_big}: the collection has {n_docs} documents")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    opened = open_collection(args)
    if opened is None:
        return 1
    spec, collection = opened
    check_sizes(settings, len(collection.docs))
    print(f"[live] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} judged queries; loading {args.model}", flush=True)
    encoder, encoded = load_embeddings(args, collection)
    scratch_root = scratch_folder(args)
    settings |= {"bag_size": encoder.recipe.bag_size, "weighting": encoder.weighting}
    fields = record_fields(args, spec, collection, encoder, encoded)
    fields["embeddings"]["doc_seconds"] = encoded.doc_seconds
    record = new_record(command_line("python -m bench.live", argv), settings=settings,
                        **fields, scratch={"path": str(scratch_root), **filesystem(scratch_root)})
    out_dir = run_folder(args.output, record)
    ids = collection.doc_ids
    embeddings = encoded.doc_embeddings
    queries = QuerySet(collection.query_ids, [text for _, text in collection.queries],
                       encoded.query_embeddings)
    clocks = Clocks(**settings["latency"])
    repeats = settings["repeats"]

    def save() -> None:
        write_record(out_dir, record, render_report, partial=True)

    with tempfile.TemporaryDirectory(prefix="bench-live-", dir=scratch_root) as scratch:
        root = Path(scratch)
        record["quality"] = quality_rows(root, ids, embeddings, encoder, queries,
                                         collection.qrels, settings["first"],
                                         progress=lambda line: print(f"[live] {line}",
                                                                     flush=True))
        save()
        record["adds"] = []
        for batch in settings["batches"]:
            record["adds"].append(measure_adds(root, ids, embeddings, encoder, batch, repeats))
            add = record["adds"][-1]
            print(f"[live] add {batch}: {add['docs_per_s']:,.0f} docs/s "
                  f"({add['median']['total_s'] * 1000:.1f} ms per commit)", flush=True)
            save()
        record["deletes"] = []
        for count in settings["deletes"]:
            record["deletes"].append(measure_deletes(root, ids, embeddings, encoder, count,
                                                     repeats, args.seed))
            print(f"[live] delete {count}: "
                  f"{record['deletes'][-1]['median']['total_s'] * 1000:.1f} ms per commit",
                  flush=True)
            save()
        record["search"] = []
        for segments in settings["segments"]:
            record["search"].append(segment_series(
                root, ids, embeddings, encoder, queries, segments, settings["deleted"],
                args.seed, repeats, clocks, progress=lambda line: print(f"[live] {line}",
                                                                        flush=True)))
            save()
    finish_record(out_dir, record, render_report, lambda done: "\n".join(summary_lines(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
