"""tokretrieve's benchmarks: programs that measure and write reports, apart from the package.

- `python -m bench.quality` (also `python -m bench`): retrieval quality, sparse (two query modes)
  against dense, BM25 and hybrids, with sweeps of the sparse levers and what each system costs;
- `python -m bench.speed`: indexing and search speed of the scoring kernel against BM25S and
  FAISS, on the real Cranfield bags and synthetic corpora drawn from them;
- `python -m bench.encoding`: document-encoding throughput against the CPU's measured matmul rate.

They share bench.toolkit (clock, thread pinning, machine record, results writer, tables) and write
`bench/results/<benchmark>/.../<timestamp>/` folders with results.json and report.md.
"""
