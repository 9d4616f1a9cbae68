"""Compile the scoring kernels before the first search: `python -m tokretrieve.index.warmup`.

numba compiles a kernel the first time it meets a new signature and keeps the machine code in
its on-disk cache (`cache=True`: __pycache__ beside the module, or NUMBA_CACHE_DIR). Without
this, the first search after an install compiles for most of a minute (38 s for a packed index
on 2 cores, bench/results/speed/coldstart: the packed codec's sixteen decoders, then each level
of the kernel re-optimizing the code it inlines), and every later process loads the result in
about 0.35 s. `make install` runs this once, so the first search answers at once.

It drives the postings the way a search, an explanation, a build and a compaction do, on a small
fixed set of bags, in every codec and impact type an index can have; the arrays have the types
an index's have (read-only lists, int64 / float32 query CSR, a bool mask of deleted documents),
so the signatures compiled are the ones those calls look up.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.index.kernels import Scratch
from tokretrieve.index.postings import postings_from_bags

# (codec, impacts) of every index layout (tokretrieve.index.postings: packed holds uint8 only).
LAYOUTS = (("packed", "uint8"), ("raw", "uint8"), ("raw", "float32"))


def warm_up() -> list[str]:
    """Compile, or load from numba's cache, the kernels of every index layout; returns the
    layouts done, as "codec/impacts"."""
    rng = np.random.default_rng(0)
    bags = sp.random(300, 64, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    bags.data += np.float32(0.01)  # positive weights, as bags are
    queries = sp.random(2, 64, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    query = (queries.indptr.astype(np.int64), queries.indices.astype(np.int64),
             queries.data.astype(np.float32))
    deleted = np.zeros(bags.shape[0], dtype=np.bool_)
    deleted[::7] = True
    scratch = Scratch()
    done = []
    for codec, impacts in LAYOUTS:
        postings = postings_from_bags(bags, impacts)
        if codec == "packed":
            postings = postings.packed()
        for gone in (None, deleted):
            docs, _, counts = postings.top_k(*query, 5, scratch, numba.get_num_threads(), gone)
        postings.impacts_of(query[1], docs[0, :counts[0]].astype(np.int64))
        postings.document_frequency(deleted)
        postings.block(0)
        done.append(f"{codec}/{impacts}")
    return done


if __name__ == "__main__":
    started = time.perf_counter()
    layouts = warm_up()
    print(f"scoring kernels ready for {', '.join(layouts)} in "
          f"{time.perf_counter() - started:.1f} s (numba's cache keeps them)")
