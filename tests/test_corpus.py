"""Reading collections (tokretrieve.corpus): gzipped BEIR folders and files read as their
contents."""

from __future__ import annotations

import gzip

import pytest
from tiny_beir import DOCS, QRELS, QUERIES, write_beir

from tokretrieve import CorpusError
from tokretrieve.corpus import read_documents, read_qrels, read_queries


def gzip_file(path, keep_name=False):
    """Compress `path` into `path.gz` (or in place, keeping its name) and remove the original."""
    target = path if keep_name else path.with_name(path.name + ".gz")
    data = path.read_bytes()
    path.unlink()
    target.write_bytes(gzip.compress(data))
    return target


def test_gzipped_beir_folder_reads_like_the_plain_one(tmp_path):
    """A BEIR folder whose corpus, queries and qrels are gzipped (corpus.jsonl.gz, ...) gives
    the same documents, queries and judgments as the plain folder."""
    folder = write_beir(tmp_path / "beir")
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        gzip_file(folder / name)
    assert read_documents(folder) == list(DOCS.items())
    assert read_queries(folder) == list(QUERIES.items())
    expected: dict[str, dict[str, int]] = {}
    for qid, doc_id, grade in QRELS:
        expected.setdefault(qid, {})[doc_id] = grade
    assert read_qrels(folder) == expected


def test_gzipped_files_are_recognised_by_their_bytes(tmp_path):
    """A .jsonl.gz or .tsv.gz file is read as JSONL or TSV, and a gzipped file whose name does
    not say so is recognised by gzip's magic number, not reported as bytes that are not
    UTF-8."""
    folder = write_beir(tmp_path / "beir")
    corpus = gzip_file(folder / "corpus.jsonl")
    assert corpus.name == "corpus.jsonl.gz"
    assert read_documents(corpus) == list(DOCS.items())
    tsv = tmp_path / "q.tsv"
    tsv.write_text("".join(f"{qid}\t{text}\n" for qid, text in QUERIES.items()))
    assert read_queries(gzip_file(tsv)) == list(QUERIES.items())
    unnamed = folder / "queries.jsonl"
    gzip_file(unnamed, keep_name=True)
    assert read_queries(unnamed) == list(QUERIES.items())


def test_truncated_gzip_file_names_the_file(tmp_path):
    file = tmp_path / "corpus.jsonl.gz"
    file.write_bytes(gzip.compress(b'{"_id": "a", "text": "wing"}\n' * 200)[:-20])
    with pytest.raises(CorpusError, match=r"corpus\.jsonl\.gz: the gzip file is truncated"):
        read_documents(file)
