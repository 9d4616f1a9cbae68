"""A model without its weights: its configuration, tokenizer and sentence-transformers files
(a few MB instead of 88-480 MB), and the same architecture rebuilt from them with random
weights.

Encoding throughput depends on a model's shapes (layers, widths, vocabulary, the tokenizer's
lengths), not on its weights' values, so docs/s and GFLOP/s measured on a rebuilt model are the
real model's. That lets the encoding benchmark run on a machine where the weights cannot be
installed (no network, or only a small transfer): export the skeletons where the models are
installed, take the folder there, and pass it as `python -m bench.encoding --skeletons DIR`.
Embeddings and bags of a rebuilt model mean nothing; only its speed does.

    python -m bench.encoding.skeleton --models minilm,mpnet,smollm2 --to skeletons
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.toolkit.cli import parse_list
from tokretrieve.encoding.models import ALIASES, resolve_model
from tokretrieve.encoding.recipes import is_causal_config
from tokretrieve.errors import TokretrieveError
from tokretrieve.index.storage import folder_bytes

# Files that hold weights; everything else of a model folder is small and travels.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack", ".ckpt",
                   ".onnx")
SKELETON_FILE = "skeleton.json"
DEFAULT_MODELS = "minilm,mpnet,smollm2"


def _is_weights(path: Path) -> bool:
    return path.name.endswith(WEIGHT_SUFFIXES) or path.name.endswith(".index.json")


def export_skeleton(model: str, folder: Path) -> Path:
    """Copy every file of `model`'s folder (an alias, a local folder or a GGUF file, resolved
    as Encoder.load resolves it) except its weights into folder/<model>, with skeleton.json
    naming the model and its recipe; returns that folder. A model whose sentence-transformers
    modules carry weights of their own (a Dense layer) is refused: rebuilt at random, its
    speed would be right but nothing would say its modules had been replaced."""
    _, source = resolve_model(model)
    source_dir = Path(source)
    if not source_dir.is_dir():
        raise TokretrieveError(f"{model}: resolves to {source}, not a model folder")
    with_weights = sorted(str(p.relative_to(source_dir)) for p in source_dir.rglob("*")
                          if p.is_file() and _is_weights(p) and p.parent != source_dir)
    if with_weights:
        raise TokretrieveError(f"{model}: its modules hold weights of their own "
                               f"({', '.join(with_weights)}): a skeleton cannot rebuild them")
    out = Path(folder) / Path(model).name.removesuffix(".gguf")
    if out.exists():
        shutil.rmtree(out)
    for path in sorted(source_dir.rglob("*")):
        if path.is_file() and not _is_weights(path):
            target = out / path.relative_to(source_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    method = ALIASES[model].default_method if model in ALIASES else None
    (out / SKELETON_FILE).write_text(json.dumps({"model": model, "method": method}, indent=1))
    return out


def rebuild(skeleton: Path, out: Path, seed: int = 0) -> tuple[Path, str | None]:
    """The skeleton's architecture with random weights (seeded), saved with its tokenizer and
    sentence-transformers files into `out`, a folder Encoder.load takes; returns (out, the
    method the model runs by, None for its folder's own). A causal LM is built with its head,
    an encoder as the bare model (as tokretrieve loads the encoders it ships: their
    vocabulary projection is the input embedding matrix)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    skeleton = Path(skeleton)
    described = skeleton / SKELETON_FILE
    if not described.is_file():
        raise TokretrieveError(f"{skeleton} is not a model skeleton (no {SKELETON_FILE}): "
                               "make one with `python -m bench.encoding.skeleton`")
    method = json.loads(described.read_text())["method"]
    config = AutoConfig.from_pretrained(skeleton)
    torch.manual_seed(seed)
    built = (AutoModelForCausalLM if is_causal_config(config) else AutoModel).from_config(config)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(skeleton, out, ignore=shutil.ignore_patterns(SKELETON_FILE))
    built.save_pretrained(out)
    return out, method


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.encoding.skeleton",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"aliases, folders or GGUF files (default {DEFAULT_MODELS})")
    parser.add_argument("--to", type=Path, required=True, help="folder the skeletons go to")
    args = parser.parse_args(argv)
    for model in parse_list(args.models, str, "--models"):
        try:
            out = export_skeleton(model, args.to)
        except TokretrieveError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{model}: {out} ({folder_bytes(out) / 2**20:.1f} MiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
