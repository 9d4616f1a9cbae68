"""`python -m bench.speed.packing`: what bit-packed postings would save, and what decoding them
would cost the exact kernel.

    python -m bench.speed.packing --index index/cranfield                 # one 65,536-doc block
    python -m bench.speed.packing --index index/cranfield --docs 131072

tokretrieve stores a posting as a uint16 document offset and a uint8 impact (3 bytes). The
classic compression of such lists is frame-of-reference bit-packing: cut each token's list into
chunks of 128 postings, store the document gaps (offset minus the previous one, minus 1) and the
impacts with the fewest bits that hold the chunk's largest, and a 4-byte header of both widths
(and, in vertical-16, of both streams' exception counts).
Nothing is lost: the scores are bit for bit those of the uint16 / uint8 arrays (checked on
every query before timing). Three layouts, each with its own decoder:

- horizontal: value i at bit i x width, the partial last chunk of a list only as long as it
  is (the smallest); decoded by one generic loop (shift and mask of two 32-bit words);
- vertical: full chunks in four interleaved 32-bit lanes (value i in lane i mod 4), as
  SIMD-BP128 lays them out, decoded by one fully unrolled function per bit width (generated:
  numba has no compile-time integer parameters); straight-line code with constant shifts,
  but scalar: numba leaves LLVM's SLP vectorizer off (it miscompiled, numba PR 8852);
- vertical-16: full chunks of 512 postings in sixteen lanes, decoded by one function per
  bit width whose loop runs over the lanes, the 32 rows unrolled inside: LLVM's loop
  vectorizer, which numba keeps on, then does eight lanes per AVX2 instruction. A chunk this
  long has a larger largest value, so each stream takes the width that costs the fewest bits
  when the values that do not fit are exceptions (as PForDelta does): one word each after the
  stream (its index and its high bits), added back after decoding; the header counts them.

In the four-lane layout a list's rest after its last full chunk is horizontal, in chunks of
up to 128. In vertical-16 a rest of 128 postings or more is vertical too, each lane taking
the words its rows need (decoded as a full chunk, the rows past its values unused): with
horizontal rests, which held 2-4% of the walked postings, the layout measured 1.23x (tokens)
and 1.25x (model) the raw arrays' time; with vertical ones, 1.11x and 1.19x (README, Speed).

The scoring loop is the exhaustive kernel's dense way (tokretrieve.index.kernels: one
float32 scatter-add per posting into a segment-sized accumulator); the packed loops decode
each chunk into small buffers and scatter the same products. The corpus is synthetic
(bench/speed/synth.py, drawn from the index's bags) at `--docs` documents, so that the gaps are
those of full 65,536-document blocks; the queries are the index model's, both modes, as the
frontier encodes them. One thread, one query per call (bench.toolkit.clock.latency). Writes
bench/results/speed/packing/<timestamp>/.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np

from bench.speed.frontier import add_index_arguments, open_index, postings_walked, query_batches
from bench.speed.kernel import QueryBatch
from bench.speed.synth import corpus_at
from bench.toolkit.cli import positive_int
from bench.toolkit.clock import latency
from bench.toolkit.machine import index_record
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record
from bench.toolkit.tables import number, table
from bench.toolkit.threads import pinned
from tokretrieve.index.postings import Postings, postings_from_bags
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "packing"
CHUNK = 128  # postings of a horizontal chunk (at most)
ROWS = 32  # values per lane of a vertical chunk: a lane of w-bit values fills w words
MAX_WIDTH = 16  # a gap inside a 65,536-document block, or an impact level, fits in 16 bits
# Each layout's lanes (0: horizontal; a full vertical chunk is ROWS x lanes postings), whether
# its widths leave exceptions (patched), and the shortest rest of a list it packs vertically.
LAYOUTS = {"horizontal": (0, False, 0), "vertical": (4, False, 4 * ROWS),
           "vertical-16": (16, True, CHUNK)}
# Read past a list's end: a short vertical chunk's decoder reads a full chunk's words.
PAD_WORDS = 16 * MAX_WIDTH


@numba.njit(nogil=True, cache=True)
def _bits(value):
    """Bits that hold the non-negative integer `value` (0 for 0)."""
    bits = 0
    while value > 0:
        bits += 1
        value >>= 1
    return bits


@numba.njit(nogil=True, cache=True)
def _width(values, start, end):
    """Bits that hold the largest of values[start:end] (0 when all are 0)."""
    top = 0
    for i in range(start, end):
        top = max(top, int(values[i]))
    return _bits(top)


@numba.njit(nogil=True, cache=True)
def _put(words, at, value, width, position):
    """OR `value` (width bits) into the bit stream starting at words[at], at bit `position`."""
    if width == 0:
        return
    shifted = np.uint64(value) << np.uint64(position & 31)
    word = at + (position >> 5)
    words[word] |= np.uint32(shifted & np.uint64(0xFFFFFFFF))
    words[word + 1] |= np.uint32(shifted >> np.uint64(32))


@numba.njit(nogil=True, cache=True)
def _put_vertical(words, at, value, width, i, lanes):
    """Value i of a chunk into `lanes` interleaved lanes (lane i % lanes, row i // lanes)."""
    if width == 0:
        return
    lane, row = i % lanes, i // lanes
    position = row * width
    shifted = np.uint64(value) << np.uint64(position & 31)
    word = at + (position >> 5) * lanes + lane
    words[word] |= np.uint32(shifted & np.uint64(0xFFFFFFFF))
    words[word + lanes] |= np.uint32(shifted >> np.uint64(32))


@numba.njit(nogil=True, cache=True)
def _patched_width(values, n):
    """The width b that packs values[:n] in the fewest bits when each value of more than b
    bits is an exception word (`_put_stream`): n x b + 32 per exception, at most 255 of them (the
    header's count field); returns (b, exceptions)."""
    top = _width(values, 0, n)
    counts = np.zeros(top + 2, dtype=np.int64)  # counts[b]: values of exactly b bits
    for i in range(n):
        counts[_bits(int(values[i]))] += 1
    above = 0
    best, best_cost, best_above = top, n * top, 0
    for b in range(top, -1, -1):  # from the widest down: `above` = values of more than b bits
        above += counts[b + 1]
        cost = n * b + 32 * above
        if above <= 255 and cost < best_cost:
            best, best_cost, best_above = b, cost, above
    return best, best_above


@numba.njit(nogil=True, cache=True)
def _put_stream(words, at, values, n, width, lanes, exceptions, filling):
    """values[:n] at `width` bits from words[at] (in `lanes` lanes, a lane's words as many as
    its values' bits need; or one after another for lanes 0), then, when `exceptions`, one
    word per value that does not fit: its index (9 bits) and its bits above the width;
    returns the word after them."""
    mask = (1 << width) - 1
    size = lanes * _lane_words(n, width, lanes) if lanes else (n * width + 31) // 32
    if filling:
        for i in range(n):
            low = int(values[i]) & mask
            if lanes:
                _put_vertical(words, at, low, width, i, lanes)
            else:
                _put(words, at, low, width, i * width)
    at += size
    if exceptions:
        for i in range(n):
            if int(values[i]) >> width:
                if filling:
                    words[at] = np.uint32(i | ((int(values[i]) >> width) << 9))
                at += 1
    return at


@numba.njit(nogil=True, cache=True)
def _lane_words(n, width, lanes):
    """Words per lane of a vertical chunk of n values: its rows' bits, rounded up."""
    return (((n + lanes - 1) // lanes) * width + 31) // 32


@numba.njit(nogil=True, cache=True)
def _pack(indptr, docs, impacts, lanes, patched, shortest, word_ptr, words):
    """Fill `words` (zeroed, sized by a first call with an empty `words`) and `word_ptr`
    (each list's first word); returns the words used. `lanes` 0: every chunk horizontal;
    else full chunks of 32 x `lanes` postings vertical, and the rest of a list too when it
    has at least `shortest` postings (else horizontal chunks of up to 128).
    `patched`: each stream's width as `_patched_width` chooses it, with exception words."""
    filling = words.shape[0] > 0
    wide = ROWS * lanes
    gaps = np.empty(max(wide, CHUNK), dtype=np.int64)
    levels = np.empty(max(wide, CHUNK), dtype=np.int64)
    at = 0
    for block in range(indptr.shape[0]):
        for token in range(indptr.shape[1] - 1):
            word_ptr[block, token] = at
            previous = -1
            start, stop = indptr[block, token], indptr[block, token + 1]
            while start < stop:
                vertical = lanes > 0 and stop - start >= shortest
                end = start + min(wide, stop - start) if vertical else min(start + CHUNK, stop)
                n = end - start
                for i in range(n):
                    gaps[i] = int(docs[start + i]) - previous - 1
                    previous = int(docs[start + i])
                    levels[i] = int(impacts[start + i])
                if patched:
                    gap_bits, gap_exceptions = _patched_width(gaps, n)
                    impact_bits, impact_exceptions = _patched_width(levels, n)
                else:
                    gap_bits, gap_exceptions = _width(gaps, 0, n), 0
                    impact_bits, impact_exceptions = _width(levels, 0, n), 0
                if filling:
                    words[at] = np.uint32(gap_bits | (impact_bits << 8)
                                          | (gap_exceptions << 16) | (impact_exceptions << 24))
                chunk_lanes = lanes if vertical else 0
                at = _put_stream(words, at + 1, gaps, n, gap_bits, chunk_lanes, patched,
                                 filling)
                at = _put_stream(words, at, levels, n, impact_bits, chunk_lanes, patched,
                                 filling)
                start = end
        word_ptr[block, indptr.shape[1] - 1] = at
    return at


def pack(postings: Postings, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(word_ptr, words) of `postings` bit-packed in `layout` (see the module docstring)."""
    indptr, docs = np.asarray(postings.indptr), np.asarray(postings.docs)
    impacts = np.asarray(postings.impacts)
    word_ptr = np.zeros_like(indptr)
    lanes, patched, shortest = LAYOUTS[layout]
    used = _pack(indptr, docs, impacts, lanes, patched, shortest, word_ptr,
                 np.zeros(0, dtype=np.uint32))
    words = np.zeros(used + PAD_WORDS, dtype=np.uint32)
    _pack(indptr, docs, impacts, lanes, patched, shortest, word_ptr, words)
    return word_ptr, words


@numba.njit(nogil=True, cache=True)
def _unpack_horizontal(words, at, n, width, out):
    mask = (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    for i in range(n):
        position = i * width
        word = at + (position >> 5)
        pair = np.uint64(words[word]) | (np.uint64(words[word + 1]) << np.uint64(32))
        out[i] = np.uint32((pair >> np.uint64(position & 31)) & mask)
    return at + (n * width + 31) // 32


def _unrolled_source(width: int, lanes: int) -> str:
    """Python source of a straight-line decoder of one chunk of `width`-bit values in
    `lanes` lanes: every load, shift and mask written out, each with constant offsets."""
    lines = [f"def unpack_{width}(words, at, out):", "    a = np.uint64(at)"]
    mask = (1 << width) - 1
    for row in range(ROWS):
        position = row * width
        word, shift = position >> 5, position & 31
        for lane in range(lanes):
            if width == 0:
                lines.append(f"    out[{row * lanes + lane}] = np.uint32(0)")
                continue
            value = f"(words[a + np.uint64({word * lanes + lane})] >> np.uint32({shift}))"
            if shift + width > 32:
                value = (f"({value} | (words[a + np.uint64({(word + 1) * lanes + lane})] "
                         f"<< np.uint32({32 - shift})))")
            lines.append(f"    out[{row * lanes + lane}] = {value} & np.uint32({mask})")
    lines.append(f"    return at + {lanes * width}")
    return "\n".join(lines)


def _lane_loop_source(width: int, lanes: int) -> str:
    """Python source of a decoder of one chunk whose loop runs over the lanes, the rows
    unrolled inside it: each iteration reads its lane's `width` words (consecutive lanes,
    consecutive addresses) and writes its 32 values with constant shifts, so LLVM's loop
    vectorizer does several lanes per instruction. The indices are unsigned: a signed one
    brings numba's negative-index wraparound, which stops the vectorizer."""
    lines = [f"def unpack_{width}(words, at, out):", "    a = np.uint64(at)",
             f"    for lane in range({lanes}):", "        u = np.uint64(lane)"]
    mask = (1 << width) - 1
    lines += [f"        w{k} = words[a + np.uint64({k * lanes}) + u]" for k in range(width)]
    for row in range(ROWS):
        position = row * width
        word, shift = position >> 5, position & 31
        value = f"(w{word} >> np.uint32({shift})) & np.uint32({mask})" if width else \
            "np.uint32(0)"
        if width and shift + width > 32:
            value = (f"((w{word} >> np.uint32({shift})) | (w{word + 1} << "
                     f"np.uint32({32 - shift}))) & np.uint32({mask})")
        lines.append(f"        out[np.uint64({row * lanes}) + u] = {value}")
    lines.append(f"    return at + {lanes * width}")
    return "\n".join(lines)


def compiled(source: Callable[[int, int], str], width: int, lanes: int) -> Callable:
    """The decoder of one chunk of `width`-bit values in `lanes` lanes that `source` writes,
    compiled: `f(words, at, out)` fills out[:32 x lanes] and returns the word after the
    chunk."""
    namespace: dict[str, Any] = {"np": np}
    exec(source(width, lanes), namespace)  # the source generated above, nothing else
    return numba.njit(nogil=True)(namespace[f"unpack_{width}"])


def _vertical_decoders(source: Callable[[int, int], str], lanes: int, shortest: int
                       ) -> Callable:
    """One compiled decoder per width 0..16 of `source`'s form, and the dispatcher over them:
    a chunk shorter than `shortest` is horizontal; a vertical one shorter than a full chunk
    is decoded as a full one (the rows past its values read what follows, and are not used)
    and takes only the words its rows need (`_lane_words`)."""
    namespace: dict[str, Any] = {f"unpack_{width}": compiled(source, width, lanes)
                                 for width in range(MAX_WIDTH + 1)}
    branches = [f"    {'if' if w == 0 else 'elif'} width == {w}: unpack_{w}(words, at, out)"
                for w in range(MAX_WIDTH + 1)]
    namespace.update(unpack_horizontal=_unpack_horizontal, lane_words=_lane_words)
    exec("\n".join(["def unpack(words, at, n, width, out):",
                    f"    if n < {shortest}: return unpack_horizontal(words, at, n, width, out)",
                    *branches, f"    return at + {lanes} * lane_words(n, width, {lanes})"]),
         namespace)
    return numba.njit(nogil=True)(namespace["unpack"])


@numba.njit(nogil=True, cache=True)
def score_raw(indptr, docs, impacts, segment_docs, tokens, weights, accumulator):
    """The exhaustive kernel's dense scatter over every block (no top-k: the same for all)."""
    for block in range(indptr.shape[0]):
        base = block * segment_docs
        for i in range(tokens.shape[0]):
            token, weight = tokens[i], np.float32(weights[i])
            for p in range(indptr[block, token], indptr[block, token + 1]):
                accumulator[base + np.int64(docs[p])] += weight * np.float32(impacts[p])


@numba.njit(nogil=True, cache=True)
def _patch(words, at, count, width, out):
    """Add back the high bits of a stream's `count` exceptions (`_put_stream`); returns the
    word after them."""
    for e in range(count):
        word = words[at + e]
        out[word & 511] |= (word >> 9) << width
    return at + count


@numba.njit(nogil=True)
def score_packed(unpack, wide, shortest, indptr, word_ptr, words, segment_docs, tokens, weights,
                 accumulator):
    """`score_raw` on bit-packed lists: each chunk (up to `wide` postings while at least
    `shortest` are left, then up to 128) decoded by `unpack` (one layout's decoder, compiled
    in: one specialisation per layout) into buffers, then scattered."""
    gaps = np.empty(max(wide, CHUNK), dtype=np.uint32)
    levels = np.empty(max(wide, CHUNK), dtype=np.uint32)
    for block in range(indptr.shape[0]):
        base = block * segment_docs
        for i in range(tokens.shape[0]):
            token, weight = tokens[i], np.float32(weights[i])
            left = indptr[block, token + 1] - indptr[block, token]
            at = word_ptr[block, token]
            doc = np.int64(base - 1)
            while left > 0:
                n = min(left, wide) if left >= shortest else min(left, CHUNK)
                header = words[at]
                gap_bits, impact_bits = header & 255, (header >> 8) & 255
                at = unpack(words, at + 1, n, gap_bits, gaps)
                at = _patch(words, at, (header >> 16) & 255, gap_bits, gaps)
                at = unpack(words, at, n, impact_bits, levels)
                at = _patch(words, at, header >> 24, impact_bits, levels)
                for j in range(n):
                    doc += np.int64(gaps[j]) + 1
                    accumulator[doc] += weight * np.float32(levels[j])
                left -= n


def scorers(postings: Postings, layouts: Sequence[str] = tuple(LAYOUTS)
            ) -> dict[str, tuple[Callable, int]]:
    """The raw arrays' and each packed layout's scoring call `f(batch, accumulator)`, with
    the bytes each stores."""
    indptr = np.asarray(postings.indptr)
    out: dict[str, tuple[Callable, int]] = {"uint16 + uint8": (
        lambda b, acc: score_raw(indptr, postings.docs, postings.impacts,
                                 postings.segment_docs, b.tokens, b.weights, acc),
        postings.docs.nbytes + postings.impacts.nbytes + indptr.nbytes)}
    for layout in layouts:
        word_ptr, words = pack(postings, layout)
        lanes, _, shortest = LAYOUTS[layout]
        unpack = decoder(layout)
        out[layout] = (
            lambda b, acc, u=unpack, n=ROWS * lanes or CHUNK, m=shortest, w=word_ptr,
            ws=words: score_packed(u, n, m, indptr, w, ws, postings.segment_docs, b.tokens,
                                   b.weights, acc),
            words.nbytes + word_ptr.nbytes + indptr.nbytes)
    return out


@functools.cache
def decoder(layout: str) -> Callable:
    """The compiled decoder of one chunk of `layout` (the vertical ones compiled on first
    use: 17 widths each, most of a minute)."""
    if layout == "horizontal":
        return _unpack_horizontal
    source = _unrolled_source if layout == "vertical" else _lane_loop_source
    lanes, _, shortest = LAYOUTS[layout]
    return _vertical_decoders(source, lanes, shortest)


def vertical_share(postings: Postings, layout: str, tokens: np.ndarray | None = None) -> float:
    """The share of the postings that `layout` packs in vertical chunks (full ones, and a
    list's rest when it has at least the layout's shortest), of all stored or of the lists of
    `tokens` (with repeats: a batch's tokens give the share of the postings its queries walk);
    0 for the raw arrays and the horizontal layout."""
    lanes, _, shortest = LAYOUTS.get(layout, (0, False, 0))
    lengths = np.diff(np.asarray(postings.indptr), axis=1)
    if tokens is not None:
        lengths = lengths[:, tokens]
    if not lanes or lengths.sum() == 0:
        return 0.0
    rest = lengths % (ROWS * lanes)
    return float((lengths - np.where(rest >= shortest, 0, rest)).sum() / lengths.sum())


def same_scores(postings: Postings, calls: dict[str, tuple[Callable, int]],
                batch: QueryBatch) -> bool:
    """Every layout's accumulator equals the raw one's, bit for bit, on every query."""
    for single in batch.singles():
        results = []
        for call, _ in calls.values():
            accumulator = np.zeros(postings.n_docs, dtype=np.float32)
            call(single, accumulator)
            results.append(accumulator)
        if not all(np.array_equal(results[0], other) for other in results[1:]):
            return False
    return True


def measure(postings: Postings, batches: dict[str, QueryBatch], hidden_size: int,
            rounds: int = 5) -> dict[str, Any]:
    """Bytes of every layout, and its latencies in `rounds` rounds, the layouts interleaved
    in each (so that a slow spell of a shared machine falls on all of them): per layout and
    mode, the median round's p50 / p99 / mean, and the median of its rounds' time over the
    raw arrays' time in the same round, both of the mean call and of the typical one
    (`_typical_ms`)."""
    calls = scorers(postings)
    mean_length = postings.n_postings / max(postings.n_docs, 1)
    out: dict[str, Any] = {"documents": postings.n_docs, "postings": postings.n_postings,
                           "dense_bytes_per_doc": hidden_size * 4, "rounds": rounds,
                           "layouts": {}}
    for name, (_, stored) in calls.items():
        per_posting = stored / postings.n_postings
        out["layouts"][name] = {"bytes": stored, "bytes_per_posting": per_posting,
                                "vs_dense": per_posting * mean_length / (hidden_size * 4),
                                "vertical_share": vertical_share(postings, name),
                                "modes": {}}
    accumulator = np.zeros(postings.n_docs, dtype=np.float32)  # not zeroed: same work for all
    with pinned(1):
        for mode, batch in batches.items():
            if not same_scores(postings, calls, batch):
                raise SystemExit(f"error: a packed layout scored the {mode} queries "
                                 "differently from the uint16 / uint8 arrays")
            walked = float(postings_walked(postings, batch).sum())
            timings: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
            for round_ in range(rounds):
                for name, (call, _) in calls.items():
                    timings[name].append(latency(lambda b, c=call: c(b, accumulator),
                                                 batch.singles(), per_item=True))
                print(f"  {mode} round {round_ + 1}: " + ", ".join(
                    f"{name} {timings[name][-1]['mean_ms']:.3f}" for name in calls)
                    + " ms mean", flush=True)
            raw = [t["mean_ms"] for t in timings["uint16 + uint8"]]
            raw_typical = [_typical_ms(t) for t in timings["uint16 + uint8"]]
            for name in calls:
                ratios = [t["mean_ms"] / r for t, r in zip(timings[name], raw, strict=True)]
                typical = [_typical_ms(t) / r
                           for t, r in zip(timings[name], raw_typical, strict=True)]
                mean_ms = float(np.median([t["mean_ms"] for t in timings[name]]))
                out["layouts"][name]["modes"][mode] = {
                    **{key: float(np.median([t[key] for t in timings[name]]))
                       for key in ("p50_ms", "p99_ms", "mean_ms")},
                    "x_raw": float(np.median(ratios)), "rounds_x_raw": ratios,
                    "typical_ms": float(np.median([_typical_ms(t) for t in timings[name]])),
                    "x_raw_typical": float(np.median(typical)),
                    "rounds_x_raw_typical": typical,
                    "ns_per_posting": mean_ms * 1e6 * len(batch) / walked,
                    "vertical_share_walked": vertical_share(postings, name, batch.tokens)}
    return out


def _typical_ms(timing: dict[str, Any]) -> float:
    """A round's typical time per query: the mean over the queries of each one's median
    call (a slow spell of the machine moves a query's mean, seldom its median)."""
    return float(np.mean(timing["per_item_s"])) * 1e3


def render(record: dict[str, Any]) -> str:
    result = record["result"]
    lines = ["# Bit-packed postings: bytes saved, decoding's cost", "",
             f"`{record['command']}` at commit {record['machine']['git']['commit'][:12]}"
             f"{' (uncommitted changes)' if record['machine']['git'].get('dirty') else ''}, "
             f"{record['started']}; {result['documents']:,} synthetic documents drawn from "
             f"{record['index']} ({result['postings'] / result['documents']:.0f} postings per "
             f"document, dense float32 {result['dense_bytes_per_doc']} bytes per document). "
             "One thread, one query per call; every layout's scores checked equal to the "
             "uint16 / uint8 arrays' on every query first. Times: the median of "
             f"{result.get('rounds', 1)} rounds, the layouts interleaved in each; a layout's "
             "time over the raw arrays' is taken within each round, of the mean call and of "
             "the mean of each query's median call (which a slow spell of the machine "
             "moves less).", ""]
    rows = []
    for name, layout in result["layouts"].items():
        walked = [layout["modes"][mode]["vertical_share_walked"] for mode in ("tokens", "model")]
        cells = [name, f"{layout['bytes_per_posting']:.3f}", f"{layout['vs_dense']:.3f}",
                 " / ".join(f"{share:.0%}" for share in (layout["vertical_share"], *walked))]
        for mode in ("tokens", "model"):
            m = layout["modes"][mode]
            cells += [f"{number(m['p50_ms'], 3)} / {number(m['p99_ms'], 3)}",
                      f"{m['ns_per_posting']:.3f}",
                      f"{m['x_raw']:.2f} ({min(m['rounds_x_raw']):.2f}-"
                      f"{max(m['rounds_x_raw']):.2f})"]
            cells.append(f"{m['x_raw_typical']:.2f} ({min(m['rounds_x_raw_typical']):.2f}-"
                         f"{max(m['rounds_x_raw_typical']):.2f})")
        rows.append(cells)
    lines += table(["layout", "bytes / posting", "x dense float32",
                    "in vertical chunks: stored / walked (tokens / model)",
                    *(heading for mode in ("tokens", "model") for heading in (
                        f"{mode} p50 / p99 ms", f"{mode} ns / posting",
                        f"{mode} x raw, means: median (rounds)",
                        f"{mode} x raw, per-query medians: median (rounds)"))], rows)
    return "\n".join(lines) + "\n"


def summary(record: dict[str, Any]) -> str:
    layouts = record["result"]["layouts"]
    return "\n".join(
        f"{name}: {layout['vs_dense']:.3f}x dense bytes, "
        + ", ".join(f"{mode} {layout['modes'][mode]['x_raw']:.2f}x raw time"
                    for mode in ("tokens", "model"))
        for name, layout in layouts.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.packing",
                                     description=__doc__.split("\n")[0])
    add_index_arguments(parser)
    parser.add_argument("--docs", type=int, default=65_536,
                        help="synthetic documents (default one full 65,536-document block)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=positive_int, default=5,
                        help="timing rounds, the layouts interleaved in each (default 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.docs < 1:
        raise SystemExit(f"error: --docs must be positive, got {args.docs}")
    index = open_index(args.index)
    batches, _ = query_batches(index, index_encoder(index), args.corpus, ())
    postings = postings_from_bags(corpus_at(str(args.docs), index.postings.to_bags(),
                                            args.seed),
                                  "uint8", scale=float(index.manifest.layout.scale))
    record = new_record(command_line("python -m bench.speed.packing", argv),
                        **index_record(index))
    out = run_folder(args.output, record)
    record["result"] = measure(postings, batches, index.manifest.model.hidden_size, args.rounds)
    write_record(out, record, render, partial=True)
    finish_record(out, record, render, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
