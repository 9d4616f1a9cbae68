"""The live-index benchmark's measurements (`python -m bench.live` drives them).

Why it is built this way:
- Encoding is excluded everywhere. Document and query embeddings come from the quality
  benchmark's cache; the bags of documents to add are made beforehand by the index's own
  encoder (`index_encoder(index, encoder).bags`, exactly what `add_documents` does after
  embedding), so an add is timed from "bags and embeddings in hand" to "committed".
- An add is timed as `tokretrieve.build.add_documents` runs it after encoding: the writer lock
  and the open of the committed index (`changing`), the id check, the drift record
  (`embedding_drift` and the saturated weights), then `append` (postings, segment files,
  checksums, fsync, manifest, and the reload of the new generation). Deletes and compactions
  are the package's own `delete_documents` / `compact_index`.
- Each commit's wall time is split into phases by timing the package's own functions while it
  runs (`phase_clock` wraps them for the duration and restores them): building postings,
  writing the arrays, fsync, sha256 of the new files, the durable manifest, and the loads
  (the one inside `changing` and the reload after the commit; `verify` is their sha256 check of
  every file, which a load does for indexes up to 256 MiB). The wrappers add microseconds; what
  they do not cover (the lock, the id checks, the deleted set's file) is `other`.
- Every commit of a repeated measurement starts from a fresh copy of the same index (copied
  outside the clock), after one untimed warm-up commit; medians are reported with their count.
- Search latency is one query per call on one thread (`threads.pinned(1)`), over every judged
  query, in both modes: the public `SparseSearcher.search` (text in, hits with their matched
  tokens out; model-mode bags from the cached query embeddings through the package's
  `ModelQueryEncoder.from_embeddings` and a `PrecomputedQueryEncoder`, as bench/quality does)
  and scoring only (`SparseIndex.search` of the query's bag). Each segment count is compared
  with its own compaction, which holds the same bags in one segment: the ratio is the cost of the
  segments alone, not of a PC1 fitted on other documents.
- Quality is nDCG@10 by the quality benchmark's evaluator (ir_measures, judged queries, the
  identical-id rule), and every compaction is checked to leave every query's top 10 (ids and
  scores) exactly as it was.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import tokretrieve.index.generations as generations_module
import tokretrieve.index.live as live_module
import tokretrieve.index.sparse as sparse_module
from bench.quality.metrics import evaluate
from bench.quality.runs import finalize
from bench.toolkit.cached import build_from_embeddings as build
from bench.toolkit.cached import copy_index
from bench.toolkit.clock import latency, load_average
from bench.toolkit.threads import pinned
from tokretrieve import (
    Encoder,
    ModelQueryEncoder,
    PrecomputedQueryEncoder,
    SparseIndex,
    SparseSearcher,
)
from tokretrieve.build import embedding_drift
from tokretrieve.index.live import append, changing, check_new_ids, compact_index, delete_documents
from tokretrieve.index.postings import SegmentedPostings, saturated
from tokretrieve.search.query_encoders import index_encoder

K = 10          # hits per timed search, and the top-10 the exactness checks compare
DEPTH = 100     # hits per query for evaluation (nDCG@10, R@100, MRR@10)
MODES = ("tokens", "model")

# The package functions a commit's phases are timed by: (owner, attribute, phase).
COMMIT_PHASES: tuple[tuple[Any, str, str], ...] = (
    (live_module, "postings_from_bags", "postings"),
    (SegmentedPostings, "to_bags", "to_bags"),
    (live_module, "write_segment", "write"),
    (generations_module, "fsync_tree", "fsync"),
    (generations_module, "fsync_dir", "fsync"),
    (generations_module, "tree_digests", "checksums"),
    (generations_module, "write_json_durably", "manifest"),
    (SparseIndex, "load", "load"),
    (sparse_module, "checksum_problems", "verify"),
)
# Phases that never run inside one another (verify runs inside load): with `other`, what a
# commit's wall time adds up to.
EXCLUSIVE = ("load", "drift", "postings", "to_bags", "write", "fsync", "checksums", "manifest")


@dataclass
class Clocks:
    """How long each latency measurement may run; --quick shrinks them."""

    latency_min_samples: int = 1000
    latency_budget_s: float = 8.0


@dataclass
class QuerySet:
    """The judged queries: ids, texts and their cached query embeddings (one row each)."""

    qids: list[str]
    texts: list[str]
    embeddings: np.ndarray


# -------------------------------------------------------------------------------- phase clock
class Phases:
    """Seconds and calls per phase, summed over one commit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, label: str, seconds: float) -> None:
        self.seconds[label] += seconds
        self.calls[label] += 1


def _timing(function: Callable[..., Any], label: str, phases: Phases) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed_call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases.add(label, time.perf_counter() - start)
    return timed_call


@contextlib.contextmanager
def phase_clock(targets: Sequence[tuple[Any, str, str]] = COMMIT_PHASES) -> Iterator[Phases]:
    """Time every call of the `targets` (module functions, methods or classmethods) while the
    block runs, then put the originals back. A target the package no longer defines is an
    error naming it (the phases follow tokretrieve's internals)."""
    phases = Phases()
    saved: list[tuple[Any, str, Any]] = []
    try:
        for owner, name, label in targets:
            try:
                static = vars(owner)[name]
            except KeyError:
                raise AttributeError(
                    f"{getattr(owner, '__name__', owner)} defines no {name!r}: update "
                    "bench/live/measure.py's COMMIT_PHASES to tokretrieve's functions") from None
            wrapper = _timing(getattr(owner, name), label, phases)
            # a classmethod is fetched bound: store the wrapper as a plain static attribute
            replacement = (staticmethod(wrapper)
                           if isinstance(static, classmethod | staticmethod) else wrapper)
            setattr(owner, name, replacement)
            saved.append((owner, name, static))
        yield phases
    finally:
        for owner, name, static in reversed(saved):
            setattr(owner, name, static)


def commit_timing(total_s: float, phases: Phases, **facts: Any) -> dict[str, Any]:
    """One commit's record: wall time, seconds and calls per phase, the uncovered rest."""
    seconds = dict(phases.seconds)
    covered = sum(seconds.get(label, 0.0) for label in EXCLUSIVE)
    return {**facts, "total_s": total_s, "phases_s": seconds, "calls": dict(phases.calls),
            "other_s": total_s - covered}


def median_timing(commits: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over commits of the wall time, of each phase (0 where a commit had none) and
    of the rest; `n` commits."""
    labels = sorted({label for c in commits for label in c["phases_s"]})
    return {"n": len(commits),
            "total_s": float(np.median([c["total_s"] for c in commits])),
            "min_s": float(min(c["total_s"] for c in commits)),
            "phases_s": {label: float(np.median([c["phases_s"].get(label, 0.0)
                                                 for c in commits])) for label in labels},
            "other_s": float(np.median([c["other_s"] for c in commits]))}


# ------------------------------------------------------------------------------------ commits
def add_commit(path: Path, doc_ids: Sequence[str], bags: sp.csr_matrix,
               embeddings: np.ndarray) -> tuple[SparseIndex, dict[str, Any]]:
    """Commit documents whose bags and embeddings are computed: `add_documents` after its
    encoding (lock and open, id check, drift record, append). Returns the index after the
    commit and the commit's timing."""
    ids = [str(d) for d in doc_ids]
    embeddings = np.asarray(embeddings, dtype=np.float32)
    with phase_clock() as phases:
        start = time.perf_counter()
        with changing(path) as (commit, index):
            check_new_ids(index, ids, False)
            layout = index.manifest.layout
            began = time.perf_counter()
            drift = {**embedding_drift(index, embeddings),
                     "saturated_weights": saturated(bags, float(layout.scale), layout.impacts)}
            phases.add("drift", time.perf_counter() - began)
            changed = append(commit, index, ids, bags, embeddings, drift=drift)
        total = time.perf_counter() - start
    return changed, commit_timing(total, phases, docs=len(ids), bag_entries=int(bags.nnz))


def delete_commit(path: Path, doc_ids: Sequence[str]) -> tuple[SparseIndex, dict[str, Any]]:
    """One `delete_documents` commit, timed by phase."""
    with phase_clock() as phases:
        start = time.perf_counter()
        changed = delete_documents(path, list(doc_ids))
        total = time.perf_counter() - start
    return changed, commit_timing(total, phases, ids=len(doc_ids))


def compact_commit(path: Path) -> tuple[SparseIndex, dict[str, Any]]:
    """One `compact_index` commit, timed by phase."""
    before = SparseIndex.load(path, verify=False)
    facts = {"segments_before": len(before.segments), "positions_before": before.positions,
             "deleted_before": len(before.deleted)}
    del before
    with phase_clock() as phases:
        start = time.perf_counter()
        changed = compact_index(path)
        total = time.perf_counter() - start
    return changed, commit_timing(total, phases, **facts, live_docs=len(changed))


# ------------------------------------------------------------------------------------- builds
def bags_for(index: SparseIndex, encoder: Encoder, embeddings: np.ndarray) -> sp.csr_matrix:
    """The bags `index` stores for documents of these embeddings: its own recipe, PC1
    direction and λ (what add_documents computes after embedding)."""
    return index_encoder(index, encoder).bags(np.asarray(embeddings, dtype=np.float32))


def build_segmented(path: Path, doc_ids: Sequence[str], embeddings: np.ndarray,
                    encoder: Encoder, segments: int) -> tuple[SparseIndex, list[dict[str, Any]]]:
    """`segments` consecutive, near-equal parts of the documents: a build of the first, one
    add commit for each other. Returns the index and each add's timing with its drift."""
    parts = np.array_split(np.arange(len(doc_ids)), segments)
    ids = np.asarray(doc_ids, dtype=str)
    index = build(path, ids[parts[0]], embeddings[parts[0]], encoder)
    adds = []
    for part in parts[1:]:
        index, timing = add_commit(path, ids[part].tolist(),
                                   bags_for(index, encoder, embeddings[part]), embeddings[part])
        adds.append({**timing, "drift": index.manifest.contents.segments[-1].drift})
    return index, adds


def drawn(n: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct positions of `n`, drawn with `seed`, in drawing order."""
    if not 0 <= count <= n:
        raise ValueError(f"cannot choose {count} of {n} documents")
    return np.random.default_rng(seed).permutation(n)[:count]


# ----------------------------------------------------------------------------------- searches
def searchers(index: SparseIndex, encoder: Encoder,
              queries: QuerySet) -> dict[str, SparseSearcher]:
    """Both modes' searchers over `index`: tokens mode from the package's `from_index`, model
    mode with the cached query embeddings' bags for this index (idf over its live documents)."""
    tokens = SparseSearcher.from_index(index, mode="tokens", encoder=encoder)
    bags = ModelQueryEncoder.for_index(index, encoder).from_embeddings(queries.embeddings)
    model = SparseSearcher(index, PrecomputedQueryEncoder(queries.texts, bags),
                           encoder.tokenizer)
    return {"tokens": tokens, "model": model}


Ranking = dict[str, list[tuple[str, float]]]


def rankings(by_mode: dict[str, SparseSearcher], queries: QuerySet,
             k: int) -> dict[str, Ranking]:
    """Every query's top k (doc id, score) in each mode, ranking only (no matched tokens)."""
    out = {}
    for mode, searcher in by_mode.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # queries with no usable token get no hits
            hits = searcher.batch_search(queries.texts, queries.qids, k=k, explain=False)
        out[mode] = {qid: [(h.doc_id, h.score) for h in found] for qid, found in hits.items()}
    return out


def same_rankings(before: dict[str, Ranking], after: dict[str, Ranking]) -> dict[str, Any]:
    """Whether every query's hits (ids and exact scores, in order) are the same, per mode."""
    out: dict[str, Any] = {}
    for mode in before:
        differing = [qid for qid in before[mode]
                     if before[mode][qid] != after[mode].get(qid)]
        out[mode] = {"same": not differing, "differing_queries": len(differing),
                     "queries": len(before[mode])}
    out["same"] = all(v["same"] for v in out.values() if isinstance(v, dict))
    return out


def latency_of(index: SparseIndex, by_mode: dict[str, SparseSearcher], queries: QuerySet,
               clocks: Clocks) -> dict[str, Any]:
    """Per mode, one query per call on one thread: the public search (text in, top-10 hits
    with matched tokens out) and scoring only (the index's search of the query's bag).
    Queries with no usable token are left out (the public search refuses them)."""
    out = {}
    for mode, searcher in by_mode.items():
        bags = sp.csr_matrix(searcher.query_encoder.encode(queries.texts))
        usable = np.flatnonzero(np.diff(bags.indptr) > 0)
        texts = [queries.texts[i] for i in usable]
        rows = [bags[int(i):int(i) + 1] for i in usable]
        with pinned(1):
            public = latency(lambda text, s=searcher: s.search(text, k=K), texts,
                             clocks.latency_min_samples, clocks.latency_budget_s)
            scoring = latency(lambda row: index.search(row, k=K), rows,
                              clocks.latency_min_samples, clocks.latency_budget_s)
        out[mode] = {"queries": len(usable), "search": public, "scoring": scoring}
    return out


def describe(index: SparseIndex) -> dict[str, Any]:
    """What a state of the index holds: segments, positions, live and deleted documents,
    postings and the bytes of its committed generation."""
    return {"segments": len(index.segments), "positions": index.positions,
            "live_docs": len(index), "deleted": len(index.deleted),
            "postings": int(index.manifest.postings), "bytes": index.bytes_on_disk}


def measure_state(label: str, index: SparseIndex, encoder: Encoder, queries: QuerySet,
                  clocks: Clocks, deleted_fraction: float) -> tuple[dict[str, Any],
                                                                    dict[str, Ranking]]:
    """One state of an index: its facts, both modes' latencies, and its top-10 rankings (for
    the exactness check against its compaction)."""
    by_mode = searchers(index, encoder, queries)
    top = rankings(by_mode, queries, K)
    state = {"state": label, "deleted_fraction": deleted_fraction, **describe(index),
             "latency": latency_of(index, by_mode, queries, clocks),
             "load_avg": load_average()}
    return state, top


# ------------------------------------------------------------------------- segments/deletions
def segment_series(root: Path, doc_ids: Sequence[str], embeddings: np.ndarray,
                   encoder: Encoder, queries: QuerySet, segments: int,
                   deleted_fractions: Sequence[float], seed: int, repeats: int,
                   clocks: Clocks, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """One segment count: build + adds, then the latency of each state: as added, after
    deleting each fraction (cumulative, the same documents for every segment count), each
    compacted (with its exactness check); and the compaction of the most-deleted state timed
    `repeats` times on fresh copies (after one warm-up)."""
    n = len(doc_ids)
    added_path = root / f"seg{segments}"
    index, adds = build_segmented(added_path, doc_ids, embeddings, encoder, segments)
    record: dict[str, Any] = {"segments": segments, "adds": adds, "states": [],
                              "deletes": [], "exact": []}
    progress(f"{segments} segment(s): as added")
    state, added_top = measure_state("added", index, encoder, queries, clocks, 0.0)
    record["states"].append(state)

    compacted_path = copy_index(added_path, root / f"seg{segments}-compacted")
    compacted, timing = compact_commit(compacted_path)
    progress(f"{segments} segment(s): compacted (no deletions)")
    state, top = measure_state("compacted", compacted, encoder, queries, clocks, 0.0)
    state["compaction"] = timing
    record["states"].append(state)
    record["exact"].append({"deleted_fraction": 0.0, **same_rankings(added_top, top)})
    shutil.rmtree(compacted_path)

    order = drawn(n, n, seed)
    deleted_path = copy_index(added_path, root / f"seg{segments}-deleted")
    done = 0
    ids = np.asarray(doc_ids, dtype=str)
    deleted_top = added_top
    fraction = 0.0
    for fraction in deleted_fractions:
        upto = round(fraction * n)
        index, timing = delete_commit(deleted_path, ids[order[done:upto]].tolist())
        record["deletes"].append({"fraction": fraction, **timing})
        done = upto
        progress(f"{segments} segment(s): {fraction:.0%} deleted")
        state, deleted_top = measure_state("deleted", index, encoder, queries, clocks, fraction)
        record["states"].append(state)
    if deleted_fractions:
        commits = []
        work = root / f"seg{segments}-compacting"
        for attempt in range(repeats + 1):
            copy_index(deleted_path, work)
            compacted, timing = compact_commit(work)
            if attempt:  # the first is the warm-up
                commits.append(timing)
        record["compaction"] = {"deleted_fraction": fraction, "commits": commits,
                                "median": median_timing(commits) if commits else None}
        progress(f"{segments} segment(s): {fraction:.0%} deleted, compacted")
        state, top = measure_state("compacted", compacted, encoder, queries, clocks, fraction)
        record["states"].append(state)
        record["exact"].append({"deleted_fraction": fraction, **same_rankings(deleted_top, top)})
        shutil.rmtree(work)
    shutil.rmtree(deleted_path)
    shutil.rmtree(added_path)
    return record


# ---------------------------------------------------------------------------- adds / deletes
def measure_adds(root: Path, doc_ids: Sequence[str], embeddings: np.ndarray, encoder: Encoder,
                 batch: int, repeats: int) -> dict[str, Any]:
    """Commits of the last `batch` documents into a build of the others, each on a fresh
    copy of that build: one warm-up, then `repeats` timed."""
    n = len(doc_ids) - batch
    if n < 1:
        raise ValueError(f"an add of {batch} documents needs more than {batch} documents")
    ids = [str(d) for d in doc_ids]
    base_path = root / f"add{batch}-base"
    base = build(base_path, ids[:n], embeddings[:n], encoder)
    base_bytes = base.bytes_on_disk
    bags = bags_for(base, encoder, embeddings[n:])
    commits = []
    drift = None
    for attempt in range(repeats + 1):
        target = copy_index(base_path, root / f"add{batch}-commit")
        added, timing = add_commit(target, ids[n:], bags, embeddings[n:])
        drift = added.manifest.contents.segments[-1].drift
        if attempt:
            commits.append(timing)
        else:
            warm_up = timing["total_s"]
    shutil.rmtree(root / f"add{batch}-commit")
    shutil.rmtree(base_path)
    median = median_timing(commits)
    return {"batch": batch, "base_docs": n, "bag_entries": int(bags.nnz),
            "base_bytes": base_bytes, "warm_up_s": warm_up, "drift": drift,
            "commits": commits, "median": median,
            "docs_per_s": batch / median["total_s"],
            "postings_docs_per_s": batch / median["phases_s"]["postings"]}


def measure_deletes(root: Path, doc_ids: Sequence[str], embeddings: np.ndarray,
                    encoder: Encoder, count: int, repeats: int, seed: int) -> dict[str, Any]:
    """Commits deleting `count` ids from a build of every document, each on a fresh copy:
    one warm-up, then `repeats` timed, each with other ids drawn with `seed`."""
    base_path = root / f"delete{count}-base"
    base_bytes = build(base_path, doc_ids, embeddings, encoder).bytes_on_disk
    ids = np.asarray(doc_ids, dtype=str)
    commits = []
    for attempt in range(repeats + 1):
        target = copy_index(base_path, root / f"delete{count}-commit")
        chosen = ids[drawn(len(ids), count, seed + attempt)].tolist()
        _, timing = delete_commit(target, chosen)
        if attempt:
            commits.append(timing)
        else:
            warm_up = timing["total_s"]
    shutil.rmtree(root / f"delete{count}-commit")
    shutil.rmtree(base_path)
    return {"ids": count, "docs": len(ids), "base_bytes": base_bytes,
            "warm_up_s": warm_up, "commits": commits, "median": median_timing(commits)}


# ------------------------------------------------------------------------------------- quality
def evaluate_modes(index: SparseIndex, encoder: Encoder, queries: QuerySet,
                   qrels: dict[str, dict[str, int]]) -> tuple[dict[str, Any],
                                                              dict[str, Ranking]]:
    """nDCG@10 / R@100 / MRR@10 of both modes (top DEPTH, identical ids dropped as in the
    quality benchmark), and the raw top-10 rankings."""
    by_mode = searchers(index, encoder, queries)
    deep = rankings(by_mode, queries, DEPTH + 1)
    metrics = {mode: evaluate(qrels, finalize(deep[mode], DEPTH)) for mode in by_mode}
    return metrics, rankings(by_mode, queries, K)


def _pc1_cosine(a: SparseIndex, b: SparseIndex) -> float:
    return round(abs(float(np.asarray(a.pc1_direction, dtype=np.float64)
                           @ np.asarray(b.pc1_direction, dtype=np.float64))), 6)


def quality_rows(root: Path, doc_ids: Sequence[str], embeddings: np.ndarray, encoder: Encoder,
                 queries: QuerySet, qrels: dict[str, dict[str, int]],
                 first_percents: Sequence[float],
                 progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """(a) one build of every document; (b) per p, a build of the first p % and one add
    commit of the rest (PC1 direction and λ stay the first build's), with the drift the add
    recorded, and the check that compacting leaves each query's top 10 unchanged."""
    ids = [str(d) for d in doc_ids]
    full = build(root / "full", ids, embeddings, encoder)
    metrics, _ = evaluate_modes(full, encoder, queries, qrels)
    rows = [{"row": "full build", "first_percent": 100.0, "first_docs": len(ids),
             "added_docs": 0, "segments": 1, "pc1_strength": full.manifest.bags.pc1_strength,
             "scale": full.manifest.layout.scale, "pc1_cosine_to_full": 1.0,
             "metrics": metrics}]
    progress(f"quality: full build, nDCG@10 tokens {metrics['tokens']['nDCG@10']:.3f} "
             f"model {metrics['model']['nDCG@10']:.3f}")
    for percent in first_percents:
        n = max(1, round(len(ids) * percent / 100))
        path = root / f"first{percent:g}"
        base = build(path, ids[:n], embeddings[:n], encoder)
        added, timing = add_commit(path, ids[n:], bags_for(base, encoder, embeddings[n:]),
                                   embeddings[n:])
        metrics, before = evaluate_modes(added, encoder, queries, qrels)
        compacted = compact_index(path)
        _, after = evaluate_modes(compacted, encoder, queries, qrels)
        row = {"row": f"first {percent:g}% + add", "first_percent": percent, "first_docs": n,
               "added_docs": len(ids) - n, "segments": len(added.segments),
               "pc1_strength": base.manifest.bags.pc1_strength,
               "scale": base.manifest.layout.scale, "pc1_cosine_to_full": _pc1_cosine(base, full),
               "drift": added.manifest.contents.segments[-1].drift, "add_total_s":
               timing["total_s"], "metrics": metrics,
               "compaction_keeps_top10": same_rankings(before, after)}
        rows.append(row)
        progress(f"quality: {row['row']}, nDCG@10 tokens {metrics['tokens']['nDCG@10']:.3f} "
                 f"model {metrics['model']['nDCG@10']:.3f}, drift {row['drift']}, "
                 f"top-10 kept {row['compaction_keeps_top10']['same']}")
        shutil.rmtree(path)
    shutil.rmtree(root / "full")
    return rows


# -------------------------------------------------------------------------------------- places
def filesystem(path: Path) -> dict[str, str | None]:
    """The mount holding `path` and its file-system type (fsync costs depend on it)."""
    target = str(Path(path).resolve())
    best = {"mount": None, "type": None}
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 3:
                continue
            mount = fields[1]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best["mount"] or ""):
                best = {"mount": mount, "type": fields[2]}
    return best
