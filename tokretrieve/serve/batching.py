"""Micro-batching: concurrent model queries share one model call.

Encoding a query with the model costs milliseconds of fixed overhead (one forward pass, one
kernel call), nearly the same for one query as for thirty. The batcher holds the first query of a
burst for a short window (5 ms by default), collects the queries that arrive meanwhile (up to
`max_batch`), runs them as one batch in a worker thread, and hands each caller its own result.
A lone query waits at most the window.
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
        self.batches: list[int] = []  # sizes of the batches run, for the load benchmark

    async def submit(self, key: Hashable, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = self._pending.setdefault(key, [])
        pending.append((item, future))
        if len(pending) == 1:
            loop.call_later(self.window, self._flush, key)
        elif len(pending) >= self.max_batch:
            self._flush(key)
        return await future

    def _flush(self, key: Hashable) -> None:
        batch = self._pending.pop(key, [])
        if batch:
            self.batches.append(len(batch))
            asyncio.get_running_loop().create_task(self._execute(key, batch))

    async def _execute(self, key: Hashable, batch: list[tuple[Any, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.to_thread(self._run, key, items)
        except Exception as error:  # every caller of the batch gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
