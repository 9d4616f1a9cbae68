"""The suite for one collection: every model's systems, figures, costs and sweeps.

Order matters for cost, not for results: the collection is read once, BM25 is built once (it does
not depend on the model), and each model encodes documents and queries once (or reads them from
the cache); everything else derives from those embeddings.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.quality import peers, plots, sizes, sweeps
from bench.quality.cache import EncodedCollection, encode_collection, model_slug
from bench.quality.datasets import Collection, load_collection
from bench.quality.floor import FLOOR_CONFIGS, FLOOR_NDCG
from bench.quality.hybrids import UNION_GRID, grid_choice, linear_hybrid
from bench.quality.metrics import PRIMARY, evaluate
from bench.quality.report import ordered, render
from bench.quality.runs import Ranking, finalize, write_trec_run
from bench.quality.systems import BM25System, DenseSystem, SparseConfig, SparseSystem
from bench.toolkit.clock import ONE_PASS, latency, load_average, peak_rss_mb, throughput, timed
from bench.toolkit.machine import model_record
from bench.toolkit.results import new_record, run_folder, write_record
from bench.toolkit.threads import pinned
from tokretrieve import Encoder, PrecomputedQueryEncoder, SparseSearcher, index_encoder
from tokretrieve.encoding.projection import first_principal_direction
from tokretrieve.search.fusion import reciprocal_rank_fusion
from tokretrieve.search.query_encoders import DEFAULT_ALIGNED_TOKENS


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
    small_grid: bool = False  # --quick's small sweep grids, without its document limit
    sweep: bool = True
    base: SparseConfig = field(default_factory=SparseConfig)
    identical_ids: bool = False
    refresh_cache: bool = False
    timing_queries: int = 100
    forward_sample: int = 64
    throughput_min_s: float = 1.0
    threads: int | None = None
    rrf_k: int = 60
    command: str = ""


def run_dataset(spec: str, options: Options) -> tuple[Path, dict]:
    """Benchmark every model on one collection; write results.json (after BM25 and after each
    model), then report.md, runs and PNGs to <output>/<dataset>/<timestamp>/, and return that
    folder with the results."""
    if options.threads:
        torch.set_num_threads(options.threads)
    collection = load_collection(spec, options.limit_docs, options.limit_queries)
    name = collection.name + (f"-limit{options.limit_docs}" if options.limit_docs else "")
    results = new_record(
        options.command,
        dataset={"name": collection.name, "spec": spec, "documents": len(collection.docs),
                 "queries": len(collection.queries), "limit_docs": options.limit_docs,
                 "limit_queries": options.limit_queries,
                 "identical_id_rule": _identical_id_note(collection, options)},
        options={key: (str(value) if isinstance(value, Path) else value)
                 for key, value in vars(options).items() if key != "base"}
        | {"base": options.base.as_dict()})
    folder = run_folder(options.output / name, results)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {collection.name}: {len(collection.docs)} documents, "
          f"{len(collection.queries)} judged queries -> {folder}", flush=True)
    bm25, bm25_seconds = timed(lambda: BM25System(collection.docs))
    bm25_ranking = _finalize(bm25.search_all(
        collection.query_ids, bm25.tokenize([t for _, t in collection.queries]), options.depth),
        options)
    results["bm25"] = {"metrics": evaluate(collection.qrels, bm25_ranking),
                       "index_seconds": bm25_seconds, "bytes": sizes.bm25_bytes(bm25),
                       **_bm25_costs(bm25, collection, options)}
    results["models"] = {}
    write_trec_run(bm25_ranking, _run_path(folder, None, "bm25"), "bm25")
    # the peers (Lucene BM25, SPLADE-tiny); a peer that cannot run here records why
    results["peers"] = {name: record for name, (record, _) in
                        peers.run_peers(collection, options).items()}
    write_record(folder, results, render, partial=True)
    for model in options.models:
        print(f"[bench] {collection.name} / {model}", flush=True)
        results["models"][model] = run_model(model, collection, bm25_ranking, folder, options)
        results["peak_rss_mb"] = peak_rss_mb()
        write_record(folder, results, render, partial=True)  # a later model's crash keeps it
    results["load_average_end"] = load_average()
    results["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results["figures"] = draw_figures(results, folder)
    write_record(folder, results, render, partial=False)
    return folder, results


def run_model(model: str, collection: Collection, bm25_ranking: Ranking, folder: Path,
              options: Options) -> dict:
    """All systems, costs and sweeps of one model on one collection."""
    encoder, load_seconds = timed(lambda: Encoder.load(model, max_length=options.max_length,
                                                       batch_size=options.batch_size))
    encoded = encode_collection(encoder, collection, model, options.cache_dir,
                                refresh=options.refresh_cache)

    def factory(config: SparseConfig) -> SparseSystem:
        return SparseSystem(encoder, collection, encoded, config)

    dense = DenseSystem(collection, encoded, encoder.sentence_embedding)
    dense_ranking = _finalize(dense.search_all(options.depth), options)
    dense_metrics = evaluate(collection.qrels, dense_ranking)
    stats = _embedding_stats(encoded.doc_embeddings)

    evaluator = sweeps.SweepEvaluator(factory, collection, options.depth, options.identical_ids)
    base = factory(options.base).config  # the package's defaults for this model, made concrete
    configs = {"defaults": {"model": base, "tokens": base}}
    sweep_record: dict = {}
    if options.sweep:
        grid = sweeps.levers(stats["mean_norm"], quick=options.quick or options.small_grid)
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
        "bm25": {"kind": "bm25", "metrics": evaluate(collection.qrels, bm25_ranking),
                 "ranking": bm25_ranking},
    }
    sparse_systems: dict[str, tuple[SparseSystem, str]] = {}
    for variant, by_mode in configs.items():
        suffix = "" if variant == "defaults" else "-tuned"
        for mode, config in by_mode.items():
            name = f"sparse-{mode}{suffix}"
            system = factory(config)
            ranking = _finalize(system.search_all(mode, options.depth), options)
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
    defaults = sparse_systems["sparse-model"][0]  # the paper's query over the default bags
    union = grid_choice(collection.qrels, {
        setting: _finalize(defaults.search_all("union", options.depth, setting[1], setting[0]),
                           options) for setting in UNION_GRID},
        preference=lambda setting: setting == (DEFAULT_ALIGNED_TOKENS, "idf"))
    union["setting"] = {"aligned_tokens": union["setting"][0],
                        "token_weighting": union["setting"][1]}
    for fold in union["cv"]["folds"]:
        fold["setting"] = {"aligned_tokens": fold["setting"][0],
                           "token_weighting": fold["setting"][1]}
    union["cv"]["ratio_to_dense"] = (union["cv"]["held_out_ndcg"] / dense_metrics[PRIMARY]
                                     if dense_metrics[PRIMARY] else None)
    systems["sparse-union"] = {"kind": "sparse/union", "config": defaults.config.as_dict(),
                               **union}
    for left, right in LINEAR_PAIRS:  # the package defaults' systems, fused by a weight
        record = linear_hybrid(collection.qrels, systems[left]["ranking"],
                               systems[right]["ranking"], options.depth)
        record["cv"]["ratio_to_dense"] = (record["cv"]["held_out_ndcg"] / dense_metrics[PRIMARY]
                                          if dense_metrics[PRIMARY] else None)
        systems[f"linear({left}+{right})"] = {"kind": "linear", "inputs": [left, right],
                                              "depth": options.depth, **record}
    for name, system in systems.items():
        ratio = system["metrics"][PRIMARY] / dense_metrics[PRIMARY] if dense_metrics[
            PRIMARY] else None
        system["ratio_to_dense"] = ratio
        ranking = system.pop("ranking")
        if name != "bm25":  # BM25's run does not depend on the model: written once, shared
            write_trec_run(ranking, _run_path(folder, model, name),
                           _tag(f"{model_slug(model)}-{name}"))

    return {
        "model": model_record(model, encoder),
        "load_seconds": load_seconds,
        "embedding_stats": stats,
        "configs": {variant: {mode: config.as_dict() for mode, config in by_mode.items()}
                    for variant, by_mode in configs.items()},
        "systems": systems,
        "costs": _costs(encoder, encoded, collection, dense, sparse_systems, options),
        "sizes": {
            **{name: sizes.sparse_bytes(encoder, collection, encoded, system.config)
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


# Linear hybrids measured for every model: sparse + dense of one model, and each with BM25.
LINEAR_PAIRS = (("sparse-model", "dense"), ("sparse-model", "bm25"), ("dense", "bm25"),
                ("sparse-tokens", "bm25"))


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


def _costs(encoder: Encoder, encoded: EncodedCollection, collection: Collection,
           dense: DenseSystem, sparse_systems: dict[str, tuple[SparseSystem, str]],
           options: Options) -> dict:
    """Encoding throughput and split, query encoding per query, search latency and QPS.

    Per-query figures are one pass over the queries (each query one sample), one at a time on
    one thread (torch, FAISS and numba pinned); batch QPS is one call over all queries on the
    engines' default threads."""
    n_docs = len(collection.docs)
    texts = [text for _, text in collection.queries]
    sample = texts[:options.timing_queries]
    projection = {}
    for name, (system, _) in sparse_systems.items():
        recipe = index_encoder(system.index, encoder)  # bag size, weighting and PC1 of the index
        _, bag_seconds = timed(lambda recipe=recipe: recipe.bags(encoded.doc_embeddings))
        _, build_seconds = timed(lambda config=system.config: SparseSystem(
            encoder, collection, encoded, config))
        projection[name] = {"bags_seconds": bag_seconds,
                            "index_from_embeddings_seconds": build_seconds,
                            "total_docs_per_second": n_docs / (encoded.doc_seconds + bag_seconds)}
    doc_encoding = {
        "forward_seconds": encoded.doc_seconds,
        "forward_docs_per_second": encoded.docs_per_second,
        "measured_at": encoded.encoded_at, "from_cache": encoded.from_cache,
        "query_batch_ms_per_query": 1000 * encoded.query_seconds / max(len(texts), 1),
        "projection": projection,
        "forward_sample": _forward_sample(encoder, collection, options),
    }
    with pinned(1):
        query_encoding = {"dense": latency(lambda q: encoder.embed([q], is_query=True), sample,
                                           **ONE_PASS)}
        for name, (system, mode) in sparse_systems.items():
            live = system.query_encoder(mode, live=True)  # model mode: the real forward pass
            query_encoding[name] = latency(lambda q, live=live: live.encode([q]), sample,
                                           **ONE_PASS)

    depth = options.depth
    vectors = [encoded.query_embeddings[i:i + 1] for i in range(len(texts))]
    search_latency: dict[str, dict] = {}
    bags_by_system = {name: system.query_bags(mode)
                      for name, (system, mode) in sparse_systems.items()}
    with pinned(1):
        search_latency["dense"] = {
            "top100": latency(lambda t: dense.searcher.search(t, depth), texts, **ONE_PASS),
            "top10": latency(lambda t: dense.searcher.search(t, 10), texts, **ONE_PASS),
            "scoring_top100": latency(lambda v: dense.index.search(v, depth), vectors,
                                      **ONE_PASS)}
        for name, (system, _) in sparse_systems.items():
            bags = bags_by_system[name]
            usable = [q for q in range(len(texts)) if bags.indptr[q + 1] > bags.indptr[q]]
            # Queries already encoded, so these time the search alone, as for dense.
            searcher = SparseSearcher(system.index, PrecomputedQueryEncoder(texts, bags),
                                      encoder.tokenizer)
            queries = [texts[q] for q in usable]
            rows = [bags[q] for q in usable]
            search_latency[name] = {
                "top100": latency(lambda t, s=searcher: s.search(t, depth), queries,
                                  **ONE_PASS),
                "top10": latency(lambda t, s=searcher: s.search(t, 10), queries, **ONE_PASS),
                "scoring_top100": latency(lambda b, i=system.index: i.search(b, depth), rows,
                                          **ONE_PASS)}
    qps = {name: throughput(lambda i=system.index, b=bags_by_system[name]: i.search(b, depth),
                            len(texts), options.throughput_min_s)
           for name, (system, _) in sparse_systems.items()}
    qps["dense"] = throughput(lambda: dense.index.search(encoded.query_embeddings, depth),
                              len(texts), options.throughput_min_s)
    return {"doc_encoding": doc_encoding, "query_encoding": query_encoding,
            "search_latency": search_latency, "batch_qps": qps, "timing_queries": len(sample)}


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
    with pinned(1):
        search = {"top100": latency(lambda t: bm25.search_tokens([t], options.depth), tokens,
                                    **ONE_PASS),
                  "top10": latency(lambda t: bm25.search_tokens([t], 10), tokens, **ONE_PASS)}
        encoding = latency(lambda q: bm25.tokenize([q]), texts[:options.timing_queries],
                           **ONE_PASS)
    return {
        "query_encoding": encoding,
        "search_latency": search,
        "batch_qps": throughput(lambda: bm25.search_tokens(tokens, options.depth), len(tokens),
                                options.throughput_min_s),
    }


def _identical_id_note(collection: Collection, options: Options) -> dict:
    """How many judgments the identical-id rule can touch (relevant docs sharing the query's
    id), so its effect on a collection is visible rather than silent."""
    affected = sorted(qid for qid, grades in collection.qrels.items()
                      if grades.get(qid, 0) > 0)
    return {"applied": not options.identical_ids, "relevant_judgments_with_query_id": affected}


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
    top100 = {model: {name: value["top100"] for name, value in
                      {**record["costs"]["search_latency"],
                       "bm25": results["bm25"]["search_latency"]}.items()}
              for model, record in results["models"].items()}
    figures.append(plots.latency_bars(top100, folder / "search_latency_p50.png").name)
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
