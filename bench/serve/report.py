"""report.md and the printed summary of the server load benchmark, from results.json's record
alone (a saved results.json re-renders without re-running anything)."""

from __future__ import annotations

from typing import Any

from bench.toolkit.tables import MISSING, number, percent, table


def _window(run: dict[str, Any]) -> str:
    return MISSING if run["mode"] == "tokens" else f"{run['window_s'] * 1000:g} ms"


def _share(seconds: float, run: dict[str, Any]) -> Any:
    cpu = run["cpu"]
    capacity = cpu["elapsed_s"] * (cpu["cores"] or 1)
    return seconds / capacity if capacity > 0 else None


def _batch(run: dict[str, Any], key: str) -> Any:
    return (run.get("batching") or {}).get(key)


def _p50_p99(summary: dict[str, Any], digits: int = 1) -> str:
    if not summary.get("n"):
        return MISSING
    return f"{number(summary['p50_ms'], digits)} ({number(summary['p99_ms'], digits)})"


def load_table(record: dict[str, Any]) -> list[str]:
    header = ["mode", "batch window", "clients", "queries/s", "p50 ms", "p99 ms", "mean ms",
              "answers", "errors", "mean batch", "queries sharing a call",
              "server CPU (of all cores)", "clients CPU"]
    rows = []
    for run in record.get("runs", []):
        load = run["load"]
        rows.append([run["mode"], _window(run), str(run["clients"]), number(load["qps"], 1),
                     number(load["p50_ms"], 1), number(load["p99_ms"], 1),
                     number(load["mean_ms"], 1), f"{load['answers']:,}",
                     str(run["error_count"]), number(_batch(run, "mean"), 2),
                     percent(_batch(run, "shared")),
                     percent(_share(run["cpu"]["server_s"], run), 0),
                     percent(_share(run["cpu"]["clients_s"], run), 0)])
    return table(header, rows)


def batching_table(record: dict[str, Any]) -> list[str]:
    """Model mode per client count: each window's figures, and the ratio to window 0."""
    runs = [r for r in record.get("runs", []) if r["mode"] == "model"]
    reference = {r["clients"]: r for r in runs if r["window_s"] == 0}
    header = ["clients", "batch window", "queries/s", "p50 ms", "p99 ms", "mean batch",
              "largest batch", "model calls", "queries/s vs window 0", "p50 vs window 0",
              "p99 vs window 0"]
    rows = []
    for run in sorted(runs, key=lambda r: (r["clients"], r["window_s"])):
        zero = reference.get(run["clients"])
        load = run["load"]

        def ratio(key: str, run=run, zero=zero) -> str:
            if zero is None or not zero["load"][key] or zero is run:
                return MISSING
            return f"{run['load'][key] / zero['load'][key]:.2f}x"

        rows.append([str(run["clients"]), _window(run), number(load["qps"], 1),
                     number(load["p50_ms"], 1), number(load["p99_ms"], 1),
                     number(_batch(run, "mean"), 2), str(_batch(run, "max") or MISSING),
                     f"{_batch(run, 'batches') or 0:,}", ratio("qps"), ratio("p50_ms"),
                     ratio("p99_ms")])
    return table(header, rows)


def consistency_table(record: dict[str, Any]) -> list[str]:
    header = ["mode", "batch window", "clients", "commits (adds / deletes)",
              "add ms p50 (p99)", "delete ms p50 (p99)", "generations",
              "answers checked", "hits not live in their generation",
              "answers older than an acknowledged change", "probes (wrong)",
              "hits without their text", "final state = every acknowledged change"]
    rows = []
    for run in record.get("runs", []):
        writer, check = run["writer"], run["consistency"]
        answers, probes = check["answers"], check["probes"]
        rows.append([run["mode"], _window(run), str(run["clients"]),
                     f"{writer['adds'] + writer['deletes']} ({writer['adds']} / "
                     f"{writer['deletes']})", _p50_p99(writer["add_ms"]),
                     _p50_p99(writer["delete_ms"]), str(check["generations"]),
                     f"{answers['answers']:,}",
                     str(answers["foreign_hits"] + answers["unknown_generation"]),
                     str(answers["stale"]), f"{probes['probes']} ({probes['wrong']})",
                     f"{answers['texts_missing']} of {answers['hits']:,}",
                     "yes" if check["final"]["ok"] and not check["ledger_problems"]
                     else "NO"])
    return table(header, rows)


def problems(record: dict[str, Any]) -> list[str]:
    """Every error and every consistency problem, by setting (or one line saying none)."""
    lines = []
    for run in record.get("runs", []):
        check = run["consistency"]
        found = [f"error {kind}: {count}" for kind, count in sorted(run["errors"].items())]
        found += [f"writer {kind}: {count}" for kind, count in
                  sorted(run["writer"]["errors"].items())]
        found += check["ledger_problems"]
        found += check["answers"]["examples"] + check["probes"]["examples"]
        found += [f"look-up {wrong}" for wrong in check["final"]["lookups_wrong"]]
        if check["answers"]["texts_wrong"]:
            found.append(f"{check['answers']['texts_wrong']} hits showed another text")
        if run["hung_threads"]:
            found.append(f"{run['hung_threads']} client threads did not stop")
        if found:
            label = (f"{run['mode']}, window {_window(run)}, {run['clients']} clients"
                     if run["mode"] == "model" else f"tokens, {run['clients']} clients")
            lines.append(f"- {label}: " + "; ".join(found))
    return lines or ["- none: no error, and every answer was its generation's."]


def render_report(record: dict[str, Any]) -> str:
    settings = record["settings"]
    machine = record["machine"]
    git = machine.get("git") or {}
    collection = record["collection"]
    index = record.get("index", {})
    first = (record.get("runs") or [{}])[0]
    threads = first.get("server_threads", {})
    lines = [
        "# Server under load",
        "",
        f"`{record['command']}`, started {record['started']}, finished "
        f"{record.get('finished', MISSING)}; commit {str(git.get('commit'))[:7]}"
        f"{' (tree dirty)' if git.get('dirty') else ''}; {machine['cpu']}, "
        f"{machine['cpu_count']} cores; load average {machine['load_avg']} at the start, "
        f"{record.get('load_avg_end', MISSING)} at the end.",
        "",
        f"{collection['name']}: {index.get('documents', collection['documents']):,} documents "
        f"(bags of {index.get('bag_size', MISSING)}, {index.get('weighting', MISSING)}), the "
        f"{collection['queries']} judged queries sent in turn, k = {settings['k']}, "
        f"matched tokens listed (the API's default); model {record['model']['model']}. Each "
        f"setting: a fresh server process over a fresh copy of the index, an untimed warm-up, "
        f"then {settings['seconds']:g} s of closed-loop clients (each sends its next query "
        f"when its answer is in) while a writer commits {settings['write_rate']:g} changes/s "
        f"(adds and deletes in turn) through the API. Server threads: "
        + (", ".join(f"{k} {v}" for k, v in threads.items()) or MISSING) + ".",
        "",
        "## Throughput and latency",
        "",
        "Latency is a client's, from send to parsed answer; queries/s counts answers completed "
        "within the timed seconds. CPU is each process's user + system time over the "
        "elapsed time of all cores: the clients run on the same cores as the server.",
        "",
        *load_table(record),
        "",
        "## What micro-batching buys (model mode)",
        "",
        "Window 0 arms no timer: a query waits for no other client (a batch then holds only "
        "the queries that reached the server in the same turn of its event loop).",
        "",
        *batching_table(record),
        "",
        "## Writes and consistency",
        "",
        "Every answer is checked against the generation it names, from the writer's "
        "acknowledgements (bench/serve/load.py): its hits must be live there, and it must not "
        "be older than a change acknowledged before it was sent. After each commit the "
        "writer probes the changed document with a tokens query for its rarest stored token "
        "(every match returned), which must find it exactly when it is live in the answer's "
        "generation. The final state is /info and a look-up of every changed id.",
        "",
        *consistency_table(record),
        "",
        "## Errors and problems",
        "",
        *problems(record),
        "",
    ]
    return "\n".join(lines)


def summary_lines(record: dict[str, Any]) -> list[str]:
    return [*load_table(record), "", *batching_table(record), "", *consistency_table(record)]
