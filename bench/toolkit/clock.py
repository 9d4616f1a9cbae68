"""The benchmarks' one clock: per-call latency percentiles, batch throughput, wall time, memory,
and the machine's load average next to every number.

The benchmark machine is shared, so a timing means little without the load it was taken under:
every latency and throughput measurement records `os.getloadavg()` before and after. Latency
loops run each item as its own call after one untimed warm-up call (JIT, lazy loads, caches),
repeat passes over the items until there are enough samples for a p99 (or a time budget is
spent), and switch the garbage collector off in the timed region, so a collection triggered by
the harness's own allocations does not land on a random item. (No collection is forced before
it either: in a process holding a model one costs a quarter of a second and changes no sample.)

Percentiles are numpy's default (linear interpolation between closest ranks) in every benchmark,
so their latencies compare directly. This module imports numpy only: the threading probe of the
speed benchmark imports it in a fresh process whose thread pools must not start early.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

MIN_LATENCY_SAMPLES = 1000
LATENCY_BUDGET_S = 15.0
THROUGHPUT_MIN_S = 1.0
THROUGHPUT_MIN_REPEATS = 3
# latency(..., **ONE_PASS): every item timed exactly once, however long it takes (the quality
# benchmark's per-query costs, where each query is one sample of the collection).
ONE_PASS = {"min_samples": 0, "budget_s": math.inf}


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded; what else was running when we measured
    (a load above the core count means the benchmark competed for the CPUs)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def percentile_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean / max in milliseconds of per-call times given in seconds (NaN, n=0 for
    no samples: an absent measurement must not read as a fast one)."""
    if len(samples_s) == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"),
                "max_ms": float("nan"), "n": 0}
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max()), "n": len(ms)}


def latency(function: Callable[[T], object], items: Sequence[T],
            min_samples: int = MIN_LATENCY_SAMPLES, budget_s: float = LATENCY_BUDGET_S,
            min_items: int = 30, per_item: bool = False) -> dict[str, Any]:
    """Time `function(item)` one call at a time, in passes over `items`.

    One untimed warm-up call first. Passes repeat until `min_samples` samples or `budget_s`
    seconds; a slow system may stop inside the first pass, but only after `min_items` items.
    Returns the percentile summary, the number of passes and the load average around it; with
    `per_item`, also each item's median time in seconds (`per_item_s`, which the speed
    benchmark's kernel analysis correlates with the postings each query walks).
    """
    if not items:
        return {**percentile_summary([]), "passes": 0,
                **({"per_item_s": []} if per_item else {})}
    function(items[0])
    samples: list[float] = []
    by_item: list[list[float]] = [[] for _ in items]
    load_before = load_average()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    started = time.perf_counter()
    passes = 0
    try:
        while True:
            for position, item in enumerate(items):
                start = time.perf_counter()
                function(item)
                elapsed = time.perf_counter() - start
                samples.append(elapsed)
                by_item[position].append(elapsed)
                if (passes == 0 and position + 1 >= min_items
                        and time.perf_counter() - started > budget_s):
                    break
            passes += 1
            spent = time.perf_counter() - started
            if len(samples) >= min_samples or spent > budget_s or len(samples) < len(items):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    out = {**percentile_summary(samples), "passes": passes, "load_avg_before": load_before,
           "load_avg_after": load_average()}
    if per_item:
        out["per_item_s"] = [float(np.median(s)) if s else float("nan") for s in by_item]
    return out


def throughput(function: Callable[[], object], count: int,
               min_seconds: float = THROUGHPUT_MIN_S,
               min_repeats: int = THROUGHPUT_MIN_REPEATS) -> dict[str, Any]:
    """Items per second of a batch call over `count` items: one warm-up call, then repeats until
    both `min_repeats` calls and `min_seconds` have passed (one repeat when the warm-up alone
    took over three times that). The median call is the headline (robust to a neighbour's
    burst); the best call shows what an idle machine would give."""
    warm_up = timed(function)[1]
    if warm_up >= 3 * max(min_seconds, 1.0):
        # A batch that takes several seconds is its own average; repeating it only costs time.
        min_repeats = 1
    load_before = load_average()
    seconds: list[float] = []
    started = time.perf_counter()
    while len(seconds) < min_repeats or time.perf_counter() - started < min_seconds:
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    median = float(np.median(seconds))
    best = float(min(seconds))
    return {"qps": count / median if median > 0 else float("inf"),
            "qps_best": count / best if best > 0 else float("inf"),
            "call_s_median": median, "repeats": len(seconds), "n": count, "warm_up_s": warm_up,
            "load_avg_before": load_before, "load_avg_after": load_average()}


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """`function()`'s result and its wall time in seconds (one call, no warm-up: for steps that
    happen once, like loading a model or building an index)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of our resident set (Linux: clear_refs 5), so the next
    peak_rss_mb() reads the peak of one phase, not of everything the process did before.
    False where the platform cannot (the peak then stays the process's whole-life peak)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident set (MiB) since the last reset_peak_rss(), or since start where /proc is
    unavailable (ru_maxrss: KiB on Linux, bytes on macOS)."""
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    """Resident set now (MiB); NaN where /proc is unavailable."""
    rss = _status_kib("VmRSS")
    return rss / 1024 if rss is not None else float("nan")


def anonymous_rss_mb() -> float:
    """Anonymous resident memory now (MiB; RssAnon): what the process allocated, without the
    pages of memory-mapped files it has read (the kernel drops those under pressure, and an
    mmap reader's VmRSS grows with the bytes it touched however little it holds). NaN where
    /proc is unavailable."""
    rss = _status_kib("RssAnon")
    return rss / 1024 if rss is not None else float("nan")


def peak_anonymous_rss_mb(function: Callable[[], T], every_s: float = 0.05) -> tuple[T, float]:
    """`function()`'s result and the highest anonymous RSS (MiB) sampled while it ran: the
    memory a streaming step really holds (the kernel keeps no high-water mark of RssAnon)."""
    peak = [anonymous_rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every_s):
            peak.append(anonymous_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = function()
    finally:
        done.set()
        sampler.join()
    peak.append(anonymous_rss_mb())
    return result, max(peak)
