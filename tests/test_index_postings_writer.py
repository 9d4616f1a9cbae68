"""PostingsWriter: postings streamed to disk block by block are the postings built in memory,
in either codec.

The reference is independent of both builders: the bags' weights quantized by hand (level =
round(weight / scale), level-0 weights dropped) must come back from the written postings'
`to_bags`, and the files must be plain .npy arrays that numpy opens without tokretrieve.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError
from tokretrieve.index.postings import PostingsWriter, postings_from_bags

VOCAB = 50


def random_bags(n_docs: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_docs, VOCAB)) * (rng.random((n_docs, VOCAB)) < 0.2) * 3.0
    if n_docs:
        dense[rng.integers(0, n_docs, size=3)] = 0  # empty documents
    return sp.csr_matrix(dense.astype(np.float32))


def hand_quantized(bags: sp.csr_matrix, scale: float) -> np.ndarray:
    levels = np.rint(np.minimum(bags.toarray() / scale, 255))
    return (levels * scale).astype(np.float32)


@pytest.mark.parametrize("codec", ["raw", "packed"])
@pytest.mark.parametrize("n_docs, segment_docs, pieces", [
    (100, 16, [100]),                 # one add, six full blocks and a partial one
    (100, 16, [1, 15, 16, 3, 40, 25]),  # adds that straddle block boundaries
    (64, 16, [64]),                   # full blocks only
    (7, 64, [3, 4]),                  # one partial block
    (0, 16, []),                      # nothing: one empty block, as in memory
])
def test_streamed_postings_equal_the_in_memory_ones(tmp_path, n_docs, segment_docs, pieces,
                                                    codec):
    bags = random_bags(n_docs, seed=n_docs + segment_docs)
    scale = 2.0 ** -6
    writer = PostingsWriter(tmp_path, VOCAB, "uint8", segment_docs, scale, codec=codec)
    at = 0
    for size in pieces:
        writer.add(bags[at:at + size])
        at += size
    streamed = writer.finish()
    built = postings_from_bags(bags, "uint8", segment_docs, scale=scale)
    if codec == "packed":
        built = built.packed()
    assert streamed.codec == codec
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"postings_{name}.npy" for name in built.FILES)
    for name, array in built.arrays().items():
        assert np.array_equal(np.asarray(getattr(streamed, name)), array), name
        on_disk = np.load(tmp_path / f"postings_{name}.npy")  # plain numpy, no memory map
        assert on_disk.dtype == array.dtype
        assert np.array_equal(on_disk, array)
        assert isinstance(getattr(streamed, name), np.memmap)
    assert streamed.n_docs == n_docs
    assert np.array_equal(streamed.to_bags().toarray(), hand_quantized(bags, scale))


def test_the_default_codec_is_packed_for_uint8_levels(tmp_path):
    writer = PostingsWriter(tmp_path, VOCAB, "uint8", 16, 1.0)
    writer.add(random_bags(20, seed=1))
    assert writer.finish().codec == "packed"


def test_float32_impacts_keep_the_weights(tmp_path):
    bags = random_bags(40, seed=3)
    writer = PostingsWriter(tmp_path, VOCAB, "float32", 8)
    writer.add(bags)
    streamed = writer.finish()
    assert streamed.codec == "raw"
    assert streamed.scale == 1.0
    assert np.array_equal(streamed.to_bags().toarray(), bags.toarray())


@pytest.mark.parametrize("scale", [None, 0.0, 0.3, -0.25])
def test_uint8_needs_a_power_of_two_scale(tmp_path, scale):
    with pytest.raises(TokretrieveError, match="power-of-two scale"):
        PostingsWriter(tmp_path, VOCAB, "uint8", 16, scale)


def test_bags_of_another_vocabulary_are_refused(tmp_path):
    writer = PostingsWriter(tmp_path, VOCAB, "uint8", 16, 1.0)
    with pytest.raises(TokretrieveError, match="bags of 49 tokens"):
        writer.add(sp.csr_matrix((2, VOCAB - 1), dtype=np.float32))


def test_packed_float32_weights_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TokretrieveError, match="packed postings hold uint8 impacts"):
        PostingsWriter(tmp_path / "out", VOCAB, "float32", 8, codec="packed")
    assert not (tmp_path / "out").exists()
