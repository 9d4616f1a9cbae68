"""The interop benchmark: its command end to end on a tiny model (the file routes, Milvus Lite
where installed, the bounded-memory export run), its report re-rendered from results.json, and
the index comparison its sharded-build check relies on."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
from tiny_beir import write_beir

from bench.interop.__main__ import main as interop_main
from bench.interop.report import render_report
from bench.interop.routes import index_differences
from tokretrieve.build import index_from_embeddings

HAVE_MILVUS = all(importlib.util.find_spec(m) for m in ("pymilvus", "milvus_lite"))


def test_the_command_checks_every_route_and_writes_a_report_that_re_renders(tiny_bert_dir,
                                                                            tmp_path):
    corpus = write_beir(tmp_path / "beir")
    routes = "jsonvector,seismic,scale" + (",milvus" if HAVE_MILVUS else "")
    code = interop_main(["--corpus", str(corpus), "--model", str(tiny_bert_dir),
                         "--cache-dir", str(tmp_path / "cache"),
                         "--output", str(tmp_path / "out"), "--scratch", str(tmp_path / "s"),
                         "--routes", routes, "--hits", "5", "--scale-docs", "50,200"])
    assert code == 0
    (folder,) = (tmp_path / "out").iterdir()
    record = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    assert set(record["modes"]) == {"tokens", "model"}
    for runs in record["modes"].values():
        assert runs["jsonvector"]["documents"] == 5 and runs["seismic"]["documents"] == 5
        assert runs["tokretrieve"]["query_ms"] > 0
        if HAVE_MILVUS:
            agreement = runs["milvus"]["agreement"]
            assert agreement["mismatched"] == 0 and agreement["queries"] == 3
    assert [r["documents"] for r in record["scale"]] == [50, 200]
    assert all(r["export_bytes"] > 0 for r in record["scale"])
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "## tokens queries" in report and "## Export at scale" in report
    assert render_report(record) == report
    assert list((tmp_path / "s").iterdir()) == []


def test_index_differences_name_what_differs(tiny_encoder):
    encoder = tiny_encoder("bert", "mean")
    texts = ["wing flutter", "heat shell", "rocket nozzle gas"]
    embeddings = encoder.embed(texts)
    ids = ["a", "b", "c"]
    one = index_from_embeddings(ids, embeddings, encoder, pc1_strength=0.0)
    same = index_from_embeddings(ids, embeddings.copy(), encoder, pc1_strength=0.0)
    assert index_differences(one, same) == []
    nudged = embeddings.copy()
    nudged[1, 0] = np.nextafter(nudged[1, 0], np.float32(np.inf))
    other = index_from_embeddings(ids, nudged, encoder, pc1_strength=0.0)
    assert "embeddings" in index_differences(one, other)
