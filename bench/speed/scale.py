"""`python -m bench.speed.scale`: synthetic corpora from 1 k to 10 M documents, built in bounded
memory and searched memory-mapped from disk.

    python -m bench.speed.scale --index index/cranfield --work /big/disk/folder
    python -m bench.speed.scale --index index/cranfield --sizes 1000,100000 --work /tmp/scale
    python -m bench.speed.scale --index index/cranfield --postings raw --work /big/disk/folder

For each size, a child process (so that its peak memory is its own):
1. draws the corpus block by block (65,536 documents, bench/speed/synth.py, from the real bags'
   distribution) straight into tokretrieve.index.postings.PostingsWriter, in the codec of
   `--postings` (packed, the product's default, or raw), which holds one block's bags at a
   time: the build's peak RSS does not grow with the corpus;
2. evicts the written files from the page cache (posix_fadvise DONTNEED: they were fsynced, so
   their pages are clean) and opens them memory-mapped, as SparseIndex.load does;
3. times the first queries of each mode as they come, pages read from disk (`first`), then
   one query per call, one thread, as bench.speed.frontier does (p50 / p99, pages now cached,
   where the machine's memory holds them).

The parent encodes the queries once (the index's model, both modes, as the frontier does),
measures the single-thread read bandwidth for each size's floor (postings walked x the size's
bytes per posting), and reports how bytes and latency grow against a straight line: each figure
per million documents (constant on a line through the origin) and the log-log slope from the
size before (1.0: linear). A size whose postings would not fit in `--work`'s free disk space
(bytes per document from one block drawn and written in the codec first) is refused before
anything is drawn, the arithmetic given. Writes bench/results/speed/scale/<timestamp>/.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.speed.frontier import (
    add_index_arguments,
    open_index,
    postings_walked,
    query_batches,
    read_bandwidth,
    timed_mode,
)
from bench.speed.kernel import QueryBatch, package_top_k
from bench.speed.synth import TokenDistribution, distribution_from_bags, generate_bags
from bench.toolkit.cli import parse_list, positive_int
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
from tokretrieve import SparseIndex
from tokretrieve.index.postings import (
    CODECS,
    MAX_SEGMENT_DOCS,
    PostingsWriter,
    SegmentedPostings,
)
from tokretrieve.index.storage import folder_bytes
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "scale"
DEFAULT_SIZES = "1000,10000,100000,1000000,10000000"
MODES = ("tokens", "model")
FIRST_QUERIES = 10   # timed as they come, right after the files left the page cache
DISK_MARGIN = 1.05   # postings bytes x this must fit in the free space
K = 10


def draw_postings(folder: Path, distribution: TokenDistribution, n_docs: int, scale: float,
                  seed: int, block_docs: int = MAX_SEGMENT_DOCS, codec: str = "packed"
                  ) -> SegmentedPostings:
    """`n_docs` synthetic documents drawn `block_docs` at a time (block b from seed + b) into
    a PostingsWriter of `codec` in `folder`: memory holds one drawn block, whatever
    `n_docs`."""
    writer = PostingsWriter(folder, distribution.vocab_size, "uint8", MAX_SEGMENT_DOCS, scale,
                            codec)
    for block, start in enumerate(range(0, n_docs, block_docs)):
        writer.add(generate_bags(distribution, min(block_docs, n_docs - start),
                                 seed=seed + block))
    return writer.finish()


def evict(folder: Path) -> None:
    """Drop the folder's files from the page cache (clean pages only: they were fsynced)."""
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def first_queries(postings: SegmentedPostings, batch: QueryBatch, n: int) -> list[float]:
    """Milliseconds of each of the first `n` queries, one call each, no warm-up."""
    out = []
    for single in batch.singles()[:n]:
        start = time.perf_counter()
        package_top_k(postings, single, K, 1)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def memory_status(field: str) -> int:
    """This process's VmHWM (peak resident bytes) or VmRSS (now), from /proc/self/status:
    getrusage's ru_maxrss would carry the parent's peak over into a child it starts."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def bytes_per_document(distribution: TokenDistribution, scale: float, work: Path, seed: int,
                       codec: str) -> float:
    """Bytes of postings per document in `codec`, from one full block drawn and written (the
    packed codec's bytes depend on the gaps, so they are measured, not computed)."""
    folder = work / "sample"
    draw_postings(folder, distribution, MAX_SEGMENT_DOCS, scale, seed, codec=codec)
    out = folder_bytes(folder) / MAX_SEGMENT_DOCS
    shutil.rmtree(folder)
    return out


def measure_size(distribution: TokenDistribution, scale: float,
                 batches: dict[str, QueryBatch], n_docs: int, work: Path, seed: int,
                 codec: str = "packed") -> dict[str, Any]:
    """One size, in this (child) process: draw, evict, open memory-mapped, time; the
    postings are removed afterwards."""
    warm = draw_postings(work / "warm-up", distribution, 100, scale, seed, codec=codec)
    for batch in batches.values():  # compile / load the kernel for read-only arrays
        package_top_k(warm, batch.query(0), K, 1)
    shutil.rmtree(work / "warm-up")
    folder = work / f"postings-{n_docs}"
    rss_before = memory_status("VmRSS")
    start = time.perf_counter()
    written = draw_postings(folder, distribution, n_docs, scale, seed + 1, codec=codec)
    out: dict[str, Any] = {"documents": n_docs, "codec": codec, "postings": written.n_postings,
                           "build_s": time.perf_counter() - start,
                           "rss_before_build_bytes": rss_before,
                           "build_peak_rss_bytes": memory_status("VmHWM"),
                           "bytes": folder_bytes(folder), "modes": {}}
    del written
    evict(folder)
    postings = CODECS[codec].open(folder, n_docs, distribution.vocab_size, "uint8", scale,
                                  MAX_SEGMENT_DOCS)
    with pinned(1):
        for mode, batch in batches.items():
            first = first_queries(postings, batch, FIRST_QUERIES)
            out["modes"][mode] = {**timed_mode(postings, batch), "first_ms": first,
                                  "postings_p50": float(np.median(postings_walked(postings,
                                                                                  batch)))}
    out["peak_rss_bytes"] = memory_status("VmHWM")
    del postings
    shutil.rmtree(folder)
    return out


def real_distribution(index: SparseIndex, seed: int) -> tuple[TokenDistribution, float]:
    """The distribution of the index's bags, and its scale (the synthetic levels use it)."""
    return (distribution_from_bags(index.postings.to_bags(), seed=seed),
            float(index.manifest.layout.scale))


def run_child(index: Path, work: Path, n_docs: int, seed: int, codec: str) -> dict[str, Any]:
    """What the child process runs: the real bags' distribution and the saved queries."""
    distribution, scale = real_distribution(SparseIndex.load(index), seed)
    stored = np.load(work / "queries.npz")
    batches = {mode: QueryBatch(stored[f"{mode}_indptr"], stored[f"{mode}_tokens"],
                                stored[f"{mode}_weights"]) for mode in MODES}
    return measure_size(distribution, scale, batches, n_docs, work, seed, codec)


def save_queries(file: Path, batches: dict[str, QueryBatch]) -> None:
    np.savez(file, **{f"{mode}_{part}": getattr(batches[mode], part)
                      for mode in MODES for part in ("indptr", "tokens", "weights")})


def disk_check(work: Path, sizes: Sequence[int], bytes_per_doc: float) -> dict[str, float]:
    """Refuse sizes whose postings would not fit in `work`'s free space; the arithmetic."""
    free = shutil.disk_usage(work).free
    largest = max(sizes)
    need = largest * bytes_per_doc * DISK_MARGIN
    if need > free:
        raise SystemExit(f"error: {largest:,} documents need about {need / 1e9:.1f} GB of "
                         f"postings ({bytes_per_doc:.0f} bytes per document) and {work} has "
                         f"{free / 1e9:.1f} GB free: pass a smaller --sizes or another --work")
    return {"free_bytes": free, "bytes_per_doc_expected": bytes_per_doc,
            "largest_documents_disk_holds": int(free / (bytes_per_doc * DISK_MARGIN))}


def growth_rows(record: dict[str, Any]) -> list[dict[str, float]]:
    """Per size: bytes and each mode's p50 per million documents (constant: linear growth)
    and the log-log slope from the size before (1.0: linear)."""
    rows: list[dict[str, float]] = []
    for size in record["corpora"].values():
        millions = size["documents"] / 1e6
        row = {"documents": size["documents"], "bytes": size["bytes"],
               **{f"{mode}_p50": size["modes"][mode]["p50_ms"] for mode in MODES}}
        for value in ("bytes", *(f"{mode}_p50" for mode in MODES)):
            row[f"{value}_per_million"] = row[value] / millions
            if rows and rows[-1][value] > 0 and row[value] > 0:
                row[f"{value}_slope"] = float(np.log(row[value] / rows[-1][value])
                                              / np.log(row["documents"] / rows[-1]["documents"]))
        rows.append(row)
    return rows


def render(record: dict[str, Any]) -> str:
    bandwidth = record["bandwidth"]["bytes_per_s"]
    disk = record["disk"]
    lines = ["# Scale: synthetic corpora built in bounded memory, searched memory-mapped", "",
             provenance(record) + f"; bags drawn from {record['index']}. One thread, k=10; "
             f"machine memory {record['machine'].get('memory_gib')} GiB.", "",
             f"Disk: {disk['free_bytes'] / 1e9:.1f} GB free in the work folder at the start, "
             f"{disk['bytes_per_doc_expected']:.0f} bytes of postings per document expected "
             f"({record.get('codec', 'raw')} lists, measured on one drawn block): the largest "
             f"corpus it holds is about {disk['largest_documents_disk_holds']:,} documents.",
             "",
             "## Build and latency", "",
             "`first`: the first 10 queries right after the files were evicted from the page "
             "cache (median and max ms, pages read from disk); p50 / p99 after that (pages "
             "cached where memory holds them). Floor: median postings walked x the size's "
             f"bytes per posting, read at {bandwidth / 1e9:.1f} GB/s.", ""]
    rows = []
    for size in record["corpora"].values():
        cells = [f"{size['documents']:,}", f"{size['bytes'] / 1e9:.3f}",
                 f"{size['build_s']:.0f}", f"{size['rss_before_build_bytes'] / 2**20:.0f}",
                 f"{size['build_peak_rss_bytes'] / 2**20:.0f}",
                 f"{size['peak_rss_bytes'] / 2**20:.0f}"]
        for mode in MODES:
            m = size["modes"][mode]
            floor = m["postings_p50"] * size["bytes"] / size["postings"] / bandwidth * 1e3
            cells += [f"{number(float(np.median(m['first_ms'])))} / "
                      f"{number(max(m['first_ms']))}",
                      f"{number(m['p50_ms'])} / {number(m['p99_ms'])}", f"{floor:.3f}"]
        rows.append(cells)
    lines += table(["documents", "GB", "build s", "RSS before build MiB", "build peak RSS MiB",
                    "peak RSS MiB (with mapped pages)", "tokens first", "tokens p50 / p99",
                    "tokens floor", "model first", "model p50 / p99", "model floor"], rows)
    lines += ["", "## Growth against a straight line", "",
              "Per million documents (a straight line through the origin keeps these "
              "constant), and the log-log slope from the row before (1.0: linear).", ""]
    growth = []
    for row in growth_rows(record):
        cells = [f"{row['documents']:,}"]
        for value, unit in (("bytes", 1e9), ("tokens_p50", 1.0), ("model_p50", 1.0)):
            slope = row.get(f"{value}_slope")
            cells.append(f"{row[f'{value}_per_million'] / unit:.3f}"
                         + (f" (slope {slope:.2f})" if slope is not None else ""))
        growth.append(cells)
    lines += table(["documents", "GB per M docs", "tokens p50 ms per M docs",
                    "model p50 ms per M docs"], growth)
    return "\n".join(lines) + "\n"


def summary(record: dict[str, Any]) -> str:
    return "\n".join(
        f"{size['documents']:>11,} docs: {size['bytes'] / 1e9:.2f} GB, build peak RSS "
        f"{size['build_peak_rss_bytes'] / 2**20:.0f} MiB, tokens p50 "
        f"{size['modes']['tokens']['p50_ms']:.2f} ms, model p50 "
        f"{size['modes']['model']['p50_ms']:.2f} ms" for size in record["corpora"].values())


def parse_sizes(text: str) -> list[int]:
    """The --sizes document counts, ascending (the toolkit's list parsing and its errors)."""
    return sorted(parse_list(text, positive_int, "--sizes"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.scale",
                                     description=__doc__.split("\n")[0])
    add_index_arguments(parser)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="synthetic document counts")
    parser.add_argument("--work", type=Path, required=True,
                        help="a folder on the disk that holds the postings (each size's are "
                             "removed once measured)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postings", choices=tuple(CODECS), default="packed",
                        help="the lists' codec (default packed, as tokretrieve index stores)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:  # one size, in its own process (see measure_size)
        print(json.dumps(run_child(args.index, args.work, args.child, args.seed,
                                   args.postings)))
        return 0

    sizes = parse_sizes(args.sizes)
    index = open_index(args.index)
    args.work.mkdir(parents=True, exist_ok=True)
    record = new_record(command_line("python -m bench.speed.scale", argv),
                        **index_record(index), codec=args.postings, corpora={})
    distribution, scale = real_distribution(index, args.seed)
    record["disk"] = disk_check(args.work, sizes, bytes_per_document(
        distribution, scale, args.work, args.seed, args.postings))
    del distribution
    batches, _ = query_batches(index, index_encoder(index), args.corpus, ())
    save_queries(args.work / "queries.npz", batches)
    del index, batches
    with pinned(1):
        record["bandwidth"] = read_bandwidth()
    out = run_folder(args.output, record)
    for n_docs in sizes:
        print(f"{n_docs:,} documents ...", flush=True)
        child = subprocess.run(
            [sys.executable, "-m", "bench.speed.scale", "--child", str(n_docs),
             "--index", str(args.index), "--work", str(args.work), "--seed", str(args.seed),
             "--postings", args.postings],
            capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"error: the run at {n_docs:,} documents failed:\n"
                             f"{child.stderr[-3000:]}")
        record["corpora"][str(n_docs)] = json.loads(child.stdout.strip().splitlines()[-1])
        write_record(out, record, render, partial=True)
    (args.work / "queries.npz").unlink()
    finish_record(out, record, render, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
