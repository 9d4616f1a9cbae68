"""`python -m bench.speed.coldstart`: how long the first search waits for numba, with and
without the install-time warm-up (tokretrieve.index.warmup).

numba compiles a kernel the first time a process meets its signature and keeps the machine
code in an on-disk cache. Every step here runs in a fresh interpreter whose NUMBA_CACHE_DIR is
a folder of this run, so "empty cache" is a machine just installed without the warm-up, and
each timing is of the call alone (imports apart). For each codec, on a synthetic index written
once (`--docs` documents of `--bag-size` tokens, 30,522-token vocabulary):

- first search, empty cache: what a user waited before the warm-up existed;
- second process, same cache: what every later process waits (loading the cache);
- warm-up, empty cache: what `make install` now spends once;
- first search after the warm-up: what the user waits now.

    python -m bench.speed.coldstart --output bench/results/speed/coldstart
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

from bench.toolkit.cli import positive_int
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record
from bench.toolkit.tables import number, table

CODECS = ("packed", "raw")
VOCAB = 30522

# Run in a fresh interpreter: write the index (once per codec), or time one step.
_MAKE = """
import numpy as np, scipy.sparse as sp
from tokretrieve.interop.imported import index_from_bags
rng = np.random.default_rng(0)
rows = np.repeat(np.arange({docs}), {bag})
cols = rng.integers(0, {vocab}, size=len(rows))
bags = sp.csr_matrix((rng.random(len(rows), dtype=np.float32) + 0.01, (rows, cols)),
                     shape=({docs}, {vocab}))
index_from_bags([f"d{{i}}" for i in range({docs})], bags, "synthetic", "0" * 64, "synthetic",
                "synthetic", codec={codec!r}).write({folder!r})
"""
_SEARCH = """
import json, time, numpy as np, scipy.sparse as sp
from tokretrieve.index import SparseIndex
index = SparseIndex.load({folder!r})
queries = sp.csr_matrix((np.ones(8, np.float32), (np.zeros(8, int), np.arange(8) * 97)),
                        shape=(1, index.vocab_size))
seconds = []
for _ in range(2):
    start = time.perf_counter()
    _, ids = index.search(queries, k=10)
    index.contributions(np.arange(8) * 97, np.ones(8), ids[0][ids[0] >= 0])
    seconds.append(time.perf_counter() - start)
print(json.dumps({{"first_s": seconds[0], "again_s": seconds[1]}}))
"""
_WARM = """
import json, time
from tokretrieve.index.warmup import warm_up
start = time.perf_counter()
warm_up()
print(json.dumps({"first_s": time.perf_counter() - start}))
"""


def _run(script: str, cache: Path) -> dict:
    """Run `script` in a fresh interpreter whose numba cache is `cache`; its last printed line
    as JSON ({} when it prints nothing)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          env={**os.environ, "NUMBA_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a step failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def measure(codec: str, docs: int, bag: int, scratch: Path) -> dict:
    """The four timings of one codec (module docstring), each in a fresh interpreter."""
    folder = str(scratch / f"index-{codec}")
    _run(_MAKE.format(docs=docs, bag=bag, vocab=VOCAB, codec=codec, folder=folder),
         scratch / f"cache-{codec}-make")
    search = _SEARCH.format(folder=folder)
    cold, warmed = scratch / f"cache-{codec}-cold", scratch / f"cache-{codec}-warmed"
    row = {"codec": codec, "cold": _run(search, cold), "cached": _run(search, cold),
           "warm_up": _run(_WARM, warmed), "after_warm_up": _run(search, warmed)}
    print(summary_line(row), flush=True)
    return row


def summary_line(row: dict) -> str:
    return (f"{row['codec']}: first search {row['cold']['first_s']:.1f} s on an empty cache, "
            f"{row['after_warm_up']['first_s']:.2f} s after a {row['warm_up']['first_s']:.1f} s "
            "warm-up")


def render(record: dict) -> str:
    rows = [[r["codec"], number(r["cold"]["first_s"], 1), number(r["cached"]["first_s"], 2),
             number(r["warm_up"]["first_s"], 1), number(r["after_warm_up"]["first_s"], 3),
             number(r["after_warm_up"]["again_s"] * 1000, 2)] for r in record["rows"]]
    lines = [
        "# The first search's wait for numba, with and without the warm-up", "",
        f"`{record['command']}` (commit {record['machine']['git']['commit'][:12]}), started "
        f"{record['started']}, on {record['machine']['cpu']} "
        f"({record['machine']['cpu_count']} CPUs). Index: {record['docs']:,} synthetic "
        f"documents of {record['bag_size']} tokens; the search: one query of 8 tokens, k = 10, "
        "and its explanation (`SparseIndex.search` + `contributions`). Every column is one "
        "fresh interpreter, timed around the call alone; a cache column is numba's on-disk "
        "cache (NUMBA_CACHE_DIR) as that interpreter found it.", "",
        *table(["codec", "first search, empty cache (s)", "first search, cache from a search "
                "(s)", "warm-up, empty cache (s)", "first search after the warm-up (s)",
                "second search (ms)"], rows), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.coldstart",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=positive_int, default=20000)
    parser.add_argument("--bag-size", type=positive_int, default=512)
    parser.add_argument("--output", type=Path, default=Path("bench/results/speed/coldstart"))
    args = parser.parse_args(argv)
    record = new_record(command_line("python -m bench.speed.coldstart", argv), docs=args.docs,
                        bag_size=args.bag_size, rows=[])
    out_dir = run_folder(args.output, record)
    with tempfile.TemporaryDirectory(prefix="tokretrieve-coldstart-") as scratch:
        for codec in CODECS:
            record["rows"].append(measure(codec, args.docs, args.bag_size, Path(scratch)))
            write_record(out_dir, record, render, partial=True)
    finish_record(out_dir, record, render,
                  lambda r: "\n".join(summary_line(row) for row in r["rows"]))


if __name__ == "__main__":
    main()
