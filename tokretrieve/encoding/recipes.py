"""Model recipes: how each embedder family is run, the way its authors run it.

An embedding only means what its training made it mean if the text goes in as in training (the
same prompt or instruction, EOS or not, the same attention) and comes out pooled the same way; and
its key tokens only read right through the vocabulary projection the authors decode with (the
embedder's own LM head, its tied input embeddings, or the LM head of the backbone it was trained
from, as the paper does for SGPT, LLM2Vec and e5-mistral). A `ModelRecipe` holds all of that;
`FAMILIES` is the table of known families, matched to a checkpoint by its configuration
(architecture, model type, sentence-transformers files) before its name; every field can be
overridden, and the recipe an index was built with is stored whole in its manifest, so queries
are embedded exactly as its documents were.

Prompts are templates with one `{text}` (`'query: {text}'`); a template without one is a prefix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

from tokretrieve.errors import TokretrieveError

Pooling = Literal["mean", "weighted_mean", "last", "cls"]
POOLINGS: tuple[str, ...] = ("mean", "weighted_mean", "last", "cls")
PADDING_SIDES: tuple[str, ...] = ("right", "left")
ATTENTIONS: tuple[str, ...] = ("causal", "bidirectional")
# Where the vocabulary projection comes from; any other value names a backbone checkpoint
# (alias, folder, .gguf file or hub id) whose LM head is used.
HEADS: tuple[str, ...] = ("auto", "own", "tied")
TEXT = "{text}"

# PromptEOL (Jiang et al. 2023), the paper's prompt for plain generative LLMs: the last token's
# state predicts the one word that sums the sentence up.
PROMPTEOL = 'This sentence : "{text}" means in one word:"'
WEB_SEARCH = "Given a web search query, retrieve relevant passages that answer the query"


@dataclass(frozen=True)
class ModelRecipe:
    """How a model embeds a text, and through which matrix its embedding becomes tokens.

    - `pooling`: mean, weighted_mean (SGPT: position i weighs i), last (token), cls;
    - `query_prompt`, `document_prompt`: templates around the text, one `{text}` each;
    - `pool_prompt`: whether the prompt's tokens count in the pooling (GritLM and LLM2Vec pool
      the text only; sentence-transformers pools everything unless told otherwise);
    - `append_eos`: add the EOS token after the text when the tokenizer does not (Qwen3-
      Embedding, e5-mistral, gte-Qwen2 read the embedding off it);
    - `padding_side`: where batches are padded; "left" reproduces checkpoints whose authors pad
      left (positions then shift with the batch's longest text, as in their code);
    - `attention`: "causal", "bidirectional", or None for the checkpoint's own;
    - `head`: "auto" (own LM head where the checkpoint has one, else tied input embeddings),
      "own", "tied", or a backbone checkpoint whose LM head is used.
    """

    name: str
    pooling: Pooling
    query_prompt: str = TEXT
    document_prompt: str = TEXT
    pool_prompt: bool = True
    append_eos: bool = False
    padding_side: Literal["right", "left"] = "right"
    attention: Literal["causal", "bidirectional"] | None = None
    head: str = "auto"

    def __post_init__(self) -> None:
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("padding_side", self.padding_side, PADDING_SIDES)
        if self.attention is not None:
            _check_choice("attention", self.attention, ATTENTIONS)
        for field in ("query_prompt", "document_prompt"):
            value = getattr(self, field)
            if not isinstance(value, str) or value.count(TEXT) > 1:
                raise TokretrieveError(f"recipe field {field} must be a template with at most "
                                       f"one {TEXT}, got {value!r}")
        if not isinstance(self.head, str) or not self.head.strip():
            raise TokretrieveError("recipe field head is empty: give auto, own, tied or a "
                                   "backbone checkpoint (alias, folder or hub id)")
        for field in ("pool_prompt", "append_eos"):
            if not isinstance(getattr(self, field), bool):
                raise TokretrieveError(f"recipe field {field} must be true or false")

    def wrap(self, is_query: bool) -> tuple[str, str]:
        """The (prefix, suffix) placed around a text; the text alone gets truncated."""
        template = self.query_prompt if is_query else self.document_prompt
        prefix, _, suffix = template.partition(TEXT)
        return prefix, suffix

    def with_changes(self, changes: Mapping[str, Any]) -> ModelRecipe:
        """This recipe with some fields changed (an override), refusing unknown fields; a
        changed recipe is named after its base with a '+' so that its record says so."""
        changes = {key: value for key, value in changes.items() if value is not None}
        unknown = sorted(set(changes) - set(RECIPE_FIELDS))
        if unknown:
            raise TokretrieveError(f"unknown recipe field(s) {', '.join(unknown)}: choose from "
                                   f"{', '.join(RECIPE_FIELDS)}")
        if not changes or all(getattr(self, k) == v for k, v in changes.items()):
            return self
        name = self.name if self.name.endswith("+") else f"{self.name}+"
        return dataclasses.replace(self, name=name, **changes)

    def record(self) -> dict:
        """The recipe as the manifest stores it (every field, so nothing is re-guessed)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelRecipe:
        unknown = sorted(set(record) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TokretrieveError(f"recipe record has unknown fields {', '.join(unknown)}: it "
                                   "was written by a newer tokretrieve")
        return cls(**record)


RECIPE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelRecipe)
                                       if f.name != "name")


def _check_choice(field: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TokretrieveError(f"unknown {field} {value!r}: choose one of {', '.join(choices)}")


def instruction(task: str, text_label: str = "Query: ") -> str:
    """The 'Instruct: <task>\\nQuery: {text}' prompt of e5-mistral, gte-Qwen2 and kin."""
    return f"Instruct: {task}\n{text_label}{TEXT}"


# The named recipes (`--method NAME`): the families below plus plain pooling rules.
METHODS: dict[str, ModelRecipe] = {recipe.name: recipe for recipe in (
    # Plain generative LLMs (OPT, LLaMA...; the paper's OPT_EOL / LLaMA_EOL and their +CSE
    # adapters): PromptEOL on both sides, last token, left padding as in the paper's code.
    ModelRecipe("prompteol", "last", PROMPTEOL, PROMPTEOL, head="own"),
    # SGPT-*-specb (msmarco): queries in [ ], documents in { }, position-weighted mean; decoded
    # through GPT-Neo's LM head (the checkpoint is a bare model).
    ModelRecipe("sgpt", "weighted_mean", "[{text}]", "{{text}}"),
    ModelRecipe("sgpt-nli", "weighted_mean"),
    # GritLM: mean over the text tokens only, bidirectional attention for embedding.
    ModelRecipe("gritlm", "mean", f"<|user|>\n{WEB_SEARCH}\n<|embed|>\n{TEXT}",
                f"<|embed|>\n{TEXT}", pool_prompt=False, attention="bidirectional",
                head="own"),
    # LLM2Vec: bidirectional, mean pooling without the instruction, Mistral-Instruct's head.
    ModelRecipe("llm2vec", "mean", f"{WEB_SEARCH}: {TEXT}", pool_prompt=False,
                attention="bidirectional", head="mistralai/Mistral-7B-Instruct-v0.2"),
    ModelRecipe("e5-mistral", "last", instruction(WEB_SEARCH), append_eos=True,
                padding_side="left", head="mistralai/Mistral-7B-v0.1"),
    ModelRecipe("gte-qwen2", "last", instruction(WEB_SEARCH), append_eos=True,
                padding_side="left", attention="bidirectional"),
    ModelRecipe("qwen3-embedding", "last", instruction(WEB_SEARCH, "Query:"),
                append_eos=True, padding_side="left"),
    # EmbeddingGemma: a Gemma 3 decoder run bidirectionally, mean pooling (prompt included),
    # its prompts from config_sentence_transformers.json, tied input embeddings.
    ModelRecipe("embeddinggemma", "mean", f"task: search result | query: {TEXT}",
                f"title: none | text: {TEXT}", attention="bidirectional", head="tied"),
    # sentence-transformers BERT-style encoders (all-MiniLM, all-mpnet): mean pooling, no
    # prompt, tied input embeddings (the paper reads all-mpnet through mpnet-base's MLM head:
    # `--head microsoft/mpnet-base` where the hub is reachable).
    ModelRecipe("mean", "mean"),
    ModelRecipe("last", "last"),
    ModelRecipe("cls", "cls"),
    ModelRecipe("weighted_mean", "weighted_mean"),
)}


def get_method(name: str) -> ModelRecipe:
    """A named recipe, naming the valid ones when it is unknown."""
    try:
        return METHODS[name]
    except KeyError:
        raise TokretrieveError(
            f"unknown embedding method '{name}': choose one of {', '.join(METHODS)}"
        ) from None


@dataclass(frozen=True)
class Family:
    """A row of the recipe table: which checkpoints belong to a family, and its recipe.

    `matches(name, config)` reads the checkpoint's configuration (model type, architectures,
    flags) and, where a family shares its architecture with plain models, its name;
    `backbones` maps a size found in the name to the checkpoint whose LM head decodes it."""

    label: str
    recipe: str
    matches: Callable[[str, Any], bool]
    backbones: tuple[tuple[str, str], ...] = ()
    note: str = ""


def _model_type(config: Any) -> str:
    return str(getattr(config, "model_type", "") or "")


def _architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def _named(*words: str) -> Callable[[str, Any], bool]:
    return lambda name, config: any(w in name.lower() for w in words)


def _typed(types: tuple[str, ...], *words: str) -> Callable[[str, Any], bool]:
    return lambda name, config: (_model_type(config) in types
                                 and (not words or any(w in name.lower() for w in words)))


_SGPT_BACKBONES = (("125m", "EleutherAI/gpt-neo-125m"), ("1.3b", "EleutherAI/gpt-neo-1.3B"),
                   ("2.7b", "EleutherAI/gpt-neo-2.7B"), ("5.8b", "EleutherAI/gpt-j-6b"))

FAMILIES: tuple[Family, ...] = (
    Family("SGPT msmarco (specb)", "sgpt",
           lambda n, c: "sgpt" in n.lower() and "specb" in n.lower(),
           _SGPT_BACKBONES, "a bare GPT-Neo/J model: decoded through its backbone's LM head"),
    Family("SGPT nli", "sgpt-nli", _named("sgpt", "weightedmean"), _SGPT_BACKBONES,
           "no brackets; decoded through its backbone's LM head"),
    Family("OPT/LLaMA + PromptEOL + CSE", "prompteol", _named("prompteol"),
           note="the paper's OPT_EOL+CSE / LLaMA_EOL+CSE (PEFT adapters on the base model)"),
    Family("GritLM", "gritlm", _named("gritlm"), note="its own LM head (it is generative too)"),
    Family("LLM2Vec", "llm2vec", _named("llm2vec"),
           note="needs its authors' bidirectional Mistral code and PEFT adapters"),
    Family("e5-mistral", "e5-mistral", _typed(("mistral",), "e5")),
    Family("gte-Qwen2", "gte-qwen2", _typed(("qwen2",), "gte"),
           (("1.5b", "Qwen/Qwen2-1.5B"), ("7b", "Qwen/Qwen2-7B")),
           "bidirectional in its authors' code, which transformers' Qwen2 lacks"),
    Family("Qwen3-Embedding", "qwen3-embedding", _typed(("qwen3",), "embed"),
           (("4b", "Qwen/Qwen3-4B-Base"), ("8b", "Qwen/Qwen3-8B-Base")),
           "0.6B ties its head: its own input embeddings decode it"),
    Family("EmbeddingGemma", "embeddinggemma",
           lambda n, c: (_model_type(c) in ("gemma3_text", "gemma3")
                         and bool(getattr(c, "use_bidirectional_attention", False))),
           note="matched by its bidirectional Gemma 3 config"),
    Family("all-mpnet-base-v2 (MPNet encoders)", "mean", _typed(("mpnet",)),
           note="no MLM head shipped: tied input embeddings (the paper: --head "
                "microsoft/mpnet-base)"),
    Family("all-MiniLM and other BERT-style encoders", "mean",
           lambda n, c: not is_causal_config(c), note="CLS/mean as their Pooling config says"),
    Family("plain generative LLMs (OPT, LLaMA, SmolLM2, Gemma 3...)", "prompteol",
           lambda n, c: is_causal_config(c), note="the paper's OPT_EOL / LLaMA_EOL setting"),
)


def is_causal_config(config: Any) -> bool:
    """Whether a checkpoint's config names a causal LM (an architecture with an LM head)."""
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in _architectures(config))


def model_name(name: str) -> str:
    """The part of a model's name that names the model: a hub id's or folder's last component,
    or in a hub cache path (models--org--name/snapshots/hash) the name; organisations, parent
    folders and snapshot hashes say nothing of the family ('e5' is in many a hash)."""
    parts = PurePath(name).parts
    cached = [part for part in parts if part.startswith("models--")]
    if cached:
        return cached[-1].split("--")[-1]
    return parts[-1] if parts else name


def family_of(name: str, config: Any) -> Family:
    """The first family of the table whose rule matches this checkpoint."""
    name = model_name(name)
    return next(family for family in FAMILIES if family.matches(name, config))


def family_recipe(name: str, config: Any) -> ModelRecipe:
    """The recipe of the checkpoint's family, with the backbone whose head decodes it where the
    family has one for the size its name says."""
    family = family_of(name, config)
    recipe = METHODS[family.recipe]
    for size, backbone in family.backbones:
        if re.search(rf"(?<![\d.]){re.escape(size)}", model_name(name).lower()):
            return dataclasses.replace(recipe, head=backbone)
    return recipe


def describe_families() -> list[tuple[str, str, str]]:
    """(family, recipe name and the fields it sets, note) rows: `tokretrieve recipes`."""
    rows = []
    for family in FAMILIES:
        recipe = METHODS[family.recipe]
        fields = ", ".join(f"{key}={value!r}" for key, value in recipe.record().items()
                           if key != "name" and value != getattr(METHODS["mean"], key))
        rows.append((family.label, f"{recipe.name}: {fields or 'mean pooling, no prompt'}",
                     family.note))
    return rows
