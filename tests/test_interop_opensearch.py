"""tokretrieve.interop.opensearch: the files parsed back and checked against the rules of
OpenSearch/Elasticsearch (no server runs here), and the scores such a server would compute,
summed in Python from the files alone, checked against tokretrieve's.

What a server computes for a body: each `rank_feature` clause with the `linear` function
scores boost x stored value, the stored value being the document's feature kept to 9
significant bits (Lucene's FeatureField: the float32 bits shifted right by 15); the `bool`
`should` sums the clauses. Token keys are read back without tokretrieve.interop.keys: a key is
a token's own text (the tokenizer's id for it) or one listed in export.json's mapped keys.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from changed_index import GONE, QUERIES, changed_index
from transformers import AutoTokenizer

from tokretrieve import TokretrieveError, build_index
from tokretrieve.interop import opensearch
from tokretrieve.interop.agreement import compare
from tokretrieve.interop.opensearch import export_opensearch, search_body
from tokretrieve.interop.queries import ExportedQueries

INDEX_NAME = "cranfield-bags"


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol")


@pytest.fixture(scope="module")
def index(encoder, tmp_path_factory):
    return changed_index(encoder, tmp_path_factory.mktemp("os") / "idx")


@pytest.fixture(scope="module", params=[("tokens", "tokens"), ("ids", "model")],
                ids=["token-keys-tokens-mode", "id-keys-model-mode"])
def export(request, index, encoder, tmp_path_factory):
    """(folder, export.json, the ExportedQueries the bodies stand for, key style)."""
    keys, mode = request.param
    folder = tmp_path_factory.mktemp("export") / "out"
    metadata = export_opensearch(index, folder, keys=keys, queries=QUERIES, query_mode=mode,
                                 encoder=encoder, index_name=INDEX_NAME, progress=False)
    return folder, metadata, ExportedQueries.encode(index, QUERIES, mode, encoder), keys


@pytest.fixture(scope="module")
def key_ids(tiny_llama_dir):
    """Key -> token id, read back from export.json and the tokenizer alone."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)

    def read(metadata: dict, key: str) -> int:
        if metadata["keys"] == "ids":
            assert key.startswith("t")
            return int(key[1:])
        if key in metadata["mapped_keys"]:
            return metadata["mapped_keys"][key]
        token_id = tokenizer.convert_tokens_to_ids(key)
        assert tokenizer.convert_ids_to_tokens(token_id) == key
        return token_id

    return read


def stored(value: float) -> float:
    """The value Lucene's FeatureField keeps: float32, then 9 significant bits."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    return struct.unpack("<f", struct.pack("<I", (bits >> 15) << 15))[0]


def pairs(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) % 2 == 0
    return [(json.loads(a), json.loads(b)) for a, b in zip(lines[::2], lines[1::2],
                                                           strict=True)]


def bulk_documents(folder) -> dict[str, dict[str, float]]:
    """doc id -> bag, every bulk file's action/document pairs checked on the way."""
    files = sorted((folder / "bulk").iterdir())
    assert [f.name for f in files] == [f"part-{i:05d}.ndjson" for i in range(len(files))]
    documents = {}
    for file in files:
        for action, source in pairs(file):
            assert list(action) == ["index"]
            assert set(action["index"]) == {"_index", "_id"}
            assert action["index"]["_index"] == INDEX_NAME
            doc_id = action["index"]["_id"]
            assert isinstance(doc_id, str) and 0 < len(doc_id.encode()) <= 512
            assert set(source) == {"doc_id", "bag"} and source["doc_id"] == doc_id
            assert isinstance(source["bag"], dict) and doc_id not in documents
            documents[doc_id] = source["bag"]
    return documents


def test_mapping_and_template(export):
    folder, metadata, _, _ = export
    mapping = json.loads((folder / "mapping.json").read_text(encoding="utf-8"))
    assert mapping == {"mappings": {"properties": {"doc_id": {"type": "keyword"},
                                                   "bag": {"type": "rank_features"}}}}
    template = json.loads((folder / "query-template.json").read_text(encoding="utf-8"))
    assert template["clause"] == {"rank_feature": {"field": "bag.<token key>", "linear": {},
                                                   "boost": "<integer query level>"}}
    assert template["body"]["query"]["bool"]["should"][0] == "<clause>"
    assert template["empty"]["query"] == {"match_none": {}}
    assert metadata["mapping"] == "mapping.json"
    assert metadata["query_template"] == "query-template.json"


def test_documents_follow_the_rank_features_rules(export, index, key_ids):
    folder, metadata, _, _ = export
    documents = bulk_documents(folder)
    live = [str(d) for i, d in enumerate(index.doc_ids) if not index.deleted_mask[i]]
    assert sorted(documents) == sorted(live) and not set(GONE) & set(documents)
    assert metadata["documents"] == len(index) == len(documents)
    scale = float(index.manifest.layout.scale)
    assert metadata["scale"] == scale and metadata["target"] == "opensearch"
    for doc_id, bag in documents.items():
        for name, value in bag.items():
            assert name and "." not in name and not any(c.isspace() for c in name)
            assert isinstance(value, int) and 0 < value <= 255 and math.isfinite(value)
            assert stored(value) == value  # exact in 9 significant bits
        tokens, weights = index.document_bag(index.position(doc_id))  # not via document_bags
        want = {int(t): float(w) / scale for t, w in zip(tokens, weights, strict=True)}
        assert {key_ids(metadata, name): value for name, value in bag.items()} == want


def test_query_bodies_reproduce_the_integer_queries(export, key_ids):
    folder, metadata, exported, _ = export
    bodies = pairs(folder / "queries.ndjson")
    topics = (folder / "queries.tsv").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in topics] == [qid for qid, _ in QUERIES]
    assert len(bodies) == len(QUERIES) == metadata["queries"]["count"]
    assert metadata["queries"]["scales"] == dict(zip(exported.qids, exported.scales.tolist(),
                                                     strict=True))
    for q, (header, body) in enumerate(bodies):
        assert header == {"index": INDEX_NAME}
        assert {k: body[k] for k in ("size", "_source", "track_total_hits")} == {
            "size": opensearch.QUERY_SIZE, "_source": False, "track_total_hits": False}
        tokens, want = exported.row(q)
        if len(tokens) == 0:
            assert body["query"] == {"match_none": {}}
            continue
        levels = {}
        for clause in body["query"]["bool"]["should"]:
            feature = clause["rank_feature"]
            assert set(feature) == {"field", "linear", "boost"} and feature["linear"] == {}
            assert feature["field"].startswith("bag.")
            name = feature["field"][len("bag."):]
            assert name and "." not in name  # the query's field splits at its last dot
            assert isinstance(feature["boost"], int) and 0 < feature["boost"] <= 255
            levels[key_ids(metadata, name)] = feature["boost"]
        assert levels == dict(zip(tokens.tolist(), want.tolist(), strict=True))
    largest = max(len(b["query"].get("bool", {}).get("should", [])) for _, b in bodies)
    assert metadata["queries"]["largest"] == largest


def test_scores_a_server_would_compute_match_tokretrieve(export, index):
    """Each body summed over the bulk documents as Lucene would (float32 boost x stored
    value): the ranking compare() checks against tokretrieve, top-10 and every match."""
    folder, _, exported, _ = export
    documents = bulk_documents(folder)
    engine = {}
    for (_, body), qid in zip(pairs(folder / "queries.ndjson"), exported.qids, strict=True):
        scores = {}
        for clause in body["query"].get("bool", {}).get("should", []):  # none: match_none
            feature = clause["rank_feature"]
            name, boost = feature["field"][len("bag."):], np.float32(feature["boost"])
            for doc_id, bag in documents.items():
                if name in bag:
                    scores[doc_id] = scores.get(doc_id, 0.0) + float(
                        boost * np.float32(stored(bag[name])))
        engine[qid] = sorted(scores.items(), key=lambda item: -item[1])
    for k in (10, len(index)):
        agreement = compare(index, exported, engine, k)
        assert agreement.agrees, agreement.summary()
        assert agreement.identical + agreement.tie_order == len(QUERIES)


def test_bulk_files_split_by_size(index, tmp_path, monkeypatch):
    whole = export_opensearch(index, tmp_path / "one", index_name=INDEX_NAME, progress=False)
    monkeypatch.setattr(opensearch, "BULK_BYTES", 2000)
    split = export_opensearch(index, tmp_path / "many", index_name=INDEX_NAME, progress=False)
    files = sorted((tmp_path / "many" / "bulk").iterdir())
    assert whole["bulk_files"] == 1 and split["bulk_files"] == len(files) > 3
    for file in files:
        pairs_in = len(file.read_text(encoding="utf-8").splitlines()) // 2
        assert file.stat().st_size <= 2000 or pairs_in == 1  # one pair over the limit stays
    assert bulk_documents(tmp_path / "many") == bulk_documents(tmp_path / "one")
    assert "queries" not in split and not (tmp_path / "many" / "queries.ndjson").exists()


def test_a_query_without_tokens_matches_nothing():
    body = search_body([], [], ["a"])
    assert body["query"] == {"match_none": {}}  # an empty bool would match every document


@pytest.mark.parametrize("name", ["Upper", "with space", "a,b", "_hidden", "-x", "..",
                                  "a:b", "", "x" * 256])
def test_bad_index_names_are_refused(index, tmp_path, name):
    with pytest.raises(TokretrieveError, match="not an OpenSearch/Elasticsearch index name"):
        export_opensearch(index, tmp_path / "out", index_name=name, progress=False)
    assert not (tmp_path / "out").exists()


def test_ids_longer_than_512_bytes_are_refused(encoder, tmp_path):
    long_id = "é" * 257  # 514 bytes, 257 characters
    index = build_index([(long_id, "water flow"), ("short", "heat")], encoder,
                        tmp_path / "idx", progress=False)
    with pytest.raises(TokretrieveError, match="longer than the 512 bytes"):
        export_opensearch(index, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
