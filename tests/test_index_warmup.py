"""The install-time warm-up compiles what real searches use: after `warm_up`, searching,
explaining and counting document frequencies on indexes of every layout, in memory and opened
from disk, with and without deleted documents, adds no compiled signature to any kernel (each
new one would be compiled at the user's first search instead). Each check runs in a fresh
interpreter, where nothing else has compiled a kernel yet."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError
from tokretrieve.index import SparseIndex, delete_documents, kernels, lane_decoders, packing
from tokretrieve.index.postings import CODECS, IMPACT_TYPES, check_codec
from tokretrieve.index.warmup import LAYOUTS
from tokretrieve.interop.imported import index_from_bags


def _signature_counts() -> dict[str, int]:
    """Compiled signatures of every numba kernel of the index package, by name."""
    counts = {}
    for module in (kernels, packing, lane_decoders):
        for name, value in vars(module).items():
            if isinstance(value, numba.core.registry.CPUDispatcher):
                counts[f"{module.__name__}.{name}"] = len(value.overloads)
    return counts


def _valid(codec: str, impacts: str) -> bool:
    try:
        check_codec(codec, impacts)
    except TokretrieveError:
        return False
    return True


def _indexes(tmp_path, codec: str, impacts: str) -> list[SparseIndex]:
    """The same bags in memory, written and opened memory-mapped, and with two deleted, in
    a layout."""
    rng = np.random.default_rng(1)
    dense = rng.random((90, 50)) * (rng.random((90, 50)) < 0.2)
    bags = sp.csr_matrix(dense.astype(np.float32))
    made = index_from_bags([f"d{i}" for i in range(90)], bags, "synthetic", "0" * 64, "test",
                           "test", impacts=impacts, codec=codec, segment_docs=32)
    folder = tmp_path / f"{codec}-{impacts}"
    on_disk = made.write(folder)
    return [made, on_disk, delete_documents(folder, ["d3", "d40"])]


def test_layouts_are_every_valid_codec_and_impact_type():
    assert set(LAYOUTS) == {(c, i) for c in CODECS for i in IMPACT_TYPES if _valid(c, i)}


def _searched_after_warm_up(tmp_path, searched, layouts) -> dict[str, int]:
    """In this process: warm up `layouts`, then search indexes in the `searched` layouts;
    returns the signatures each kernel gained meanwhile (none: the warm-up had compiled them
    all)."""
    import tokretrieve.index.warmup as warmup
    indexes = [(codec, index) for codec, impacts in searched
               for index in _indexes(tmp_path, codec, impacts)]
    warmup.LAYOUTS = layouts
    assert warmup.warm_up() == [f"{c}/{i}" for c, i in layouts]
    before = _signature_counts()
    queries = sp.csr_matrix(np.eye(3, 50, k=4, dtype=np.float32) * 2.0)
    for codec, index in indexes:
        assert index.manifest.layout.codec == codec
        _, ids = index.search(queries, k=5)
        found = ids[0][ids[0] >= 0]
        assert len(found)
        index.contributions(np.array([4]), np.array([2.0]), found)
        assert index.idf.shape == (50,)
        index.document_bag(int(found[0]))
    after = _signature_counts()
    return {name: after[name] - before.get(name, 0) for name in after
            if after[name] != before.get(name, 0)}


def _in_fresh_interpreter(tmp_path, searched, layouts) -> dict[str, int]:
    script = textwrap.dedent(f"""
        import json, pathlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_index_warmup import _searched_after_warm_up
        gained = _searched_after_warm_up(pathlib.Path({str(tmp_path)!r}),
                                         {tuple(searched)!r}, {tuple(layouts)!r})
        print(json.dumps(gained))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_searches_after_the_warm_up_compile_nothing(tmp_path):
    assert _in_fresh_interpreter(tmp_path, LAYOUTS, LAYOUTS) == {}


def test_a_layout_left_out_of_the_warm_up_compiles_at_its_first_search(tmp_path):
    """The check above can fail: without packed lists in the warm-up, a packed index's first
    search, explanation and document bag each compile their entry point for them (the
    functions these call count only when compiled, not when loaded from numba's cache)."""
    gained = _in_fresh_interpreter(tmp_path, [("packed", "uint8")],
                                   [layout for layout in LAYOUTS if layout[0] != "packed"])
    assert set(gained) >= {"tokretrieve.index.kernels.batch_top_k",
                           "tokretrieve.index.kernels.gather_packed_impacts",
                           "tokretrieve.index.packing._unpack_segment"}
