"""tokretrieve.serve: every endpoint and every error code of the HTTP API, through FastAPI's
TestClient (in process, no socket), on a tiny model. Answers are checked against the library's
own searchers on the same index, which the API must reproduce exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from tokretrieve import DenseSearcher, SparseIndex, SparseSearcher, build_index, delete_documents
from tokretrieve.encoding.tokenizer import token_text
from tokretrieve.serve import Limits, create_app

DOCS = [("d1", "wing lift drag"), ("d2", "heat transfer flow"), ("d3", "shock wave flow"),
        ("d4", "boundary layer heat transfer")]


@pytest.fixture
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol").with_bags(bag_size=8, weighting="shifted")


@pytest.fixture
def index_path(encoder, tmp_path):
    path = tmp_path / "idx"
    build_index(DOCS, encoder, path, pc1_strength=0.0, progress=False)
    return path


@pytest.fixture
def client(index_path):
    with TestClient(create_app(index_path, texts=dict(DOCS),
                               limits=Limits(max_k=50, max_batch=4,
                                             max_query_chars=40))) as client:
        yield client


def as_json(found):
    return [{"id": h.doc_id, "score": h.score, "text": dict(DOCS)[h.doc_id],
             "matched": [{"token": t, "contribution": c} for t, c in h.matched]}
            for h in found]


def hits(searcher, text, k):
    return as_json(searcher.search(text, k=k))


def test_health_and_info(client):
    assert client.get("/health").json() == {"status": "ok", "generation": 1}
    info = client.get("/info").json()
    assert info["documents"] == 4 and info["generation"] == 1 and info["segments"] == 1
    assert info["modes"] == ["model", "tokens", "union", "dense", "bm25", "hybrid"]
    assert info["writable"] is True
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/search", "/explain", "/documents", "/documents/{doc_id}", "/health", "/info"}


@pytest.mark.parametrize("mode", ["model", "tokens", "dense"])
def test_search_answers_like_the_library(client, index_path, encoder, mode):
    searcher = (DenseSearcher.from_index(index_path, encoder=encoder) if mode == "dense" else
                SparseSearcher.from_index(index_path, mode=mode, encoder=encoder))
    answer = client.post("/search", json={"query": "heat flow", "k": 3, "mode": mode})
    assert answer.status_code == 200
    body = answer.json()
    assert body["generation"] == 1 and body["mode"] == mode
    body["results"][0].pop("query_tokens", None)  # tokens mode's, tested below
    assert body["results"] == [{"query": "heat flow", "hits": hits(searcher, "heat flow", 3)}]
    batch = client.post("/search", json={"queries": ["heat flow", "wing"], "k": 2,
                                         "mode": mode}).json()
    # a batch is embedded together (one padded model call), as the library's batch_search
    expected = searcher.batch_search(["heat flow", "wing"], ["a", "b"], k=2)
    assert [r["hits"] for r in batch["results"]] == [as_json(expected["a"]),
                                                     as_json(expected["b"])]


def test_tokens_mode_answers_name_the_query_tokens(client, index_path):
    """A tokenized query has no model to explain it, so its answer lists the tokens it was
    scored with (count x idf, as the searcher's own encoding); other modes do not."""
    searcher = SparseSearcher.from_index(index_path, mode="tokens")
    body = client.post("/search", json={"queries": ["heat flow heat", "wing"], "k": 2,
                                        "mode": "tokens"}).json()
    for result in body["results"]:
        encoded = searcher.query_encoder.encode([result["query"]]).tocsr()
        weights = {token_text(searcher.tokenizer, int(t)): float(w)
                   for t, w in zip(encoded.indices, encoded.data, strict=True)}
        assert result["query_tokens"] == [{"token": t, "weight": w}
                                          for t, w in sorted(weights.items(),
                                                             key=lambda tw: -tw[1])]
    first, second = (result["query_tokens"] for result in body["results"])
    assert {t["token"] for t in first} == {"heat", "flow"}
    assert [t["token"] for t in second] == ["wing"]
    alone = client.post("/search", json={"query": "heat", "mode": "tokens"}).json()
    [heat] = alone["results"][0]["query_tokens"]
    assert next(t["weight"] for t in first if t["token"] == "heat") == 2 * heat["weight"]
    assert "query_tokens" not in client.post("/search", json={
        "query": "heat", "mode": "tokens", "explain": False}).json()["results"][0]
    assert "query_tokens" not in client.post("/search", json={
        "query": "heat", "mode": "model"}).json()["results"][0]


@pytest.mark.parametrize("fusion", ["rrf", "linear"])
def test_hybrid_search_answers_like_the_library(client, index_path, encoder, fusion):
    from tokretrieve import HybridSearcher

    hybrid = HybridSearcher.from_index(index_path, ("tokens", "dense"), encoder=encoder,
                                       fusion=fusion, weights=[1.0, 2.0])
    answer = client.post("/search", json={"query": "heat flow", "k": 3, "mode": "hybrid",
                                          "parts": ["tokens", "dense"], "fusion": fusion,
                                          "weights": [1.0, 2.0]})
    assert answer.status_code == 200, answer.text
    found = answer.json()["results"][0]["hits"]
    expected = hybrid.search("heat flow", k=3)
    assert [(h["id"], h["score"]) for h in found] == [
        (h.doc_id, pytest.approx(h.score)) for h in expected]
    refused = client.post("/search", json={"query": "heat", "mode": "hybrid",
                                           "weights": [1.0]})
    assert refused.status_code == 400 and "2 non-negative" in refused.json()["error"]


def test_bm25_and_a_hybrid_with_it_need_the_texts(client, index_path):
    from tokretrieve.search.bm25 import BM25Searcher

    found = client.post("/search", json={"query": "heat flow", "k": 3, "mode": "bm25"}).json()
    expected = BM25Searcher(DOCS).search("heat flow", k=3)
    assert [(h["id"], h["score"]) for h in found["results"][0]["hits"]] == [
        (h.doc_id, pytest.approx(h.score)) for h in expected]
    fused = client.post("/search", json={"query": "heat flow", "mode": "hybrid",
                                         "parts": ["tokens", "bm25"]})
    assert fused.status_code == 200
    with TestClient(create_app(index_path)) as bare:  # no --corpus: no texts
        answer = bare.post("/search", json={"query": "heat", "mode": "bm25"})
        assert answer.status_code == 400 and "--corpus" in answer.json()["error"]
        assert "bm25" not in bare.get("/info").json()["modes"]


def test_explain_and_document(client, index_path, encoder):
    body = client.post("/explain", json={"text": "heat transfer", "k": 3}).json()
    fitted = SparseSearcher.from_index(index_path, encoder=encoder).query_encoder.encoder
    assert body["tokens"] == [{"token": t, "weight": w}
                              for t, w in fitted.key_tokens("heat transfer", top_k=3)]
    document = client.get("/documents/d2").json()
    expected = SparseSearcher.from_index(index_path, mode="tokens").document("d2")
    assert document["text"] == "heat transfer flow"
    assert document["bag"] == [{"token": t, "weight": w} for t, w in expected]


def test_add_and_delete_are_commits_the_searches_see(client, index_path):
    added = client.post("/documents", json={"documents": [
        {"id": "d5", "text": "supersonic wing flutter"}]})
    assert added.status_code == 200 and added.json()["generation"] == 2
    assert client.get("/documents/d5").json()["text"] == "supersonic wing flutter"
    assert len(SparseIndex.load(index_path)) == 5
    refused = client.post("/documents", json={"documents": [{"id": "d5", "text": "again"}]})
    assert refused.status_code == 400 and "'d5'" in refused.json()["error"]
    updated = client.post("/documents", json={"documents": [{"id": "d5", "text": "again"}],
                                              "update": True})
    assert updated.status_code == 200 and updated.json()["documents"] == 5
    deleted = client.delete("/documents/d1")
    assert deleted.status_code == 200 and deleted.json()["generation"] == 4
    found = client.post("/search", json={"query": "wing lift drag", "k": 10,
                                         "mode": "tokens"}).json()
    assert found["generation"] == 4
    assert "d1" not in [h["id"] for h in found["results"][0]["hits"]]
    assert client.delete("/documents/d1").status_code == 404


def test_a_commit_by_another_process_is_seen(client, index_path):
    """A change committed outside the server (the CLI, another program) is served next."""
    delete_documents(index_path, ["d2"])
    assert client.get("/health").json()["generation"] == 2
    found = client.post("/search", json={"query": "heat transfer flow", "k": 10,
                                         "mode": "tokens"}).json()
    assert found["generation"] == 2
    assert "d2" not in [h["id"] for h in found["results"][0]["hits"]]


@pytest.mark.parametrize(("method", "url", "body", "status", "message"), [
    ("post", "/search", {"query": "   "}, 400, "empty"),
    ("post", "/search", {"query": "a", "queries": ["b"]}, 400, "either 'query'"),
    ("post", "/search", {"queries": []}, 400, "'queries' is empty"),
    ("post", "/search", {"query": "heat", "mode": "fuzzy"}, 400, "mode"),
    ("post", "/search", {"query": "heat", "k": 0}, 400, "k must be a positive"),
    ("post", "/search", {"query": "heat", "k": "ten"}, 400, "k"),
    ("post", "/search", {"query": "heat", "k": 51}, 413, "over the limit of 50"),
    ("post", "/search", {"queries": ["a"] * 5}, 413, "limit is 4"),
    ("post", "/search", {"query": "x" * 41}, 413, "limit is 40"),
    ("post", "/search", "not json", 400, "invalid request"),
    ("post", "/explain", {"text": ""}, 400, "empty"),
    ("get", "/documents/zz", None, 404, "'zz'"),
    ("delete", "/documents/zz", None, 404, "'zz'"),
    ("post", "/documents", {"documents": []}, 400, "no documents"),
    ("post", "/documents", {"documents": [{"id": "a b", "text": "x"}]}, 400, "whitespace"),
    ("post", "/documents", {"documents": [{"id": "x"}]}, 400, "text"),
])
def test_bad_requests_get_a_status_and_one_clear_message(client, method, url, body, status,
                                                         message):
    if isinstance(body, str):
        answer = client.request(method, url, content=body,
                                headers={"content-type": "application/json"})
    else:
        answer = client.request(method, url, json=body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_large_bodies_read_only_and_model_less_servers(index_path):
    with TestClient(create_app(index_path, limits=Limits(max_body_bytes=100))) as client:
        answer = client.post("/search", json={"query": "heat " * 40})
        assert answer.status_code == 413 and "limit of 100" in answer.json()["error"]
    with TestClient(create_app(index_path, read_only=True)) as client:
        answer = client.delete("/documents/d1")
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
    with TestClient(create_app(index_path, load_model=False)) as client:
        assert client.get("/info").json()["modes"] == ["tokens"]
        assert client.post("/search", json={"query": "heat", "mode": "tokens"}).status_code \
            == 200
        answer = client.post("/search", json={"query": "heat", "mode": "model"})
        assert answer.status_code == 400 and "--no-model" in answer.json()["error"]
        assert client.post("/documents", json={"documents": [
            {"id": "z", "text": "x"}]}).status_code == 403


def test_a_busy_writer_is_409(client, index_path):
    from tokretrieve.index.generations import Commit

    with Commit(index_path):  # another writer holds the lock
        answer = client.delete("/documents/d1")
        assert answer.status_code == 409 and "being written by" in answer.json()["error"]
        answer = client.post("/documents", json={"documents": [{"id": "n", "text": "x y"}]})
        assert answer.status_code == 409
    assert client.delete("/documents/d1").status_code == 200


_MODEL_LESS = """
import json, sys
from fastapi.testclient import TestClient
from tokretrieve.serve import create_app
with TestClient(create_app(sys.argv[1], load_model=False)) as client:
    found = client.post("/search", json={"query": sys.argv[2], "mode": "tokens"}).json()
print(json.dumps({"results": found["results"],
                  "loaded": sorted({"torch", "transformers"} & set(sys.modules))}))
"""


def test_a_model_less_server_loads_no_model_library(client, index_path):
    """`serve --no-model` in a fresh interpreter answers tokenized queries as this process's
    server does, and imports neither torch nor transformers."""
    query = " ".join(token for token, _ in SparseSearcher.from_index(
        index_path, mode="tokens").document("d1")[:3])  # tokens the index holds
    run = subprocess.run([sys.executable, "-c", _MODEL_LESS, str(index_path), query],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    expected = client.post("/search", json={"query": query, "mode": "tokens"}).json()
    for hit in expected["results"][0]["hits"]:
        hit["text"] = None  # this server was given the texts, that one not
    assert report["results"] == expected["results"] and expected["results"][0]["hits"]
    assert report["loaded"] == []
