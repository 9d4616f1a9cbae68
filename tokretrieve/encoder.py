"""The encoder: texts to dense embeddings (the model's own) and to key-token bags.

Encoding is the dominant cost of the whole tool, so texts are tokenized in one batch call, sorted
by length and run in batches padded only to their own longest member, under
`torch.inference_mode`. Long texts are truncated to `max_length` tokens *inside* the method's
prompt, so a PromptEOL prompt always keeps its closing words and SGPT its closing bracket.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from tokretrieve.errors import TokretrieveError
from tokretrieve.models import DEFAULT_MODEL, LoadedModel, load_model
from tokretrieve.pooling import EmbeddingMethod, get_method
from tokretrieve.projection import KeyTokenProjector, PC1Adjustment, Weighting

DEFAULT_MAX_LENGTH = 256
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_BATCH_SIZE = 32


class Encoder:
    """An LLM embedder used two ways: its dense embedding, and that embedding's key tokens."""

    def __init__(self, model: LoadedModel, method: EmbeddingMethod,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE):
        if max_length <= 0 or batch_size <= 0:
            raise TokretrieveError(
                f"max_length and batch_size must be positive, got {max_length} and {batch_size}")
        self.model = model
        self.dtype = str(model.projection_weight.dtype).removeprefix("torch.")
        self.method = method
        self.max_length = max_length
        self.batch_size = batch_size
        tokenizer = model.tokenizer
        self._pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id)
                             if i is not None), 0)
        self._wrap_ids = {
            is_query: tuple(self._plain_ids(part) for part in method.wrap(is_query))
            for is_query in (False, True)
        }
        self._special_wrap = _special_wrap_ids(tokenizer)
        positions = getattr(model.backbone.config, "max_position_embeddings", None)
        if positions and max_length > positions:
            raise TokretrieveError(f"max_length {max_length} exceeds the {positions} positions "
                                   f"model '{model.name}' can take: use --max-length {positions} "
                                   "or less")
        overhead = len(self._special_wrap[0]) + len(self._special_wrap[1]) + max(
            len(a) + len(b) for a, b in self._wrap_ids.values())
        if max_length <= overhead:
            raise TokretrieveError(f"max_length {max_length} leaves no room for text: the "
                                   f"'{method.name}' prompt and special tokens take {overhead}")
        self._special_ids = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, method: str | None = None,
             max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE,
             device: str | None = None, dtype: str = "float32") -> Encoder:
        """Load a model by alias, folder, GGUF file or hub id with its trained embedding method.

        `dtype="bfloat16"` halves memory and speeds up the forward pass where the hardware has
        bf16 matrix units (recent GPUs and CPUs); embeddings and logits stay float32.
        """
        if dtype not in DTYPES:
            raise TokretrieveError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
        loaded = load_model(model, device=device, dtype=DTYPES[dtype])
        return cls(loaded, get_method(method or loaded.default_method), max_length, batch_size)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def projector(self, adjustment: PC1Adjustment | None = None) -> KeyTokenProjector:
        """A projector through this model's LM head (or tied word embeddings)."""
        return KeyTokenProjector(self.model.projection_weight, self.model.projection_bias,
                                 self._special_ids, adjustment)

    def input_ids(self, texts: Sequence[str], is_query: bool = False) -> list[list[int]]:
        """Token ids fed to the model: special tokens, prompt prefix, truncated text, suffix."""
        prefix, suffix = self._wrap_ids[is_query]
        head, tail = self._special_wrap
        overhead = len(prefix) + len(suffix) + len(head) + len(tail)
        budget = self.max_length - overhead
        texts = list(texts)
        if not texts:
            return []
        bodies = self.tokenizer(texts, add_special_tokens=False, truncation=True,
                                max_length=budget)["input_ids"]
        return [head + prefix + body + suffix + tail for body in bodies]

    def embed(self, texts: Sequence[str], is_query: bool = False,
              progress: bool | tqdm = False) -> np.ndarray:
        """Dense embeddings (texts x hidden, float32), the way the model was trained to embed.

        Empty or whitespace-only texts get a zero vector: they have no content to match.
        `progress` shows a bar, or advances one the caller already shows.
        """
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.model.hidden_size), dtype=np.float32)
        present = [i for i, text in enumerate(texts) if text.strip()]
        ids = self.input_ids([texts[i] for i in present], is_query)
        order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
        own_bar = not isinstance(progress, tqdm)
        bar = (tqdm(total=len(texts), unit="doc", desc="encoding", disable=not progress,
                    smoothing=0.1) if own_bar else progress)
        bar.update(len(texts) - len(present))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                pooled = self._forward([ids[j] for j in batch])
                out[[present[j] for j in batch]] = pooled.float().cpu().numpy()
                bar.update(len(batch))
        if own_bar:
            bar.close()
        return out

    def bags(self, embeddings: np.ndarray, k: int, weighting: Weighting | None = None,
             adjustment: PC1Adjustment | None = None) -> sp.csr_matrix:
        """Key-token bags (texts x vocab CSR) of embeddings; zero embeddings give empty bags.
        `weighting` defaults to the model's (see models.ALIASES)."""
        weighting = weighting or self.model.default_weighting
        projector = self.projector(adjustment)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(embeddings), 256):
                chunk = torch.from_numpy(np.ascontiguousarray(embeddings[start:start + 256]))
                rows.append(projector.bags(chunk, k, weighting))
        matrix = sp.vstack(rows, format="csr") if rows else sp.csr_matrix(
            (0, self.model.vocab_size), dtype=np.float32)
        empty = ~np.any(embeddings, axis=1)
        if empty.any():
            matrix = sp.diags((~empty).astype(np.float32)) @ matrix
            matrix.eliminate_zeros()
        return matrix.tocsr()

    def key_tokens(self, text: str, k: int = 10, weighting: Weighting | None = None,
                   adjustment: PC1Adjustment | None = None,
                   is_query: bool = False) -> list[tuple[str, float]]:
        """The text's key tokens: its top-k vocabulary entries with their weights, best first."""
        bag = self.bags(self.embed([text], is_query=is_query), k, weighting, adjustment)
        return bag_tokens(self.tokenizer, bag.indices, bag.data)

    def _forward(self, batch_ids: list[list[int]]) -> torch.Tensor:
        """One right-padded forward pass through the backbone, pooled."""
        width = max(len(ids) for ids in batch_ids)
        input_ids = torch.full((len(batch_ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            mask[row, :len(ids)] = 1
        device = self.model.device
        output = self.model.backbone(input_ids=input_ids.to(device),
                                     attention_mask=mask.to(device))
        return self.method.pool(output.last_hidden_state, mask.to(device))

    def _plain_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _special_wrap_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text ([CLS]/[SEP], BOS, ...),
    found by encoding one word with and without them."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    return [], []


def bag_tokens(tokenizer, token_ids: np.ndarray, weights: np.ndarray) -> list[tuple[str, float]]:
    """Readable (token, weight) pairs, heaviest first."""
    order = np.argsort(-np.asarray(weights), kind="stable")
    return [(token_text(tokenizer, int(token_ids[i])), float(weights[i])) for i in order]


def token_text(tokenizer, token_id: int) -> str:
    """A token as a reader sees it: decoded, with the word-boundary space made visible as '_'."""
    text = tokenizer.decode([token_id])
    return "_" + text[1:] if text.startswith(" ") and len(text) > 1 else text


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TokretrieveError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TokretrieveError(f"text {i} is {type(text).__name__}, not a string")
    return texts
