"""`python -m bench.speed.packing`: what the packed codec saves in bytes, and what decoding it
costs the exact kernel in time.

    python -m bench.speed.packing --index index/cranfield                 # one 65,536-doc block
    python -m bench.speed.packing --index index/cranfield --docs 131072

tokretrieve's raw postings spend 3 bytes on a posting (a uint16 document offset, a uint8
impact); the packed codec (tokretrieve.index.packing) stores each list's gaps and levels
bit-packed, 512 postings a chunk in sixteen lanes with PForDelta-style exceptions, and the
kernel (tokretrieve.index.kernels) decodes them chunk by chunk into two small buffers before
the same scatter-adds. This benchmark times the package's own search, `top_k` of the raw and
of the packed postings of the same documents, k = 10, one thread, one query per call
(bench.toolkit.clock.latency), after checking that both return the same documents and sums
on every query. The codecs are timed in interleaved rounds (`--rounds`), so that a slow spell
of a shared machine falls on both.

The rows: the raw lists; the packed codec with every list in chunks, as format 4 stored it;
and the packed codec as format 5 stores it, the lists that hold most documents dense (a byte
per document, added in one vectorized pass), at the codec's share or at each of
`--dense-shares`: the chunk row against a dense one is what the dense lists bring by
themselves.

The corpus is synthetic (bench/speed/synth.py, drawn from the index's bags) at `--docs`
documents, so that the gaps are those of full 65,536-document blocks; the queries are the
index model's, both modes, as the frontier encodes them. Writes
bench/results/speed/packing/<timestamp>/.

Earlier runs of this benchmark (committed under bench/results/speed/packing/, README Speed)
timed three experimental layouts with the scatter loop alone, before the codec went into the
kernel; the sixteen-lane one is the codec.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.speed.frontier import add_index_arguments, open_index, postings_walked, query_batches
from bench.speed.kernel import QueryBatch, package_top_k
from bench.speed.synth import corpus_at
from bench.toolkit.cli import parse_list, positive_int
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
from tokretrieve.index.packing import DENSE_SHARE
from tokretrieve.index.postings import Postings, SegmentedPostings, postings_from_bags
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "packing"
K = 10
RAW = "raw"
CHUNKS = "packed, chunks only"  # format 4's packed lists: no dense ones


def dense_name(share: float) -> str:
    """The row of the packed codec with lists dense from `share` of their documents."""
    return f"packed, dense from {share:.0%}"


def stored_bytes(postings: SegmentedPostings) -> int:
    """Bytes of the arrays a segment of these postings stores."""
    return sum(np.asarray(array).nbytes for array in postings.arrays().values())


def same_results(codecs: dict[str, SegmentedPostings], batch: QueryBatch) -> bool:
    """Every codec's top-k (documents, sums, counts) equals the raw one's on every query."""
    for single in batch.singles():
        results = [package_top_k(postings, single, K, 1) for postings in codecs.values()]
        if not all(np.array_equal(a, b) for other in results[1:]
                   for a, b in zip(results[0], other, strict=True)):
            return False
    return True


def measure(postings: Postings, batches: dict[str, QueryBatch], hidden_size: int,
            rounds: int = 5, dense_shares: Sequence[float] = (DENSE_SHARE,)
            ) -> dict[str, Any]:
    """Bytes of each codec, and its search latencies in `rounds` rounds, the codecs
    interleaved in each: per codec and mode, the median round's p50 / p99 / mean, and the
    median of its rounds' time over the raw codec's time in the same round, both of the mean
    call and of the typical one (`_typical_ms`)."""
    codecs = {RAW: postings, CHUNKS: postings.packed(None),
              **{dense_name(share): postings.packed(share) for share in dense_shares}}
    mean_length = postings.n_postings / max(postings.n_docs, 1)
    out: dict[str, Any] = {"documents": postings.n_docs, "postings": postings.n_postings,
                           "dense_bytes_per_doc": hidden_size * 4, "rounds": rounds, "k": K,
                           "codecs": {}}
    for name, stored in codecs.items():
        per_posting = stored_bytes(stored) / postings.n_postings
        out["codecs"][name] = {"bytes": stored_bytes(stored), "bytes_per_posting": per_posting,
                               "vs_dense": per_posting * mean_length / (hidden_size * 4),
                               "modes": {}}
    with pinned(1):
        for mode, batch in batches.items():
            if not same_results(codecs, batch):
                raise SystemExit(f"error: the packed postings answered the {mode} queries "
                                 "differently from the raw ones")
            walked = float(postings_walked(postings, batch).sum())
            timings: dict[str, list[dict[str, Any]]] = {name: [] for name in codecs}
            for round_ in range(rounds):
                for name, stored in codecs.items():
                    timings[name].append(latency(lambda b, p=stored: package_top_k(p, b, K, 1),
                                                 batch.singles(), per_item=True))
                print(f"  {mode} round {round_ + 1}: " + ", ".join(
                    f"{name} {timings[name][-1]['mean_ms']:.3f}" for name in codecs)
                    + " ms mean", flush=True)
            raw = [t["mean_ms"] for t in timings[RAW]]
            raw_typical = [_typical_ms(t) for t in timings[RAW]]
            for name in codecs:
                ratios = [t["mean_ms"] / r for t, r in zip(timings[name], raw, strict=True)]
                typical = [_typical_ms(t) / r
                           for t, r in zip(timings[name], raw_typical, strict=True)]
                mean_ms = float(np.median([t["mean_ms"] for t in timings[name]]))
                out["codecs"][name]["modes"][mode] = {
                    **{key: float(np.median([t[key] for t in timings[name]]))
                       for key in ("p50_ms", "p99_ms", "mean_ms")},
                    "x_raw": float(np.median(ratios)), "rounds_x_raw": ratios,
                    "typical_ms": float(np.median([_typical_ms(t) for t in timings[name]])),
                    "x_raw_typical": float(np.median(typical)),
                    "rounds_x_raw_typical": typical,
                    "ns_per_posting": mean_ms * 1e6 * len(batch) / walked}
    return out


def _typical_ms(timing: dict[str, Any]) -> float:
    """A round's typical time per query: the mean over the queries of each one's median
    call (a slow spell of the machine moves a query's mean, seldom its median)."""
    return float(np.mean(timing["per_item_s"])) * 1e3


def render(record: dict[str, Any]) -> str:
    result = record["result"]
    lines = ["# Packed postings: bytes saved, decoding's cost in the kernel", "",
             provenance(record) + f"; {result['documents']:,} synthetic documents drawn from "
             f"{record['index']} ({result['postings'] / result['documents']:.0f} postings per "
             f"document, dense float32 {result['dense_bytes_per_doc']} bytes per document). "
             f"The package's search (top {result['k']}), one thread, one query per call; the "
             "packed postings' results checked equal to the raw ones' on every query first. "
             f"Times: the median of {result['rounds']} rounds, the codecs interleaved in "
             "each; a codec's time over the raw one's is taken within each round, of the mean "
             "call and of the mean of each query's median call (which a slow spell of the "
             "machine moves less). *packed, chunks only*: every list in chunks, as format 4 "
             "stored them; *packed, dense from N%*: as format 5 stores them, a list that holds "
             "at least N% of the documents up to its last one dense, a byte per document.", ""]
    rows = []
    for name, codec in result["codecs"].items():
        cells = [name, f"{codec['bytes_per_posting']:.3f}", f"{codec['vs_dense']:.3f}"]
        for mode in ("tokens", "model"):
            m = codec["modes"][mode]
            cells += [f"{number(m['p50_ms'], 3)} / {number(m['p99_ms'], 3)}",
                      f"{m['ns_per_posting']:.3f}",
                      f"{m['x_raw']:.2f} ({min(m['rounds_x_raw']):.2f}-"
                      f"{max(m['rounds_x_raw']):.2f})",
                      f"{m['x_raw_typical']:.2f} ({min(m['rounds_x_raw_typical']):.2f}-"
                      f"{max(m['rounds_x_raw_typical']):.2f})"]
        rows.append(cells)
    lines += table(["codec", "bytes / posting", "x dense float32",
                    *(heading for mode in ("tokens", "model") for heading in (
                        f"{mode} p50 / p99 ms", f"{mode} ns / posting",
                        f"{mode} x raw, means: median (rounds)",
                        f"{mode} x raw, per-query medians: median (rounds)"))], rows)
    return "\n".join(lines) + "\n"


def summary(record: dict[str, Any]) -> str:
    codecs = record["result"]["codecs"]
    return "\n".join(
        f"{name}: {codec['vs_dense']:.3f}x dense bytes, "
        + ", ".join(f"{mode} {codec['modes'][mode]['x_raw']:.2f}x raw time"
                    for mode in ("tokens", "model"))
        for name, codec in codecs.items())


def unit_share(text: str) -> float:
    """A share in (0, 1]; a ValueError otherwise, which `parse_list` reports by option."""
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(text)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.packing",
                                     description=__doc__.split("\n")[0])
    add_index_arguments(parser)
    parser.add_argument("--docs", type=positive_int, default=65_536,
                        help="synthetic documents (default one full 65,536-document block)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="timing rounds, the codecs interleaved in each (default 5)")
    parser.add_argument("--dense-shares", default=str(DENSE_SHARE),
                        help="comma-separated shares of its documents from which a list is "
                             f"stored dense, a packed row each (default {DENSE_SHARE}, the "
                             "codec's)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    dense_shares = parse_list(args.dense_shares, unit_share, "--dense-shares")
    index = open_index(args.index)
    batches, _ = query_batches(index, index_encoder(index), args.corpus, ())
    postings = postings_from_bags(corpus_at(str(args.docs), index.postings.to_bags(),
                                            args.seed),
                                  "uint8", scale=float(index.manifest.layout.scale))
    record = new_record(command_line("python -m bench.speed.packing", argv),
                        **index_record(index))
    out = run_folder(args.output, record)
    record["result"] = measure(postings, batches, index.manifest.model.hidden_size, args.rounds,
                               dense_shares)
    write_record(out, record, render, partial=True)
    finish_record(out, record, render, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
