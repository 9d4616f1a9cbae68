"""results.json, report.md and the printed summary of one benchmark run.

The markdown is generated from results.json alone, so a report can always be traced to the
numbers (and the command) behind it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.metrics import MEASURES, PRIMARY
from bench.sweeps import RUNS

SYSTEM_NOTES = {
    "sparse-model": "(1) sparse, model-encoded query",
    "sparse-tokens": "(2) sparse, tokenized query",
    "dense": "(3) dense, same embeddings, FAISS exact IP",
    "bm25": "(4) BM25 (bm25s)",
    "rrf(sparse-model+dense)": "(5a) RRF of 1+3",
    "rrf(sparse-tokens+bm25)": "(5b) RRF of 2+4",
}


def write_report(results: dict, folder: Path) -> str:
    """Write results.json and report.md into `folder`; return the summary table."""
    folder = Path(folder)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n",
                                         encoding="utf-8")
    summary = summary_table(results)
    (folder / "report.md").write_text(render(results, summary), encoding="utf-8")
    return summary


ORDER = ("sparse-model", "sparse-tokens", "dense", "rrf(sparse-model+dense)",
         "rrf(sparse-tokens+bm25)")


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
    config = system.get("config")
    if not config:
        return ""
    text = f"k={config['k']} λ={config['pc1_strength']:g} {config['weighting']}"
    if config.get("merge_variants") is not None:
        text += " merged" if config["merge_variants"] else " unmerged"
    return text + f" q:{config['token_weighting']}"


def summary_table(results: dict) -> str:
    """Every system of every model: the three measures and the ratio to that model's dense."""
    lines = ["| model | system | settings | nDCG@10 | R@100 | MRR@10 | nDCG / dense |",
             "|---|---|---|---|---|---|---|"]
    bm25 = results["bm25"]["metrics"]
    lines.append(f"| - | {SYSTEM_NOTES['bm25']} | bm25s defaults, English stopwords | "
                 + " | ".join(f"{bm25[m]:.3f}" for m in MEASURES) + " | - |")
    for model, record in results["models"].items():
        for name in ordered(record["systems"]):
            system = record["systems"][name]
            if name == "bm25":
                continue
            ratio = system.get("ratio_to_dense")
            ratio_text = "1.00" if name == "dense" else (f"{ratio:.2f}" if ratio else "-")
            lines.append(f"| {model} | {system_label(name)} | {settings(system)} | "
                         + " | ".join(f"{system['metrics'][m]:.3f}" for m in MEASURES)
                         + f" | {ratio_text} |")
    return "\n".join(lines)


def ratio_table(results: dict) -> str:
    """The paper's headline: sparse nDCG@10 over dense nDCG@10, per mode and variant."""
    lines = ["| model | dense nDCG@10 | mode | defaults | tuned* (same queries) | "
             "tuned, 2-fold CV (held out) |", "|---|---|---|---|---|---|"]
    for model, record in results["models"].items():
        systems = record["systems"]
        dense = systems["dense"]["metrics"][PRIMARY]
        cv = (record.get("sweeps") or {}).get("cross_validation", {})
        for mode in ("model", "tokens"):
            default = systems[f"sparse-{mode}"]
            tuned = systems.get(f"sparse-{mode}-tuned")
            cells = [f"{default['metrics'][PRIMARY]:.3f} ({default['ratio_to_dense']:.2f}x)"]
            cells.append(f"{tuned['metrics'][PRIMARY]:.3f} ({tuned['ratio_to_dense']:.2f}x)"
                         if tuned else "-")
            held = cv.get(mode)
            cells.append(f"{held['held_out_ndcg']:.3f} ({held['ratio_to_dense']:.2f}x)"
                         if held else "-")
            lines.append(f"| {model} | {dense:.3f} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_tables(results: dict) -> str:
    """Encoding, query, search and size costs side by side."""
    out = ["### Document encoding", "",
           "| model | forward (Encoder.embed) docs/s, full pass | forward s | docs/s, sample "
           "this run | sparse variant | projection+top-k (Encoder.bags) s | "
           "from_embeddings s | end-to-end docs/s |",
           "|---|---|---|---|---|---|---|---|"]
    for model, record in results["models"].items():
        enc = record["costs"]["doc_encoding"]
        cached = " (cached)" if enc["from_cache"] else ""
        sample = enc["forward_sample"]
        for name, proj in enc["projection"].items():
            out.append(f"| {model} | {enc['forward_docs_per_second']:.1f}{cached} | "
                       f"{enc['forward_seconds']:.1f} | {sample['docs_per_second']:.1f} "
                       f"({sample['docs']} docs) | {name} | {proj['bags_seconds']:.2f} | "
                       f"{proj['from_embeddings_seconds']:.2f} | "
                       f"{proj['total_docs_per_second']:.1f} |")
    out += ["", "The full-pass forward timing was measured when the embeddings were encoded "
            "(`measured_at` in results.json; cached runs reuse it); the sample column re-times "
            "Encoder.embed on evenly spaced documents in this run. End-to-end = full-pass "
            "forward + projection.", "",
            "### Queries: encoding per query and search", "",
           "| model | system | query encoding p50 ms | search top-100 p50 ms | top-100 p99 ms | "
           "top-10 p50 ms | scoring only, top-100 p50 ms | batch QPS (top-100) |",
           "|---|---|---|---|---|---|---|---|"]
    bm25 = results["bm25"]
    lat = bm25["search_latency"]
    out.append(f"| - | bm25 | {bm25['query_encoding']['p50_ms']:.2f} | "
               f"{lat['top100']['p50_ms']:.2f} | {lat['top100']['p99_ms']:.2f} | "
               f"{lat['top10']['p50_ms']:.2f} | - | {bm25['batch_qps']['per_second']:.0f} |")
    for model, record in results["models"].items():
        costs = record["costs"]
        for name, lat in costs["search_latency"].items():
            scoring = lat.get("scoring_top100")
            out.append(
                f"| {model} | {name} | {costs['query_encoding'][name]['p50_ms']:.2f} | "
                f"{lat['top100']['p50_ms']:.2f} | {lat['top100']['p99_ms']:.2f} | "
                f"{lat['top10']['p50_ms']:.2f} | "
                f"{scoring['p50_ms']:.2f} | " if scoring else
                f"| {model} | {name} | {costs['query_encoding'][name]['p50_ms']:.2f} | "
                f"{lat['top100']['p50_ms']:.2f} | {lat['top100']['p99_ms']:.2f} | "
                f"{lat['top10']['p50_ms']:.2f} | - | ")
            out[-1] += f"{costs['batch_qps'][name]['per_second']:.0f} |"
    out += ["", "Search latency: one query at a time on one thread (torch, FAISS and numba "
            "pinned to 1), after the query is encoded. Sparse search is the public "
            "`SparseIndex.search_bag` (compiled kernel plus the listing of each hit's matched "
            "tokens); \"scoring only\" is `Postings.scores` + `top_k` without that listing, "
            "the path the benchmark's own runs use (same hits). Query encoding: one query at a "
            "time, one thread (model-mode sparse = Encoder.embed + projection + top-k). Batch "
            "QPS: all queries in one call (`search_bags`, FAISS batch, bm25s), default threads. "
            "Hybrids cost the sum of their two inputs plus the fusion (well under a "
            "millisecond).", "",
            "### Index bytes on disk", "",
            "| model | index | bytes needed to search | of which postings / vectors | "
            "whole folder |", "|---|---|---|---|---|"]
    out.append(f"| - | bm25 | {_mb(bm25['bytes']['search_total'])} | - | - |")
    for model, record in results["models"].items():
        for name, size in record["sizes"].items():
            if name == "dense":
                out.append(f"| {model} | dense (faiss flat, float32) | "
                           f"{_mb(size['search_total'])} | {_mb(size['vectors'])} | - |")
            else:
                out.append(f"| {model} | {name} | {_mb(size['search_total'])} | "
                           f"{_mb(size['postings'])} | {_mb(size['folder_total'])} |")
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
               "queries; the CV "
               "column re-runs the ascent on half the queries and scores the other half):")
    out += ["", "| mode | settings | postings | nDCG@10 | R@100 | MRR@10 | / dense | "
            "2-fold CV nDCG@10 (/ dense) |", "|---|---|---|---|---|---|---|---|"]
    for mode, best in sweep["best"].items():
        cv = sweep["cross_validation"][mode]
        system = {"config": best["config"], "kind": f"sparse/{mode}"}
        out.append(f"| {mode} | {settings(system)} | {best['postings']:,} | "
                   + " | ".join(f"{best['metrics'][m]:.3f}" for m in MEASURES)
                   + f" | {best['ratio_to_dense']:.2f} | {cv['held_out_ndcg']:.3f} "
                   f"({cv['ratio_to_dense']:.2f}) |")
    out += ["", "CV folds chose: " + "; ".join(
        f"{mode} fold {fold['fold']}: "
        f"{settings({'config': fold['config'], 'kind': 'sparse/' + mode})}"
        for mode, cv in sweep["cross_validation"].items() for fold in cv["folds"]), ""]
    out += ["**Each lever from the package defaults** "
            f"({settings({'config': sweep['base'], 'kind': 'sparse/model'})}); nDCG@10:", ""]
    out += _lever_tables(sweep["one_at_a_time"])
    out += ["", "**Effect of each lever** (range of nDCG@10 over its values, others at the "
            "defaults / at the best for that mode):", ""]
    base_q = sweep["base"]["token_weighting"]
    best_q = {mode: sweep["best"][mode]["config"]["token_weighting"] for mode in sweep["best"]}
    for lever in sweep["one_at_a_time"]:
        parts = [_effect(f"defaults, model:{base_q}", sweep["one_at_a_time"][lever],
                         f"model:{base_q}"),
                 _effect(f"defaults, tokens:{base_q}", sweep["one_at_a_time"][lever],
                         f"tokens:{base_q}")]
        parts += [_effect(f"best, {mode}:{best_q[mode]}", sweep["around_best"][mode][lever],
                          f"{mode}:{best_q[mode]}") for mode in best_q]
        out.append(f"- `{lever}`: " + "; ".join(parts))
    grid_k = max(sweep["grid"]["k"])
    if any(best["config"]["k"] == grid_k for best in sweep["best"].values()):
        out += ["", f"The best k is the largest swept ({grid_k}): larger bags may help further, "
                "at a proportional cost in postings and query latency."]
    for mode in ("model", "tokens"):
        out += ["", f"**Around the best for {mode} queries**:", ""]
        out += _lever_tables(sweep["around_best"][mode])
    return "\n".join(out) + "\n"


def _lever_tables(rows_by_lever: dict[str, list[dict]]) -> list[str]:
    out = []
    for lever, rows in rows_by_lever.items():
        out += [f"| {lever} | postings | " + " | ".join(RUNS) + " |",
                "|---|---|" + "---|" * len(RUNS)]
        for row in rows:
            out.append(f"| {row['value']} | {row['postings']:,} | "
                       + " | ".join(f"{row['ndcg'][run]:.3f}" for run in RUNS) + " |")
        out.append("")
    return out


def _effect(label: str, rows: list[dict], run: str) -> str:
    values = [(row["ndcg"][run], row["value"]) for row in rows]
    low, high = min(values, key=lambda v: v[0]), max(values, key=lambda v: v[0])
    return f"{label} {low[0]:.3f} to {high[0]:.3f} (best {high[1]})"


def suggested_defaults(results: dict) -> str:
    """Per model, the best settings of each mode, as a suggestion (package defaults are left
    alone: they are a project decision, and these were chosen on test queries)."""
    out = ["| model | mode | k | λ (PC1 strength) | λ / mean norm | weighting | merge | "
           "token weighting | nDCG@10 | CV nDCG@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model, record in results["models"].items():
        sweep = record.get("sweeps") or {}
        norm = record["embedding_stats"]["mean_norm"]
        for mode, best in sweep.get("best", {}).items():
            c = best["config"]
            out.append(f"| {model} | {mode} | {c['k']} | {c['pc1_strength']:g} | "
                       f"{c['pc1_strength'] / norm:.2f} | {c['weighting']} | "
                       f"{c.get('merge_variants')} | {c['token_weighting']} | "
                       f"{best['ndcg']:.3f} | "
                       f"{sweep['cross_validation'][mode]['held_out_ndcg']:.3f} |")
    return "\n".join(out)


def floor_table(results: dict) -> str:
    """ASSETS.md's naive-settings figures next to this run's, same naive settings."""
    lines = ["| model | naive settings | ASSETS dense / model / tokens | this run dense / model / "
             "tokens |", "|---|---|---|---|"]
    for model, record in results["models"].items():
        floor = record.get("floor")
        if not floor:
            continue
        system = {"config": floor["config"], "kind": "sparse/model"}
        a, m = floor["assets"], floor["measured"]
        lines.append(f"| {model} | {settings(system)} | {a['dense']:.3f} / {a['model']:.3f} / "
                     f"{a['tokens']:.3f} | {m['dense']:.3f} / {m['model']:.3f} / "
                     f"{m['tokens']:.3f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def render(results: dict, summary: str) -> str:
    """The whole report.md."""
    data, env = results["dataset"], results["environment"]
    rule = data["identical_id_rule"]
    out = [f"# Benchmark: {data['name']}", "",
           f"`{results['command']}`", "",
           f"{data['documents']:,} documents, {data['queries']} judged queries, top-"
           f"{results['options']['depth']} per query. Identical-id rule "
           f"{'applied' if rule['applied'] else 'NOT applied'} to every system (relevant "
           f"judgments whose doc id equals the query id: "
           f"{', '.join(rule['relevant_judgments_with_query_id']) or 'none'}).", "",
           "## Models and machine", "",
           "| model | source | sha256 of weights | method | max_length |", "|---|---|---|---|---|"]
    for model, record in results["models"].items():
        m = record["model"]
        out.append(f"| {model} | `{m['source']}` | `{m['content_hash'][:16]}` | {m['method']} | "
                   f"{m['max_length']} |")
    out += ["", f"tokretrieve {env['tokretrieve']}, Python {env['python']}, CPU "
            f"{env['cpu']} ({env['cpu_count']} logical cores, torch threads "
            f"{env['torch_threads']}), {env['date']}. Packages: "
            + ", ".join(f"{k} {v}" for k, v in env["packages"].items()) + ". Load average "
            f"(1/5/15 min) at start {results.get('load_average_start')}, at end "
            f"{results.get('load_average_end')}: above the core count, other work competed "
            "for the CPUs and timings are pessimistic.", "",
            "## Summary", "", summary, "",
            "\\* tuned = best settings of the sweep below, chosen on these same queries "
            "(optimistic); the 2-fold CV column below is the honest estimate.", "",
            "## Sparse / dense nDCG@10 (paper: 0.8, target ≥ 0.9)", "", ratio_table(results),
            "", "## The ASSETS.md floor, reproduced (nDCG@10)", "",
            floor_table(results) or "Only measured for minilm and smollm2 on full Cranfield.",
            "", "## Costs", "", cost_tables(results), "",
            "## Sweeps", ""]
    for model, record in results["models"].items():
        out.append(sweep_section(model, record))
    out += ["## Suggested defaults (from this collection's sweep)", "",
            suggested_defaults(results), "", "## Figures", ""]
    out += [f"![{name}]({name})" for name in results.get("figures", [])]
    return "\n".join(out) + "\n"


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"
