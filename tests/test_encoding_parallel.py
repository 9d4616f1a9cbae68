"""Batches side by side on a CPU (tokretrieve.encoding.parallel): same embeddings as one batch
at a time, really concurrent, one torch thread each, the thread count restored after."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tokretrieve.encoding.parallel import forward_all, workers_for

TEXTS = ["heat conduction in composite slabs", "supersonic flow past a cone",
         "boundary layer transition on a flat plate", "a", "shock waves",
         "buckling of thin cylindrical shells under axial compression", "wing flutter"]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_workers_follow_the_thread_count_and_the_device(two_threads):
    cpu = torch.device("cpu")
    assert workers_for(cpu, 5) == 2
    assert workers_for(cpu, 1) == 1  # nothing to run beside a single batch
    assert workers_for(torch.device("meta"), 5) == 1  # not a CPU: the plain loop
    torch.set_num_threads(1)
    assert workers_for(cpu, 5) == 1


def test_side_by_side_gives_the_embeddings_of_one_batch_at_a_time(tiny_encoder, two_threads):
    encoder = tiny_encoder("bert", "mean", batch_size=2)
    together = encoder.embed(TEXTS)
    encoder.side_by_side = False
    try:
        alone = encoder.embed(TEXTS)
    finally:
        encoder.side_by_side = True
    torch.set_num_threads(1)
    one_thread = encoder.embed(TEXTS)
    assert together.shape == (len(TEXTS), encoder.model.hidden_size)
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, one_thread)


def test_batches_run_concurrently_on_one_torch_thread_each(two_threads):
    # Each of the first two forwards waits for the other: run one after the other, the
    # barrier would time out and the call fail.
    meeting = threading.Barrier(2, timeout=10)
    seen: list[tuple[int, int]] = []

    def forward(batch: int) -> torch.Tensor:
        if batch < 2:
            meeting.wait()
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return torch.tensor([batch * 10])

    out = list(forward_all(forward, list(range(5)), torch.device("cpu")))
    assert [int(t) for t in out] == [0, 10, 20, 30, 40]  # in order
    assert len({ident for ident, _ in seen}) == 2
    assert {threads for _, threads in seen} == {1}
    assert torch.get_num_threads() == 2


def test_one_at_a_time_runs_on_the_calling_thread(two_threads):
    seen = []

    def forward(batch: int) -> torch.Tensor:
        seen.append((threading.get_ident(), torch.get_num_threads(),
                     torch.is_inference_mode_enabled()))
        return torch.tensor([batch])

    list(forward_all(forward, [0, 1, 2], torch.device("cpu"), side_by_side=False))
    assert seen == [(threading.get_ident(), 2, True)] * 3


def test_an_error_restores_the_thread_count_and_frees_the_next_call(two_threads):
    def forward(batch: int) -> torch.Tensor:
        if batch == 1:
            raise ValueError("batch 1 failed")
        return torch.tensor([batch])

    with pytest.raises(ValueError, match="batch 1 failed"):
        list(forward_all(forward, [0, 1, 2, 3], torch.device("cpu")))
    assert torch.get_num_threads() == 2
    # the lock was released: a second call runs (it would hang on a held lock)
    assert [int(t) for t in forward_all(lambda b: torch.tensor([b]), [5, 6],
                                        torch.device("cpu"))] == [5, 6]


def test_stopping_early_drops_the_queued_batches(two_threads):
    calls = []

    def forward(batch: int) -> torch.Tensor:
        calls.append(batch)
        time.sleep(0.05)
        return torch.tensor([batch])

    results = forward_all(forward, list(range(20)), torch.device("cpu"))
    assert int(next(results)) == 0
    results.close()  # as when the caller's loop raises or is interrupted
    assert len(calls) <= 6  # the running ones finish; without cancelling, all 20 would run
    assert torch.get_num_threads() == 2
