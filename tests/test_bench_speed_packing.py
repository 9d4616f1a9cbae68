"""bench.speed.packing: the bytes it reports are the arrays each codec stores, its result
check tells a codec that answers differently, and one quick measurement fills every row it
renders (the raw codec's time over its own is 1 in every round)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from speed_bags import VOCAB, hand_built_bags

from bench.speed.kernel import QueryBatch
from bench.speed.packing import (
    measure,
    render,
    same_results,
    stored_bytes,
    summary,
    unit_share,
)
from bench.toolkit.cli import parse_list
from tokretrieve.index.postings import postings_from_bags


def queries(n: int = 6, seed: int = 4) -> QueryBatch:
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, VOCAB), dtype=np.float32)
    rows[0, :] = 1  # every list
    for q in range(1, n):
        tokens = rng.choice(VOCAB, size=rng.integers(1, 10), replace=False)
        rows[q, tokens] = rng.random(len(tokens)) + 0.1
    return QueryBatch.from_bags(sp.csr_matrix(rows))


def postings(seed: int = 1):
    bags = sp.vstack([hand_built_bags(seed + s) for s in range(5)], format="csr")
    return postings_from_bags(bags, "uint8", 300, scale=2.0 ** -6)


def test_bytes_are_the_stored_arrays():
    raw = postings()
    packed = raw.packed()
    assert stored_bytes(raw) == raw.indptr.nbytes + raw.docs.nbytes + raw.impacts.nbytes
    assert stored_bytes(packed) == (packed.indptr.nbytes + packed.word_ptr.nbytes
                                    + packed.words.nbytes)


def test_the_result_check_tells_a_codec_that_answers_differently():
    raw, other = postings(seed=1), postings(seed=2)
    batch = queries()
    assert same_results({"raw": raw, "packed": raw.packed()}, batch)
    assert not same_results({"raw": raw, "packed": other.packed()}, batch)


def test_one_round_fills_every_row():
    raw = postings()
    batch = queries()
    record = {"command": "python -m bench.speed.packing", "started": "now", "index": "test",
              "machine": {"git": {"commit": "abcdef123456", "dirty": False}},
              "result": measure(raw, {"tokens": batch, "model": batch}, 768, rounds=1)}
    result = record["result"]
    assert set(result["codecs"]) == {"raw", "packed, chunks only", "packed, dense from 45%"}
    assert result["codecs"]["raw"]["bytes"] == stored_bytes(raw)
    assert result["codecs"]["packed, dense from 45%"]["bytes"] == stored_bytes(raw.packed())
    assert result["codecs"]["packed, chunks only"]["bytes"] == stored_bytes(
        raw.packed(None))
    for mode in ("tokens", "model"):
        assert result["codecs"]["raw"]["modes"][mode]["rounds_x_raw"] == [1.0]
        assert result["codecs"]["packed, dense from 45%"]["modes"][mode]["p50_ms"] > 0
    mean_length = raw.n_postings / raw.n_docs
    assert np.isclose(result["codecs"]["raw"]["vs_dense"], stored_bytes(raw) / raw.n_postings
                      * mean_length / (768 * 4))
    text = render(record)
    assert "| raw |" in text and "| packed, chunks only |" in text
    assert "| packed, dense from 45% |" in text
    assert summary(record).splitlines()[0].startswith("raw: ")


def test_dense_shares_must_be_numbers_in_the_unit_interval():
    assert parse_list("0.3,0.45", unit_share, "--dense-shares") == [0.3, 0.45]
    for bad in ("0", "1.5", "x", "0.3,y"):
        with pytest.raises(SystemExit, match="error: --dense-shares: bad item"):
            parse_list(bad, unit_share, "--dense-shares")
