"""bench.encoding.skeleton: a model's folder without its weights, rebuilt with random weights
of the same architecture, and the encoding benchmark run on it (--skeletons, --device)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_beir import write_beir

from bench.encoding.__main__ import main
from bench.encoding.measure import count_forward_flops
from bench.encoding.skeleton import SKELETON_FILE, export_skeleton, rebuild
from tokretrieve import Encoder
from tokretrieve.errors import TokretrieveError

TEXTS = ["wing flutter supersonic speed", "heat conduction shell", "rocket nozzle"]


@pytest.fixture(params=["llama", "bert"])
def model_dir(request, tiny_llama_dir, tiny_bert_dir):
    return tiny_llama_dir if request.param == "llama" else tiny_bert_dir


def test_a_skeleton_keeps_every_file_but_the_weights(model_dir, tmp_path):
    skeleton = export_skeleton(str(model_dir), tmp_path)
    kept = {p.relative_to(skeleton).as_posix() for p in skeleton.rglob("*") if p.is_file()}
    original = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert "model.safetensors" in original
    assert kept == (original - {"model.safetensors"}) | {SKELETON_FILE}
    assert json.loads((skeleton / SKELETON_FILE).read_text()) == {"model": str(model_dir),
                                                                  "method": None}


def test_a_rebuilt_model_has_the_architecture_and_flops_but_not_the_weights(model_dir,
                                                                            tmp_path):
    skeleton = export_skeleton(str(model_dir), tmp_path / "skeletons")
    rebuilt, method = rebuild(skeleton, tmp_path / "rebuilt")
    assert method is None
    real, fake = Encoder.load(str(model_dir)), Encoder.load(str(rebuilt))
    assert (fake.model.hidden_size, fake.model.vocab_size, fake.method.name) == \
        (real.model.hidden_size, real.model.vocab_size, real.method.name)
    assert fake.model.content_hash != real.model.content_hash
    ids = torch.full((2, 7), 5, dtype=torch.long)
    mask = torch.ones((2, 7), dtype=torch.long)
    assert count_forward_flops(fake.model.backbone, ids, mask) == \
        count_forward_flops(real.model.backbone, ids, mask)
    assert [len(i) for i in fake.input_ids(TEXTS)] == [len(i) for i in real.input_ids(TEXTS)]
    assert fake.embed(TEXTS).shape == real.embed(TEXTS).shape


def test_rebuilding_is_seeded(tiny_bert_dir, tmp_path):
    skeleton = export_skeleton(str(tiny_bert_dir), tmp_path / "skeletons")
    hashes = [Encoder.load(str(rebuild(skeleton, tmp_path / name, seed=seed)[0]))
              .model.content_hash for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    assert hashes[0] == hashes[1] != hashes[2]


def test_an_alias_skeleton_keeps_its_method(tiny_bert_dir, tmp_path, monkeypatch):
    import bench.encoding.skeleton as skeleton_module

    monkeypatch.setattr(skeleton_module, "resolve_model",
                        lambda name: (name, str(tiny_bert_dir)))
    skeleton = export_skeleton("minilm", tmp_path)
    assert skeleton.name == "minilm"
    assert rebuild(skeleton, tmp_path / "rebuilt")[1] == "mean"  # minilm's alias method


def test_weighted_modules_and_non_skeletons_are_refused(tiny_bert_dir, tmp_path):
    with_dense = shutil.copytree(tiny_bert_dir, tmp_path / "with_dense")
    (with_dense / "2_Dense").mkdir()
    (with_dense / "2_Dense" / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(TokretrieveError, match=r"2_Dense/model\.safetensors"):
        export_skeleton(str(with_dense), tmp_path / "skeletons")
    with pytest.raises(TokretrieveError, match="not a model skeleton"):
        rebuild(tiny_bert_dir, tmp_path / "rebuilt")


def test_the_benchmark_runs_on_skeletons_and_says_so(tiny_bert_dir, tmp_path):
    export_skeleton(str(tiny_bert_dir), tmp_path / "skeletons")
    corpus = write_beir(tmp_path / "beir")
    assert main(["--models", tiny_bert_dir.name, "--skeletons", str(tmp_path / "skeletons"),
                 "--dtypes", "float32", "--docs", "5", "--sweep-docs", "3", "--rounds", "1",
                 "--threads", "1", "--matmul-sizes", "64", "--corpus", str(corpus),
                 "--output", str(tmp_path / "out")]) == 0
    (run,) = (tmp_path / "out").iterdir()
    record = json.loads((run / "results.json").read_text())
    model = record["models"][tiny_bert_dir.name]
    assert model["model"]["weights"].startswith("random")
    assert model["rows"][0]["docs"] == 5 and model["rows"][0]["docs_per_s"] > 0
    assert record["settings"]["device"] == "cpu" and record["device"] == {"type": "cpu"}
    assert "Weights: random" in (run / "report.md").read_text()
    assert not any((tmp_path / "out").glob("rebuilt-*"))


def test_a_missing_skeleton_is_refused_by_name(tmp_path):
    corpus = write_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match=r"--skeletons: .*not a model skeleton"):
        main(["--models", "nothing", "--skeletons", str(tmp_path), "--dtypes", "float32",
              "--docs", "2", "--threads", "1", "--matmul-sizes", "64", "--corpus", str(corpus),
              "--output", str(tmp_path / "out")])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_cuda_device_is_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match=r"--device cuda: .*sees no CUDA device"):
        main(["--device", "cuda", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="--device tpu: give cpu or cuda"):
        main(["--device", "tpu", "--output", str(tmp_path)])
    assert not any(tmp_path.iterdir())
