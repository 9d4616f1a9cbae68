"""report.md and the printed summary of the speed benchmark, from results.json's record.

Kept apart from the measuring code so a report can be re-rendered from a saved results.json
(`python -c "from bench.speed.report import ...`) without re-running anything, and so the
tables say exactly what was measured: every latency is one query per call on one thread, every
QPS is one batch call on all threads, and the load average sits beside them.
"""

from __future__ import annotations

from typing import Any

from bench.toolkit.tables import megabytes, number, table

KS = ("10", "1000")


def _mb(n_bytes: float | None) -> str:
    return megabytes(n_bytes, 1)


def _get(record: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def search_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per size x system: p50/p99 (1 thread) and QPS (all threads) at both k."""
    header = ["size", "docs", "system", "query", *[f"{c} k={k}" for k in KS
                                                  for c in ("p50 ms", "p99 ms", "QPS")]]
    rows = []
    for r in record["sizes"]:
        systems: list[tuple[str, str, dict | None]] = [
            ("tokretrieve", "tokens", _get(r, "tokretrieve", "tokens")),
            ("tokretrieve", "model", _get(r, "tokretrieve", "model")),
            ("BM25S numba", "tokens", _get(r, "bm25s", "numba")),
            ("BM25S numpy", "tokens", _get(r, "bm25s", "numpy")),
            ("FAISS flat", "dense", r.get("faiss")),
        ]
        for name, query, data in systems:
            if not data:
                continue
            cells = []
            for k in KS:
                cells += [number(_get(data, k, "latency", "p50_ms"), 3),
                          number(_get(data, k, "latency", "p99_ms"), 3),
                          number(_get(data, k, "batch", "qps"), 0)]
            rows.append([r["size"], f"{r['n_docs']:,}", name, query, *cells])
    return header, rows


def cost_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["size", "postings", "index Mpost/s", "BM25S Mpost/s", "sparse MB", "BM25S MB",
              "FAISS MB", "load ms sparse/BM25S/FAISS", "e2e p50 ms tokens/model/dense",
              "peak RSS MiB index/BM25S build/search/FAISS"]
    rows = []
    for r in record["sizes"]:
        loads = "/".join(number(x * 1000 if x is not None else None, 1) for x in (
            _get(r, "load_s", "sparse"), _get(r, "bm25s", "load_s", "numba"),
            _get(r, "faiss", "load_s")))
        e2e = "/".join(number(_get(r, "end_to_end", m, "p50_ms"), 2)
                       for m in ("tokens", "model", "dense"))
        rows.append([
            r["size"], f"{r['postings']:,}",
            number(r["indexing"]["postings_per_s"] / 1e6, 1),
            number((_get(r, "bm25s", "postings_per_s") or float("nan")) / 1e6, 2),
            _mb(_get(r, "bytes", "sparse", "postings_and_ids")),
            _mb(_get(r, "bm25s", "bytes")), _mb(_get(r, "faiss", "bytes", "with_ids")),
            loads, e2e, "/".join(number(x, 0) for x in (
                _get(r, "indexing", "peak_rss_mb"), _get(r, "bm25s", "build_peak_rss_mb"),
                _get(r, "peak_rss_mb", "tokretrieve_search"), _get(r, "faiss", "peak_rss_mb")))])
    return header, rows


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The printed summary: the search table, the cost table, the targets."""
    lines = [f"$ {record['command']}",
             f"machine: {record['machine']['cpu']}, {record['machine']['cpu_count']} cores; "
             f"load avg start {record['machine']['load_avg']} end {record.get('load_avg_end')}",
             ""]
    lines += _plain(*search_rows(record))
    lines.append("")
    lines += _plain(*cost_rows(record))
    lines.append("")
    lines += _plain(*target_rows(record))
    return lines


def _plain(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*row) for row in rows]


def target_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    rows = [[t["target"], t["size"], number(t["value"], 3), t["goal"],
             "yes" if t["met"] else "NO"] for t in record.get("targets", [])]
    return ["target", "size", "reached", "goal", "met"], rows


def ratio_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["size", "QPS / BM25S k=10", "k=1000", "p50 BM25S / tok k=10", "k=1000",
              "QPS / FAISS k=10", "k=1000", "model QPS / FAISS k=10", "e2e dense / tokens",
              "e2e dense / model", "bytes sparse / dense", "est. Elias-Fano / dense",
              "indexing / BM25S"]
    rows = []
    for r in record.get("ratios", []):
        rows.append([r["size"], *[number(r.get(key), 2) for key in (
            "qps_vs_bm25s_k10", "qps_vs_bm25s_k1000", "p50_vs_bm25s_k10", "p50_vs_bm25s_k1000",
            "qps_vs_faiss_k10", "qps_vs_faiss_k1000", "model_qps_vs_faiss_k10",
            "e2e_dense_over_tokens_p50", "e2e_dense_over_model_p50", "bytes_sparse_over_dense",
            "bytes_estimate_over_dense", "indexing_vs_bm25s")]])
    return header, rows


def kernel_lines(r: dict[str, Any]) -> list[str]:
    """Where the kernel's time goes at one size: traversal, the linear fit, indexing steps and
    postings bytes."""
    lines = [f"### Kernel at {r['size']} ({r['n_docs']:,} documents)", ""]
    header = ["query mode", "tokens/query", "postings walked mean / p50 / p99 / max",
              "docs touched mean / p99", "dense segments mean", "p50 ms k=10",
              "fit: fixed us + ns/posting + ns/touched (R²)", "ns per posting overall"]
    rows = []
    for mode in ("tokens", "model"):
        q = r["queries"][mode]
        fit = _get(r, "tokretrieve", mode, "fit_k10") or {}
        rows.append([
            mode, number(q["mean_tokens"], 1),
            " / ".join(number(q["postings"][s], 0) for s in ("mean", "p50", "p99", "max")),
            " / ".join(number(q["touched"][s], 0) for s in ("mean", "p99")),
            number(_get(q, "dense_segments", "mean"), 1),
            number(_get(r, "tokretrieve", mode, "10", "latency", "p50_ms"), 3),
            (f"{number(fit.get('fixed_us'), 1)} + {number(fit.get('ns_per_posting'), 2)} + "
             f"{number(fit.get('ns_per_touched'), 2)} ({number(fit.get('r2'), 2)})")
            if fit else "-",
            number(fit.get("ns_per_posting_overall"), 2)])
    lines += table(header, rows)
    ix = r["indexing"]
    lines += ["", "Indexing steps (s): " + ", ".join(
        f"{name} {number(ix.get(key), 3)}" for name, key in (
            ("postings_from_bags", "build_postings_s"),
            ("in_memory (manifest, empty-document check)", "manifest_s"),
            ("SparseIndex.write", "write_s"), ("total", "total_s")))
        + f"; postings_from_bags alone {number(ix['build_postings_per_s'] / 1e6, 1)} M "
        "postings/s; "
        f"{ix.get('impacts')} impacts (scale {ix.get('scale')}), {ix.get('segments')} "
        f"segment(s) of {number(ix.get('segment_docs'), 0)} documents, "
        f"{number(ix.get('dropped_zero_levels'), 0)} bag entries dropped at level 0."]
    stored = _get(r, "bytes", "sparse") or {}
    est = _get(r, "bytes", "sparse_elias_fano_estimate")
    if stored:
        by_file = stored.get("postings_files") or {  # records before the packed codec
            name: stored.get(name) for name in ("postings_docs", "postings_impacts",
                                                "postings_indptr")}
        files = ", ".join(f"{name.removeprefix('postings_')} {_mb(size)}"
                          for name, size in by_file.items())
        lines += ["", f"Postings bytes on disk {_mb(stored.get('postings'))} MB ({files}), doc ids "
                  f"{_mb(stored.get('doc_ids'))} MB"
                  + (f"; with Elias-Fano doc offsets (estimated) {_mb(est['total'])} MB "
                     f"(doc offsets {_mb(est['docs_elias_fano'])} instead of "
                     f"{_mb(est['docs_uint16'])})." if est else ".")]
    return lines


def render_report(record: dict[str, Any]) -> str:
    """report.md, from the results record alone."""
    m = record["machine"]
    git = m["git"]
    commit = ("unknown commit" if git["commit"] is None else
              f"commit {git['commit'][:12]}" + (" with uncommitted changes" if git["dirty"]
                                                else ""))
    real = record["real"]
    lines = [
        "# tokretrieve speed benchmark", "",
        f"`{record['command']}` ({commit}) — started {record['started']}, finished "
        f"{record.get('finished', '?')}.", "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['memory_gib']} GiB; numba threads "
        f"{m['threads']['numba_pool']}; load average (1/5/15 min) at start {m['load_avg']}, "
        f"at end {record.get('load_avg_end')}. The machine is shared: every measurement in "
        "results.json carries the load average before and after it.", "",
        f"Real bags: {real['index']} ({real['docs']:,} Cranfield documents, {real['postings']:,} "
        f"postings, model {real['model']}, bags {real['bags']}, postings layout "
        f"{real['layout']}); "
        f"{real['queries']} Cranfield queries in both modes. Synthetic sizes draw bags from "
        "that index's bag lengths, token document fractions and weights "
        "(bench/speed/synth.py) and are stored with the same impact type and segment size.", "",
        "Latency: one query per call, one thread (numba, FAISS and torch set to 1), p50/p99 over "
        "all samples (passes over the query set until 1,000 samples or the time budget). QPS: "
        "all queries in one batch call on all threads; median of repeated calls. tokretrieve "
        "is timed at tokretrieve.index.kernels.batch_top_k, called as SparseIndex.search calls "
        "it (ids and scores, like BM25S's retrieve and FAISS's search); the API rows below add "
        "SparseIndex.search's argument checks and padding, and SparseSearcher's Hit lists.", "",
        "## Search", "",
    ]
    lines += table(*search_rows(record))
    lines += ["", "## Costs", "",
              "Indexing: doc-major bags to a written, fsynced index (encoding excluded) through "
              "the package's postings_from_bags, in_memory and SparseIndex.write, as bag "
              "entries per second; "
              "BM25S indexes the same bags. Postings: those stored (uint8 impacts drop entries "
              "that round to level 0). Bytes: postings files + doc ids (sparse), bm25s's saved "
              "folder, FAISS's index file + doc ids. End-to-end (e2e): one query, one thread, "
              "text in, top-10 out, model forward pass included where the mode needs it. Peak "
              "RSS is the process's high-water mark within each phase (reset before it; it "
              "includes the loaded model, ~0.5-1 GB, and memory-mapped pages the phase "
              "touched).", ""]
    lines += table(*cost_rows(record))
    lines += ["", "## Ratios (tokretrieve / peer)", ""]
    lines += table(*ratio_rows(record))
    lines += ["", "## Targets", ""]
    lines += table(*target_rows(record))
    lines += ["", "## Public API and query encoding (1 thread, p50 / p99 ms)", ""]
    header = ["size", "SparseIndex.search tokens k=10", "SparseIndex.search model k=10",
              "SparseSearcher.search tokens", "TokenQueryEncoder.encode",
              "Encoder.embed (1 thread)", "Encoder.embed (all threads)"]
    rows = []
    for r in record["sizes"]:
        def pair(*path: str, r: dict = r) -> str:
            data = _get(r, *path) or {}
            return f"{number(data.get('p50_ms'), 3)} / {number(data.get('p99_ms'), 3)}"
        rows.append([r["size"], pair("tokretrieve", "tokens", "api_search_k10"),
                     pair("tokretrieve", "model", "api_search_k10"),
                     pair("end_to_end", "api_tokens"), pair("end_to_end", "tokenize_1thread"),
                     pair("end_to_end", "embed_1thread"), pair("end_to_end", "embed_all_threads")])
    lines += table(header, rows)
    probe = record.get("threading_probe")
    if probe:
        lines += ["", "## Threading setup (fresh process each; real index, tokens mode, k=10, "
                  "all threads)", ""]
        rows = [[name, str(p.get("threading_layer", "-")), number(p.get("batch_ms_median"), 3),
                 number(p.get("batch_ms_best"), 3), number(p.get("qps"), 0),
                 str(p.get("load_avg", "-"))]
                if "error" not in p else [name, "error", p["error"][:80], "", "", ""]
                for name, p in probe.items()]
        lines += table(["setup", "numba layer", "batch ms median", "best", "QPS", "load avg"],
                        rows)
        lines += ["", f"This run's own setting: {m['env']}."]
    lines += ["", "## Where the time goes", ""]
    for r in record["sizes"]:
        lines += [*kernel_lines(r), ""]
    lines += ["## Notes", "",
              "- Synthetic index folders hold an empty (0 x hidden) embeddings.npy: the format "
              "requires the file, and the dense side is measured as FAISS. A real tokretrieve "
              "folder also stores the float32 embeddings (docs x hidden x 4 bytes).",
              "- FAISS uses the real minilm document embeddings on Cranfield and random unit "
              "vectors of width 384 on synthetic sizes; a flat index's speed depends only on "
              "count and width.",
              "- BM25S indexes each bag's tokens as terms (tf 1) and gets the tokens-mode query "
              "token ids, repeated by count; its QPS uses its best backend per size.", ""]
    return "\n".join(lines)
