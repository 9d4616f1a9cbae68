"""One context manager pins torch, FAISS and numba together and puts all three back."""

from __future__ import annotations

import faiss
import numba
import pytest
import torch

from bench.toolkit.threads import pinned, thread_settings


def test_pinned_sets_all_three_engines_and_restores_them():
    before = thread_settings()
    with pinned(1):
        assert (torch.get_num_threads(), faiss.omp_get_max_threads(),
                numba.get_num_threads()) == (1, 1, 1)
    assert thread_settings() == before


def test_pinned_restores_after_an_error_and_caps_numba_at_its_pool():
    before = thread_settings()
    pool = numba.config.NUMBA_NUM_THREADS
    with pytest.raises(RuntimeError), pinned(pool + 3):
        assert torch.get_num_threads() == pool + 3
        assert faiss.omp_get_max_threads() == pool + 3
        assert numba.get_num_threads() == pool  # numba cannot grow past its pool
        raise RuntimeError("inside")
    assert thread_settings() == before
    with pytest.raises(ValueError):
        pinned(0).__enter__()
