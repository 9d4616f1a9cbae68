"""Probe: the package kernel's batch time under one threading setup, in a fresh process.

libgomp reads OMP_WAIT_POLICY once, when it starts, and numba picks its threading layer once,
so the only way to compare setups is one process per setup; bench.speed runs this module with
different environments. On a shared, oversubscribed machine the default (OpenMP threads that
spin at every barrier) can make a batch call tens of times slower than with sleeping waits.

    python -m bench.speed.threads_probe INDEX_FOLDER QUERIES_FOLDER   # prints one JSON object

Everything heavy is imported inside `probe`, after the process has started with the
environment under test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence

REPEATS = 30


def probe(index_path: str, queries_path: str, repeats: int = REPEATS) -> dict[str, object]:
    """Median and best wall time of batch_top_k over all tokens-mode queries at k=10."""
    import numba
    import numpy as np

    from bench.speed.kernel import QueryBatch, package_top_k
    from bench.toolkit.clock import load_average
    from tokretrieve import SparseIndex, TokenQueryEncoder
    from tokretrieve.corpus import read_queries

    index = SparseIndex.load(index_path)
    texts = [text for _, text in read_queries(queries_path)]
    batch = QueryBatch.from_bags(TokenQueryEncoder.for_index(index).encode(texts))
    threads = numba.get_num_threads()
    package_top_k(index.postings, batch, 10, threads)  # compiles, allocates the buffers
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        package_top_k(index.postings, batch, 10, threads)
        seconds.append(time.perf_counter() - start)
    median = float(np.median(seconds))
    return {"threading_layer": numba.threading_layer(), "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "batch_ms_median": median * 1000, "batch_ms_best": min(seconds) * 1000,
            "qps": len(batch) / median, "queries": len(batch), "load_avg": load_average()}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(probe(args[0], args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
