"""report.md and the printed summary of one quality-benchmark run, from its results record.

The markdown is generated from results.json alone (bench.toolkit.results writes both), so a
report can always be traced to the numbers, the command and the commit behind it.
"""

from __future__ import annotations

from bench.quality.metrics import MEASURES, PRIMARY
from bench.quality.sweeps import RUNS
from bench.quality.systems import literal_label, query_weighting
from bench.toolkit.tables import megabytes, number, table

SYSTEM_NOTES = {
    "sparse-model": "(1) sparse, model-encoded query",
    "sparse-tokens": "(2) sparse, tokenized query",
    "dense": "(3) dense, same embeddings, FAISS exact IP",
    "bm25": "(4) BM25 (bm25s)",
    "rrf(sparse-model+dense)": "(5a) RRF of 1+3",
    "rrf(sparse-tokens+bm25)": "(5b) RRF of 2+4",
    "linear(sparse-model+dense)": "(6a) linear fusion of 1+3",
    "linear(sparse-model+bm25)": "(6b) linear fusion of 1+4",
    "linear(dense+bm25)": "(6c) linear fusion of 3+4",
    "linear(sparse-tokens+bm25)": "(6d) linear fusion of 2+4",
    "sparse-union": "(7) sparse, the paper's query (literal + top-M aligned tokens)",
}


ORDER = ("sparse-model", "sparse-tokens", "dense", "rrf(sparse-model+dense)",
         "rrf(sparse-tokens+bm25)", "linear(sparse-model+dense)", "linear(sparse-model+bm25)",
         "linear(dense+bm25)", "linear(sparse-tokens+bm25)", "sparse-union")


def ordered(systems: dict[str, dict]) -> list[str]:
    """Systems in the issue's numbering, package defaults first, then the tuned variants."""
    def key(name: str) -> tuple[int, int, str]:
        base = name.replace("-tuned", "")
        return ("-tuned" in name, ORDER.index(base) if base in ORDER else len(ORDER), name)
    return sorted(systems, key=key)


def system_label(name: str) -> str:
    """'(1) sparse, model-encoded query' etc.; tuned variants say so."""
    base = name.replace("-tuned", "")
    label = SYSTEM_NOTES.get(base, name)
    return f"{label}, tuned*" if "-tuned" in name else label


def settings(system: dict) -> str:
    """The levers behind a row, short enough for a table cell."""
    if system.get("kind") == "rrf":
        return f"RRF k={system['rrf_k']} over the top-{system['depth']} of each"
    if system.get("kind") == "sparse/union":
        setting = system["setting"]
        return (f"M={setting['aligned_tokens']} q:{setting['token_weighting']} (best in "
                "sample) over the default bags")
    if system.get("kind") == "linear":
        return (f"min-max linear, weight {system['weight']:g} / {1 - system['weight']:g} "
                f"(best in sample) over the top-{system['depth']} of each")
    config = system.get("config")
    if not config:
        return ""
    text = f"bag={config['bag_size']} λ={config['pc1_strength']:g} {config['weighting']}"
    if config.get("merge_variants") is not None:
        text += " merged" if config["merge_variants"] else " unmerged"
    mode = system.get("kind", "sparse/model").removeprefix("sparse/")
    return text + literal_label(config) + f" q:{query_weighting(config, mode)}"


def _measures(metrics: dict) -> list[str]:
    return [number(metrics[m], 3) for m in MEASURES]


def summary_table(results: dict) -> str:
    """Every system of every model: the three measures and the ratio to that model's dense."""
    rows = [["-", SYSTEM_NOTES["bm25"], "bm25s defaults, English stopwords",
             *_measures(results["bm25"]["metrics"]), "-"]]
    for model, record in results["models"].items():
        for name in ordered(record["systems"]):
            system = record["systems"][name]
            if name == "bm25":
                continue
            ratio = "1.00" if name == "dense" else number(system.get("ratio_to_dense"), 2)
            rows.append([model, system_label(name), settings(system),
                         *_measures(system["metrics"]), ratio])
    return "\n".join(table(["model", "system", "settings", *MEASURES, "nDCG / dense"], rows))


def peers_table(results: dict) -> str:
    """The peers (Lucene BM25, SPLADE-tiny) beside the benchmark's bm25s row, on the same
    queries; a peer that could not run says why instead of its numbers."""
    rows = []
    runs = [("bm25s (the benchmark's (4))", results["bm25"])] if "bm25" in results else []
    runs += [(peer["label"], peer) for peer in results.get("peers", {}).values()]
    for label, run in runs:
        if "skipped" in run:
            rows.append([label, f"skipped: {run['skipped']}", *["-"] * 7])
            continue
        encoding = run.get("query_encoding")
        documents = run.get("document_encoding")
        rows.append([label, *_measures(run["metrics"]),
                     number(encoding["p50_ms"], 2) if encoding else "in search",
                     number(run["search_latency"]["top100"]["p50_ms"], 2),
                     megabytes(run["bytes"]["search_total"]),
                     number(documents["seconds"], 1) + (" (cached)" if documents["from_cache"]
                                                        else "") if documents else "-",
                     number(run["index_seconds"], 2)])
    return "\n".join(table(["system", *MEASURES, "query encoding p50 ms",
                            "search top-100 p50 ms", "index MB", "document encoding s",
                            "index build s"], rows))


def _with_ratio(ndcg: float, ratio: float | None) -> str:
    return f"{number(ndcg, 3)} ({number(ratio, 2)}x)"


def ratio_table(results: dict) -> str:
    """The paper's headline: sparse nDCG@10 over dense nDCG@10, per mode and variant."""
    rows = []
    for model, record in results["models"].items():
        systems = record["systems"]
        dense = systems["dense"]["metrics"][PRIMARY]
        cv = (record.get("sweeps") or {}).get("cross_validation", {})
        for mode in ("model", "tokens"):
            default = systems[f"sparse-{mode}"]
            tuned = systems.get(f"sparse-{mode}-tuned")
            held = cv.get(mode)
            rows.append([
                model, number(dense, 3), mode,
                _with_ratio(default["metrics"][PRIMARY], default["ratio_to_dense"]),
                _with_ratio(tuned["metrics"][PRIMARY], tuned["ratio_to_dense"]) if tuned
                else "-",
                _with_ratio(held["held_out_ndcg"], held["ratio_to_dense"]) if held else "-"])
    return "\n".join(table(["model", "dense nDCG@10", "mode", "defaults",
                            "tuned* (same queries)", "tuned, 2-fold CV (held out)"], rows))


def hybrid_table(results: dict) -> str:
    """Linear hybrids: the weight chosen on all queries (in sample) beside the 2-fold CV one."""
    rows = []
    for model, record in results["models"].items():
        dense = record["systems"]["dense"]["metrics"][PRIMARY]
        for name in ordered(record["systems"]):
            system = record["systems"][name]
            if system.get("kind") != "linear":
                continue
            cv = system["cv"]
            chosen = " / ".join(f"{fold['weight']:g}" for fold in cv["folds"])
            rows.append([model, system_label(name), f"{system['weight']:g}",
                         _with_ratio(system["metrics"][PRIMARY], system["ratio_to_dense"]),
                         chosen, _with_ratio(cv["held_out_ndcg"], cv["ratio_to_dense"]),
                         number(dense, 3)])
    return "\n".join(table(["model", "hybrid", "weight of the first (in sample)",
                            "nDCG@10 in sample (x dense)", "weights chosen per fold",
                            "nDCG@10 2-fold CV, held out (x dense)", "dense nDCG@10"], rows))


def union_table(results: dict) -> str:
    """The paper's union query: M and the query weighting chosen in sample and by 2-fold CV."""
    rows = []
    for model, record in results["models"].items():
        system = record["systems"].get("sparse-union")
        if system is None:
            continue
        cv = system["cv"]
        chosen = " / ".join(f"M={f['setting']['aligned_tokens']} "
                            f"{f['setting']['token_weighting']}" for f in cv["folds"])
        grid = ", ".join(f"{key} {number(value, 3)}" for key, value in system["grid"].items())
        rows.append([model, settings(system),
                     _with_ratio(system["metrics"][PRIMARY], system["ratio_to_dense"]), chosen,
                     _with_ratio(cv["held_out_ndcg"], cv["ratio_to_dense"]), grid])
    return "\n".join(table(["model", "in sample", "nDCG@10 in sample (x dense)",
                            "chosen per fold", "nDCG@10 2-fold CV, held out (x dense)",
                            "every (M, weighting)"], rows))


def cost_tables(results: dict) -> str:
    """Encoding, query, search and size costs side by side."""
    rows = []
    for model, record in results["models"].items():
        enc = record["costs"]["doc_encoding"]
        cached = " (cached)" if enc["from_cache"] else ""
        sample = enc["forward_sample"]
        for name, proj in enc["projection"].items():
            rows.append([model, number(enc["forward_docs_per_second"], 1) + cached,
                         number(enc["forward_seconds"], 1),
                         f"{number(sample['docs_per_second'], 1)} ({sample['docs']} docs)", name,
                         number(proj["bags_seconds"], 2),
                         number(proj["index_from_embeddings_seconds"], 2),
                         number(proj["total_docs_per_second"], 1)])
    out = ["### Document encoding", "", *table(
        ["model", "forward (Encoder.embed) docs/s, full pass", "forward s",
         "docs/s, sample this run", "sparse variant", "projection+top-k (Encoder.bags) s",
         "index_from_embeddings s", "end-to-end docs/s"], rows)]
    out += ["", "The full-pass forward timing was measured when the embeddings were encoded "
            "(`measured_at` in results.json; cached runs reuse it); the sample column re-times "
            "Encoder.embed on evenly spaced documents in this run. End-to-end = full-pass "
            "forward + projection.", "",
            "### Queries: encoding per query and search", ""]
    bm25 = results["bm25"]
    lat = bm25["search_latency"]
    rows = [["-", "bm25", number(bm25["query_encoding"]["p50_ms"], 2),
             number(lat["top100"]["p50_ms"], 2), number(lat["top100"]["p99_ms"], 2),
             number(lat["top10"]["p50_ms"], 2), "-", number(bm25["batch_qps"]["qps"], 0)]]
    for model, record in results["models"].items():
        costs = record["costs"]
        for name, lat in costs["search_latency"].items():
            rows.append([model, name, number(costs["query_encoding"][name]["p50_ms"], 2),
                         number(lat["top100"]["p50_ms"], 2), number(lat["top100"]["p99_ms"], 2),
                         number(lat["top10"]["p50_ms"], 2),
                         number(lat["scoring_top100"]["p50_ms"], 2),
                         number(costs["batch_qps"][name]["qps"], 0)])
    out += table(["model", "system", "query encoding p50 ms", "search top-100 p50 ms",
                  "top-100 p99 ms", "top-10 p50 ms", "scoring only, top-100 p50 ms",
                  "batch QPS (top-100)"], rows)
    out += ["", "Search latency: one query at a time on one thread (torch, FAISS and numba "
            "pinned to 1), one pass over the queries, after each query is encoded. Search is "
            "the searchers' `search(text, k)` (`SparseSearcher`: the shipped kernel plus the "
            "listing of each hit's matched tokens; `DenseSearcher`: FAISS) with the queries "
            "already encoded; \"scoring only\" is the index's own `search(queries, k)`, arrays "
            "in and out, the path the benchmark's runs take (same hits, no token lists). Query "
            "encoding: one query at a time, one thread (model-mode sparse = Encoder.embed + "
            "projection + top-k). Batch QPS: all queries in one `index.search` call (sparse "
            "kernel, FAISS batch) or bm25s retrieve, default threads, median of repeated "
            "calls. Hybrids cost the sum of their two inputs plus the fusion (well under a "
            "millisecond).", "",
            "### Index bytes on disk (MB)", ""]
    rows = [["-", "bm25", megabytes(bm25["bytes"]["search_total"]), "-", "-"]]
    for model, record in results["models"].items():
        for name, size in record["sizes"].items():
            if name == "dense":
                rows.append([model, "dense (faiss flat, float32)",
                             megabytes(size["search_total"]), megabytes(size["vectors"]), "-"])
            else:
                rows.append([model, name, megabytes(size["search_total"]),
                             megabytes(size["postings"]), megabytes(size["folder_total"])])
    out += table(["model", "index", "bytes needed to search", "of which postings / vectors",
                  "whole folder"], rows)
    out += ["", "A tokretrieve index folder also stores the float32 embeddings (the dense "
            "baseline and re-derivation read them) and the tokenizer; \"bytes needed to search\" "
            "counts postings, doc ids and tokenizer only.", "",
            "Peak RSS of the whole benchmark process: "
            + ", ".join(f"after {model}: {record['peak_rss_mb']:.0f} MiB"
                        for model, record in results["models"].items())]
    return "\n".join(out)


def sweep_section(model: str, record: dict) -> str:
    """Tables of every sweep of one model, and a sentence per lever on its effect."""
    sweep = record.get("sweeps") or {}
    if not sweep:
        return f"### {model}\n\nSweeps were skipped (--no-sweep).\n"
    dense = record["systems"]["dense"]["metrics"][PRIMARY]
    stats = record["embedding_stats"]
    out = [f"### {model}", "",
           f"Dense nDCG@10 {dense:.3f}. Mean document-embedding norm {stats['mean_norm']:.3g} "
           f"(PC1 grid = fractions of it); PC1 holds {100 * stats['pc1_energy_share']:.0f}% of "
           f"the embeddings' energy, mean coefficient on v1 {stats['pc1_mean_coefficient']:.3g}. "
           f"{record['sweep_points']} configurations scored in {sweep['seconds']:.0f} s.", ""]
    out.append("**Best settings found** (coordinate ascent from two starts on nDCG@10 of all "
               "queries; the CV column re-runs the ascent on half the queries and scores the "
               "other half):")
    rows = []
    for mode, best in sweep["best"].items():
        cv = sweep["cross_validation"][mode]
        system = {"config": best["config"], "kind": f"sparse/{mode}"}
        rows.append([mode, settings(system), number(best["postings"], 0),
                     *_measures(best["metrics"]), number(best["ratio_to_dense"], 2),
                     _with_ratio(cv["held_out_ndcg"], cv["ratio_to_dense"])])
    out += ["", *table(["mode", "settings", "postings", *MEASURES, "/ dense",
                        "2-fold CV nDCG@10 (/ dense)"], rows)]
    out += ["", "CV folds chose: " + "; ".join(
        f"{mode} fold {fold['fold']}: "
        f"{settings({'config': fold['config'], 'kind': 'sparse/' + mode})}"
        for mode, cv in sweep["cross_validation"].items() for fold in cv["folds"]), ""]
    out += ["**Each lever from the package defaults** "
            f"({settings({'config': sweep['base'], 'kind': 'sparse/model'})}); nDCG@10:", ""]
    out += _lever_tables(sweep["one_at_a_time"])
    out += ["", "**Effect of each lever** (range of nDCG@10 over its values, others at the "
            "defaults / at the best for that mode):", ""]
    base_q = {mode: query_weighting(sweep["base"], mode) for mode in ("model", "tokens")}
    best_q = {mode: query_weighting(sweep["best"][mode]["config"], mode)
              for mode in sweep["best"]}
    for lever in sweep["one_at_a_time"]:
        parts = [_effect(f"defaults, {mode}:{base_q[mode]}", sweep["one_at_a_time"][lever],
                         f"{mode}:{base_q[mode]}") for mode in base_q]
        parts += [_effect(f"best, {mode}:{best_q[mode]}", sweep["around_best"][mode][lever],
                          f"{mode}:{best_q[mode]}") for mode in best_q]
        out.append(f"- `{lever}`: " + "; ".join(parts))
    largest = max(sweep["grid"]["bag_size"])
    if any(best["config"]["bag_size"] == largest for best in sweep["best"].values()):
        out += ["", f"The best bag size is the largest swept ({largest}): larger bags may help "
                "further, at a proportional cost in postings and query latency."]
    for mode in ("model", "tokens"):
        out += ["", f"**Around the best for {mode} queries**:", ""]
        out += _lever_tables(sweep["around_best"][mode])
    return "\n".join(out) + "\n"


def _lever_tables(rows_by_lever: dict[str, list[dict]]) -> list[str]:
    out = []
    for lever, rows in rows_by_lever.items():
        out += table([lever, "postings", *RUNS],
                     [[str(row["value"]), number(row["postings"], 0),
                       *(number(row["ndcg"][run], 3) for run in RUNS)] for row in rows])
        out.append("")
    return out


def _effect(label: str, rows: list[dict], run: str) -> str:
    values = [(row["ndcg"][run], row["value"]) for row in rows]
    low, high = min(values, key=lambda v: v[0]), max(values, key=lambda v: v[0])
    return f"{label} {low[0]:.3f} to {high[0]:.3f} (best {high[1]})"


def suggested_defaults(results: dict) -> str:
    """Per model, the best settings of each mode, as a suggestion (package defaults are left
    alone: they are a project decision, and these were chosen on test queries)."""
    rows = []
    for model, record in results["models"].items():
        sweep = record.get("sweeps") or {}
        norm = record["embedding_stats"]["mean_norm"]
        for mode, best in sweep.get("best", {}).items():
            c = best["config"]
            rows.append([model, mode, str(c["bag_size"]), f"{c['pc1_strength']:g}",
                         number(c["pc1_strength"] / norm, 2), c["weighting"],
                         str(c.get("merge_variants")), literal_label(c).strip() or "-",
                         query_weighting(c, mode),
                         number(best["ndcg"], 3),
                         number(sweep["cross_validation"][mode]["held_out_ndcg"], 3)])
    return "\n".join(table(["model", "mode", "bag size", "λ (PC1 strength)", "λ / mean norm",
                            "weighting", "merge", "literal", "token weighting", "nDCG@10",
                            "CV nDCG@10"],
                           rows))


def floor_table(results: dict) -> str:
    """ASSETS.md's naive-settings figures next to this run's, same naive settings."""
    rows = []
    for model, record in results["models"].items():
        floor = record.get("floor")
        if not floor:
            continue
        system = {"config": floor["config"], "kind": "sparse/model"}
        a, m = floor["assets"], floor["measured"]
        rows.append([model, settings(system),
                     " / ".join(number(a[key], 3) for key in ("dense", "model", "tokens")),
                     " / ".join(number(m[key], 3) for key in ("dense", "model", "tokens"))])
    if not rows:
        return ""
    return "\n".join(table(["model", "naive settings", "ASSETS dense / model / tokens",
                            "this run dense / model / tokens"], rows))


def render(results: dict) -> str:
    """The whole report.md."""
    data, env = results["dataset"], results["machine"]
    rule = data["identical_id_rule"]
    git = env["git"]
    commit = ("unknown commit" if git["commit"] is None else
              f"commit {git['commit'][:12]}" + (" with uncommitted changes" if git["dirty"]
                                                else ""))
    out = [f"# Benchmark: {data['name']}", "",
           f"`{results['command']}` ({commit})", "",
           f"{data['documents']:,} documents, {data['queries']} judged queries, top-"
           f"{results['options']['depth']} per query. Identical-id rule "
           f"{'applied' if rule['applied'] else 'NOT applied'} to every system (relevant "
           f"judgments whose doc id equals the query id: "
           f"{', '.join(rule['relevant_judgments_with_query_id']) or 'none'}).", "",
           "## Models and machine", ""]
    out += table(["model", "source", "sha256 of weights", "method", "max_length"],
                 [[model, f"`{m['source']}`", f"`{m['content_hash'][:16]}`", m["method"],
                   str(m["max_length"])]
                  for model, m in ((model, record["model"])
                                   for model, record in results["models"].items())])
    out += ["", f"Python {env['python']}, CPU {env['cpu']} ({env['cpu_count']} logical cores, "
            f"torch threads {env['threads']['torch']}), {env['date']}. Packages: "
            + ", ".join(f"{k} {v}" for k, v in env["packages"].items()) + ". Load average "
            f"(1/5/15 min) at start {env['load_avg']}, at end "
            f"{results.get('load_average_end')}: above the core count, other work competed "
            "for the CPUs and timings are pessimistic.", "",
            "## Summary", "", summary_table(results), "",
            "\\* tuned = best settings of the sweep below, chosen on these same queries "
            "(optimistic); the 2-fold CV column below is the honest estimate.", "",
            "## Peers: Lucene BM25 and SPLADE-tiny, same queries", "", peers_table(results), "",
            "Latency: one query at a time on one thread, p50 of one pass after a warm-up pass; "
            "Lucene's search includes its query analysis, SPLADE's query encoding is the "
            "model's forward pass and its search is tokretrieve's kernel (`SparseIndex.search`)."
            " Index MB: the bytes needed to search (Lucene: the index folder).", "",
            "## Sparse / dense nDCG@10 (paper: 0.8, target ≥ 0.9)", "", ratio_table(results),
            "", "## Hybrids: linear fusion, weight chosen in sample and by 2-fold CV", "",
            hybrid_table(results), "",
            "Each part's scores are min-max scaled over its top hits per query, then summed "
            "with weights w and 1 - w (w on a grid of 0, 0.1, ..., 1); the folds are the "
            "sparse sweep's (even- and odd-positioned judged queries).", "",
            "## The paper's query: literal tokens + top-M aligned tokens", "",
            union_table(results), "",
            "Each token of the union weighs 1 (`count`, the paper's sum of the documents' "
            "weights) or its idf; the documents are the default bags.", "",
            "## The ASSETS.md floor, reproduced (nDCG@10)", "",
            floor_table(results) or "Only measured for minilm and smollm2 on full Cranfield.",
            "", "## Costs", "", cost_tables(results), "",
            "## Sweeps", ""]
    for model, record in results["models"].items():
        out.append(sweep_section(model, record))
    out += ["## Suggested defaults (from this collection's sweep)", "",
            suggested_defaults(results), "", "## Figures", ""]
    out += [f"![{name}]({name})" for name in results.get("figures", [])]
    return "\n".join(out) + "\n"
