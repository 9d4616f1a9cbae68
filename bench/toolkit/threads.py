"""Thread counts of the three engines a benchmark times, set together and restored together.

torch (the model forward), FAISS (OpenMP, the dense baseline) and numba (tokretrieve's scoring
kernel) each keep their own pool. A latency taken "on one thread" is only that if all three are
pinned, and on a shared 2-core machine the difference is not small: one MiniLM query took
876 ms on two torch threads and 37 ms on one (OpenMP oversubscription, bench/README.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import faiss
import numba
import torch


def thread_settings() -> dict[str, int]:
    """The current thread count of each engine, and numba's pool size (its upper bound)."""
    return {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads(),
            "numba": numba.get_num_threads(), "numba_pool": numba.config.NUMBA_NUM_THREADS}


@contextlib.contextmanager
def pinned(n: int) -> Iterator[None]:
    """Run torch, FAISS and numba on `n` threads for the duration, then restore each one's
    setting. numba cannot exceed the pool it started with (NUMBA_NUM_THREADS, the core count by
    default), so it gets min(n, pool); torch and FAISS take `n` as given (more threads than
    cores is a setting the encoding benchmark compares on purpose)."""
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    before = thread_settings()
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before["torch"])
        faiss.omp_set_num_threads(before["faiss"])
        numba.set_num_threads(before["numba"])
