"""What a sentence-transformers model folder says about running its model.

sentence-transformers checkpoints carry their authors' recipe in files beside the weights:
`modules.json` lists the modules (Transformer, Pooling, Dense, Normalize) in order,
`1_Pooling/config.json` says how hidden states are pooled, and `config_sentence_transformers.json`
holds the query and document prompts. tokretrieve honours all of them: the pooling and prompts
shape the embedding the vocabulary projection reads (the pooled hidden state, which the LM head
understands), and the modules after Pooling make the model's *sentence embedding*, the one its
dense retrieval uses. `SentenceHead` is those modules in numpy: the dense side applies them to
the pooled embeddings an index stores, documents and queries alike (Encoder.sentence_embedding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokretrieve.errors import ModelLoadError

# sentence-transformers' Pooling modes and the pooling rules (tokretrieve.encoding.recipes)
# that pool the same way; its other modes (max, mean_sqrt_len) have none here.
_POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                  "pooling_mode_lasttoken": "last",
                  "pooling_mode_weightedmean_tokens": "weighted_mean"}
# sentence-transformers 6's `pooling_mode` names, as the flags older versions write.
_NAMED_MODES = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                "lasttoken": "pooling_mode_lasttoken",
                "weightedmean": "pooling_mode_weightedmean_tokens"}
# Dense activations sentence-transformers writes by class name, in numpy.
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": lambda x: x,
                "torch.nn.modules.activation.Tanh": np.tanh}


def _modules(folder: Path) -> list[dict]:
    file = folder / "modules.json"
    if not file.is_file():
        return []
    try:
        modules = json.loads(file.read_text(encoding="utf-8"))
        return [m for m in modules if isinstance(m, dict) and "type" in m]
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{file} cannot be read ({error}): fix or remove it") from None


def _module_config(folder: Path, module: dict) -> dict:
    file = folder / str(module.get("path", "")) / "config.json"
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{folder}/modules.json names {module['type']} at "
                             f"{module.get('path')!r}, whose config cannot be read ({error})"
                             ) from None


def pooling(folder: Path) -> dict | None:
    """The recipe fields the folder's Pooling module sets (pooling, pool_prompt), None for a
    folder without one; a pooling no rule here reproduces is refused, naming it."""
    module = next((m for m in _modules(folder) if m["type"].endswith(".Pooling")), None)
    if module is None:
        return None
    config = _module_config(folder, module)
    if isinstance(config.get("pooling_mode"), str):  # sentence-transformers 6 writes one name
        modes = [_NAMED_MODES.get(config["pooling_mode"], config["pooling_mode"])]
    else:
        modes = sorted(key for key, on in config.items()
                       if key.startswith("pooling_mode") and on)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ModelLoadError(f"{folder}: sentence-transformers pooling {', '.join(modes) or 'none'}"
                             " has no tokretrieve pooling (mean, cls, last, weighted mean): "
                             "give --method or --pooling")
    return {"pooling": _POOLING_MODES[modes[0]],
            "pool_prompt": bool(config.get("include_prompt", True))}


def prompts(folder: Path) -> dict:
    """The recipe fields the folder's prompts set (query_prompt, document_prompt, as
    templates): sentence-transformers prompts are prefixes; 'passage' is an older name for the
    document side. Empty where the folder names none."""
    file = folder / "config_sentence_transformers.json"
    if not file.is_file():
        return {}
    try:
        named = json.loads(file.read_text(encoding="utf-8")).get("prompts") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise ModelLoadError(f"{file} cannot be read ({error}): fix or remove it") from None
    found = {}
    for field, keys in (("query_prompt", ("query",)), ("document_prompt", ("document",
                                                                            "passage"))):
        prompt = next((named[k] for k in keys if isinstance(named.get(k), str)), None)
        if prompt is not None:
            found[field] = prompt + "{text}"
    return found


@dataclass(frozen=True)
class DenseLayer:
    weight: np.ndarray  # (out, in) float32
    bias: np.ndarray | None
    activation: str


@dataclass(frozen=True)
class SentenceHead:
    """The modules after Pooling (Dense layers, Normalize): pooled vector -> the model's
    sentence embedding, as sentence-transformers computes it."""

    layers: tuple[DenseLayer, ...]
    normalize: bool

    def apply(self, pooled: np.ndarray) -> np.ndarray:
        vectors = np.asarray(pooled, dtype=np.float32)
        for layer in self.layers:
            vectors = vectors @ layer.weight.T
            if layer.bias is not None:
                vectors = vectors + layer.bias
            vectors = _ACTIVATIONS[layer.activation](vectors)
        if self.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.astype(np.float32)


def sentence_head(folder: Path) -> SentenceHead | None:
    """The folder's modules after Pooling as a SentenceHead, None where there are none."""
    modules = _modules(folder)
    names = [m["type"] for m in modules]
    start = next((i + 1 for i, name in enumerate(names) if name.endswith(".Pooling")), None)
    if start is None:
        return None
    layers, normalize = [], False
    for module in modules[start:]:
        kind = module["type"]
        if kind.endswith(".Normalize"):
            normalize = True
        elif kind.endswith(".Dense"):
            layers.append(_dense_layer(folder, module))
        else:
            raise ModelLoadError(f"{folder}: sentence-transformers module {kind} after Pooling "
                                 "has no tokretrieve equivalent (Dense and Normalize have)")
    return SentenceHead(tuple(layers), normalize) if layers or normalize else None


def _dense_layer(folder: Path, module: dict) -> DenseLayer:
    config = _module_config(folder, module)
    activation = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    if activation not in _ACTIVATIONS:
        raise ModelLoadError(f"{folder}/{module['path']}: Dense activation {activation} is not "
                             f"supported (only {', '.join(_ACTIVATIONS)})")
    from safetensors.numpy import load_file

    path = folder / module["path"]
    weights_file = path / "model.safetensors"
    if weights_file.is_file():
        tensors = load_file(str(weights_file))
    else:
        import torch

        tensors = {k: v.float().numpy() for k, v in torch.load(
            path / "pytorch_model.bin", map_location="cpu", weights_only=True).items()}
    weight = tensors.get("linear.weight")
    if weight is None:
        raise ModelLoadError(f"{path}: Dense module without linear.weight")
    bias = tensors.get("linear.bias") if config.get("bias", True) else None
    return DenseLayer(weight.astype(np.float32),
                      None if bias is None else bias.astype(np.float32), activation)
