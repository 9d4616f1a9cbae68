"""Forward passes over many batches on a CPU: one batch per core, side by side.

torch runs each op of a forward on all its intra-op threads. The large matrix products scale
with them; a transformer's many small ops (softmax, GELU, layer norm, the attention products)
scale less, and every op hands work to the other threads and waits for them. Running whole
batches side by side, each on one thread, keeps every core busy on its own batch for the whole
forward: on this project's 2-core machine mpnet encoded 1.18x faster that way than with 2
intra-op threads in bf16, and 1.04x in float32, within that run's noise (README, Speed:
encoding). A GPU, or a thread budget of one, keeps the plain loop.

The budget is torch's thread count when the call starts (`torch.set_num_threads` sets it): that
many batches run at once, each with one intra-op thread, and the count is restored afterwards.
torch's thread count is one setting for the whole process, so those calls hold a lock: two of
them run one after the other, and other torch work started meanwhile runs on one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Batch = TypeVar("Batch")

_THREAD_COUNT = threading.Lock()


def workers_for(device: torch.device, batches: int) -> int:
    """How many batches to run at once: torch's thread count on a CPU, at most one per
    batch; 1 (the plain loop) on other devices."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), batches))


def forward_all(forward: Callable[[Batch], torch.Tensor], batches: Sequence[Batch],
                device: torch.device, side_by_side: bool = True) -> Iterator[torch.Tensor]:
    """forward(batch) of every batch, in order, under inference mode: side by side as
    `workers_for` says, or (`side_by_side=False`) one at a time on all of torch's threads."""
    if not side_by_side or workers_for(device, len(batches)) == 1:
        yield from _one_at_a_time(forward, batches)
        return
    with _THREAD_COUNT:
        # read under the lock: a call that held it has restored the count by now
        workers = workers_for(device, len(batches))
        if workers == 1:
            yield from _one_at_a_time(forward, batches)
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="tokretrieve-forward")
        try:
            yield from pool.map(lambda batch: _inference(forward, batch), batches)
        finally:  # also when the caller stops early (an error, Ctrl-C): drop what is queued
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)


def _one_at_a_time(forward: Callable[[Batch], torch.Tensor], batches: Sequence[Batch]
                   ) -> Iterator[torch.Tensor]:
    for batch in batches:
        yield _inference(forward, batch)


def _inference(forward: Callable[[Batch], torch.Tensor], batch: Batch) -> torch.Tensor:
    with torch.inference_mode():  # a thread-local mode: each worker thread enters its own
        return forward(batch)
