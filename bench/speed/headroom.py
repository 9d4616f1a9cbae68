"""`python -m bench.speed.headroom`: how much work could exact pruning skip on an index's bags?

    python -m bench.speed.headroom --index index/cranfield --sizes real,100000,1000000

Exact dynamic pruning (block-max, MaxScore, WAND) skips a posting only when an upper bound
proves that its document cannot reach the k-th best score. How much that can ever skip is a
property of the bags and the queries, not of a kernel, so this measures it directly, with the
exact k-th score known in advance (the best case for any pruning method, whose threshold only
approaches it during a search):

- block-max: documents cut into blocks of B consecutive positions (B = 4 ... 256), a block's
  bound is the sum over query tokens of query level x the token's largest level in the block;
  reported: the share of blocks, and of the query's postings, in blocks whose bound reaches
  the k-th score (what block-max search must still score);
- MaxScore: query tokens sorted by their bound (query level x largest level anywhere); the
  longest run of smallest bounds whose sum stays below the k-th score is "non-essential"
  (no document matching only those can enter the top k); reported: the share of postings in
  the essential tokens, and the share of documents a search must still complete (touched
  by an essential token with partial sum + the non-essential bounds >= the k-th score).

On the real bags (the index's own documents), and on synthetic corpora drawn from their
distribution (bench/speed/synth.py: every document drawn independently, so no topical
clusters: the hard case for pruning; real collections cluster, BP-reordered ones most).
Both query modes of the index (tokenized with its default weighting, and model-encoded).
Document weights are the index's uint8 levels, queries their float weights (a uniform scale
of either side changes no share).

Writes bench/results/speed/headroom/<timestamp>/results.json and report.md.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.speed.frontier import open_index, query_batches
from bench.speed.kernel import stored_levels
from bench.speed.synth import corpus_at, corpus_sizes
from bench.toolkit import CRANFIELD
from bench.toolkit.cli import positive_int
from bench.toolkit.machine import index_record
from bench.toolkit.results import (
    command_line,
    finish_record,
    new_record,
    run_folder,
    write_record,
)
from bench.toolkit.tables import percent, table
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "headroom"
BLOCK_SIZES = (4, 16, 64, 256)
K = 10


def query_headroom(levels: sp.csc_matrix, maxima: np.ndarray, tokens: np.ndarray,
                   weights: np.ndarray, block_sizes: Sequence[int], k: int = K
                   ) -> dict[str, Any] | None:
    """One query's headroom (see the module docstring); None for a query that matches fewer
    than k documents (nothing to prune against)."""
    query = np.asarray(weights, dtype=np.float64)
    sub = levels[:, tokens].tocoo()
    contribution = sub.data.astype(np.float64) * query[sub.col]
    sums = np.bincount(sub.row, weights=contribution, minlength=levels.shape[0])
    matched = np.count_nonzero(sums)
    if matched < k:
        return None
    threshold = np.partition(sums, len(sums) - k)[len(sums) - k]
    out: dict[str, Any] = {"postings": int(sub.nnz), "blocks": {}}
    for size in block_sizes:
        n_blocks = -(-levels.shape[0] // size)
        block = sub.row // size
        keys = sub.col.astype(np.int64) * n_blocks + block  # column-major: already sorted
        if np.any(np.diff(keys) < 0):
            order = np.argsort(keys, kind="stable")
            keys, block_levels = keys[order], sub.data[order]
        else:
            block_levels = sub.data
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        block_max = np.maximum.reduceat(block_levels.astype(np.float64), first)
        bounds = np.bincount(keys[first] % n_blocks,
                             weights=block_max * query[keys[first] // n_blocks],
                             minlength=n_blocks)
        alive = bounds >= threshold
        out["blocks"][str(size)] = {
            "alive_blocks": float(alive[np.bincount(block, minlength=n_blocks) > 0].mean()),
            "alive_postings": float(alive[block].mean())}
    bound = query * maxima[tokens]
    order = np.argsort(bound, kind="stable")
    below = np.cumsum(bound[order]) < threshold
    non_essential = order[below]
    essential = np.ones(len(tokens), dtype=bool)
    essential[non_essential] = False
    partial = np.bincount(sub.row[essential[sub.col]],
                          weights=contribution[essential[sub.col]], minlength=levels.shape[0])
    rest = float(bound[non_essential].sum())
    out["maxscore"] = {
        "essential_tokens": float(essential.mean()),
        "essential_postings": float(essential[sub.col].mean()),
        "documents_to_complete": float(np.count_nonzero((partial > 0)
                                                         & (partial + rest >= threshold))
                                       / matched)}
    return out


def corpus_headroom(levels: sp.csr_matrix, batches: dict[str, sp.csr_matrix],
                    block_sizes: Sequence[int], every: int, k: int = K) -> dict[str, Any]:
    """Mean headroom over every `every`-th query of each mode (those with k matches)."""
    csc = levels.tocsc()
    maxima = np.zeros(csc.shape[1], dtype=np.float64)
    lengths = np.diff(csc.indptr)
    present = lengths > 0
    maxima[present] = np.maximum.reduceat(csc.data, csc.indptr[:-1][present])
    result: dict[str, Any] = {"documents": int(levels.shape[0]), "postings": int(levels.nnz)}
    for mode, batch in batches.items():
        rows = [query_headroom(csc, maxima, batch[q].indices, batch[q].data, block_sizes, k)
                for q in range(0, batch.shape[0], every)]
        rows = [row for row in rows if row]
        if not rows:
            result[mode] = {"queries": 0}
            continue
        result[mode] = {
            "queries": len(rows),
            "postings_mean": float(np.mean([r["postings"] for r in rows])),
            "blocks": {str(size): {key: float(np.mean([r["blocks"][str(size)][key]
                                                        for r in rows]))
                                   for key in ("alive_blocks", "alive_postings")}
                       for size in block_sizes},
            "maxscore": {key: float(np.mean([r["maxscore"][key] for r in rows]))
                         for key in rows[0]["maxscore"]}}
    return result


def render(record: dict[str, Any]) -> str:
    lines = ["# Pruning headroom", "", f"`{record['command']}` at commit "
             f"{record['machine']['git']['commit'][:12]}, {record['started']}.", "",
             "Share of the work an exact pruning method must still do with the exact "
             f"k-th score (k={K}) known in advance (bench/speed/headroom.py). Block-max: "
             "share of blocks (and of the query's postings) whose bound reaches it. "
             "MaxScore: share of postings in essential tokens, and of matched documents "
             "still to complete.", ""]
    sizes = record["block_sizes"]
    header = ["corpus", "docs", "mode", "postings/query",
              *[f"B={size} blocks (postings)" for size in sizes],
              "MaxScore essential postings", "docs to complete"]
    rows = []
    for name, corpus in record["corpora"].items():
        for mode in ("tokens", "model"):
            stats = corpus[mode]
            if not stats["queries"]:
                continue
            rows.append([name, f"{corpus['documents']:,}", mode,
                         f"{stats['postings_mean']:,.0f}",
                         *[f"{percent(stats['blocks'][str(s)]['alive_blocks'])} "
                           f"({percent(stats['blocks'][str(s)]['alive_postings'])})"
                           for s in sizes],
                         percent(stats["maxscore"]["essential_postings"]),
                         percent(stats["maxscore"]["documents_to_complete"])])
    lines += table(header, rows)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.headroom",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, required=True,
                        help="a built index (its documents are the real bags, its model "
                             "encodes the queries)")
    parser.add_argument("--corpus", type=Path, default=CRANFIELD,
                        help="the BEIR folder whose queries.jsonl is searched")
    parser.add_argument("--sizes", default="real,100000",
                        help="'real' and/or synthetic document counts (default real,100000)")
    parser.add_argument("--every", type=positive_int, default=5,
                        help="measure every N-th query (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    sizes = corpus_sizes(args.sizes)
    index = open_index(args.index)
    batches = {mode: batch.to_bags(index.vocab_size) for mode, batch
               in query_batches(index, index_encoder(index), args.corpus, ())[0].items()}
    real = stored_levels(index.postings)
    record = new_record(command_line("python -m bench.speed.headroom", argv),
                        **index_record(index), block_sizes=list(BLOCK_SIZES), corpora={})
    out = run_folder(args.output, record)
    for size in sizes:
        print(f"headroom at {size} ...", flush=True)
        record["corpora"][size] = corpus_headroom(corpus_at(size, real, args.seed), batches,
                                                  BLOCK_SIZES, args.every)
        write_record(out, record, render, partial=True)
    finish_record(out, record, render, render)
    return 0

if __name__ == "__main__":
    sys.exit(main())
