"""report.md of the encoding benchmark, from its results record alone (so a saved results.json
can be re-rendered without re-running anything).
"""

from __future__ import annotations

from typing import Any

from bench.toolkit.tables import number, percent, table


def main_table(record: dict[str, Any]) -> list[str]:
    """One row per model x setting: docs/s, tokens/s, forward GFLOP/s against torch.mm, padding
    waste, the bag step, and the CPU share the run got."""
    header = ["model", "set", "dtype", "threads", "batch", "batches", "docs", "docs/s",
              "rounds docs/s", "vs default",
              "tokens/s", "GFLOP/doc", "forward share", "forward GFLOP/s", "mm GFLOP/s",
              "of mm", "padding waste", "bag docs/s", "bag share", "CPU share", "load 1m"]
    rows = []
    for model, data in record["models"].items():
        for r in data["rows"]:
            bags = data["bags"].get(r["dtype"]) if r["set"] == "headline" else None
            bag_share = (r["docs_per_s"] / (r["docs_per_s"] + bags["docs_per_s"])
                         if bags else None)
            base = _sweep_default(data["rows"], r) if r["set"] == "sweep" else None
            rows.append([model, r["set"], r["dtype"], str(r["threads"]), str(r["batch_size"]),
                         batches_label(r), str(r["docs"]), number(r["docs_per_s"], 1),
                         " / ".join(number(x, 1) for x in r.get("rounds_docs_per_s", [])),
                         f"{r['docs_per_s'] / base['docs_per_s']:.2f}x" if base else "",
                         number(r["tokens_per_s"], 0),
                         number(r["gflop_per_doc"], 2), percent(r["forward_share"], 0),
                         number(r["forward_gflops"], 0), number(r["matmul_gflops"], 0),
                         percent(r["fraction_of_matmul"], 0), percent(r["padding_waste"]),
                         number(bags["docs_per_s"], 0) if bags else "",
                         percent(bag_share) if bags else "", number(r["cpu_share"], 2),
                         number((r.get("load_avg_after") or [None])[0], 2)])
    return table(header, rows)


def breakdown_table(record: dict[str, Any]) -> list[str]:
    """Per model, dtype and op class: its share of the ops' time and of the FLOPs, its GFLOP/s
    and their fraction of the one-thread torch.mm (measure.time_breakdown)."""
    header = ["model", "dtype", "profiled docs/s", "ops / embed time", "op class",
              "share of time", "share of FLOPs", "GFLOP/s", "of 1-thread mm", "heaviest ops"]
    rows = []
    for model, data in record["models"].items():
        for dtype, b in data.get("breakdown", {}).items():
            for name, group in b["classes"].items():
                heaviest = sorted(group["ops"].items(), key=lambda item: -item[1])[:3]
                rows.append([model, dtype, number(b["docs_per_s"], 1),
                             percent(b["ops_s"] / b["embed_s"], 0), name,
                             percent(group["time_share"], 0), percent(group["flop_share"], 1),
                             number(group["gflops"], 0),
                             percent(group["fraction_of_matmul"], 0),
                             ", ".join(f"{op.removeprefix('aten::')} "
                                       f"{seconds / b['ops_s']:.0%}"
                                       for op, seconds in heaviest)])
    return table(header, rows)


def batches_label(row: dict[str, Any]) -> str:
    """How the row's batches ran (results from before side-by-side batches ran one at a time)."""
    if row["threads"] == 1 or not row.get("side_by_side", False):
        return "one at a time"
    return "side by side"


def _sweep_default(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The sweep row `row` is compared with: same dtype, the headline's threads, batch and
    way of running batches."""
    headline = next((r for r in rows if r["set"] == "headline" and r["dtype"] == row["dtype"]),
                    None)
    if headline is None:
        return None
    return next((r for r in rows if r["set"] == "sweep" and r["dtype"] == row["dtype"]
                 and r["threads"] == headline["threads"]
                 and r["batch_size"] == headline["batch_size"]
                 and r.get("side_by_side") == headline.get("side_by_side")), None)


def render_report(record: dict[str, Any]) -> str:
    """report.md, from the results record alone."""
    s = record["settings"]
    m = record["machine"]
    git = m["git"]
    commit = ("unknown commit" if git["commit"] is None else
              f"commit {git['commit'][:12]}" + (" with uncommitted changes" if git["dirty"]
                                                else ""))
    lines = ["# Document encoding throughput", "",
             f"`{record['command']}` ({commit}), started {record['started']}, on "
             f"{m['cpu']} ({m['cpu_count']} CPUs, torch {m['packages'].get('torch')}; native "
             f"bf16: {number(record['bf16']['native'])}). "
             f"Headline rows: {s['docs']} documents evenly spaced over {s['corpus']} "
             f"({s['corpus_docs']} docs), max length {s['max_length']}; sweep rows: "
             f"{s['sweep_docs']} of those. Load average start/end: "
             f"{m['load_avg']} / {record.get('load_avg_end')}.", "",
             "docs/s and tokens/s are through `Encoder.embed` (tokenizing, padding, forward, "
             "pooling); *forward share* is the part of that time spent inside the backbone's "
             "forward; *forward GFLOP/s* is the FlopCounterMode count of the batches the "
             "encoder formed over that forward time; *of mm* divides it by the best GFLOP/s of a "
             f"square torch.mm ({', '.join(map(str, s['matmul_sizes']))}) at the same threads "
             "and dtype; *padding waste* is the padded share of the positions the forward "
             "computed; *bag docs/s* is `Encoder.bags` (projection + top-k, "
             f"bags of {s['bag_size']}) on the headline embeddings, and *bag share* its part of "
             "encode + "
             "bag time; *vs default* is a sweep row's docs/s over the sweep row at the "
             "headline's threads, batch size and batches (same documents); *batches*: run "
             "side by side, one thread each, or one at a time on all threads "
             "(tokretrieve.encoding.parallel); *rounds docs/s*: every round of a sweep row, "
             "the row being its median; *CPU share* is CPU seconds "
             "/ wall seconds / threads (below ~0.9: another process had the cores). "
             f"OMP_WAIT_POLICY: {m['env'].get('OMP_WAIT_POLICY')}.", ""]
    device = record.get("device", {"type": "cpu"})
    if device["type"] != "cpu":
        lines += [f"Models and torch.mm ran on {s['device']}: {device['name']} (CUDA "
                  f"{device['cuda']}, bf16: {number(device['bf16'])}); the CPU above only fed "
                  "it.", ""]
    if s.get("skeletons"):
        lines += [f"Weights: random, each model rebuilt from its skeleton in {s['skeletons']} "
                  "(bench/encoding/skeleton.py): speed figures are the real architecture's, "
                  "the embedding checks below are not the real model's.", ""]
    lines += main_table(record)
    if any(data.get("breakdown") for data in record["models"].values()):
        lines += ["", "## Where the time goes: one thread, batches one at a time, by op", "",
                  "torch.profiler's self CPU time of every op over one `Encoder.embed` of the "
                  "sweep subset, summed by class: the matrix products (mm, addmm, bmm, "
                  "baddbmm: what the reference torch.mm measures), attention (the SDPA "
                  "kernels), and every other op (norms, activations, copies, padding and "
                  "pooling). *ops / embed time*: the ops' self time over the wall time (the "
                  "rest is Python and tokenizing); *GFLOP/s*: the class's FLOPs over its "
                  "time; *profiled docs/s*: with the profiler's own cost.", ""]
        lines += breakdown_table(record)
    lines += ["", "## torch.mm reference (best of start and end)", ""]
    lines += table(["dtype", "threads", "GFLOP/s", "start", "end"], [
        [m["dtype"], str(m["threads"]), number(m["gflops"], 0), number(m["start"]["gflops"], 0),
         number(m["end"]["gflops"], 0)] for m in record.get("matmul", {}).values()])
    lines += ["", f"## Padding waste by batch size, whole corpus ({s['corpus_docs']} docs; "
              "predicted from token counts)", ""]
    waste_rows = []
    for model, data in record["models"].items():
        for w in data.get("padding_waste_by_batch_size", []):
            waste_rows.append([model, str(w["batch_size"]), percent(w["sorted"]["waste"]),
                               percent(w["unsorted"]["waste"])])
    lines += table(["model", "batch", "length-sorted (the encoder)", "corpus order"],
                    waste_rows)
    lines += ["", "## Checks", ""]
    for model, data in record["models"].items():
        check = data.get("flop_check")
        if check:
            lines.append(f"- {model}: FLOPs of a real {check['rows']}-row batch of width "
                         f"{check['width']} counted directly / rows x one-row count = "
                         f"{check['ratio']:.6f}.")
        replica = all(r["replica_matches"] for r in data["rows"])
        lines.append(f"- {model}: replicated length-sorted batching matches the observed "
                     f"batches in every row: {number(replica)}.")
        cosine = data.get("bf16_vs_fp32_cosine")
        if cosine:
            lines.append(f"- {model}: bf16 vs fp32 document embeddings, cosine mean "
                         f"{cosine['mean']:.5f}, min {cosine['min']:.5f}.")
    return "\n".join(lines) + "\n"
