"""tokretrieve.interop.milvus on Milvus Lite (a local file; the client a Milvus cluster takes):
the collection holds the live documents' bags exactly, its search returns tokretrieve's
rankings (compare: same scores, differences only in tie order), and the errors a user meets
are one clear line. Milvus Lite serves a file from threads of this process on 127.0.0.1;
every test leaves no server running."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from changed_index import GONE, QUERIES, changed_index

from tokretrieve import TokretrieveError
from tokretrieve.index.postings import postings_from_bags
from tokretrieve.index.sparse import in_memory
from tokretrieve.interop import milvus
from tokretrieve.interop.agreement import compare
from tokretrieve.interop.milvus import export_milvus, milvus_metadata, search_milvus
from tokretrieve.interop.queries import ExportedQueries

pymilvus = pytest.importorskip("pymilvus", reason="pymilvus is not installed (make "
                                                  "install-milvus)")
server_manager = pytest.importorskip("milvus_lite.server_manager",
                                     reason="milvus-lite is not installed (make install-milvus)")


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return tiny_encoder("llama", "prompteol")


@pytest.fixture(scope="module")
def index(encoder, tmp_path_factory):
    return changed_index(encoder, tmp_path_factory.mktemp("milvus") / "idx")


@pytest.fixture(scope="module")
def exported(index, tmp_path_factory):
    """(uri, export summary): the index in the collection 'tokretrieve' of a Lite file."""
    uri = str(tmp_path_factory.mktemp("lite") / "sub" / "bags.db")  # sub/: created
    return uri, export_milvus(index, uri, batch_docs=7, progress=False)


@pytest.fixture(autouse=True)
def no_server_left():
    """Every Milvus Lite server a test starts is stopped when the call that started it ends."""
    before = set(server_manager.server_manager_instance._servers)
    yield
    assert set(server_manager.server_manager_instance._servers) == before


@contextlib.contextmanager
def lite(uri: str):
    """A client of the Lite file for the tests' own reads, its server stopped afterwards."""
    client = pymilvus.MilvusClient(uri)
    try:
        yield client
    finally:
        client.close()
        server_manager.server_manager_instance.release_server(uri)


def plain_collection(client, name: str) -> None:
    """A collection of someone else's: an id and a dense vector."""
    schema = pymilvus.MilvusClient.create_schema()
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=2)
    client.create_collection(name, schema=schema)


def live_ids(index) -> list[str]:
    return [str(d) for i, d in enumerate(index.doc_ids) if not index.deleted_mask[i]]


def test_the_collection_holds_the_live_bags(index, exported):
    uri, summary = exported
    with lite(uri) as client:
        client.load_collection("tokretrieve")
        rows = client.query("tokretrieve", filter='doc_id != ""',
                            output_fields=["doc_id", "bag"], limit=1000)
        described = client.describe_collection("tokretrieve")
        assert client.list_collections() == ["tokretrieve"]  # no staging collection left
    assert sorted(r["doc_id"] for r in rows) == sorted(live_ids(index))
    assert not set(GONE) & {r["doc_id"] for r in rows}
    longest = max(len(d.encode()) for d in live_ids(index))
    field = next(f for f in described["fields"] if f["name"] == "doc_id")
    assert field["params"]["max_length"] == longest > max(len(d) for d in live_ids(index))
    scale = float(index.manifest.layout.scale)
    for row in rows:
        tokens, weights = index.document_bag(index.position(row["doc_id"]))
        want = {int(t): float(w) / scale for t, w in zip(tokens, weights, strict=True)}
        assert {int(t): float(v) for t, v in row["bag"].items()} == want
    assert summary["documents"] == len(index) and summary["empty_documents"] == 0
    assert summary["collection"] == "tokretrieve" and summary["uri"] == uri


def test_the_export_facts_are_stored_with_the_collection(index, exported):
    uri, summary = exported
    facts = milvus_metadata(uri, "tokretrieve")
    assert facts == {k: v for k, v in summary.items() if k not in ("uri", "collection",
                                                                    "seconds")}
    assert facts["scale"] == float(index.manifest.layout.scale)
    assert facts["generation"] == index.manifest.contents.generation
    assert facts["index"] == str(index.path) and facts["vocab_size"] == index.vocab_size
    assert facts["model"] == index.manifest.model.name


@pytest.mark.parametrize("mode", ["tokens", "model"])
def test_search_agrees_with_tokretrieve(index, encoder, exported, mode, monkeypatch):
    """Top-10 and every matching document (k past the collection), in search calls of a few
    queries each; deleted documents never come back."""
    uri, _ = exported
    queries = ExportedQueries.encode(index, QUERIES, mode, encoder)
    for k in (10, len(index) + 5):
        monkeypatch.setattr(milvus, "HITS_PER_CALL", 4 * k)  # 4 queries per call
        results = search_milvus(uri, "tokretrieve", queries, k)
        assert list(results) == queries.qids
        agreement = compare(index, queries, results, k)
        assert agreement.agrees, agreement.summary()
        assert agreement.identical + agreement.tie_order == len(QUERIES)
        assert not set(GONE) & {d for hits in results.values() for d, _ in hits}
        assert all(s == int(s) for hits in results.values() for _, s in hits)


def test_a_query_without_tokens_has_no_hits(index, exported):
    uri, _ = exported
    queries = ExportedQueries.encode(index, QUERIES[:2], "tokens")
    levels = queries.levels.tolil()
    levels[1, :] = 0
    empty = replace(queries, levels=sp.csr_matrix(levels))
    empty.levels.eliminate_zeros()
    results = search_milvus(uri, "tokretrieve", empty, 10)
    assert results["q1"] == [] and len(results["q0"]) == 10
    assert compare(index, empty, results, 10).agrees


def emptied(index):
    """The first segment of `index` with its first document's bag emptied (in memory)."""
    first = index.segments[0].postings
    bags = first.to_bags().tolil()
    bags[0, :] = 0
    postings = postings_from_bags(sp.csr_matrix(bags), "uint8", segment_docs=8,
                                  scale=float(first.scale))
    segment = index.segments[0]
    return in_memory(index.manifest, postings, np.asarray(segment.doc_ids),
                     np.asarray(segment.embeddings), index.pc1_direction, index.token_map)


def test_empty_documents_are_left_out(index, encoder, tmp_path):
    """Milvus refuses empty sparse vectors; a document without tokens matches no query, so
    it is skipped and counted."""
    smaller = emptied(index)
    uri = str(tmp_path / "empty.db")
    summary = export_milvus(smaller, uri, progress=False)
    assert summary["empty_documents"] == 1 and summary["documents"] == len(smaller) - 1
    queries = ExportedQueries.encode(smaller, QUERIES, "model", encoder)
    assert compare(smaller, queries, search_milvus(uri, "tokretrieve", queries, 20),
                   20).agrees


def test_an_existing_collection_is_refused_then_replaced_whole(index, encoder, tmp_path,
                                                             monkeypatch):
    uri = str(tmp_path / "swap.db")
    export_milvus(index, uri, "swap", progress=False)
    with pytest.raises(TokretrieveError, match=f"Milvus at {uri} already has a collection "
                                               "'swap'"):
        export_milvus(index, uri, "swap", progress=False)

    original = milvus.document_bags

    def failing(index):  # the disk fills after the first block
        blocks = original(index)
        yield next(blocks)
        raise TokretrieveError("disk full")

    monkeypatch.setattr(milvus, "document_bags", failing)
    with pytest.raises(TokretrieveError, match="disk full"):
        export_milvus(index, uri, "swap", replace=True, progress=False)
    monkeypatch.setattr(milvus, "document_bags", original)
    with lite(uri) as client:
        assert client.list_collections() == ["swap"]  # the partial staging was dropped
    queries = ExportedQueries.encode(index, QUERIES, "tokens")
    assert compare(index, queries, search_milvus(uri, "swap", queries, 10), 10).agrees

    with lite(uri) as client:  # what a killed export leaves
        plain_collection(client, "swap" + milvus.STAGING)
    smaller = emptied(index)
    summary = export_milvus(smaller, uri, "swap", replace=True, progress=False)
    assert milvus_metadata(uri, "swap")["documents"] == summary["documents"] == len(smaller) - 1
    queries = ExportedQueries.encode(smaller, QUERIES, "model", encoder)
    assert compare(smaller, queries, search_milvus(uri, "swap", queries, 10), 10).agrees
    with lite(uri) as client:
        assert client.list_collections() == ["swap"]


def test_user_mistakes_are_one_clear_error(index, exported, tmp_path, monkeypatch):
    uri, _ = exported
    queries = ExportedQueries.encode(index, QUERIES[:3], "tokens")
    with pytest.raises(TokretrieveError, match=r"cannot reach Milvus at http://127\.0\.0\.1:1"):
        export_milvus(index, "http://127.0.0.1:1", progress=False)
    with pytest.raises(TokretrieveError, match=r"cannot reach Milvus at bags\.lite"):
        export_milvus(index, "bags.lite", progress=False)
    with pytest.raises(TokretrieveError, match="not a Milvus collection name"):
        export_milvus(index, uri, "bad-name", progress=False)
    with pytest.raises(TokretrieveError, match="no collection 'nope'"):
        search_milvus(uri, "nope", queries, 10)
    with pytest.raises(TokretrieveError, match="no Milvus Lite file"):
        search_milvus(str(tmp_path / "missing.db"), "tokretrieve", queries, 10)
    with pytest.raises(TokretrieveError, match="at most 16384 hits"):
        search_milvus(uri, "tokretrieve", queries, 16385)
    wider = replace(queries, levels=sp.csr_matrix((3, index.vocab_size + 1), dtype=np.int32))
    with pytest.raises(TokretrieveError, match="vocabulary"):
        search_milvus(uri, "tokretrieve", wider, 10)


def test_a_collection_tokretrieve_did_not_write_is_refused(index, tmp_path):
    uri = str(tmp_path / "other.db")
    with lite(uri) as client:
        plain_collection(client, "plain")
    queries = ExportedQueries.encode(index, QUERIES[:3], "tokens")
    with pytest.raises(TokretrieveError, match="was not written by `tokretrieve export"):
        search_milvus(uri, "plain", queries, 10)


def test_missing_pymilvus_names_the_install(index, tmp_path, monkeypatch):
    real = milvus.importlib.util.find_spec
    monkeypatch.setattr(milvus.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pymilvus" else real(name, *a))
    with pytest.raises(TokretrieveError, match=r"pip install 'tokretrieve\[milvus\]'"):
        export_milvus(index, str(tmp_path / "x.db"), progress=False)
