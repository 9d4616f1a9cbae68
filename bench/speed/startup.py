"""`python -m bench.speed.startup`: what one `tokretrieve` command costs end to end, from a
fresh process to its exit, with the query's text in and its hits out.

A search itself takes a millisecond; a command spends most of its time starting: importing
its libraries, loading the tokenizer (tokenized queries) or the model (model-encoded ones),
loading numba's cached kernels. Each command runs `--repeats` times in a fresh interpreter, on
the code of `--code` (a checkout: a run on an older commit measures the "before"); each run
reports its wall time, its peak resident memory and which of torch and transformers it
imported. The kernels are compiled into numba's cache before the first timed run (the
install-time warm-up does the same), so no run pays for compiling them.

    python -m bench.speed.startup --index index/cranfield --output bench/results/speed/startup
"""

from __future__ import annotations

import bench.toolkit.environment  # noqa: F401  (first: offline, sleeping OpenMP waits)

# isort: split
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.toolkit.cli import positive_int
from bench.toolkit.machine import git_state
from bench.toolkit.results import command_line, finish_record, new_record, run_folder, write_record
from bench.toolkit.tables import number, table

QUERY = "what similarity laws must be obeyed when constructing aeroelastic models"
MODEL_LIBRARIES = ("torch", "transformers")

# One command in a fresh interpreter: its argv in; out, on stderr's last line (after whatever
# the command printed), the model libraries it imported and the tokretrieve it ran.
_COMMAND = """
import atexit, json, sys
import tokretrieve
atexit.register(lambda: print(json.dumps({{
    "imported": sorted(set({libraries!r}) & set(sys.modules)),
    "module": tokretrieve.__file__}}), file=sys.stderr))
from tokretrieve.cli import main
sys.exit(main({argv!r}))
"""


def commands(index: str) -> dict[str, list[str]]:
    """The commands timed, by name."""
    search = ["search", "--index", index, "--hits", "10"]
    return {"search --mode tokens": [*search, "--mode", "tokens", QUERY],
            "search --mode model": [*search, "--mode", "model", QUERY],
            "info": ["info", "--index", index]}


def run_once(argv: Sequence[str], code: Path, log: Path) -> dict:
    """One fresh interpreter running `argv` on the tokretrieve of `code`: wall seconds, peak
    resident memory (MiB) and the model libraries it imported."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = _COMMAND.format(libraries=MODEL_LIBRARIES, argv=list(argv))
    with log.open("w") as err:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=code,
                                   stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    lines = log.read_text().strip().splitlines()
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        raise SystemExit(f"{' '.join(argv)} failed:\n{log.read_text()[-3000:]}")
    facts = json.loads(lines[-1])
    if not Path(facts["module"]).is_relative_to(code):
        raise SystemExit(f"the run imported {facts['module']}, not the tokretrieve of {code}")
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024,
            "imported": facts["imported"]}


def measure(index: str, codes: Sequence[Path], repeats: int, scratch: Path,
            on_round: Callable[[list[dict]], None]) -> list[dict]:
    """Every command on every checkout, `repeats` rounds; each round runs each command once
    on each checkout in turn, so a change in the machine's load falls on all of them alike.
    One row per (checkout, command), its runs in round order; `on_round` gets the rows after
    each round."""
    rows = [{"command": name, "argv": argv, "code": c, "runs": []}
            for c in range(len(codes)) for name, argv in commands(index).items()]
    for round_ in range(repeats):
        for row in rows:
            row["runs"].append(run_once(row["argv"], codes[row["code"]],
                                        scratch / f"run-{round_}.log"))
        for row in rows:
            runs = row["runs"]
            row.update(median_s=statistics.median(r["seconds"] for r in runs),
                       peak_mib=max(r["peak_mib"] for r in runs),
                       imported=sorted({lib for r in runs for lib in r["imported"]}))
        on_round(rows)
    return rows


def summary_line(record: dict, row: dict) -> str:
    imported = ", ".join(row["imported"]) or "neither torch nor transformers"
    return (f"{_commit(record['codes'][row['code']])}: {row['command']}: {row['median_s']:.2f} s "
            f"median, {row['peak_mib']:.0f} MiB peak, imports {imported}")


def _commit(code: dict) -> str:
    return f"{(code['commit'] or 'no commit')[:12]}{' with changes' if code['dirty'] else ''}"


def render(record: dict) -> str:
    names = list(commands(""))  # the commands in the order they are listed
    rows = [[r["command"], _commit(record["codes"][r["code"]]), number(r["median_s"], 2),
             f"{number(min(x['seconds'] for x in r['runs']), 2)}-"
             f"{number(max(x['seconds'] for x in r['runs']), 2)}",
             number(r["peak_mib"], 0), ", ".join(r["imported"]) or "none"]
            for r in sorted(record["rows"], key=lambda r: (names.index(r["command"]), r["code"]))]
    checkouts = "; ".join(f"{c['path']} at {_commit(c)}" for c in record["codes"])
    lines = [
        "# One command, end to end", "",
        f"`{record['command']}` (bench at commit {record['machine']['git']['commit'][:12]}), "
        f"started {record['started']}, on {record['machine']['cpu']} "
        f"({record['machine']['cpu_count']} CPUs), load average "
        f"{(record['machine']['load_avg'] or ['?'])[0]} at the start. The tokretrieve timed: "
        f"{checkouts}. Index: {record['index']}. Each command ran {record['repeats']} times on "
        "each checkout, each time in a fresh interpreter timed from its start to its exit, the "
        "checkouts taking turns within each round; the query: "
        f"\"{QUERY}\".", "",
        *table(["command", "tokretrieve at", "median (s)", "range (s)", "peak memory (MiB)",
                "model libraries imported"], rows), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.startup",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="an index with its model (e.g. the "
                        "`make demo` one, index/cranfield)")
    parser.add_argument("--code", type=Path, action="append",
                        help="a checkout whose tokretrieve runs; repeat it to compare "
                             "checkouts side by side (default: this one)")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--output", type=Path, default=Path("bench/results/speed/startup"))
    args = parser.parse_args(argv)
    index = str(Path(args.index).resolve())
    if not (Path(index) / "manifest.json").is_file():
        raise SystemExit(f"{args.index} is not an index folder (no manifest.json): build one "
                         "with `make demo` or `tokretrieve index`")
    codes = [code.resolve() for code in args.code or [Path.cwd()]]
    for code in codes:
        if not (code / "tokretrieve" / "cli.py").is_file():
            raise SystemExit(f"{code} holds no tokretrieve checkout (tokretrieve/cli.py)")
    record = new_record(command_line("python -m bench.speed.startup", argv), index=index,
                        repeats=args.repeats, rows=[],
                        codes=[{"path": str(code), **git_state(code)} for code in codes])
    out_dir = run_folder(args.output, record)
    for code in codes:  # each checkout's kernels into numba's cache, as its install would
        subprocess.run([sys.executable, "-m", "tokretrieve.index.warmup"], check=True,
                       env={**os.environ, "PYTHONPATH": str(code)}, cwd=code)
    with tempfile.TemporaryDirectory(prefix="tokretrieve-startup-") as scratch:
        record["rows"] = measure(
            index, codes, args.repeats, Path(scratch),
            lambda rows: write_record(out_dir, {**record, "rows": rows}, render, partial=True))
    finish_record(out_dir, record, render,
                  lambda r: "\n".join(summary_line(r, row) for row in r["rows"]))


if __name__ == "__main__":
    main()
