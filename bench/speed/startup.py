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
from collections.abc import Sequence
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


def measure(name: str, argv: Sequence[str], code: Path, repeats: int, scratch: Path) -> dict:
    runs = [run_once(argv, code, scratch / f"run-{i}.log") for i in range(repeats)]
    row = {"command": name, "argv": list(argv), "runs": runs,
           "median_s": statistics.median(r["seconds"] for r in runs),
           "peak_mib": max(r["peak_mib"] for r in runs),
           "imported": sorted({lib for r in runs for lib in r["imported"]})}
    print(summary_line(row), flush=True)
    return row


def summary_line(row: dict) -> str:
    imported = ", ".join(row["imported"]) or "neither torch nor transformers"
    return (f"{row['command']}: {row['median_s']:.2f} s median, {row['peak_mib']:.0f} MiB peak, "
            f"imports {imported}")


def render(record: dict) -> str:
    rows = [[r["command"], number(r["median_s"], 2),
             f"{number(min(x['seconds'] for x in r['runs']), 2)}-"
             f"{number(max(x['seconds'] for x in r['runs']), 2)}",
             number(r["peak_mib"], 0), ", ".join(r["imported"]) or "none"]
            for r in record["rows"]]
    code = record["code"]
    lines = [
        "# One command, end to end", "",
        f"`{record['command']}` (bench at commit {record['machine']['git']['commit'][:12]}; "
        f"the tokretrieve timed: {code['path']} at commit {code['commit'][:12]}"
        f"{', with changes' if code['dirty'] else ''}), started {record['started']}, on "
        f"{record['machine']['cpu']} ({record['machine']['cpu_count']} CPUs), load average "
        f"{(record['machine']['load_avg'] or ['?'])[0]} at the start. Index: {record['index']}. "
        f"Each command ran {record['repeats']} times, each in a fresh interpreter, timed from "
        "its start to its exit; the query: "
        f"\"{QUERY}\".", "",
        *table(["command", "median (s)", "range (s)", "peak memory (MiB)",
                "model libraries imported"], rows), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.speed.startup",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, help="an index with its model (e.g. the "
                        "`make demo` one, index/cranfield)")
    parser.add_argument("--code", type=Path, default=Path.cwd(),
                        help="the checkout whose tokretrieve runs (default: this one)")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--output", type=Path, default=Path("bench/results/speed/startup"))
    args = parser.parse_args(argv)
    index = str(Path(args.index).resolve())
    if not (Path(index) / "manifest.json").is_file():
        raise SystemExit(f"{args.index} is not an index folder (no manifest.json): build one "
                         "with `make demo` or `tokretrieve index`")
    code = args.code.resolve()
    if not (code / "tokretrieve" / "cli.py").is_file():
        raise SystemExit(f"{args.code} holds no tokretrieve checkout (tokretrieve/cli.py)")
    git = git_state(code)
    record = new_record(command_line("python -m bench.speed.startup", argv), index=index,
                        repeats=args.repeats, rows=[],
                        code={"path": str(code), "commit": git["commit"],
                              "dirty": bool(git["dirty"])})
    out_dir = run_folder(args.output, record)
    with tempfile.TemporaryDirectory(prefix="tokretrieve-startup-") as scratch:
        subprocess.run([sys.executable, "-m", "tokretrieve.index.warmup"], check=True,
                       env={**os.environ, "PYTHONPATH": str(code)}, cwd=code)
        for name, command in commands(index).items():
            record["rows"].append(measure(name, command, code, args.repeats, Path(scratch)))
            write_record(out_dir, record, render, partial=True)
    finish_record(out_dir, record, render,
                  lambda r: "\n".join(summary_line(row) for row in r["rows"]))


if __name__ == "__main__":
    main()
