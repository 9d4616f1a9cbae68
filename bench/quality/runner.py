"""The suite for one collection: every model's systems, figures, costs and sweeps.

Order matters for cost, not for results: the collection is read once, BM25 is built once (it does
not depend on the model), and each model encodes documents and queries once (or reads them from
the cache); everything else derives from those embeddings.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench import plots, sizes, sweeps
from bench.datasets import Collection, load_collection
from bench.encoding import CachedEncoder, EncodedCollection, encode_collection, model_slug
from bench.environment import machine, model_record
from bench.floor import FLOOR_CONFIGS, FLOOR_NDCG
from bench.fusion import reciprocal_rank_fusion
from bench.metrics import PRIMARY, evaluate
from bench.report import ordered, write_report
from bench.runs import Ranking, finalize, write_trec_run
from bench.systems import BM25System, DenseSystem, SparseConfig, SparseSystem
from bench.timing import (
    latency_summary,
    peak_rss_mb,
    per_call_seconds,
    single_thread,
    throughput,
    timed,
)
from tokretrieve import Encoder
from tokretrieve.projection import first_principal_direction


@dataclass
class Options:
    """Everything a run depends on, recorded verbatim in results.json."""

    models: list[str]
    output: Path
    cache_dir: Path
    max_length: int = 256
    batch_size: int = 32
    depth: int = 100
    limit_docs: int | None = None
    limit_queries: int | None = None
    quick: bool = False
    sweep: bool = True
    base: SparseConfig = field(default_factory=SparseConfig)
    identical_ids: bool = False
    refresh_cache: bool = False
    timing_queries: int = 100
    forward_sample: int = 64
    threads: int | None = None
    rrf_k: int = 60
    command: str = ""


def run_dataset(spec: str, options: Options) -> tuple[Path, dict]:
    """Benchmark every model on one collection; write results.json, report.md, runs and PNGs
    to <output>/<dataset>/<timestamp>/ and return that folder with the results."""
    if options.threads:
        torch.set_num_threads(options.threads)
    collection = load_collection(spec, options.limit_docs, options.limit_queries)
    name = collection.name + (f"-limit{options.limit_docs}" if options.limit_docs else "")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = options.output / name / stamp
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} judged queries -> {folder}", flush=True)
    bm25, bm25_seconds = timed(lambda: BM25System(collection.docs))
    bm25_ranking = _finalize(bm25.search_all(
        collection.query_ids, bm25.tokenize([t for _, t in collection.queries]), options.depth),
        options)
    results: dict = {
        "dataset": {"name": collection.name, "spec": spec, "documents": len(collection.docs),
                    "queries": len(collection.queries), "limit_docs": options.limit_docs,
                    "limit_queries": options.limit_queries,
                    "identical_id_rule": _identical_id_note(collection, options)},
        "command": options.command,
        "options": {key: (str(value) if isinstance(value, Path) else value)
                    for key, value in vars(options).items() if key != "base"}
        | {"base": options.base.as_dict()},
        "environment": machine(),
        "load_average_start": _load_average(),
        "bm25": {"metrics": evaluate(collection.qrels, bm25_ranking),
                 "index_seconds": bm25_seconds, "bytes": sizes.bm25_bytes(bm25),
                 **_bm25_costs(bm25, collection, options)},
        "models": {},
    }
    write_trec_run(bm25_ranking, _run_path(folder, None, "bm25"), "bm25")
    for model in options.models:
        print(f"[bench] {collection.name} / {model}", flush=True)
        results["models"][model] = run_model(model, collection, bm25, bm25_ranking, folder,
                                             options)
        results["peak_rss_mb"] = peak_rss_mb()
    results["load_average_end"] = _load_average()
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results["figures"] = draw_figures(results, folder)
    write_report(results, folder)
    return folder, results


def run_model(model: str, collection: Collection, bm25: BM25System, bm25_ranking: Ranking,
              folder: Path, options: Options) -> dict:
    """All systems, costs and sweeps of one model on one collection."""
    encoder, load_seconds = timed(lambda: Encoder.load(model, max_length=options.max_length,
                                                       batch_size=options.batch_size))
    encoded = encode_collection(encoder, collection, model, options.cache_dir,
                                refresh=options.refresh_cache)
    texts = [text for _, text in collection.queries]
    cached = CachedEncoder(encoder, texts, encoded.query_embeddings)
    doc_ids = collection.doc_ids

    def factory(config: SparseConfig) -> SparseSystem:
        return SparseSystem(cached, doc_ids, encoded.doc_embeddings, config)

    dense = DenseSystem(encoder, doc_ids, encoded.doc_embeddings)
    dense_ranking = _finalize(dense.search_all(collection.query_ids, encoded.query_embeddings,
                                               options.depth), options)
    dense_metrics = evaluate(collection.qrels, dense_ranking)
    stats = _embedding_stats(encoded.doc_embeddings)

    evaluator = sweeps.SweepEvaluator(factory, collection, options.depth, options.identical_ids)
    base = factory(options.base).config  # the package's defaults for this model, made concrete
    configs = {"defaults": {"model": base, "tokens": base}}
    sweep_record: dict = {}
    if options.sweep:
        grid = sweeps.levers(stats["mean_norm"], quick=options.quick)
        with tqdm(desc=f"sweep {model}", unit="point") as bar:
            evaluator.progress = bar
            sweep_record = _run_sweeps(evaluator, base, grid, dense_metrics[PRIMARY])
            evaluator.progress = None
        configs["tuned"] = {mode: SparseConfig(**sweep_record["best"][mode]["config"])
                            for mode in sweeps.MODES}

    floor = None
    if model in FLOOR_CONFIGS and collection.name == "cranfield" and not options.limit_docs:
        point = evaluator.evaluate(FLOOR_CONFIGS[model])
        floor = {"config": replace(point.config, token_weighting="count").as_dict(),
                 "assets": FLOOR_NDCG[model],
                 "measured": {"dense": dense_metrics[PRIMARY],
                              "model": point.means["model:count"][PRIMARY],
                              "tokens": point.means["tokens:count"][PRIMARY]}}

    systems: dict[str, dict] = {
        "dense": {"kind": "dense", "metrics": dense_metrics, "ranking": dense_ranking},
        "bm25": {"kind": "bm25", "metrics": results_of(bm25_ranking, collection),
                 "ranking": bm25_ranking},
    }
    sparse_systems: dict[str, tuple[SparseSystem, str]] = {}
    for variant, by_mode in configs.items():
        suffix = "" if variant == "defaults" else "-tuned"
        for mode, config in by_mode.items():
            name = f"sparse-{mode}{suffix}"
            system = factory(config)
            bags = system.bags(mode, texts)
            ranking = _finalize(system.search_all(collection.query_ids, bags, options.depth),
                                options)
            systems[name] = {"kind": f"sparse/{mode}", "variant": variant,
                             "config": config.as_dict(), "postings": system.postings,
                             "metrics": evaluate(collection.qrels, ranking),
                             "ranking": ranking}
            sparse_systems[name] = (system, mode)
        for left, right in ((f"sparse-model{suffix}", "dense"),
                            (f"sparse-tokens{suffix}", "bm25")):
            fused, fuse_seconds = timed(lambda left=left, right=right: reciprocal_rank_fusion(
                [systems[left]["ranking"], systems[right]["ranking"]], options.depth,
                options.rrf_k))
            systems[f"rrf({left}+{right})"] = {
                "kind": "rrf", "variant": variant, "inputs": [left, right],
                "rrf_k": options.rrf_k, "depth": options.depth,
                "metrics": evaluate(collection.qrels, fused), "ranking": fused,
                "fusion_ms_per_query": 1000 * fuse_seconds / max(len(fused), 1)}
    for name, system in systems.items():
        ratio = system["metrics"][PRIMARY] / dense_metrics[PRIMARY] if dense_metrics[
            PRIMARY] else None
        system["ratio_to_dense"] = ratio
        if name != "bm25":
            write_trec_run(system.pop("ranking"), _run_path(folder, model, name),
                           _tag(f"{model_slug(model)}-{name}"))
        else:
            system.pop("ranking")

    costs = _costs(encoder, cached, encoded, collection, dense, sparse_systems, options)
    record = {
        "model": model_record(model, encoder),
        "load_seconds": load_seconds,
        "embedding_stats": stats,
        "configs": {variant: {mode: config.as_dict() for mode, config in by_mode.items()}
                    for variant, by_mode in configs.items()},
        "systems": systems,
        "costs": costs,
        "sizes": {
            **{name: sizes.sparse_bytes(encoder, doc_ids, encoded.doc_embeddings,
                                        system.config)
               for name, (system, _) in sparse_systems.items()},
            "dense": sizes.dense_bytes(dense),
        },
        "sweeps": sweep_record,
        "floor": floor,
        "sweep_points": len(evaluator.points),
        "index_warnings": sorted({w for system, _ in sparse_systems.values()
                                  for w in system.warnings}),
        "peak_rss_mb": peak_rss_mb(),
    }
    return record


def results_of(ranking: Ranking, collection: Collection) -> dict[str, float]:
    return evaluate(collection.qrels, ranking)


def _finalize(ranking: Ranking, options: Options) -> Ranking:
    return finalize(ranking, options.depth, options.identical_ids)


def _run_sweeps(evaluator: sweeps.SweepEvaluator, base: SparseConfig, grid: dict[str, list],
                dense_ndcg: float) -> dict:
    """One-lever sweeps from the defaults, coordinate ascent per mode, and its 2-fold CV."""
    start = time.perf_counter()
    record: dict = {"grid": grid, "base": base.as_dict(),
                    "one_at_a_time": _rows(sweeps.one_at_a_time(evaluator, base, grid)),
                    "best": {}, "around_best": {}, "cross_validation": {}}
    for mode in sweeps.MODES:
        best = sweeps.tune(evaluator, base, grid, mode)
        point = evaluator.evaluate(best)
        ndcg = evaluator.score(best, mode)
        record["best"][mode] = {"config": best.as_dict(), "ndcg": ndcg,
                                "metrics": point.means[sweeps.run_name(mode, best)],
                                "postings": point.postings,
                                "ratio_to_dense": ndcg / dense_ndcg if dense_ndcg else None}
        record["around_best"][mode] = _rows(sweeps.one_at_a_time(evaluator, best, grid))
        cv = sweeps.cross_validate(evaluator, base, grid, mode)
        record["cross_validation"][mode] = {
            "held_out_ndcg": cv.held_out_ndcg, "folds": cv.folds,
            "ratio_to_dense": cv.held_out_ndcg / dense_ndcg if dense_ndcg else None}
    record["points"] = [
        {"config": point.config.as_dict(), "postings": point.postings,
         "seconds": point.seconds, "means": point.means}
        for point in evaluator.points.values()]
    record["seconds"] = time.perf_counter() - start
    return record


def _rows(sweep: dict[str, list[tuple[object, sweeps.Point]]]) -> dict[str, list[dict]]:
    return {lever: [{"value": value, "postings": point.postings,
                     "ndcg": {name: means[PRIMARY] for name, means in point.means.items()},
                     "metrics": point.means}
                    for value, point in rows]
            for lever, rows in sweep.items()}


def _embedding_stats(embeddings: np.ndarray) -> dict[str, float]:
    """The scale the PC1 grid is set in, and how much of the embeddings' energy PC1 holds
    (uncentred, as the package's PC1 is)."""
    present = embeddings[np.any(embeddings, axis=1)].astype(np.float64)
    norms = np.linalg.norm(present, axis=1)
    direction = first_principal_direction(present).astype(np.float64)
    coefficients = present @ direction
    return {"mean_norm": float(norms.mean()), "std_norm": float(norms.std()),
            "pc1_mean_coefficient": float(coefficients.mean()),
            "pc1_energy_share": float((coefficients ** 2).sum() / (norms ** 2).sum())}


def _costs(encoder: Encoder, cached: CachedEncoder, encoded: EncodedCollection,
           collection: Collection, dense: DenseSystem,
           sparse_systems: dict[str, tuple[SparseSystem, str]], options: Options) -> dict:
    """Encoding throughput and split, query encoding per query, search latency and QPS."""
    n_docs = len(collection.docs)
    texts = [text for _, text in collection.queries]
    sample = texts[:options.timing_queries]
    projection = {}
    for name, (system, _) in sparse_systems.items():
        config = system.config
        _, bag_seconds = timed(lambda config=config, system=system: encoder.bags(
            encoded.doc_embeddings, config.k, config.weighting,  # type: ignore[arg-type]
            system.index.adjustment))
        _, build_seconds = timed(lambda config=config: SparseSystem(
            cached, collection.doc_ids, encoded.doc_embeddings, config))
        projection[name] = {"bags_seconds": bag_seconds, "from_embeddings_seconds": build_seconds,
                            "total_docs_per_second": n_docs / (encoded.doc_seconds + bag_seconds)}
    doc_encoding = {
        "forward_seconds": encoded.doc_seconds,
        "forward_docs_per_second": encoded.docs_per_second,
        "measured_at": encoded.encoded_at, "from_cache": encoded.from_cache,
        "query_batch_ms_per_query": 1000 * encoded.query_seconds / max(len(texts), 1),
        "projection": projection,
    }
    doc_encoding["forward_sample"] = _forward_sample(encoder, collection, options)
    with single_thread():
        query_encoding = {"dense": latency_summary(per_call_seconds(
            lambda q: encoder.embed([q], is_query=True), sample))}
        for name, (system, mode) in sparse_systems.items():
            if mode == "model":
                with cached.live():
                    samples = per_call_seconds(lambda q, s=system: s.model_bags([q]), sample)
            else:
                samples = per_call_seconds(lambda q, s=system: s.token_bags([q]), sample)
            query_encoding[name] = latency_summary(samples)

    latency: dict[str, dict] = {"dense": {}}
    qps = {}
    dense_vectors = [encoded.query_embeddings[i:i + 1] for i in range(len(texts))]
    with single_thread():
        latency["dense"]["top100"] = latency_summary(per_call_seconds(
            lambda v: dense.search(v, options.depth), dense_vectors))
        latency["dense"]["top10"] = latency_summary(per_call_seconds(
            lambda v: dense.search(v, 10), dense_vectors))
        for name, (system, mode) in sparse_systems.items():
            bags = system.bags(mode, texts)
            latency[name] = {
                "top100": latency_summary(per_call_seconds(
                    lambda b, s=system: s.search_public(b, options.depth), bags)),
                "top10": latency_summary(per_call_seconds(
                    lambda b, s=system: s.search_public(b, 10), bags)),
                "scoring_top100": latency_summary(per_call_seconds(
                    lambda b, s=system: s.search(b, options.depth), bags)),
            }
    for name, (system, mode) in sparse_systems.items():
        bags = system.bags(mode, texts)
        qps[name] = throughput(lambda s=system, b=bags: s.search_public_batch(b, options.depth),
                               len(bags))
    qps["dense"] = throughput(lambda: dense.search(encoded.query_embeddings, options.depth),
                              len(texts))
    return {"doc_encoding": doc_encoding, "query_encoding": query_encoding,
            "search_latency": latency, "batch_qps": qps, "timing_queries": len(sample)}


def _forward_sample(encoder: Encoder, collection: Collection, options: Options) -> dict:
    """Encoder.embed throughput measured in this run on evenly spaced documents (so the length
    mix is the collection's), for when the cached full-pass figure is from another day or a
    busier machine."""
    n = min(options.forward_sample, len(collection.docs))
    if n == 0:
        return {"docs": 0, "seconds": 0.0, "docs_per_second": 0.0}
    picks = np.linspace(0, len(collection.docs) - 1, n).round().astype(int)
    texts = [collection.docs[i][1] for i in picks]
    encoder.embed(texts[:1])  # warm-up
    _, seconds = timed(lambda: encoder.embed(texts))
    return {"docs": n, "seconds": seconds, "docs_per_second": n / seconds if seconds else 0.0}


def _bm25_costs(bm25: BM25System, collection: Collection, options: Options) -> dict:
    texts = [text for _, text in collection.queries]
    tokens = bm25.tokenize(texts)
    with single_thread():
        latency = {"top100": latency_summary(per_call_seconds(
            lambda t: bm25.search([t], options.depth), tokens)),
            "top10": latency_summary(per_call_seconds(lambda t: bm25.search([t], 10), tokens))}
        encoding = latency_summary(per_call_seconds(
            lambda q: bm25.tokenize([q]), texts[:options.timing_queries]))
    return {
        "query_encoding": encoding,
        "search_latency": latency,
        "batch_qps": throughput(lambda: bm25.search(tokens, options.depth), len(tokens)),
    }


def _identical_id_note(collection: Collection, options: Options) -> dict:
    """How many judgments the identical-id rule can touch (relevant docs sharing the query's
    id), so its effect on a collection is visible rather than silent."""
    affected = sorted(qid for qid, grades in collection.qrels.items()
                      if grades.get(qid, 0) > 0)
    return {"applied": not options.identical_ids, "relevant_judgments_with_query_id": affected}


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: on a shared machine they say how far timings can be
    trusted (a load above the core count means the benchmark was competing for CPUs)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _run_path(folder: Path, model: str | None, system: str) -> Path:
    path = folder / "runs" / (model_slug(model) if model else "shared") / f"{_tag(system)}.trec"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _tag(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")


def draw_figures(results: dict, folder: Path) -> list[str]:
    """Draw every figure into the run folder; return their names for the report."""
    figures = []
    by_model = {model: {name: record["systems"][name] for name in ordered(record["systems"])}
                for model, record in results["models"].items()}
    figures.append(plots.headline_bars(by_model, folder / "headline_ndcg10.png").name)
    latency = {model: {name: value["top100"] for name, value in
                       {**record["costs"]["search_latency"],
                        "bm25": results["bm25"]["search_latency"]}.items()}
               for model, record in results["models"].items()}
    figures.append(plots.latency_bars(latency, folder / "search_latency_p50.png").name)
    for model, record in results["models"].items():
        sweep = record.get("sweeps") or {}
        if not sweep:
            continue
        dense = record["systems"]["dense"]["metrics"][PRIMARY]
        for origin, rows_by_lever, title in (
                ("defaults", sweep["one_at_a_time"], "one lever at a time from the defaults"),
                ("best-model", sweep["around_best"]["model"], "around the best for model queries"),
                ("best-tokens", sweep["around_best"]["tokens"],
                 "around the best for tokenized queries")):
            path = folder / f"sweep_{model_slug(model)}_{origin}.png"
            figures.append(plots.lever_panels(rows_by_lever, f"{model}: {title}", path,
                                              dense).name)
    return figures
