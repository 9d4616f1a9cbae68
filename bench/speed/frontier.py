"""`python -m bench.speed.frontier`: the exact kernel against the memory's limit, and the
speed / recall trade-off of lighter queries next to Seismic's approximate search.

    python -m bench.speed.frontier --index index/cranfield                 # real, 100 k, 1 M
    python -m bench.speed.frontier --index index/cranfield --sizes real,20000 --peer-sizes real

Three questions, on the real bags of an index and on synthetic corpora drawn from their
distribution (bench/speed/synth.py), with that index's model encoding the queries:

1. **How close is the exact kernel to the hardware?** The single-thread read bandwidth of this
   machine is measured (a compiled sequential sum over 1 GiB); a query cannot take less than
   the bytes of the postings it walks (2-byte document offset + 1-byte impact each) read at
   that rate. Reported: kernel p50 against that floor, per query mode.
2. **What do lighter model queries buy?** Model-encoded queries keep the documents' bag size
   (512 tokens) by default; `query_bag_size` (SparseSearcher.from_index, ModelQueryEncoder's
   bag_size) keeps each query's heaviest N tokens only, which walks proportionally fewer
   postings. Reported for each N: p50 / p99 latency and recall@10 against the exact full
   query, the approximate mode's measured price.
3. **Where are the learned-sparse engines on the same bags?** Seismic (pyseismic-lsr,
   approximate), built from the same documents' weights with its defaults and searched with
   its own knobs (query_cut, heap_factor); PISA (pyterrier-pisa, exact block-max WAND and
   MaxScore), given the index's uint8 levels as integer term weights (token ids as terms)
   and the queries as integer levels (scaled by the power of two that brings the largest
   to at most 255; PISA scores integer queries exactly). Recall@10 against tokretrieve's
   exact answer. `make install-peers` installs both. Their builds are slow here (Seismic:
   minutes per 100 k documents of 512 tokens; PISA: its Python document feed), so they run
   on `--peer-sizes` only.

Latency is one query per call, one thread (numba and Seismic), p50 / p99 over passes of all
queries (bench.toolkit.clock.latency); PISA is called through pyterrier with a DataFrame, so
it is timed on all queries in one call, one thread, and reported as the mean per query (with
tokretrieve's mean beside it). Writes bench/results/speed/frontier/<timestamp>/.
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from bench.speed.kernel import QueryBatch, package_top_k, stored_levels
from bench.speed.peers import BM25Peer, DensePeer, unit_rows
from bench.speed.synth import corpus_at, corpus_sizes
from bench.toolkit import CRANFIELD
from bench.toolkit.clock import latency
from bench.toolkit.machine import index_record
from bench.toolkit.results import (
    command_line,
    finish_record,
    new_record,
    provenance,
    run_folder,
    write_record,
)
from bench.toolkit.tables import number, table
from bench.toolkit.threads import pinned
from tokretrieve import Encoder, SparseIndex
from tokretrieve.corpus import read_queries
from tokretrieve.errors import CorpusError
from tokretrieve.index.postings import Postings, postings_from_bags
from tokretrieve.search import ModelQueryEncoder, TokenQueryEncoder
from tokretrieve.search.query_encoders import index_encoder

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "results" / "speed" / "frontier"
QUERY_BAG_SIZES = (256, 128, 64, 32, 16, 8)
# Seismic's (query_cut, heap_factor) settings, lightest first; (None, 1.0): every query token.
SEISMIC_SETTINGS = ((5, 0.9), (10, 0.9), (20, 0.9), (50, 0.9), (100, 0.9), (None, 1.0))
BYTES_PER_POSTING = 3  # uint16 document offset + uint8 impact
BANDWIDTH_BYTES = 1 << 30
K = 10


@numba.njit(nogil=True, cache=True)
def _stream(words: np.ndarray) -> np.uint64:
    total = np.uint64(0)
    for i in range(words.shape[0]):
        total += words[i]
    return total


def read_bandwidth() -> dict[str, float]:
    """Single-thread sequential read bandwidth (bytes/s): the best of 5 compiled passes over
    1 GiB of uint64 (the best, because the floor is what the memory can do, not what a
    neighbour's burst leaves)."""
    words = np.ones(BANDWIDTH_BYTES // 8, dtype=np.uint64)
    _stream(words[:1024])
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        _stream(words)
        seconds.append(time.perf_counter() - start)
    return {"bytes_per_s": BANDWIDTH_BYTES / min(seconds),
            "bytes_per_s_median": BANDWIDTH_BYTES / float(np.median(seconds))}


def postings_walked(postings: Postings, batch: QueryBatch) -> np.ndarray:
    """Postings each query walks exhaustively (its tokens' list lengths over all segments)."""
    indptr = np.asarray(postings.indptr)
    lengths = (indptr[:, 1:] - indptr[:, :-1]).sum(axis=0)
    return np.array([int(lengths[batch.tokens[batch.indptr[q]:batch.indptr[q + 1]]].sum())
                     for q in range(len(batch))])


def top_sets(postings: Postings, batch: QueryBatch) -> list[set[int]]:
    """Each query's exact top-k documents."""
    docs, _, counts = package_top_k(postings, batch, K, 1)
    return [set(docs[q, :counts[q]].tolist()) for q in range(len(batch))]


def recall(found: list[set[int]], exact: list[set[int]]) -> float:
    """Mean share of the exact top-k found (queries with no exact hit left out)."""
    shares = [len(f & e) / len(e) for f, e in zip(found, exact, strict=True) if e]
    return float(np.mean(shares)) if shares else float("nan")


def timed_mode(postings: Postings, batch: QueryBatch) -> dict[str, Any]:
    lat = latency(lambda b: package_top_k(postings, b, K, 1), batch.singles())
    return {key: lat[key] for key in ("p50_ms", "p99_ms", "mean_ms", "n", "passes")}


def query_batches(index: SparseIndex, encoder: Encoder, corpus: Path, bag_sizes: Sequence[int]
                  ) -> tuple[dict[str, QueryBatch], np.ndarray]:
    """tokens (the index's default weighting), model (the documents' bag size) and model@N
    for every lighter query bag size N, from one embedding of the queries; and those unit
    query embeddings (the dense side's queries). `encoder`: the index's (index_encoder)."""
    try:
        texts = [text for _, text in read_queries(corpus)]
    except CorpusError as error:
        raise SystemExit(f"error: {error}: pass --corpus, a BEIR folder with the queries "
                         "(queries.jsonl)") from None
    embeddings = encoder.embed(texts, is_query=True)
    batches = {"tokens": TokenQueryEncoder.for_index(index, tokenizer=encoder.tokenizer)
               .encode(texts),
               "model": ModelQueryEncoder.for_index(index, encoder).from_embeddings(embeddings)}
    for size in bag_sizes:
        batches[f"model@{size}"] = ModelQueryEncoder.for_index(
            index, encoder, bag_size=size).from_embeddings(embeddings)
    out = {}
    for name, bags in batches.items():
        batch = QueryBatch.from_bags(bags)
        usable = [q for q in range(len(batch)) if batch.indptr[q + 1] > batch.indptr[q]]
        out[name] = QueryBatch.from_bags(sp.csr_matrix(bags)[usable])
    return out, unit_rows(encoder.sentence_embedding(embeddings))


def seismic_runs(bags: sp.csr_matrix, batches: dict[str, QueryBatch],
                 exact: dict[str, list[set[int]]]) -> dict[str, Any]:
    """Seismic built on `bags` (defaults), each setting's latency and recall@10 per mode."""
    import seismic

    string = seismic.get_seismic_string()
    bags = sp.csr_matrix(bags)
    started = time.perf_counter()
    dataset = seismic.SeismicDataset()
    for d in range(bags.shape[0]):
        start, end = bags.indptr[d], bags.indptr[d + 1]
        dataset.add_document(str(d), bags.indices[start:end].astype(str).astype(string),
                             bags.data[start:end].astype(np.float32))
    index = seismic.SeismicIndex.build_from_dataset(dataset)
    out: dict[str, Any] = {"build_s": time.perf_counter() - started, "settings": []}
    for query_cut, heap_factor in SEISMIC_SETTINGS:
        row: dict[str, Any] = {"query_cut": query_cut, "heap_factor": heap_factor}
        for mode in ("tokens", "model"):
            batch = batches[mode]
            queries = [(str(q), batch.tokens[batch.indptr[q]:batch.indptr[q + 1]]
                        .astype(str).astype(string),
                        batch.weights[batch.indptr[q]:batch.indptr[q + 1]])
                       for q in range(len(batch))]
            cut = query_cut or max(len(t) for _, t, _ in queries)

            def search(query, cut=cut, heap_factor=heap_factor):
                return index.search(query[0], query[1], query[2], K, cut, heap_factor)

            found = [{int(hit[2]) for hit in search(query)} for query in queries]
            lat = latency(search, queries)
            row[mode] = {"p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"],
                         "recall": recall(found, exact[mode])}
        out["settings"].append(row)
    return out


def pisa_runs(postings: Postings, batches: dict[str, QueryBatch],
              exact: dict[str, list[set[int]]], folder: Path) -> dict[str, Any]:
    """PISA built on the postings' uint8 levels; per algorithm and mode, the mean time per
    query of one batch call on one thread, and recall@10."""
    import pandas as pd
    from pyterrier_pisa import PisaIndex

    levels = stored_levels(postings)

    def terms(tokens: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        return {f"t{t}": float(w) for t, w in zip(tokens.tolist(), weights.tolist(),
                                                   strict=True) if w > 0}

    def documents():
        for d in range(levels.shape[0]):
            start, end = levels.indptr[d], levels.indptr[d + 1]
            yield {"docno": str(d), "toks": terms(levels.indices[start:end],
                                                  levels.data[start:end])}

    started = time.perf_counter()
    index = PisaIndex(str(folder / f"pisa-{levels.shape[0]}"), stemmer="none")
    index.toks_indexer(scale=1.0).index(documents())
    out: dict[str, Any] = {"build_s": time.perf_counter() - started, "algorithms": {}}
    frames = {}
    for mode in ("tokens", "model"):
        batch = batches[mode]
        rows = []
        for q in range(len(batch)):
            weights = batch.weights[batch.indptr[q]:batch.indptr[q + 1]].astype(np.float64)
            # a power of two keeps integer weights' ratios exact; others round to a level
            query = np.rint(weights * 2.0 ** np.floor(np.log2(255 / weights.max())))
            rows.append({"qid": str(q), "query_toks": terms(
                batch.tokens[batch.indptr[q]:batch.indptr[q + 1]], query)})
        frames[mode] = pd.DataFrame(rows)
    for algorithm in ("block_max_wand", "maxscore"):
        out["algorithms"][algorithm] = {}
        for mode, frame in frames.items():
            retrieve = index.quantized(num_results=K, toks_scale=1.0, threads=1,
                                       query_algorithm=algorithm)
            retrieve(frame.head(5))  # loads the index
            start = time.perf_counter()
            result = retrieve(frame)
            seconds = time.perf_counter() - start
            found = [set() for _ in range(len(frame))]
            for qid, docno in zip(result["qid"].astype(int), result["docno"].astype(int),
                                  strict=True):
                found[qid].add(docno)
            out["algorithms"][algorithm][mode] = {"mean_ms": 1e3 * seconds / len(frame),
                                                  "recall": recall(found, exact[mode])}
    return out


def unit_peers(bags: sp.csr_matrix, batches: dict[str, QueryBatch], queries: np.ndarray,
               documents: np.ndarray | None, seed: int) -> dict[str, Any]:
    """BM25S (numba) over the same bags' tokens with the tokens-mode queries, and FAISS flat
    over the documents' embeddings (random unit vectors of the same width for synthetic
    documents: a flat index's speed depends on the count and width only) with the query
    embeddings: single-query latency, one thread, for speed (their rankings answer other
    questions than the bags' dot products)."""
    bm25 = BM25Peer.build(bags.indptr, bags.indices, bags.shape[1])
    terms = bm25.queries(batches["tokens"].to_bags(bags.shape[1]))
    dense = (DensePeer.from_vectors(documents) if documents is not None
             else DensePeer.random(bags.shape[0], queries.shape[1], seed))
    out = {}
    for name, function, items in (
            ("BM25S numba", lambda q: bm25.search([q], K, 1), terms),
            ("FAISS flat", lambda v: dense.search(v[None, :], K), list(queries))):
        lat = latency(function, items)
        out[name] = {key: lat[key] for key in ("p50_ms", "p99_ms", "mean_ms", "n")}
    return out


def measure_corpus(bags: sp.csr_matrix, scale: float, batches: dict[str, QueryBatch],
                   bandwidth: float, with_peers: bool, scratch: Path,
                   queries: np.ndarray | None = None, documents: np.ndarray | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Everything of one corpus (see the module docstring)."""
    postings = postings_from_bags(bags, "uint8", scale=scale)
    out: dict[str, Any] = {"documents": int(bags.shape[0]), "postings": postings.n_postings,
                           "modes": {}}
    exact = {mode: top_sets(postings, batches[mode]) for mode in ("tokens", "model")}
    for name, batch in batches.items():
        walked = postings_walked(postings, batch)
        timing = timed_mode(postings, batch)  # p50, p99, mean
        floor_ms = float(np.median(walked)) * BYTES_PER_POSTING / bandwidth * 1e3
        reference = exact["tokens" if name == "tokens" else "model"]
        found = exact[name] if name in exact else top_sets(postings, batch)
        out["modes"][name] = {**timing, "tokens_mean": batch.mean_length(),
                              "postings_p50": float(np.median(walked)),
                              "bandwidth_floor_ms": floor_ms,
                              "recall": recall(found, reference)}
        print(f"  {name}: p50 {timing['p50_ms']:.3f} ms, floor {floor_ms:.3f} ms, recall "
              f"{out['modes'][name]['recall']:.3f}", flush=True)
    if with_peers:
        print("  BM25S and FAISS ...", flush=True)
        out["unit_peers"] = unit_peers(bags, batches, queries, documents, seed)
        print("  pisa: building ...", flush=True)
        out["pisa"] = pisa_runs(postings, batches, exact, scratch)
        print("  seismic: building ...", flush=True)
        out["seismic"] = seismic_runs(postings.to_bags(), batches, exact)
    return out


def render(record: dict[str, Any]) -> str:
    bandwidth = record["bandwidth"]
    lines = ["# Speed frontier: the exact kernel, lighter queries, Seismic and PISA", "",
             provenance(record) + f"; index {record['index']}.", "",
             f"Single-thread read bandwidth: {bandwidth['bytes_per_s'] / 1e9:.1f} GB/s best, "
             f"{bandwidth['bytes_per_s_median'] / 1e9:.1f} GB/s median (1 GiB, 5 passes). "
             "Floor: a query's median postings x 3 bytes at the best bandwidth. Latency: one "
             "query per call, one thread, k=10. Recall@10 against the exact answer of the "
             "full query of that mode.", ""]
    rows = []
    for name, corpus in record["corpora"].items():
        for mode, stats in corpus["modes"].items():
            rows.append([name, f"{corpus['documents']:,}", mode, number(stats["tokens_mean"], 1),
                         f"{stats['postings_p50']:,.0f}", number(stats["p50_ms"], 3),
                         number(stats["p99_ms"], 3), number(stats["bandwidth_floor_ms"], 3),
                         number(stats["p50_ms"] / stats["bandwidth_floor_ms"], 1)
                         if stats["bandwidth_floor_ms"] else "-", number(stats["recall"], 3)])
    lines += table(["corpus", "docs", "queries", "tokens", "postings p50", "p50 ms", "p99 ms",
                    "floor ms", "p50 / floor", "recall@10"], rows)
    for name, corpus in record["corpora"].items():
        if "seismic" in corpus:
            lines += seismic_section(name, corpus)
        if "pisa" in corpus:
            lines += pisa_section(name, corpus)
    return "\n".join(lines) + "\n"


def seismic_section(name: str, corpus: dict[str, Any]) -> list[str]:
    seismic = corpus["seismic"]
    lines = ["", f"## Seismic at {name} ({corpus['documents']:,} documents; built in "
                 f"{seismic['build_s']:.0f} s)", ""]
    rows = [[str(row["query_cut"] or "all"), number(row["heap_factor"], 2),
             *[f"{number(row[m]['p50_ms'], 3)} / {number(row[m]['p99_ms'], 3)}"
               for m in ("tokens", "model")],
             *[number(row[m]["recall"], 3) for m in ("tokens", "model")]]
            for row in seismic["settings"]]
    return lines + table(["query_cut", "heap_factor", "tokens p50 / p99 ms",
                          "model p50 / p99 ms", "tokens recall@10", "model recall@10"], rows)


def pisa_section(name: str, corpus: dict[str, Any]) -> list[str]:
    pisa = corpus["pisa"]
    lines = ["", f"## PISA at {name} ({corpus['documents']:,} documents; built in "
                 f"{pisa['build_s']:.0f} s), exact engines side by side", "",
             "Mean ms per query of one batch call on one thread (tokretrieve: the mean of its "
             "single-query latency), recall@10.", ""]
    rows = [["tokretrieve (exhaustive)",
             *[f"{number(corpus['modes'][m]['mean_ms'], 3)} ({number(1.0, 3)})"
               for m in ("tokens", "model")]]]
    rows += [[f"PISA {algorithm}",
              *[f"{number(stats[m]['mean_ms'], 3)} ({number(stats[m]['recall'], 3)})"
                for m in ("tokens", "model")]]
             for algorithm, stats in pisa["algorithms"].items()]
    lines += table(["engine", "tokens: ms (recall@10)", "model: ms (recall@10)"], rows)
    if "unit_peers" not in corpus:
        return lines
    lines += ["", f"## All engines at {name}, single-query latency (p50 / p99 / mean ms, one "
                  "thread)", "",
              "BM25S over the same bags' tokens with the tokens queries (BM25 scores, not the "
              "bags' weights); FAISS flat over the model's document embeddings (random unit "
              "vectors of its width for synthetic documents) with the query embeddings; "
              "PISA's mean is per query of one batch call.", ""]

    def cells(stats: dict[str, Any]) -> str:
        return (f"{number(stats['p50_ms'], 3)} / {number(stats['p99_ms'], 3)} / "
                f"{number(stats['mean_ms'], 3)}")

    modes = corpus["modes"]
    rows = [["tokretrieve, tokens queries", cells(modes["tokens"])],
            ["tokretrieve, model queries", cells(modes["model"])],
            *[[name_, cells(stats)] for name_, stats in corpus["unit_peers"].items()],
            *[[f"PISA {algorithm}, {m} queries", f"- / - / {number(stats[m]['mean_ms'], 3)}"]
              for algorithm, stats in pisa["algorithms"].items() for m in ("tokens", "model")]]
    if "seismic" in corpus:
        best = max(corpus["seismic"]["settings"], key=lambda row: row["model"]["recall"])
        rows += [[f"Seismic, {m} queries, query_cut {best['query_cut'] or 'all'}",
                  f"{number(best[m]['p50_ms'], 3)} / {number(best[m]['p99_ms'], 3)} / -"]
                 for m in ("tokens", "model")]
    return lines + table(["engine", "p50 / p99 / mean ms"], rows)


def real_bags(index: SparseIndex) -> tuple[sp.csr_matrix, float]:
    """The index's stored bags (weights) and its uint8 scale."""
    return index.postings.to_bags(), float(index.manifest.layout.scale)


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """--index and --corpus, as the programs drawing synthetic corpora from an index take
    them (this one, bench.speed.scale, bench.speed.packing)."""
    parser.add_argument("--index", type=Path, default=Path("index/cranfield"),
                        help="a built index: its documents are the real bags and the source "
                             "of the synthetic ones, its model encodes the queries (default "
                             "index/cranfield, what `make demo` builds)")
    parser.add_argument("--corpus", type=Path, default=CRANFIELD,
                        help="BEIR folder whose queries.jsonl is searched")


def open_index(path: Path) -> SparseIndex:
    """The index at `path`, or SystemExit saying how to get one."""
    if not (path / "manifest.json").is_file():
        raise SystemExit(f"error: no index at {path}: build one (`make demo` builds "
                         "index/cranfield) or pass --index")
    return SparseIndex.load(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.frontier",
                                     description=__doc__.split("\n")[0])
    add_index_arguments(parser)
    parser.add_argument("--sizes", default="real,100000,1000000",
                        help="'real' and/or synthetic document counts")
    parser.add_argument("--peer-sizes", default="real,100000",
                        help="the sizes Seismic and PISA are built on (needs `make "
                             "install-peers`; '' for none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    sizes = corpus_sizes(args.sizes)
    peer_sizes = set(corpus_sizes(args.peer_sizes))
    missing = [name for name in ("seismic", "pyterrier_pisa")
               if importlib.util.find_spec(name) is None]
    if peer_sizes and missing:
        raise SystemExit(f"error: {' and '.join(missing)} not installed: `make install-peers`, "
                         "or pass --peer-sizes ''")
    index = open_index(args.index)
    bags, scale = real_bags(index)
    encoder = index_encoder(index)
    batches, query_vectors = query_batches(index, encoder, args.corpus, QUERY_BAG_SIZES)
    embeddings = np.asarray(index.embeddings)
    documents = (unit_rows(encoder.sentence_embedding(embeddings)) if len(embeddings)
                 else None)
    record = new_record(command_line("python -m bench.speed.frontier", argv),
                        **index_record(index), query_bag_sizes=list(QUERY_BAG_SIZES),
                        corpora={})
    out = run_folder(args.output, record)
    with pinned(1), tempfile.TemporaryDirectory() as scratch:
        record["bandwidth"] = read_bandwidth()
        for name in sizes:
            print(f"{name} ...", flush=True)
            record["corpora"][name] = measure_corpus(
                corpus_at(name, bags, args.seed), scale, batches,
                record["bandwidth"]["bytes_per_s"], name in peer_sizes, Path(scratch),
                query_vectors, documents if name == "real" else None, args.seed)
            write_record(out, record, render, partial=True)
    finish_record(out, record, render, render)
    return 0

if __name__ == "__main__":
    sys.exit(main())
