"""The scale benchmark's pieces: a corpus drawn block by block is the one drawn in memory, the
timed postings are searched exactly, growth is reported against a straight line, and a size
the disk cannot hold is refused before anything is drawn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from refimpl import brute_force_ranking
from speed_bags import VOCAB, hand_built_bags

from bench.speed.kernel import QueryBatch, package_top_k
from bench.speed.scale import (
    bytes_per_document,
    disk_check,
    draw_postings,
    growth_rows,
    measure_size,
    memory_status,
    parse_sizes,
)
from bench.speed.synth import distribution_from_bags, generate_bags
from tokretrieve.index.postings import postings_from_bags

SCALE = 2.0 ** -6


@pytest.fixture(scope="module")
def distribution():
    return distribution_from_bags(hand_built_bags(), seed=1)


@pytest.mark.parametrize("codec", ["raw", "packed"])
def test_blocks_drawn_to_disk_are_the_corpus_drawn_in_memory(tmp_path, distribution, codec):
    streamed = draw_postings(tmp_path, distribution, 1000, SCALE, seed=5, block_docs=300,
                             codec=codec)
    blocks = [generate_bags(distribution, size, seed=5 + b)
              for b, size in enumerate((300, 300, 300, 100))]
    built = postings_from_bags(sp.vstack(blocks, format="csr"), "uint8", scale=SCALE)
    assert streamed.codec == codec
    assert np.array_equal(streamed.to_bags().toarray(), built.to_bags().toarray())


@pytest.mark.parametrize("codec", ["raw", "packed"])
def test_the_memory_mapped_postings_answer_exactly(tmp_path, distribution, codec):
    streamed = draw_postings(tmp_path, distribution, 700, SCALE, seed=2, codec=codec)
    rows = np.zeros((3, VOCAB), dtype=np.float32)
    rows[0, [0, 7]] = [1, 2]
    rows[1, 10:30] = 1
    rows[2, :] = np.arange(1, VOCAB + 1)
    batch = QueryBatch.from_bags(sp.csr_matrix(rows))
    docs, _, counts = package_top_k(streamed, batch, 10, 1)
    levels = np.rint(streamed.to_bags().toarray() / SCALE)  # integer levels: exact sums
    for q in range(3):
        expected = brute_force_ranking(levels @ rows[q], 10)
        assert docs[q, :counts[q]].tolist() == expected


def test_one_size_is_measured_and_its_files_removed(tmp_path, distribution):
    rows = np.zeros((4, VOCAB), dtype=np.float32)
    rows[:, :4] = 1
    batch = QueryBatch.from_bags(sp.csr_matrix(rows))
    result = measure_size(distribution, SCALE, {"tokens": batch, "model": batch}, 2000,
                          tmp_path, seed=0, codec="raw")
    assert result["documents"] == 2000
    assert result["codec"] == "raw"
    assert result["bytes"] > result["postings"] * 3  # the arrays plus their .npy headers
    assert result["build_peak_rss_bytes"] >= result["rss_before_build_bytes"] > 0
    for mode in ("tokens", "model"):
        stats = result["modes"][mode]
        assert len(stats["first_ms"]) == 4
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert not any(tmp_path.iterdir())


def test_growth_is_per_million_documents_with_log_log_slopes():
    def size(n, gb, tokens_ms, model_ms):
        return {"documents": n, "bytes": gb * 1e9,
                "modes": {"tokens": {"p50_ms": tokens_ms}, "model": {"p50_ms": model_ms}}}
    record = {"corpora": {"a": size(1_000_000, 2.0, 1.0, 10.0),
                          "b": size(10_000_000, 20.0, 40.0, 100.0)}}
    first, second = growth_rows(record)
    assert first["bytes_per_million"] == pytest.approx(2e9)
    assert second["bytes_per_million"] == pytest.approx(2e9)
    assert second["bytes_slope"] == pytest.approx(1.0)
    assert second["tokens_p50_slope"] == pytest.approx(np.log10(40))  # 40x over 10x the docs
    assert second["model_p50_per_million"] == pytest.approx(10.0)
    assert "bytes_slope" not in first


def test_bytes_per_document_are_those_of_a_written_block(tmp_path, distribution):
    raw = bytes_per_document(distribution, SCALE, tmp_path, seed=0, codec="raw")
    packed = bytes_per_document(distribution, SCALE, tmp_path, seed=0, codec="packed")
    block = generate_bags(distribution, 65536, seed=0)
    kept = np.count_nonzero(np.rint(block.data / SCALE) > 0)  # level-0 weights are dropped
    # Raw: 3 bytes a posting, plus three .npy headers and the list offsets, over 65,536 docs.
    assert raw == pytest.approx(3 * kept / 65536, rel=0.01)
    assert packed < raw
    assert not any(tmp_path.iterdir())


def test_a_size_the_disk_cannot_hold_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"need about .* GB of postings"):
        disk_check(tmp_path, [10**15], bytes_per_doc=1000.0)
    arithmetic = disk_check(tmp_path, [10], bytes_per_doc=1000.0)
    assert arithmetic["largest_documents_disk_holds"] == int(
        arithmetic["free_bytes"] / (1000.0 * 1.05))


@pytest.mark.parametrize(("text", "message"), [
    ("", "--sizes is empty"), ("0", "--sizes: bad item '0'"),
    ("10,abc", "--sizes: bad item 'abc'"), ("-5", "--sizes: bad item '-5'")])
def test_bad_sizes_are_refused(text, message):
    with pytest.raises(SystemExit, match=message):
        parse_sizes(text)


def test_sizes_come_sorted():
    assert parse_sizes("1000000, 1000") == [1000, 1_000_000]


def test_memory_status_reads_this_process():
    resident = memory_status("VmRSS")  # first: reading the file may grow the process
    assert memory_status("VmHWM") >= resident > 0
