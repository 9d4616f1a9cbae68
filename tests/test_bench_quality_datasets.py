"""Collections as the quality benchmark reads them: only queries that can score, --limit-docs,
and dataset specs."""

from __future__ import annotations

import pytest
from tiny_beir import DOCS, write_beir

from bench.quality.datasets import dataset_name, load_collection, resolve_spec, unavailable_reason
from bench.toolkit import REPO_ROOT


@pytest.fixture
def tiny_beir(tmp_path):
    return write_beir(tmp_path / "tiny")


def test_collection_keeps_only_queries_that_can_score(tiny_beir):
    collection = load_collection(str(tiny_beir))
    assert collection.name == "tiny"
    assert collection.doc_ids == list(DOCS)
    assert collection.query_ids == ["q1", "q2", "d4"]
    assert set(collection.qrels) == {"q1", "q2", "d4"}


def test_limit_docs_keeps_the_judgments_among_the_kept_documents(tiny_beir):
    collection = load_collection(str(tiny_beir), limit_docs=2)
    assert collection.doc_ids == ["d1", "d2"]
    assert collection.query_ids == ["q2", "d4"]  # q1's only relevant document (d3) is gone
    assert collection.qrels == {"q2": {"d1": 1}, "d4": {"d1": 1}}


def test_dataset_specs():
    assert dataset_name("irds:beir/scifact/test") == "beir-scifact-test"
    assert dataset_name("/data/cranfield") == "cranfield"
    assert unavailable_reason("irds:cranfield") is None
    assert "does not exist" in unavailable_reason("/no/such/folder")


def test_relative_specs_resolve_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # somewhere the spec does not exist
    assert resolve_spec("bench") == str(REPO_ROOT / "bench")
    assert resolve_spec("irds:beir/scifact/test") == "irds:beir/scifact/test"
