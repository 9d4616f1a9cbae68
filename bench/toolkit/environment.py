"""Imported first, for its effect, by the benchmark programs that run the package's search
(bench.speed, bench.live, bench.serve and its server process): environment defaults that must
be in place before numba, torch, transformers or FAISS are imported.

- HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE: models come from the local cache or a folder; a run
  never waits on, or changes with, the network.
- OMP_WAIT_POLICY=PASSIVE: OpenMP threads that spin at barriers (libgomp's default) fight the
  other jobs of a shared, oversubscribed machine and made batch calls ~40x slower here;
  sleeping waits measure the engines, not the scheduler. libgomp reads it once, when its thread
  pool starts, hence before those imports; a child process (the load benchmark's server)
  inherits it. bench.speed's threading probe (bench/speed/threads_probe.py) records what the
  default would have given.

Each is a default: a value already in the environment is kept.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
