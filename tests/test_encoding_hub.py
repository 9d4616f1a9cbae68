"""Hub ids without a network: tokretrieve.encoding.models asks once whether the hub answers
(transformers would retry every request for about 25 s before failing), and, where it does
not, loads a hub id from the local hub cache or refuses it at once."""

from __future__ import annotations

import fnmatch
import shutil
import socket

import huggingface_hub
import numpy as np
import pytest
from conftest import sentence_transformers_folder
from huggingface_hub import constants

import tokretrieve.encoding.models as models
from tokretrieve import Encoder, ModelLoadError

TEXTS = ["wing lift drag flow", "heat transfer shock"]


@pytest.fixture
def fresh_answer():
    """hub_reachable's per-process answer, forgotten before and after the test."""
    models.hub_reachable.cache_clear()
    yield
    models.hub_reachable.cache_clear()


def test_the_hub_is_reachable_when_its_endpoint_accepts_a_connection(monkeypatch,
                                                                      fresh_answer):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        assert models.hub_reachable()
        models.hub_reachable.cache_clear()
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1 is obeyed
        assert not models.hub_reachable()
    models.hub_reachable.cache_clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert not models.hub_reachable()  # the port is closed now: refused, not retried


def _hub_cache(root, repo_id: str, folder) -> str:
    """A hub cache (huggingface_hub's layout) holding `folder` as repo_id's main revision."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    return str(snapshot.resolve())


def test_offline_a_cached_hub_id_loads_from_the_cache(tiny_bert_dir, tmp_path, monkeypatch):
    snapshot = _hub_cache(tmp_path, "org/tiny-bert", tiny_bert_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    assert models.resolve_model("org/tiny-bert") == ("org/tiny-bert", "org/tiny-bert")
    assert models._loadable("org/tiny-bert") == ("org/tiny-bert", snapshot)
    cached = Encoder.load("org/tiny-bert", method="mean", device="cpu")
    folder = Encoder.load(str(tiny_bert_dir), method="mean", device="cpu")
    assert cached.model.name == "org/tiny-bert"  # an index records the hub id, not the cache
    np.testing.assert_array_equal(cached.embed(TEXTS), folder.embed(TEXTS))


def test_offline_an_uncached_hub_id_is_refused_without_transformers(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "hub_reachable", lambda: False)

    def no_hub(*args, **kwargs):
        raise AssertionError("transformers was asked for an uncached hub id offline")

    monkeypatch.setattr(models, "_config", no_hub)
    with pytest.raises(ModelLoadError, match=r"could not load model 'org/absent'.*no connection "
                                             r"to the hub, and 'org/absent' is not in the local "
                                             r"hub cache"):
        Encoder.load("org/absent")


def test_online_a_hub_id_runs_as_its_sentence_transformers_files_say(tiny_bert_dir, tmp_path,
                                                                    monkeypatch):
    """Online, transformers loads a hub id by name; its authors' pooling, prompts and head
    live in sentence-transformers files beside the weights, fetched from the same snapshot
    (and only they: the weights are transformers' to fetch). The hub is played by its cache:
    snapshot_download answers from it, and transformers reads it as the cached hub id."""
    folder = sentence_transformers_folder(tiny_bert_dir, tmp_path / "st", "cls_token")
    snapshot = _hub_cache(tmp_path / "hub", "org/tiny-st", folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(models, "hub_reachable", lambda: True)
    asked = []

    def hub_snapshot(repo_id, allow_patterns=None, **kwargs):
        asked.append(allow_patterns)
        return snapshot if repo_id == "org/tiny-st" else None

    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub_snapshot)
    assert models._loadable("org/tiny-st") == ("org/tiny-st", "org/tiny-st")  # by name
    online = Encoder.load("org/tiny-st", device="cpu")
    local = Encoder.load(str(folder), device="cpu")
    assert online.method.pooling == local.method.pooling == "cls"  # the family's is mean
    assert online.model.sentence_head is not None and online.model.sentence_head.normalize
    np.testing.assert_array_equal(online.embed(TEXTS), local.embed(TEXTS))
    fetched = [f for f in ("modules.json", "1_Pooling/config.json", "model.safetensors",
                           "vocab.txt") if any(fnmatch.fnmatch(f, p) for p in asked[0])]
    assert fetched == ["modules.json", "1_Pooling/config.json"]
