"""The packed postings codec (tokretrieve.index.packing): the words of hand-worked lists, every
bit width read back from words packed by hand, the generated decoders as their generator
writes them, packed postings reading and scoring exactly as the raw ones they came from, and
damaged words stopping a search with an error instead of writing out of bounds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tokretrieve.errors import IndexFormatError, TokretrieveError
from tokretrieve.index import lane_codegen
from tokretrieve.index.kernels import Scratch
from tokretrieve.index.lane_decoders import unpack_stream
from tokretrieve.index.packing import DENSE, DENSE_SHARE, PAD_WORDS
from tokretrieve.index.postings import PackedPostings, check_layout, postings_from_bags


def one_token(offsets, levels, n_docs: int = 65_536, dense: bool = False) -> PackedPostings:
    """Packed postings of one token held by the documents `offsets` at `levels` (scale 1), in
    chunks (dense where the codec makes it so, if `dense`)."""
    bags = sp.csr_matrix((np.asarray(levels, dtype=np.float32),
                          (offsets, np.zeros(len(offsets), dtype=int))), shape=(n_docs, 1))
    return postings_from_bags(bags, "uint8", scale=1.0).packed(
        DENSE_SHARE if dense else None)


def sixteen_lanes(values, width: int) -> list[int]:
    """`values` packed by hand in sixteen lanes: value i in lane i % 16, row i // 16 at bit
    row x width of its lane; a lane's j-th word at 16 j + lane."""
    rows = -(-len(values) // 16)
    words = [0] * (16 * -(-rows * width // 32))
    for i, value in enumerate(values if width else []):
        lane, position = i % 16, (i // 16) * width
        words[(position // 32) * 16 + lane] |= (int(value) << (position % 32)) & 0xFFFFFFFF
        if position % 32 + width > 32:
            words[(position // 32 + 1) * 16 + lane] |= int(value) >> (32 - position % 32)
    return words


def one_after_another(values, width: int) -> list[int]:
    """`values` packed by hand horizontally: value i at bit i x width."""
    bits = sum(int(v) << (i * width) for i, v in enumerate(values))
    return [(bits >> (32 * j)) & 0xFFFFFFFF for j in range(-(-len(values) * width // 32))]


def test_a_list_packs_into_sixteen_lanes_its_rest_too_when_long():
    # 1,023 consecutive documents with levels 1, 2, 3, 1, ...: a full chunk of 512, then a
    # rest of 511 (>= 128: vertical as well, its rows' bits in as few words as they need)
    levels = np.arange(1023) % 3 + 1
    postings = one_token(np.arange(1023), levels)
    # each chunk: a header (gap width 0, level width 2), no gap words, the level lanes
    assert postings.words[:33].tolist() == [0 | 2 << 8, *sixteen_lanes(levels[:512], 2)]
    assert postings.words[33:66].tolist() == [0 | 2 << 8, *sixteen_lanes(levels[512:], 2)]
    assert postings.word_ptr.tolist() == [[0, 66]]
    assert len(postings.words) == 66 + PAD_WORDS and not postings.words[66:].any()


def test_a_short_rest_is_one_horizontal_chunk():
    # 600 postings: a chunk of 512, then 88 (< 128) levels one after another at 2 bits, and
    # gaps of 4 between documents 0, 5, 10, ... (3 bits)
    levels = np.arange(600) % 3 + 1
    postings = one_token(np.arange(600) * 5, levels)
    first = 1 + 16 * 3 + 16 * 2
    assert postings.words[0] == 3 | 2 << 8
    rest = postings.words[first:postings.word_ptr[0, 1]].tolist()
    gaps = [4] * 88
    assert rest == [3 | 2 << 8, *one_after_another(gaps, 3), *one_after_another(levels[512:], 2)]


def test_an_outlier_gap_becomes_one_exception_word():
    # documents 0..510 (gaps 0) and 60,000 (gap 59,489: 16 bits) with levels 1, 2, 3, ...:
    # gaps at width 0 and one exception (index 511, the gap's bits above width 0), levels at
    # width 2 and none
    levels = np.arange(512) % 3 + 1
    postings = one_token([*range(511), 60_000], levels)
    assert postings.words[0] == 0 | 2 << 8 | 1 << 16 | 0 << 24
    assert postings.words[1] == 511 | 59_489 << 9
    assert postings.words[2:34].tolist() == sixteen_lanes(levels, 2)
    assert postings.document(60_000)[1].tolist() == [2.0]  # 511 % 3 + 1


@pytest.mark.parametrize("width", range(17))
@pytest.mark.parametrize("n", [512, 300, 127, 1])
def test_every_width_reads_back_what_was_packed_by_hand(width, n):
    """Vertical (n >= 128: a short chunk's lanes take the words its rows need) and horizontal
    streams of every width, from words packed by hand; the decoder returns the word after
    the stream's values."""
    values = np.random.default_rng(width * 1000 + n).integers(0, 2 ** width, size=n)
    hand = sixteen_lanes(values, width) if n >= 128 else one_after_another(values, width)
    words = np.zeros(3 + len(hand) + PAD_WORDS, dtype=np.uint32)
    words[3:3 + len(hand)] = hand
    out = np.full(512, 7, dtype=np.uint32)
    assert unpack_stream(words, 3, n, width, out) == 3 + len(hand)
    assert out[:n].tolist() == values.tolist()


def test_the_committed_decoders_are_what_the_generator_writes():
    assert lane_codegen.DECODERS_MODULE.read_text(encoding="utf-8") == \
        lane_codegen.lane_decoders_source()


def random_bags(n_docs: int, vocab: int, seed: int) -> sp.csr_matrix:
    """Lists long enough for many chunks, a few far-apart documents (exceptions), levels of
    every size, some empty documents."""
    rng = np.random.default_rng(seed)
    dense = rng.gamma(0.6, 2.0, size=(n_docs, vocab)) * (rng.random((n_docs, vocab)) < 0.3)
    dense[:, 0] = 0
    dense[rng.choice(n_docs, size=3, replace=False), 0] = 5.0  # three gaps in thousands
    dense[rng.integers(0, n_docs, size=20)] = 0
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("segment_docs", [7, 700, 65_536])
def test_packed_postings_read_and_score_as_the_raw_ones(segment_docs):
    raw = postings_from_bags(random_bags(3000, 30, seed=segment_docs), "uint8", segment_docs)
    packed = raw.packed()
    assert (packed.to_bags() != raw.to_bags()).nnz == 0
    assert np.array_equal(packed.document_lengths(), raw.document_lengths())
    deleted = np.random.default_rng(1).random(raw.n_docs) < 0.2
    assert np.array_equal(packed.document_frequency(deleted), raw.document_frequency(deleted))
    for doc in (0, 6, 7, 1234, 2999):
        for mine, theirs in zip(packed.document(doc), raw.document(doc), strict=True):
            assert np.array_equal(mine, theirs)
    hits = np.array([2999, 0, 7, 7, 1500])
    tokens = np.arange(30)
    assert np.array_equal(packed.impacts_of(tokens, hits), raw.impacts_of(tokens, hits))
    rng = np.random.default_rng(2)
    rows = [np.arange(30), np.array([0]), np.array([5, 9])]
    rows += [np.sort(rng.choice(30, size=int(rng.integers(1, 30)), replace=False))
             for _ in range(10)]
    indptr = np.cumsum([0, *map(len, rows)]).astype(np.int64)
    tokens = np.concatenate(rows).astype(np.int64)
    weights = rng.random(len(tokens)).astype(np.float32)
    for k in (1, 10, 3000):
        for threads in (1, 2):
            mine = packed.top_k(indptr, tokens, weights, k, Scratch(), threads, deleted)
            theirs = raw.top_k(indptr, tokens, weights, k, Scratch(), 1, deleted)
            for a, b in zip(mine, theirs, strict=True):
                assert np.array_equal(a, b)


def test_packed_postings_take_about_half_the_raw_bytes():
    raw = postings_from_bags(random_bags(20_000, 30, seed=4), "uint8")
    packed = raw.packed()
    assert packed.words.nbytes < 0.6 * (raw.docs.nbytes + raw.impacts.nbytes)


def damaged(change, dense: bool = False) -> PackedPostings:
    """Packed postings of one token in 3,000 documents, `change` applied to a copy of their
    words: every third document in two chunks, or (`dense`) every second, a dense list."""
    step = 2 if dense else 3
    postings = one_token(np.arange(0, 3000, step), np.arange(3000 // step) % 200 + 1,
                         n_docs=3000, dense=dense)
    assert (postings.words[0] == DENSE) == dense
    words = postings.words.copy()
    change(words)
    return PackedPostings(postings.indptr, postings.word_ptr, words, 1.0, 3000)


@pytest.mark.parametrize("change", [
    lambda words: words.__setitem__(0, words[0] | 20),  # a gap width of 21 bits
    # gaps read at 16 bits: offsets past the block's 3,000 documents
    lambda words: words.__setitem__(0, words[0] & ~np.uint32(255) | 16),
    # 255 exceptions in each stream: the chunk ends past its list's words
    lambda words: words.__setitem__(0, words[0] | np.uint32(255 << 16 | 255 << 24)),
], ids=["width", "offset", "exceptions"])
def test_damaged_words_stop_a_search_with_an_error(change):
    postings = damaged(change)
    scratch = Scratch()
    query = (np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64),
             np.array([1.0], dtype=np.float32))
    for threads in (1, 2):
        with pytest.raises(IndexFormatError, match="packed postings are damaged"):
            postings.top_k(*query, 10, scratch, threads)
        accumulators, _ = scratch.buffers(threads, 3000)
        assert not accumulators.any()  # left zeroed: the next search is not corrupted
    with pytest.raises(IndexFormatError, match="packed postings are damaged"):
        postings.to_bags()
    with pytest.raises(IndexFormatError, match="packed postings are damaged"):
        postings.impacts_of(np.array([0]), np.array([3]))


def test_opening_refuses_list_starts_past_the_words(tmp_path):
    postings = one_token(np.arange(0, 3000, 3), np.ones(1000), n_docs=3000)
    for name, array in postings.arrays().items():
        np.save(tmp_path / f"postings_{name}.npy", array)
    PackedPostings.open(tmp_path, 3000, 1, "uint8", 1.0, 65_536)  # whole: opens
    np.save(tmp_path / "postings_words.npy", postings.words[:-2])  # its padding cut short
    with pytest.raises(IndexFormatError, match=r"postings_word_ptr\.npy is damaged"):
        PackedPostings.open(tmp_path, 3000, 1, "uint8", 1.0, 65_536)


def test_float32_weights_cannot_be_packed():
    with pytest.raises(TokretrieveError, match="packed postings hold uint8 impacts"):
        check_layout("float32", 65_536, "packed")
    with pytest.raises(TokretrieveError, match="unknown postings codec 'zip'"):
        check_layout("uint8", 65_536, "zip")
    raw = postings_from_bags(random_bags(50, 5, seed=1), "float32")
    with pytest.raises(TokretrieveError, match="packed postings hold uint8 impacts"):
        raw.packed()


def test_a_list_holding_most_documents_up_to_its_last_is_one_row_of_levels():
    # 500 postings among documents 0..999 (50%: dense from 45%): DENSE, the length 1,000,
    # then a level byte per document, 0 where the token is absent, four to a word
    offsets = np.sort(np.random.default_rng(3).choice(999, 500, replace=False))
    offsets[-1] = 999
    levels = np.arange(500) % 250 + 1
    postings = one_token(offsets, levels, dense=True)
    row = np.zeros(1000, dtype=np.uint8)
    row[offsets] = levels
    assert postings.words[:2].tolist() == [DENSE, 1000]
    assert postings.words[2:252].view(np.uint8).tolist() == row.tolist()
    assert postings.word_ptr.tolist() == [[0, 252]]
    _, docs, impacts = postings.block(0)  # read back as the raw lists
    assert docs.tolist() == offsets.tolist() and impacts.tolist() == levels.tolist()


@pytest.mark.parametrize(("count", "last", "dense"), [
    (450, 999, True),    # 45% of the documents up to the last: dense
    (449, 999, False),   # just under
    (127, 126, False),   # every document, but under 128 postings: chunks
    (128, 127, True)])
def test_a_list_is_dense_from_45_percent_of_its_documents(count, last, dense):
    assert DENSE_SHARE == 0.45
    offsets = np.linspace(0, last, count).astype(int)
    postings = one_token(offsets, np.ones(count), dense=True)
    assert (postings.words[0] == DENSE) == dense


def test_dense_lists_read_and_score_as_the_raw_lists_they_came_from():
    """Bags whose common tokens make dense lists (in some segments and not others): every
    read and every search of the packed postings equals the raw ones', and both scoring
    ways of a segment (dense scan and touched list) meet dense lists."""
    rng = np.random.default_rng(8)
    n_docs, vocab = 5000, 12
    share = np.array([0.9, 0.6, 0.55, 0.5, 0.2, 0.05, 0.01, 0.8, 0.3, 0.1, 0.7, 0.7])
    present = rng.random((n_docs, vocab)) < share
    present[:2500, 7] = False  # token 7: dense in the second half of the documents only
    present[400:, 11] = False  # token 11: dense in a short prefix, scored the touched-list way
    levels = rng.integers(1, 256, size=(n_docs, vocab)) * present
    bags = sp.csr_matrix(levels.astype(np.float32))
    for segment_docs in (1024, 65_536):
        raw = postings_from_bags(bags, "uint8", segment_docs, scale=1.0)
        packed = raw.packed()
        assert (packed.words[packed.word_ptr[:, :-1]] == DENSE).sum() >= 4  # dense lists
        assert (packed.to_bags() != raw.to_bags()).nnz == 0
        hits = np.array([0, 17, 2600, 4999])
        assert np.array_equal(packed.impacts_of(np.arange(vocab), hits),
                              raw.impacts_of(np.arange(vocab), hits))
        assert packed.words[packed.word_ptr[0, 11]] == DENSE
        queries = [[0], [5], [11], [6, 11], [7], list(range(vocab)), [2, 3, 8]]
        indptr = np.cumsum([0, *map(len, queries)]).astype(np.int64)
        tokens = np.concatenate(queries).astype(np.int64)
        weights = rng.random(len(tokens)).astype(np.float32)
        for k in (1, 10, n_docs):
            mine = packed.top_k(indptr, tokens, weights, k, Scratch(), 2)
            theirs = raw.top_k(indptr, tokens, weights, k, Scratch(), 1)
            for a, b in zip(mine, theirs, strict=True):
                assert np.array_equal(a, b)


@pytest.mark.parametrize("change", [
    lambda words: words.__setitem__(1, 4000),  # longer than the segment's 3,000 documents
    lambda words: words.__setitem__(1, 1000),  # shorter than its 1,500 postings
    lambda words: words.__setitem__(5, 0),     # 4 levels gone: fewer postings than counted
], ids=["past the segment", "too short", "levels lost"])
def test_damaged_dense_lists_are_refused(change):
    postings = damaged(change, dense=True)
    with pytest.raises(IndexFormatError, match="packed postings are damaged"):
        postings.to_bags()
    with pytest.raises(IndexFormatError, match="packed postings are damaged"):
        postings.impacts_of(np.array([0]), np.array([2]))


def test_a_dense_list_past_its_words_stops_a_search_with_an_error():
    postings = damaged(lambda words: None, dense=True)
    short = PackedPostings(postings.indptr, np.array([[0, 300]]), postings.words, 1.0, 3000)
    query = (np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64),
             np.array([1.0], dtype=np.float32))
    scratch = Scratch()
    with pytest.raises(IndexFormatError, match="packed postings are damaged"):
        short.top_k(*query, 10, scratch, 1)
    assert not scratch.buffers(1, 3000)[0].any()
