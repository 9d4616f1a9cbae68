"""The README's Python examples run as pasted (on a 40-document slice of Cranfield, so that the
suite stays fast) and import only from `tokretrieve`."""

from __future__ import annotations

import re

import pytest
from conftest import REPO_ROOT

import tokretrieve
from tokretrieve.corpus import read_documents

pytestmark = pytest.mark.slow


def python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_examples_import_only_from_tokretrieve():
    blocks = python_blocks()
    assert len(blocks) == 3
    imports = [line for block in blocks for line in block.splitlines()
               if re.match(r"\s*(from|import)\s", line)]
    assert imports and all(re.match(r"from tokretrieve import ", line) for line in imports)


def test_readme_examples_run_when_pasted(cranfield_dir, minilm, tmp_path, monkeypatch, capsys):
    """Every block, in order, in one namespace (later ones use the first's encoder), with the
    collection cut to 40 documents and the index written under a temporary folder; the
    changes of the last block leave the index whole and as built (added, deleted, compacted)."""
    docs = read_documents(cranfield_dir)[:40]
    monkeypatch.setattr(tokretrieve, "read_documents", lambda spec: docs)
    monkeypatch.setattr(tokretrieve.Encoder, "load", classmethod(lambda cls, *a, **k: minilm))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks():
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "index" / "mine" / "manifest.json").is_file()
    assert set(namespace["runs"]) == {"q1", "q2"}
    assert namespace["scores"].shape == (2, 10)
    printed = capsys.readouterr().out
    assert "Hit(doc_id=" in printed  # the dense search's hits were printed
    index = tokretrieve.SparseIndex.load(tmp_path / "index" / "mine")
    assert list(index.doc_ids) == [doc_id for doc_id, _ in docs]
    assert index.manifest.contents.generation == 4 and len(index.segments) == 1
