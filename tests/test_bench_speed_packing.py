"""Bit-packed postings (bench.speed.packing): the words of hand-worked lists in each layout,
the lane-loop decoder reading back values of several widths, and the horizontal layout's
scores equal, bit for bit, to an independent integer product on lists long enough for many
chunks. (The full sets of vertical decoders, 17 functions per layout, take most of a minute
each to compile; the benchmark checks their scores against the raw arrays' on every query
before it times anything, and stops if one differs.)"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from speed_bags import VOCAB, hand_built_bags

from bench.speed.kernel import QueryBatch
from bench.speed.packing import (
    _lane_loop_source,
    _put_vertical,
    compiled,
    pack,
    same_scores,
    scorers,
    vertical_share,
)
from tokretrieve.index.postings import postings_from_bags


def test_a_hand_worked_list_packs_to_known_words():
    # one document block, one token held by documents 0, 1 and 5 with levels 3, 1, 2
    bags = sp.csr_matrix(np.array([[3.0], [1.0], [0], [0], [0], [2.0]], dtype=np.float32))
    postings = postings_from_bags(bags, "uint8", scale=1.0)
    word_ptr, words = pack(postings, "horizontal")
    # gaps 0, 0, 3 and levels 3, 1, 2: two bits each; header = 2 | 2 << 8
    assert words[:3].tolist() == [2 | 2 << 8, 0 | 0 << 2 | 3 << 4, 3 | 1 << 2 | 2 << 4]
    assert word_ptr.tolist() == [[0, 3]]
    _, vertical = pack(postings, "vertical")
    assert vertical[:3].tolist() == words[:3].tolist()  # a partial chunk stays horizontal


def test_a_full_chunk_packs_into_four_lanes():
    # 128 consecutive documents (gaps 0: zero bits) with levels 1, 2, 3, 1, 2, 3, ...
    levels = np.arange(128) % 3 + 1
    postings = postings_from_bags(sp.csr_matrix(levels[:, None].astype(np.float32)),
                                  "uint8", scale=1.0)
    _, words = pack(postings, "vertical")
    # value i in lane i % 4, row i // 4; a lane's 32 two-bit rows fill two words, the
    # first words of lanes 0-3 come first, then their second words
    expected = [0] * 8
    for i, level in enumerate(levels):
        lane, row = i % 4, i // 4
        expected[(row // 16) * 4 + lane] |= int(level) << (2 * (row % 16))
    assert words[:9].tolist() == [0 | 2 << 8, *expected]


def sixteen_lanes(levels: np.ndarray, width: int) -> list[int]:
    """The words of `levels` packed by hand in sixteen lanes: value i in lane i % 16, row
    i // 16 at bit row x width of its lane; a lane's k-th word at 16 k + lane."""
    rows = -(-len(levels) // 16)
    words = [0] * (16 * -(-rows * width // 32))
    for i, level in enumerate(levels):
        lane, position = i % 16, (i // 16) * width
        words[(position // 32) * 16 + lane] |= int(level) << (position % 32)
    return words


def test_a_list_packs_into_sixteen_lanes_its_rest_too_when_long():
    # 1,023 consecutive documents with levels 1, 2, 3, 1, ...: a full chunk of 512, then a
    # rest of 511 (>= 128: vertical as well, its rows' bits in as few words as they need)
    levels = np.arange(1023) % 3 + 1
    postings = postings_from_bags(sp.csr_matrix(levels[:, None].astype(np.float32)),
                                  "uint8", scale=1.0)
    _, words = pack(postings, "vertical-16")
    # each chunk: a header (gap width 0, level width 2), no gap words, the level lanes
    assert words[:33].tolist() == [0 | 2 << 8, *sixteen_lanes(levels[:512], 2)]
    assert words[33:66].tolist() == [0 | 2 << 8, *sixteen_lanes(levels[512:], 2)]
    assert vertical_share(postings, "vertical-16") == 1.0
    assert vertical_share(postings, "vertical") == 7 * 128 / 1023
    assert vertical_share(postings, "horizontal") == 0.0
    # a rest of 88 (< 128) is one horizontal chunk: 88 two-bit levels in 6 words
    short = postings_from_bags(sp.csr_matrix(levels[:600, None].astype(np.float32)),
                               "uint8", scale=1.0)
    word_ptr, words = pack(short, "vertical-16")
    assert words[33] == 0 | 2 << 8 and word_ptr[0, 1] == 33 + 1 + 6
    assert words[34] == sum(int(v) << (2 * j) for j, v in enumerate(levels[512:528]))
    assert vertical_share(short, "vertical-16") == 512 / 600


def test_an_outlier_gap_becomes_one_exception_word():
    # documents 0..510 (gaps 0) and 60,000 (gap 59,489: 16 bits) with levels 1, 2, 3, ...
    offsets = [*range(511), 60_000]
    levels = np.arange(512) % 3 + 1
    bags = sp.csr_matrix((levels.astype(np.float32), (offsets, np.zeros(512, dtype=int))),
                         shape=(65_536, 1))
    postings = postings_from_bags(bags, "uint8", scale=1.0)
    _, words = pack(postings, "vertical-16")
    # gaps at width 0 and one exception, levels at width 2 and none
    assert words[0] == 0 | 2 << 8 | 1 << 16 | 0 << 24
    assert words[1] == 511 | 59_489 << 9  # index 511, the gap's bits above width 0
    word_ptr, plain = pack(postings, "vertical")  # no exceptions: 16-bit gaps in the last
    last = word_ptr[0, 1] - (1 + 4 * 16 + 4 * 2)  # of its four chunks
    assert plain[0] == 0 | 2 << 8 and plain[last] == 16 | 2 << 8


@pytest.mark.parametrize("width", [5, 7, 16])
def test_the_lane_loop_decoder_reads_back_what_was_packed(width):
    # widths whose rows straddle two words (5, 7) and fill them exactly (16)
    values = np.random.default_rng(width).integers(0, 2 ** width, size=512)
    words = np.zeros(16 * width + 2, dtype=np.uint32)
    for i, value in enumerate(values):
        _put_vertical(words, 1, int(value), width, i, 16)
    out = np.zeros(512, dtype=np.uint32)
    decode = compiled(_lane_loop_source, width, 16)
    assert decode(words, 1, out) == 1 + 16 * width
    assert out.tolist() == values.tolist()


def integer_queries(n: int = 15, seed: int = 4) -> tuple[QueryBatch, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, VOCAB), dtype=np.float32)
    rows[0, :] = 1  # every list
    for q in range(1, n):
        tokens = rng.choice(VOCAB, size=rng.integers(1, 10), replace=False)
        rows[q, tokens] = rng.integers(1, 6, size=len(tokens))
    return QueryBatch.from_bags(sp.csr_matrix(rows)), rows


def test_packed_scores_are_the_integer_products():
    bags = sp.vstack([hand_built_bags(seed) for seed in range(5)], format="csr")  # 2,000 docs
    for segment_docs in (65_536, 300):  # lists of up to ~1,800 postings; then seven blocks
        postings = postings_from_bags(bags, "uint8", segment_docs, scale=2.0 ** -6)
        levels = np.rint(postings.to_bags().toarray() / postings.scale)
        batch, rows = integer_queries()
        calls = scorers(postings, ["horizontal"])
        assert same_scores(postings, calls, batch)
        for q, single in enumerate(batch.singles()):
            for call, _ in calls.values():
                accumulator = np.zeros(postings.n_docs, dtype=np.float32)
                call(single, accumulator)
                assert np.array_equal(accumulator, (levels @ rows[q]).astype(np.float32))
        sizes = {name: stored for name, (_, stored) in calls.items()}
        assert sizes["horizontal"] < sizes["uint16 + uint8"]
