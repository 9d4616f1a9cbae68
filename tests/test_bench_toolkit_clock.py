"""The benchmarks' one clock (bench.toolkit.clock): percentiles against numpy on known samples,
the latency loop's passes and warm-up, throughput, wall time and memory readings.

If the percentiles were off, every p99 of every report would be; if the loop miscounted its
passes or timed its warm-up, the first sample would carry one-off costs.
"""

from __future__ import annotations

import math
import mmap
import time

import numpy as np
import pytest

from bench.toolkit.clock import (
    ONE_PASS,
    current_rss_mb,
    latency,
    load_average,
    peak_rss_mb,
    percentile_summary,
    reset_peak_rss,
    throughput,
    timed,
)


def test_percentiles_on_known_samples():
    samples = [i / 1000 for i in range(1, 101)]          # 1 ms .. 100 ms
    summary = percentile_summary(samples)
    assert summary["n"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)     # linear interpolation, numpy default
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["max_ms"] == pytest.approx(100.0)
    shuffled = percentile_summary(list(reversed(samples)))
    assert shuffled["p99_ms"] == pytest.approx(99.01)
    constant = percentile_summary([0.002] * 7)
    assert constant["p50_ms"] == pytest.approx(2.0) and constant["p99_ms"] == pytest.approx(2.0)
    assert percentile_summary([])["n"] == 0


def test_latency_runs_passes_until_enough_samples():
    calls: list[int] = []
    result = latency(calls.append, list(range(10)), min_samples=35, budget_s=60.0,
                     per_item=True)
    assert calls[0] == 0                      # the untimed warm-up call
    assert len(calls) == 1 + 40               # four full passes of ten: the first with >= 35
    assert result["n"] == 40 and result["passes"] == 4
    assert len(result["per_item_s"]) == 10
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert len(result["load_avg_after"]) == 3


def test_throughput_counts_items_per_second():
    calls: list[int] = []
    result = throughput(lambda: calls.append(1), count=100, min_seconds=0.0, min_repeats=3)
    assert len(calls) == 1 + result["repeats"] and result["repeats"] >= 3
    assert result["qps"] == pytest.approx(100 / result["call_s_median"])
    assert result["qps_best"] >= result["qps"]


def test_percentiles_match_numpy_on_random_samples():
    rng = np.random.default_rng(5)
    samples = rng.lognormal(-7.0, 1.0, size=997)  # seconds, skewed like real latencies
    summary = percentile_summary(samples.tolist())
    ms = samples * 1000
    assert summary["p50_ms"] == pytest.approx(float(np.percentile(ms, 50)), rel=1e-12)
    assert summary["p99_ms"] == pytest.approx(float(np.percentile(ms, 99)), rel=1e-12)
    assert summary["mean_ms"] == pytest.approx(float(ms.mean()), rel=1e-12)
    assert summary["max_ms"] == pytest.approx(float(ms.max()), rel=1e-12)
    assert math.isnan(percentile_summary([])["p50_ms"])  # absent, not zero


def test_one_pass_times_every_item_once_and_per_item_is_optional():
    calls: list[int] = []
    result = latency(calls.append, list(range(7)), **ONE_PASS)
    assert calls == [0, *range(7)]           # the warm-up, then each item once
    assert result["n"] == 7 and result["passes"] == 1
    assert "per_item_s" not in result
    slow = latency(lambda s: time.sleep(s), [0.0, 0.02], **ONE_PASS, per_item=True)
    assert slow["per_item_s"][1] >= 0.02 > slow["per_item_s"][0]
    assert latency(calls.append, [])["n"] == 0


def test_latency_stops_inside_the_first_pass_when_the_budget_is_spent():
    result = latency(lambda _: time.sleep(0.002), list(range(100)), min_samples=1000,
                     budget_s=0.02, min_items=5)
    assert 5 <= result["n"] < 100 and result["passes"] == 1  # one partial pass


def test_timed_returns_the_result_and_the_wall_time():
    value, seconds = timed(lambda: (time.sleep(0.01), 42)[1])
    assert value == 42 and 0.01 <= seconds < 1.0


def test_memory_and_load_readings():
    assert len(load_average()) == 3 and all(x >= 0 for x in load_average())
    before = current_rss_mb()
    # 64 MiB of fresh pages, touched: an anonymous map of its own, because malloc may hand a
    # large array pages this process already holds (then the resident set would not grow).
    block = mmap.mmap(-1, 64 * 2**20)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    assert current_rss_mb() >= before + 60
    assert peak_rss_mb() >= current_rss_mb()
    block.close()
    if reset_peak_rss():  # Linux: the high-water mark restarts from the current resident set
        assert peak_rss_mb() < current_rss_mb() + 16
