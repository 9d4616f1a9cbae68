"""Micro-batching: concurrent model queries share one model call.

Encoding a query with the model costs milliseconds of fixed overhead (one forward pass, one
kernel call), nearly the same for one query as for thirty. The batcher holds the first query of a
burst for a short window (5 ms by default), collects the queries that arrive meanwhile (up to
`max_batch`), runs them as one batch in a worker thread, and hands each caller its own result.
A lone query waits at most the window; a window of 0 arms no timer at all: the batch is run as
soon as the event loop is free, and holds only the queries submitted in the same turn of the
loop (the queries of one request), so nothing waits for another client.

A batch whose run fails is run again one item at a time, so that a bad item (a query the
library refuses) fails only its own caller, with the error it would have had alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from typing import Any


class MicroBatcher:
    """Groups `submit(key, item)` calls with the same key arriving within `window` seconds
    into one `run(key, items)` call made in a thread, which must return one result per item."""

    def __init__(self, run: Callable[[Hashable, Sequence[Any]], Sequence[Any]],
                 window: float = 0.005, max_batch: int = 32):
        self._run = run
        self.window = window
        self.max_batch = max_batch
        self._pending: dict[Hashable, list[tuple[Any, asyncio.Future]]] = {}
        self._timers: dict[Hashable, asyncio.Handle] = {}
        self.batches: list[int] = []  # sizes of the batches run, for the load benchmark

    async def submit(self, key: Hashable, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._pending.setdefault(key, [])
        pending.append((item, future))
        if len(pending) >= self.max_batch:
            self._flush(key)
        elif len(pending) == 1:
            self._timers[key] = (loop.call_soon(self._flush, key) if self.window <= 0 else
                                 loop.call_later(self.window, self._flush, key))
        return await future

    def _flush(self, key: Hashable) -> None:
        # A batch flushed because it was full cancels its timer, which would otherwise cut
        # the window of the next batch of the same key short.
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        batch = self._pending.pop(key, [])
        if batch:
            self.batches.append(len(batch))
            asyncio.get_running_loop().create_task(self._execute(key, batch))

    async def _execute(self, key: Hashable, batch: list[tuple[Any, asyncio.Future]]) -> None:
        outcomes = await asyncio.to_thread(self._outcomes, key, [item for item, _ in batch])
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if not future.done():  # a caller that went away has cancelled its future
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _outcomes(self, key: Hashable, items: list[Any]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, error) per item: the batch's run, or each item's alone
        when the batch fails."""
        try:
            results = list(self._run(key, items))
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} items returned {len(results)} "
                                   "results")
            return [(True, result) for result in results]
        except Exception as error:
            if len(items) == 1:
                return [(False, error)]
        self.batches.extend([1] * len(items))  # the batch again, one model call per item
        return [self._outcomes(key, [item])[0] for item in items]
