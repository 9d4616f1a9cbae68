"""Clocks for the cost figures: per-call latency percentiles, batch throughput, peak memory.

Latency is measured one query at a time on one thread, which is what a single request costs a
server; throughput is measured on the whole query set with every thread the libraries use by
default, which is what a batch job gets. Every timed callable is run once untimed first, so
one-off costs (lazy loads, JIT, caches) do not land in the first sample.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import faiss
import numba
import numpy as np
import torch

T = TypeVar("T")


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Pin torch, FAISS and numba (tokretrieve's scoring kernel) to one thread for the
    duration, then restore their settings."""
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    numba_threads = numba.get_num_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)
        numba.set_num_threads(numba_threads)


def per_call_seconds(function: Callable[[T], object], items: Sequence[T]) -> list[float]:
    """Wall time of `function(item)` for each item, after one untimed warm-up call."""
    if not items:
        return []
    function(items[0])
    samples = []
    for item in items:
        start = time.perf_counter()
        function(item)
        samples.append(time.perf_counter() - start)
    return samples


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds (numpy's linear-interpolated percentiles)."""
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "n": 0}
    ms = np.asarray(samples, dtype=np.float64) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "n": len(ms)}


def throughput(function: Callable[[], object], count: int) -> dict[str, float]:
    """Items per second of one batch call over `count` items (after one warm-up call)."""
    function()
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "per_second": count / seconds if seconds > 0 else 0.0,
            "n": count}


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """The result of `function()` and its wall time in seconds."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MiB (ru_maxrss is KiB on Linux, bytes on
    macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
