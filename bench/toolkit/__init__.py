"""What the benchmarks share: one clock, one thread pinning, one machine record, one results
writer, one table formatter, one set of argument types (`cli`), one environment set before the
heavy imports (`environment`), and one start from a collection's cached embeddings (`cached`).

Each benchmark (bench.quality, bench.speed, bench.encoding, bench.live, bench.serve) is a
program that measures and writes a report; anything two of them need lives here once, so their
numbers are taken, recorded and printed the same way and a reader of one report can read the
others.

Paths are anchored at the repository root, so a benchmark finds its defaults from any working
directory: the Cranfield collection beside the repository (`../shared/data/cranfield`) and
`bench/results/<benchmark>/` for its output.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CRANFIELD = REPO_ROOT.parent / "shared" / "data" / "cranfield"
