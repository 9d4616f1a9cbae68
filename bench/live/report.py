"""report.md and the printed summary of the live-index benchmark, from results.json's record
alone (a saved results.json re-renders without re-running anything)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.toolkit.tables import MISSING, megabytes, number, percent, table

MODES = ("tokens", "model")
# Commit phases as the tables show them: (record key, column).
ADD_PHASES = (("postings", "postings"), ("write", "write arrays"), ("fsync", "fsync"),
              ("checksums", "sha256 new files"), ("manifest", "manifest"),
              ("load", "loads"), ("verify", "of which sha256 verify"), ("drift", "drift"))
DELETE_PHASES = (("fsync", "fsync"), ("checksums", "sha256 new files"),
                 ("manifest", "manifest"), ("load", "loads"),
                 ("verify", "of which sha256 verify"))
COMPACT_PHASES = (("to_bags", "postings to bags"), ("postings", "postings"),
                  ("write", "write arrays"), ("fsync", "fsync"),
                  ("checksums", "sha256 new files"), ("manifest", "manifest"),
                  ("load", "loads"), ("verify", "of which sha256 verify"))


def _ms(seconds: Any, digits: int = 1) -> str:
    return MISSING if seconds is None else number(seconds * 1000, digits)


def _get(record: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def _ratio(value: Any, reference: Any) -> str:
    if value is None or not reference:
        return MISSING
    return f"{value / reference:.2f}x"


def _phase_cells(median: dict[str, Any], phases: Sequence[tuple[str, str]]) -> list[str]:
    return [_ms(median["phases_s"].get(key, 0.0), 2) for key, _ in phases] + [
        _ms(median["other_s"], 2)]


# ---------------------------------------------------------------------------------- tables
def add_table(record: dict[str, Any]) -> list[str]:
    header = ["docs added", "into (docs)", "commits", "docs/s", "commit ms (median)",
              "fastest ms", *[f"{name} ms" for _, name in ADD_PHASES], "other ms",
              "postings-only docs/s"]
    rows = []
    for r in record.get("adds", []):
        m = r["median"]
        rows.append([f"{r['batch']:,}", f"{r['base_docs']:,}", str(m["n"]),
                     number(r["docs_per_s"], 0), _ms(m["total_s"]), _ms(m["min_s"]),
                     *_phase_cells(m, ADD_PHASES), number(r["postings_docs_per_s"], 0)])
    return table(header, rows)


def delete_table(record: dict[str, Any]) -> list[str]:
    header = ["ids deleted", "from (docs)", "commits", "s per commit (median)", "fastest s",
              *[f"{name} ms" for _, name in DELETE_PHASES], "other ms"]
    rows = []
    for r in record.get("deletes", []):
        m = r["median"]
        rows.append([f"{r['ids']:,}", f"{r['docs']:,}", str(m["n"]), number(m["total_s"], 4),
                     number(m["min_s"], 4), *_phase_cells(m, DELETE_PHASES)])
    return table(header, rows)


def _p(state: dict[str, Any], mode: str, kind: str, stat: str) -> Any:
    return _get(state, "latency", mode, kind, f"{stat}_ms")


def _reference(series: dict[str, Any]) -> dict[str, Any] | None:
    """The one-segment state holding the same bags as the series' added state: its
    compaction without deletions."""
    return next((s for s in series["states"]
                 if s["state"] == "compacted" and s["deleted_fraction"] == 0), None)


def _state_label(state: dict[str, Any]) -> str:
    if state["state"] == "added":
        return "as added"
    if state["state"] == "deleted":
        return f"{percent(state['deleted_fraction'], 0)} deleted"
    return ("compacted" if state["deleted_fraction"] == 0 else
            f"{percent(state['deleted_fraction'], 0)} deleted, compacted")


def latency_table(record: dict[str, Any], segments: Sequence[int] | None = None) -> list[str]:
    """Every state of every segment count (or of `segments`): p50 (p99) ms of the public
    search and of scoring, both modes, and each p50 over the same-bags one-segment index's."""
    header = ["segments", "state", "live docs", "index MB",
              *[f"{mode} search p50 (p99) ms" for mode in MODES],
              *[f"{mode} scoring p50 (p99) ms" for mode in MODES],
              "p50 vs one segment: search tokens / model", "scoring tokens / model"]
    rows = []
    for series in record.get("search", []):
        if segments is not None and series["segments"] not in segments:
            continue
        reference = _reference(series)
        for state in series["states"]:
            cells = []
            for kind in ("search", "scoring"):
                for mode in MODES:
                    cells.append(f"{number(_p(state, mode, kind, 'p50'), 3)} "
                                 f"({number(_p(state, mode, kind, 'p99'), 3)})")
            ratios = []
            for kind in ("search", "scoring"):
                ratios.append(" / ".join(
                    _ratio(_p(state, mode, kind, "p50"), _p(reference, mode, kind, "p50"))
                    for mode in MODES))
            rows.append([str(state["segments"] if state["state"] != "compacted" else
                             f"{series['segments']} → 1"), _state_label(state),
                         f"{state['live_docs']:,}", megabytes(state["bytes"]), *cells,
                         *ratios])
    return table(header, rows)


def cost_summary(record: dict[str, Any]) -> list[str]:
    """Per segment count, p50 of the added and most-deleted states over the same-bags single
    segment (search / scoring, both modes): what the segments and the deletions cost."""
    header = ["segments", "search tokens", "search model", "scoring tokens", "scoring model",
              "deleted", "search tokens", "search model", "scoring tokens", "scoring model"]
    rows = []
    for series in record.get("search", []):
        reference = _reference(series)
        added = next(s for s in series["states"] if s["state"] == "added")
        deleted = [s for s in series["states"] if s["state"] == "deleted"]
        def ratios(state: dict[str, Any], reference: Any = reference) -> list[str]:
            return [_ratio(_p(state, mode, kind, "p50"), _p(reference, mode, kind, "p50"))
                    for kind in ("search", "scoring") for mode in MODES]

        cells = [str(series["segments"]), *ratios(added)]
        if deleted:
            cells += [percent(deleted[-1]["deleted_fraction"], 0), *ratios(deleted[-1])]
        else:
            cells += [MISSING] * 5
        rows.append(cells)
    return table(header, rows)


def compaction_table(record: dict[str, Any]) -> list[str]:
    header = ["segments", "deleted", "positions → live docs", "commits",
              "s per compaction (median)", "fastest s",
              *[f"{name} ms" for _, name in COMPACT_PHASES], "other ms"]
    rows = []
    for series in record.get("search", []):
        compaction = series.get("compaction")
        if not compaction or not compaction.get("median"):
            continue
        m = compaction["median"]
        first = compaction["commits"][0]
        rows.append([str(series["segments"]), percent(compaction["deleted_fraction"], 0),
                     f"{first['positions_before']:,} → {first['live_docs']:,}", str(m["n"]),
                     number(m["total_s"], 3), number(m["min_s"], 3),
                     *_phase_cells(m, COMPACT_PHASES)])
    return table(header, rows)


def exactness_lines(record: dict[str, Any]) -> list[str]:
    checks = [(series["segments"], e) for series in record.get("search", [])
              for e in series.get("exact", [])]
    if not checks:
        return []
    failed = [f"{s} segment(s), {percent(e['deleted_fraction'], 0)} deleted" for s, e in checks
              if not e["same"]]
    if failed:
        return [f"Compaction changed some top-10 lists: {', '.join(failed)} (see results.json "
                "`search[].exact`)."]
    return [f"Every compaction above ({len(checks)}) left every query's top 10 (ids and scores, "
            "both modes) exactly as before it."]


def quality_table(record: dict[str, Any]) -> list[str]:
    header = ["index", "built on", "added", "λ", "PC1 vs full build's (abs cos)",
              "drift pc1_cosine", "drift norm_ratio", "saturated weights",
              "nDCG@10 tokens", "nDCG@10 model", "vs full: tokens / model",
              "compaction keeps top-10"]
    rows = []
    quality = record.get("quality", [])
    full = quality[0]["metrics"] if quality else None
    for r in quality:
        drift = r.get("drift") or {}
        metrics = r["metrics"]
        versus = " / ".join(
            f"{metrics[mode]['nDCG@10'] - full[mode]['nDCG@10']:+.3f}" for mode in MODES)
        keeps = r.get("compaction_keeps_top10")
        kept = MISSING if keeps is None else (
            "yes" if keeps["same"] else "no: " + ", ".join(
                f"{mode} {keeps[mode]['differing_queries']} queries" for mode in MODES
                if not keeps[mode]["same"]))
        rows.append([r["row"], f"{r['first_docs']:,}", f"{r['added_docs']:,}",
                     number(r["pc1_strength"], 4), number(r["pc1_cosine_to_full"], 4),
                     number(drift.get("pc1_cosine"), 4), number(drift.get("norm_ratio"), 4),
                     MISSING if not drift else f"{drift.get('saturated_weights', 0):,}",
                     number(metrics["tokens"]["nDCG@10"], 3),
                     number(metrics["model"]["nDCG@10"], 3),
                     MISSING if r is quality[0] else versus, kept])
    return table(header, rows)


# ---------------------------------------------------------------------------------- report
def _commit_line(record: dict[str, Any]) -> str:
    git = record["machine"]["git"]
    if git["commit"] is None:
        return "unknown commit"
    dirty = (" with uncommitted changes to " + ", ".join(git["changed"])
             if git["dirty"] else " (clean tree)")
    return f"commit {git['commit'][:12]}{dirty}"


def render_report(record: dict[str, Any]) -> str:
    """report.md, from the results record alone."""
    s = record["settings"]
    m = record["machine"]
    c = record["collection"]
    fs = record.get("scratch", {})
    lines = ["# Live index: add, delete, compact", "",
             f"`{record['command']}` ({_commit_line(record)}), started {record['started']}, "
             f"on {m['cpu']} ({m['cpu_count']} CPUs; OMP_WAIT_POLICY "
             f"{m['env'].get('OMP_WAIT_POLICY')}). Load average start / end: {m['load_avg']} / "
             f"{record.get('load_avg_end')}.", "",
             f"Collection {c['name']} ({c['documents']:,} documents, {c['queries']} judged "
             f"queries), model {record['model']['model']} (max length "
             f"{record['model']['max_length']}), the package's default bag recipe (bags of "
             f"{s['bag_size']}, {s['weighting']}). Embeddings from {record['embeddings']['path']}"
             f" ({'cached' if record['embeddings']['from_cache'] else 'encoded in this run'}); "
             "encoding is excluded from every figure. Indexes written under "
             f"{fs.get('path')} ({fs.get('type')} at {fs.get('mount')}). Every commit of a "
             f"repeated measurement starts from a fresh copy of the same index, after one "
             f"untimed warm-up; medians of {s['repeats']} commits.", ""]

    lines += ["## Adds", "",
              "One commit of the last N documents (bags and embeddings already computed by the "
              "index's own encoder) into a build of the others, as `add_documents` runs after "
              "encoding. Phases: *postings* builds the new segment's postings from the bags; "
              "*write arrays* saves its files; *fsync* and *sha256 new files* make them "
              "durable and checksummed; *manifest* is the durable manifest write; *loads* are "
              "the open inside `changing` and the reload after the commit, *of which sha256 "
              "verify* their check of every file (indexes up to 256 MiB); *drift* is "
              "`embedding_drift` and the saturated-weight count; *other* the rest (lock, id "
              "checks).", ""]
    lines += add_table(record)
    lines += ["", "## Deletes", "",
              "One `delete_documents` commit of N ids drawn at random from a one-segment build "
              "of every document (phases as above; a delete writes only the deleted set).", ""]
    lines += delete_table(record)
    lines += ["", "## Search latency as segments and deletions grow", "",
              f"One query per call on one thread, every judged query, k={s['k']}, over "
              f"{s['latency']['latency_min_samples']} samples or {s['latency']['latency_budget_s']}"
              " s per measurement. *search* is `SparseSearcher.search` (text in, hits with "
              "their matched tokens out; model-mode bags from the cached query embeddings); "
              "*scoring* is `SparseIndex.search` of the query's bag. N segments are one build "
              "of the first N-th of the documents and N - 1 add commits of the others; "
              "deletions are cumulative, the same documents for every N. *vs one segment* "
              "divides each p50 by that of the same index compacted without deletions (the "
              "same bags in one segment).", ""]
    lines += latency_table(record)
    lines += ["", *exactness_lines(record)]
    lines += ["", "p50 over the same bags in one segment (the segments' cost; with the most "
              "deletions, what carrying the deleted documents adds):", ""]
    lines += cost_summary(record)
    lines += ["", "## Compaction", "",
              "`compact_index` of each segment count's most-deleted state, on fresh copies.", ""]
    lines += compaction_table(record)
    lines += ["", "## Quality and drift: when a rebuild serves better", "",
              "nDCG@10 (ir_measures, judged queries, hits with the query's own id dropped, as "
              "in the quality benchmark) of one build of every document, and of a build of the "
              "first p % followed by one add commit of the rest (the PC1 direction and λ stay "
              "the first build's). Drift is what the add recorded: |cos| between the added "
              "documents' own PC1 and the index's, their mean norm over the indexed "
              "documents', and weights past the top quantization level. The last column checks "
              "that compacting the added index leaves every query's top 10 (ids and scores, "
              "both modes) unchanged.", ""]
    lines += quality_table(record)
    lines.append("")
    return "\n".join(lines)


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What the command prints at the end: the tables as markdown."""
    lines = [f"$ {record['command']}", ""]
    for title, rows in (("adds", add_table(record)), ("deletes", delete_table(record)),
                        ("search vs one segment", cost_summary(record)),
                        ("compaction", compaction_table(record)),
                        ("quality", quality_table(record))):
        lines += [f"{title}:", *rows, ""]
    return lines
