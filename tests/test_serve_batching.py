"""tokretrieve.serve.batching.MicroBatcher on its own (no server, no model): which submits share
a batch, how long a lone one waits (window 0: not at all), and that one failing item fails only
its own caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from tokretrieve.serve.batching import MicroBatcher


class Recorder:
    """A batch runner that records each batch and answers item * 10 (or fails on 'bad')."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    def __call__(self, key, items):
        self.calls.append(list(items))
        if "bad" in items:
            raise ValueError(f"bad item at {items.index('bad')}")
        return [(key, item * 10) for item in items]


def run(coroutine):
    return asyncio.run(coroutine)


def test_submits_within_the_window_share_one_batch_and_get_their_own_results():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window=0.05, max_batch=32)

    async def main():
        return await asyncio.gather(*(batcher.submit("k", i) for i in range(5)),
                                    batcher.submit("other", 7))

    assert run(main()) == [("k", 0), ("k", 10), ("k", 20), ("k", 30), ("k", 40),
                           ("other", 70)]
    assert sorted(batcher.batches) == [1, 5]  # one batch per key
    assert sorted(map(sorted, recorder.calls)) == [[0, 1, 2, 3, 4], [7]]


def test_a_full_batch_runs_at_once_and_max_batch_one_never_waits():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window=10.0, max_batch=3)

    async def main():
        return await asyncio.wait_for(asyncio.gather(*(batcher.submit("k", i)
                                                       for i in range(6))), timeout=5)

    assert [r[1] for r in run(main())] == [0, 10, 20, 30, 40, 50]
    assert batcher.batches == [3, 3]
    single = MicroBatcher(Recorder(), window=10.0, max_batch=1)
    assert run(asyncio.wait_for(single.submit("k", 4), timeout=5)) == ("k", 40)
    assert single.batches == [1]


def test_window_zero_waits_for_nothing():
    """Window 0 arms no timer: the batch runs as soon as the loop is free, holding only what
    was submitted in the same turn of the loop (one request's queries), and a lone query is
    answered without waiting."""
    batcher = MicroBatcher(Recorder(), window=0, max_batch=32)

    async def main():
        together = await asyncio.gather(*(batcher.submit("k", i) for i in range(3)))
        one = await batcher.submit("k", 5)
        task = asyncio.get_running_loop().create_task(batcher.submit("k", 6))
        await asyncio.sleep(0)  # the task submits
        await asyncio.sleep(0)  # the loop's next turn flushes it, no timer involved
        flushed = list(batcher.batches)
        return together, one, await task, flushed

    together, one, last, flushed = run(main())
    assert [r[1] for r in together] == [0, 10, 20] and one[1] == 50 and last[1] == 60
    assert flushed == [3, 1, 1] and batcher.batches == [3, 1, 1]

    async def lone(window):
        slow = MicroBatcher(Recorder(), window=window)
        start = time.perf_counter()
        await slow.submit("k", 1)
        return time.perf_counter() - start

    assert run(lone(0.0)) < 0.25 <= run(lone(0.3))


def test_a_full_batch_does_not_cut_the_next_window_short():
    """The timer of a batch flushed because it was full is cancelled: the next batch of the
    same key gets its whole window (it used to be flushed when the old timer fired)."""
    batcher = MicroBatcher(Recorder(), window=0.6, max_batch=3)

    async def main():
        first = asyncio.gather(*(batcher.submit("k", i) for i in range(3)))  # full: runs now
        await asyncio.sleep(0.3)
        second = asyncio.ensure_future(batcher.submit("k", 3))  # its window ends at 0.9 s
        await asyncio.sleep(0.45)  # past the first batch's timer (0.6 s)
        third = asyncio.ensure_future(batcher.submit("k", 4))
        return await first, await second, await third

    run(main())
    assert batcher.batches == [3, 2]


def test_a_failing_item_fails_only_its_own_caller():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, window=0.05)

    async def main():
        return await asyncio.gather(batcher.submit("k", 1), batcher.submit("k", "bad"),
                                    batcher.submit("k", 2), return_exceptions=True)

    good, bad, other = run(main())
    assert good == ("k", 10) and other == ("k", 20)
    assert isinstance(bad, ValueError) and str(bad) == "bad item at 0"  # as if run alone
    assert batcher.batches == [3, 1, 1, 1]
    assert recorder.calls == [[1, "bad", 2], [1], ["bad"], [2]]


def test_a_runner_returning_the_wrong_count_is_an_error_not_a_hang():
    batcher = MicroBatcher(lambda key, items: [], window=0.01)
    with pytest.raises(RuntimeError, match="1 items returned 0 results"):
        run(asyncio.wait_for(batcher.submit("k", 1), timeout=5))
