"""report.md and the printed summary of the interop benchmark, from results.json's record alone
(a saved results.json re-renders without re-running anything)."""

from __future__ import annotations

from typing import Any

from bench.toolkit.tables import MISSING, megabytes, number, table

ROWS = (("tokretrieve", "tokretrieve (the index itself)"),
        ("jsonvector", "export: Anserini JsonVectorCollection"),
        ("seismic", "export: Seismic JSONL"),
        ("lucene", "Lucene impact index (Pyserini 1.6.0)"),
        ("milvus", "Milvus Lite collection"))


def _agreement(run: dict[str, Any]) -> str:
    agreement = run.get("agreement")
    if not agreement:
        return MISSING
    text = (f"{agreement['identical']} identical, {agreement['tie_order']} tie order, "
            f"{agreement['mismatched']} mismatched of {agreement['queries']}")
    if agreement["tie_order"]:
        text += f" ({agreement['tied_positions']} tied positions)"
    return text


def mode_rows(runs: dict[str, Any]) -> list[list[str]]:
    base = runs.get("tokretrieve", {}).get("query_ms")
    rows = []
    for key, label in ROWS:
        run = runs.get(key)
        if run is None:
            continue
        build = run.get("build_s", run.get("load_s", run.get("seconds")))
        query = run.get("query_ms")
        ratio = f"{query / base:.1f}x" if query and base else MISSING
        rows.append([label, number(build, 2) if build is not None else MISSING,
                     megabytes(run.get("bytes")), number(query, 3) if query else MISSING,
                     ratio, _agreement(run)])
    return rows


def render_report(record: dict[str, Any]) -> str:
    collection, index = record["collection"], record.get("index", {})
    lines = [f"# Interop: {collection['name']}, {record['model']['model']}", "",
             f"Command: `{record['command']}`; started {record['started']}.", "",
             f"Index: {index.get('documents')} documents, {index.get('postings')} postings, "
             f"bag size {index.get('bag_size')}, {megabytes(index.get('bytes'))} MB. Top-"
             f"{record['settings']['hits']} of every query compared with tokretrieve's "
             "(tokretrieve.interop.agreement). Query time: one batch call over all queries "
             "on one thread, per query.", ""]
    for mode, runs in record.get("modes", {}).items():
        lines += [f"## {mode} queries", ""]
        lines += table(["route", "build / load / export s", "MB", "ms per query",
                        "vs tokretrieve", "top-k agreement"], mode_rows(runs))
        lines.append("")
    scale = record.get("scale")
    if scale:
        lines += ["## Export at scale (synthetic bags following the index's token distribution)",
                  "", "Bounded memory: the anonymous memory the export added (its highest sample "
                  "during the export less the amount just before; memory-mapped postings pages "
                  "excluded) should not grow with the size.", ""]
        lines += table(["documents", "postings", "export s", "docs/s", "export MB",
                        "index MB", "export's anonymous RSS MB"],
                       [[f"{r['documents']:,}", f"{r['postings']:,}", number(r["seconds"], 1),
                         number(r["docs_per_s"], 0), megabytes(r["export_bytes"]),
                         megabytes(r["index_bytes"]), number(r["export_anon_rss_mb"], 0)]
                        for r in scale])
        lines.append("")
    sharded = record.get("sharded")
    if sharded:
        same = "identical" if not sharded["differences"] else (
            "DIFFERENT: " + ", ".join(sharded["differences"]))
        lines += ["## Sharded encoding (Dask LocalCluster, 2 workers on 127.0.0.1)", "",
                  f"Single-process build {sharded['single_s']:.1f} s, sharded build "
                  f"({sharded['shards']} shards) {sharded['sharded_s']:.1f} s (cluster "
                  f"start included); the two indexes are {same}.", ""]
    return "\n".join(lines)


def summary_lines(record: dict[str, Any]) -> list[str]:
    return render_report(record).splitlines()[4:]
