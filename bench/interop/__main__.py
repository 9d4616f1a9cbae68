"""`python -m bench.interop`: every route out of tokretrieve on one collection, each verified.

    python -m bench.interop                          # Cranfield, minilm (cached embeddings)
    python -m bench.interop --routes lucene,milvus   # a subset (jsonvector, seismic, lucene,
                                                     #  milvus, sharded, scale)
    python -m bench.interop --hits 100 --modes tokens,model

For each query mode: the exported integer queries, tokretrieve's own query time on them, the
JSONL exports (time, bytes), Lucene through Pyserini (build, bytes, query time, agreement), a
Milvus Lite collection (load, bytes, query time, agreement); once, the sharded build on a local
Dask cluster against a single-process build of the same documents (time, identical or not).
What each figure means: bench/interop/routes.py. Writes
bench/results/interop/<timestamp>/results.json and report.md and prints the tables.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.interop.report import render_report, summary_lines
from bench.interop.routes import (
    export_route,
    lucene_route,
    milvus_route,
    scale_route,
    sharded_route,
    tokretrieve_route,
)
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
from tokretrieve.interop.queries import ExportedQueries

ROUTES = ("jsonvector", "seismic", "lucene", "milvus", "sharded", "scale")
MODES = ("tokens", "model")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.interop",
        description="Exports, Lucene, Milvus and sharded encoding on one collection: build "
                    "time, bytes, query time, and each engine's top-k checked against "
                    "tokretrieve's.")
    add_collection_arguments(parser, "interop")
    parser.add_argument("--routes", default=",".join(ROUTES),
                        help=f"routes to run (default {','.join(ROUTES)})")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="query modes (default tokens,model)")
    parser.add_argument("--hits", type=positive_int, default=100,
                        help="top-k compared (default 100)")
    parser.add_argument("--scale-docs", default="100000,1000000",
                        help="synthetic collection sizes of the bounded-memory export run "
                             "(route scale; default 100000,1000000)")
    parser.add_argument("--shards", type=positive_int, default=4,
                        help="shards of the sharded build (default 4, on 2 local workers)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    routes = parse_list(args.routes, one_of(ROUTES), "--routes")
    modes = parse_list(args.modes, one_of(MODES), "--modes")
    opened = open_collection(args)
    if opened is None:
        return 1
    spec, collection = opened
    print(f"[interop] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} queries; loading {args.model}", flush=True)
    encoder, encoded = load_embeddings(args, collection)
    record = new_record(command_line("python -m bench.interop", argv),
                        settings={"routes": routes, "modes": modes, "hits": args.hits,
                                  "shards": args.shards},
                        **record_fields(args, spec, collection, encoder, encoded))
    out_dir = run_folder(args.output, record)
    k = args.hits
    with tempfile.TemporaryDirectory(prefix="bench-interop-", dir=scratch_folder(args)) as tmp:
        root = Path(tmp)
        index = build_from_embeddings(root / "index", collection.doc_ids,
                                      encoded.doc_embeddings, encoder,
                                      [text for _, text in collection.docs])
        record["index"] = {"documents": len(index), "bytes": index.bytes_on_disk,
                           "postings": index.manifest.postings,
                           "bag_size": index.manifest.bags.bag_size}
        record["modes"] = {}
        for mode in modes:
            queries = ExportedQueries.encode(index, collection.queries, mode, encoder)
            runs: dict[str, Any] = {"tokretrieve": tokretrieve_route(index, queries, k)}
            record["modes"][mode] = runs
            export = root / f"export-{mode}"
            for target in ("jsonvector", "seismic"):
                if target in routes or (target == "jsonvector" and "lucene" in routes):
                    print(f"[interop] {mode}: {target} export", flush=True)
                    runs[target] = export_route(index, queries, root / f"{target}-{mode}",
                                                target)
            export = root / f"jsonvector-{mode}"
            if "lucene" in routes:
                print(f"[interop] {mode}: lucene", flush=True)
                runs["lucene"] = lucene_route(index, queries, export, root / f"lucene-{mode}",
                                              k)
            if "milvus" in routes:
                print(f"[interop] {mode}: milvus", flush=True)
                runs["milvus"] = milvus_route(index, queries, str(root / f"milvus-{mode}.db"),
                                              k)
            write_record(out_dir, record, render_report, partial=True)
        if "scale" in routes:
            sizes = parse_list(args.scale_docs, positive_int, "--scale-docs")
            print(f"[interop] export of synthetic collections: {sizes}", flush=True)
            record["scale"] = scale_route(index, sizes, root)
            write_record(out_dir, record, render_report, partial=True)
        if "sharded" in routes:
            print(f"[interop] sharded build: {args.shards} shards on 2 local workers",
                  flush=True)
            record["sharded"] = sharded_route(collection.docs, encoder, root, args.shards)
    finish_record(out_dir, record, render_report, lambda done: "\n".join(summary_lines(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
