"""The encoder: texts to dense embeddings (the model's own) and to key-token bags.

It reads like sentence-transformers' SparseEncoder: `encode_document` / `encode_query` give
sparse bags (texts x vocabulary CSR), `decode` turns a bag back into (token, weight) pairs, and
`embed` gives the dense embedding the bags are projected from. How an embedding becomes a bag
(bag size, weighting, PC1 adjustment, variant merging) is the encoder's `BagRecipe`; the build
step fits the PC1 adjustment on a corpus and hands back an encoder carrying it.

Encoding is the dominant cost of the whole tool, so texts are tokenized in one batch call, sorted
by length and run in batches padded only to their own longest member, under
`torch.inference_mode`. Long texts are truncated to `max_length` tokens *inside* the method's
prompt, so a PromptEOL prompt always keeps its closing words and SGPT its closing bracket.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from tokretrieve.corpus import check_texts
from tokretrieve.encoding.choices import (
    DEFAULT_BAG_SIZE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    DTYPE_CHOICES,
    DTYPE_NAMES,
)
from tokretrieve.encoding.literal import (
    LiteralFit,
    LiteralWeights,
    mixed_bags,
    token_counts,
)
from tokretrieve.encoding.models import LoadedModel, default_device, load_model
from tokretrieve.encoding.parallel import forward_all
from tokretrieve.encoding.pooling import pool
from tokretrieve.encoding.projection import (
    KeyTokenProjector,
    PC1Adjustment,
    Weighting,
    check_weighting,
)
from tokretrieve.encoding.recipes import ModelRecipe
from tokretrieve.encoding.tokenizer import bag_tokens
from tokretrieve.encoding.vocabulary import merge_variants
from tokretrieve.errors import TokretrieveError, check_count

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
# Rows projected to vocabulary logits at once: batch x vocabulary floats must stay small.
PROJECTION_BATCH = 256


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 matrix products in hardware: a CUDA device that supports
    bf16, or an x86 CPU with AVX512-BF16 or AMX tiles (as torch detects them; a torch without
    these probes counts as without). Without them torch emulates bf16: on a 2-core AVX2 CPU
    mpnet encoded 0.6 docs/s in bf16 against 2.6 in float32, and a square bf16 torch.mm ran
    at 2.0 GFLOP/s against 151 (bench/results/encoding/20261202-042356)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if not device.startswith("cpu"):
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@dataclass(frozen=True, eq=False)
class BagRecipe:
    """How an embedding becomes a bag of key tokens.

    - `bag_size`: tokens kept per text (the top ones with a strictly positive weight);
    - `weighting`: how weights derive from logits (tokretrieve.encoding.projection), None for
      the model's measured default;
    - `adjustment`: the PC1 adjustment fitted on a corpus, None for none;
    - `token_map`: case and word-boundary variants folded into one id, None to keep them apart;
    - `literal`: the document's own tokens, BM25-weighted, beside the aligned ones
      (tokretrieve.encoding.literal): None for the model's measured default, False for none;
    - `literal_fit`: the corpus statistics those weights need, fitted by the build step.
    """

    bag_size: int = DEFAULT_BAG_SIZE
    weighting: Weighting | None = None
    adjustment: PC1Adjustment | None = None
    token_map: np.ndarray | None = None
    literal: LiteralWeights | bool | None = None
    literal_fit: LiteralFit | None = None


class Encoder:
    """An LLM embedder used two ways: its dense embedding, and that embedding's key tokens."""

    def __init__(self, model: LoadedModel, method: ModelRecipe | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE,
                 recipe: BagRecipe | None = None):
        """`method`: the model recipe (tokretrieve.encoding.recipes), the one the model was
        loaded with by default; another may change prompts and pooling, not what loading
        settled (attention, head): load the model with it instead.

        On a CPU, `embed` runs up to torch's thread count of batches side by side, one thread
        each (tokretrieve.encoding.parallel: faster, same embeddings); set the attribute
        `side_by_side = False` to run one batch at a time on all the threads instead (while
        other torch work must keep its threads during an encoding)."""
        if max_length <= 0 or batch_size <= 0:
            raise TokretrieveError(
                f"max_length and batch_size must be positive, got {max_length} and {batch_size}")
        method = method or model.recipe
        for field in ("attention", "head"):
            if getattr(method, field) != getattr(model.recipe, field):
                raise TokretrieveError(
                    f"recipe '{method.name}' has {field} {getattr(method, field)!r} but the "
                    f"model was loaded with {getattr(model.recipe, field)!r}: load it with "
                    "this recipe (Encoder.load(..., method=recipe))")
        self.model = model
        self.recipe = _check_recipe(recipe or BagRecipe())
        self.dtype = str(model.projection_weight.dtype).removeprefix("torch.")
        self.method = method
        self.max_length = max_length
        self.batch_size = batch_size
        self.side_by_side = True
        tokenizer = model.tokenizer
        self._pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id)
                             if i is not None), 0)
        self._special_wrap = _special_wrap_ids(tokenizer)
        eos = tokenizer.eos_token_id
        if method.append_eos and eos is not None and self._special_wrap[1][-1:] != [eos]:
            self._special_wrap = (self._special_wrap[0], self._special_wrap[1] + [eos])
        positions = getattr(model.backbone.config, "max_position_embeddings", None)
        if positions and max_length > positions:
            raise TokretrieveError(f"max_length {max_length} exceeds the {positions} positions "
                                   f"model '{model.name}' can take: use --max-length {positions} "
                                   "or less")
        overhead = len(self._special_wrap[0]) + len(self._special_wrap[1]) + max(
            len(self._plain_ids(prefix)) + len(self._plain_ids(suffix))
            for prefix, suffix in (method.wrap(False), method.wrap(True)))
        if max_length <= overhead:
            raise TokretrieveError(f"max_length {max_length} leaves no room for text: the "
                                   f"'{method.name}' prompt and special tokens take {overhead}")
        # Only the special ids the projection has a row for: a tokenizer may hold added special
        # tokens past the last row of the embedding matrix (EmbeddingGemma's id 262144 of 262,144
        # rows), which no bag can contain anyway.
        self._special_ids = np.array(sorted(i for i in set(tokenizer.all_special_ids)
                                            if 0 <= i < model.vocab_size), dtype=np.int64)

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, method: str | ModelRecipe | None = None,
             max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE,
             device: str | None = None, dtype: str = "float32",
             bag_size: int = DEFAULT_BAG_SIZE, weighting: Weighting | None = None,
             literal: LiteralWeights | bool | None = None,
             overrides: Mapping[str, object] | None = None) -> Encoder:
        """Load a model by alias, folder, GGUF file or hub id, run the way its family's recipe
        says (tokretrieve.encoding.recipes): `method` names another recipe or gives a whole
        one, `overrides` changes some of its fields (`{"query_prompt": "query: {text}",
        "head": "tied"}`).

        `dtype="bfloat16"` halves memory and speeds up the forward pass where the hardware has
        bf16 matrix units (recent GPUs and CPUs); embeddings and logits stay float32. Elsewhere
        bf16 is emulated and several times slower: `dtype="auto"` takes bf16 only where the
        device computes it natively (`native_bf16`), else float32.
        `bag_size`, `weighting` and `literal` start the encoder's BagRecipe (no PC1 adjustment
        nor literal statistics: those are fitted on a corpus by the build step).
        """
        if dtype not in DTYPE_CHOICES:
            raise TokretrieveError(f"unknown dtype '{dtype}': choose one of "
                                   f"{', '.join(DTYPE_CHOICES)}")
        recipe = _check_recipe(BagRecipe(bag_size, weighting, literal=literal))  # before loading
        device = default_device(device)  # auto's answer depends on it
        if dtype == "auto":
            dtype = "bfloat16" if native_bf16(device) else "float32"
        loaded = load_model(model, device=device, dtype=DTYPES[dtype], method=method,
                            overrides=overrides)
        return cls(loaded, None, max_length, batch_size, recipe)

    def with_bags(self, **changes) -> Encoder:
        """This encoder (same model, nothing reloaded) with some BagRecipe fields changed,
        e.g. `encoder.with_bags(bag_size=128)` or `with_bags(adjustment=fitted)`."""
        other = copy.copy(self)
        other.recipe = _check_recipe(replace(self.recipe, **changes))
        return other

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def weighting(self) -> Weighting:
        """The recipe's weighting, or the model's default where the recipe leaves it open."""
        return self.recipe.weighting or self.model.default_weighting  # type: ignore[return-value]

    @property
    def literal(self) -> LiteralWeights | None:
        """The recipe's literal weights (None: none), the model's default where the recipe
        leaves it open."""
        literal = self.recipe.literal
        if literal is None:
            return self.model.default_literal
        return literal if isinstance(literal, LiteralWeights) else None

    def literal_stopwords(self) -> np.ndarray | None:
        """The token ids literal weights drop from document bags (None: none)."""
        literal = self.literal
        if literal is None or not literal.stopwords:
            return None
        return self.model.stopword_ids()

    def token_counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Texts' own token counts as literal weights count them (texts x vocabulary), stop
        words dropped when the literal weights say so."""
        return token_counts(self.tokenizer, check_texts(texts), self.model.vocab_size,
                            self.recipe.token_map, self.literal_stopwords())

    def document_bags(self, texts: Sequence[str], embeddings: np.ndarray) -> sp.csr_matrix:
        """The bags an index stores for documents with these texts and embeddings: the aligned
        bags, plus literal weights when the recipe has them, under its fitted statistics."""
        aligned = self.bags(embeddings)
        literal = self.literal
        if literal is None:
            return aligned
        if self.recipe.literal_fit is None:
            raise TokretrieveError("literal weights need corpus statistics: build an index "
                                   "(they are fitted on its documents), or add to one")
        return mixed_bags(self.token_counts(texts), aligned, self.recipe.literal_fit, literal,
                          self.literal_stopwords())

    def projector(self, adjustment: PC1Adjustment | None = None,
                  exclude_special: bool = True) -> KeyTokenProjector:
        """A projector through the recipe's vocabulary projection (own LM or MLM head, tied
        word embeddings, or a backbone's LM head); bags never hold special tokens, the
        paper's measurements keep them (`exclude_special=False`)."""
        excluded = self._special_ids if exclude_special else np.zeros(0, dtype=np.int64)
        return KeyTokenProjector(self.model.projection_weight, self.model.projection_bias,
                                 excluded, adjustment, self.model.projection_transform)

    def input_ids(self, texts: Sequence[str], is_query: bool = False) -> list[list[int]]:
        """Token ids fed to the model: special tokens, prompt prefix, truncated text, suffix,
        closing special tokens (and EOS where the recipe appends it)."""
        return [ids for ids, _ in self._inputs(texts, is_query)]

    def text_ids(self, texts: Sequence[str], is_query: bool = False) -> list[list[int]]:
        """The ids of each text's own tokens among its input ids (same truncation), without
        the prompt and the special tokens around it."""
        return [ids[span] for ids, span in self._inputs(texts, is_query)]

    def _inputs(self, texts: Sequence[str], is_query: bool) -> list[tuple[list[int], slice]]:
        """Each text's input ids and the positions of its own tokens among them.

        The prompt and the text are tokenized as one string, as their authors' code does (a
        prompt ending in a space and the text's first word make other tokens alone than
        together); a text too long is cut after its last token that fits, so the prompt's
        closing words always stay."""
        texts = list(texts)
        if not texts:
            return []
        prefix, suffix = self.method.wrap(is_query)
        head, tail = self._special_wrap
        budget = self.max_length - len(head) - len(tail)
        inputs = []
        for text, (ids, body) in zip(texts, self._wrapped_ids(prefix, texts, suffix),
                                     strict=True):
            while len(ids) > budget and body.stop > body.start:
                keep = body.stop - body.start - (len(ids) - budget)
                cut = self._text_end(text, max(keep, 0))
                text = text[:cut] if cut < len(text) else text[:-1]
                ((ids, body),) = self._wrapped_ids(prefix, [text], suffix)
            inputs.append((head + ids[:budget] + tail,
                           slice(len(head) + body.start, len(head) + body.stop)))
        return inputs

    def _wrapped_ids(self, prefix: str, texts: list[str], suffix: str
                     ) -> list[tuple[list[int], slice]]:
        """The ids of each prefix + text + suffix (one batch call), and the positions of the
        text's own tokens."""
        # verbose=False: a text longer than the model takes is cut below, not warned about
        encoded = self.tokenizer([prefix + text + suffix for text in texts],
                                 add_special_tokens=False, return_offsets_mapping=True,
                                 verbose=False)
        found = []
        for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"],
                                      strict=True):
            start, end = len(prefix), len(prefix) + len(text)
            own = [i for i, (a, b) in enumerate(offsets) if b > start and a < end]
            found.append((ids, slice(own[0], own[-1] + 1) if own else slice(0, 0)))
        return found

    def _text_end(self, text: str, tokens: int) -> int:
        """Where the text ends once cut to its first `tokens` tokens (tokenized alone)."""
        if tokens == 0:
            return 0
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 verbose=False)["offset_mapping"]
        return offsets[min(tokens, len(offsets)) - 1][1]

    def embed(self, texts: Sequence[str], is_query: bool = False,
              progress: bool | tqdm = False) -> np.ndarray:
        """Dense embeddings (texts x hidden, float32), the way the model was trained to embed.

        Empty or whitespace-only texts get a zero vector: they have no content to match.
        `progress` shows a bar, or advances one the caller already shows.
        """
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.model.hidden_size), dtype=np.float32)
        present = [i for i, text in enumerate(texts) if text.strip()]
        ids = self._inputs([texts[i] for i in present], is_query)
        order = sorted(range(len(ids)), key=lambda j: -len(ids[j][0]))
        own_bar = not isinstance(progress, tqdm)
        bar = (tqdm(total=len(texts), unit="doc", desc="encoding", disable=not progress,
                    smoothing=0.1) if own_bar else progress)
        bar.update(len(texts) - len(present))
        batches = [order[start:start + self.batch_size]
                   for start in range(0, len(order), self.batch_size)]
        pooled_batches = forward_all(self._forward, [[ids[j] for j in batch] for batch in batches],
                                     self.model.device, self.side_by_side)
        for batch, pooled in zip(batches, pooled_batches, strict=True):
            out[[present[j] for j in batch]] = pooled.float().cpu().numpy()
            bar.update(len(batch))
        if own_bar:
            bar.close()
        return out

    def sentence_embedding(self, embeddings: np.ndarray) -> np.ndarray:
        """The model's own sentence embedding of pooled embeddings (as `embed` returns): its
        sentence-transformers modules after Pooling (Dense, Normalize) applied, where it has
        any; dense retrieval uses these, the vocabulary projection the pooled states."""
        head = self.model.sentence_head
        return np.asarray(embeddings, dtype=np.float32) if head is None else head.apply(
            embeddings)

    def bags(self, embeddings: np.ndarray, bag_size: int | None = None) -> sp.csr_matrix:
        """Key-token bags (texts x vocabulary CSR, float32) of embeddings, by the recipe;
        `bag_size` overrides the recipe's. Zero embeddings (empty texts) give empty bags."""
        recipe = self.recipe
        bag_size = recipe.bag_size if bag_size is None else check_count(bag_size, "bag_size")
        projector = self.projector(recipe.adjustment)
        rows = []
        with torch.inference_mode():
            for start in range(0, len(embeddings), PROJECTION_BATCH):
                # a copy: stored embeddings are read-only memory maps, which torch refuses
                chunk = torch.from_numpy(np.array(embeddings[start:start + PROJECTION_BATCH],
                                                  dtype=np.float32))
                rows.append(projector.bags(chunk, bag_size, self.weighting))
        matrix = sp.vstack(rows, format="csr") if rows else sp.csr_matrix(
            (0, self.model.vocab_size), dtype=np.float32)
        empty = ~np.any(embeddings, axis=1)
        if empty.any():
            matrix = sp.diags((~empty).astype(np.float32)) @ matrix
            matrix.eliminate_zeros()
        return merge_variants(matrix.tocsr(), recipe.token_map)

    def encode_document(self, texts: Sequence[str], progress: bool | tqdm = False
                        ) -> sp.csr_matrix:
        """Documents' key-token bags (texts x vocabulary CSR), document side of the method:
        the aligned bags, with literal weights where the recipe carries fitted statistics (an
        encoder from `index_encoder`), as the index would store them."""
        embeddings = self.embed(texts, progress=progress)
        if self.literal is not None and self.recipe.literal_fit is not None:
            return self.document_bags(texts, embeddings)
        return self.bags(embeddings)

    def encode_query(self, texts: Sequence[str], bag_size: int | None = None) -> sp.csr_matrix:
        """Queries' key-token bags, query side of the method (its query prompt), by the same
        recipe as the documents; `bag_size` may make them lighter than the documents'."""
        return self.bags(self.embed(texts, is_query=True), bag_size)

    def decode(self, bags: sp.spmatrix, top_k: int | None = None
               ) -> list[tuple[str, float]] | list[list[tuple[str, float]]]:
        """Bags as readable (token, weight) pairs, heaviest first, at most `top_k` per bag:
        one list for a single bag (1 x vocabulary), a list of lists for several."""
        if top_k is not None:
            check_count(top_k, "top_k")
        matrix = sp.csr_matrix(bags)
        decoded = [bag_tokens(self.tokenizer, matrix.indices[start:end],
                              matrix.data[start:end])[:top_k]
                   for start, end in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)]
        return decoded[0] if matrix.shape[0] == 1 else decoded

    def key_tokens(self, text: str, top_k: int = 10,
                   is_query: bool = False) -> list[tuple[str, float]]:
        """A text's key tokens: the `top_k` heaviest of its bag, with their weights."""
        encode = self.encode_query if is_query else self.encode_document
        return self.decode(encode([text]), top_k)  # type: ignore[return-value]

    def _forward(self, batch: list[tuple[list[int], slice]]) -> torch.Tensor:
        """One forward pass through the backbone, padded on the recipe's side, pooled over
        all positions or, where the recipe pools without its prompt, the text's own."""
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        pooled = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, text_span) in enumerate(batch):
            start = width - len(ids) if self.method.padding_side == "left" else 0
            input_ids[row, start:start + len(ids)] = torch.tensor(ids)
            mask[row, start:start + len(ids)] = 1
            span = slice(None) if self.method.pool_prompt else text_span
            pooled[row, start:start + len(ids)][span] = 1
        device = self.model.device
        output = self.model.backbone(input_ids=input_ids.to(device),
                                     attention_mask=mask.to(device))
        return pool(self.method.pooling, output.last_hidden_state, pooled.to(device))

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


def _check_recipe(recipe: BagRecipe) -> BagRecipe:
    check_count(recipe.bag_size, "bag_size")
    if recipe.weighting is not None:
        check_weighting(recipe.weighting)
    if recipe.literal is True:  # the lever's standard settings
        recipe = replace(recipe, literal=LiteralWeights())
    if not (recipe.literal is None or recipe.literal is False
            or isinstance(recipe.literal, LiteralWeights)):
        raise TokretrieveError(f"literal must be LiteralWeights, True, False or None, got "
                               f"{recipe.literal!r}")
    return recipe
