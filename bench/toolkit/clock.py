"""Clocks for the speed benchmark: per-call latency percentiles, batch throughput, peak memory,
and the machine's load average next to every number.

The benchmark machine is shared, so a timing means little without the load it was taken under:
every measurement records `os.getloadavg()` before and after. Latency loops run each query as its
own call, repeat passes over the query set until there are enough samples for a p99 (or a time
budget is spent), and keep the garbage collector out of the timed region, so a collection
triggered by the harness's own allocations does not land on a random query.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIN_LATENCY_SAMPLES = 1000
LATENCY_BUDGET_S = 15.0
THROUGHPUT_MIN_S = 1.0
THROUGHPUT_MIN_REPEATS = 3


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded; what else was running when we measured."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def percentile_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean / max in milliseconds of per-call times given in seconds.

    Percentiles are numpy's default (linear interpolation between closest ranks), the same
    definition bench/timing.py uses, so the two benchmarks' latencies compare directly.
    """
    if len(samples_s) == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan"),
                "max_ms": float("nan"), "n": 0}
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max()), "n": len(ms)}


def latency(function: Callable[[Any], object], items: Sequence[Any],
            min_samples: int = MIN_LATENCY_SAMPLES, budget_s: float = LATENCY_BUDGET_S,
            min_items: int = 30) -> dict[str, Any]:
    """Time `function(item)` one call at a time, in passes over `items`.

    One untimed warm-up call first (JIT, lazy loads). Passes repeat until `min_samples` samples
    or `budget_s` seconds; a slow system may stop inside the first pass, but only after
    `min_items` items. Returns the percentile summary, the load average around it, and the
    per-item median (seconds), which the kernel analysis correlates with postings walked.
    """
    if not items:
        return {**percentile_summary([]), "per_item_s": [], "passes": 0}
    function(items[0])
    samples: list[float] = []
    per_item: list[list[float]] = [[] for _ in items]
    load_before = load_average()
    gc.collect()
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
                per_item[position].append(elapsed)
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
    return {**percentile_summary(samples), "passes": passes,
            "per_item_s": [float(np.median(s)) if s else float("nan") for s in per_item],
            "load_avg_before": load_before, "load_avg_after": load_average()}


def throughput(function: Callable[[], object], count: int,
               min_seconds: float = THROUGHPUT_MIN_S,
               min_repeats: int = THROUGHPUT_MIN_REPEATS) -> dict[str, Any]:
    """Items per second of a batch call over `count` items: one warm-up call, then repeats until
    both `min_repeats` calls and `min_seconds` have passed (one repeat when the warm-up alone
    took over three times that). The median call is the headline
    (robust to a neighbour's burst); the best call shows what an idle machine would give."""
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


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """`function()`'s result and its wall time in seconds."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of our resident set (Linux: clear_refs 5), so the next
    peak_rss_mb() reads the peak of one phase, not of everything the process did before."""
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
