"""The paper-analysis report: does a model's embedding decode to its text's tokens, and how PC1
and its adjustment shape that (arXiv 2406.17378), measured on a sample of the user's corpus.

`analyze` computes everything (tokretrieve.encoding.alignment holds the maths) into an `Analysis`;
`render_markdown` and the plot functions turn it into report.md and PNGs, so that a report can be
re-laid out (several models in one page) without encoding anything again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import torch

from tokretrieve.encoding.alignment import (
    DEFAULT_CALIBRATION_K,
    DEFAULT_GRID,
    DEFAULT_KS,
    DEFAULT_MAX_DF,
    DEFAULT_SAMPLE,
    AlignmentMetrics,
    AlignmentSample,
    Calibration,
    ComponentChange,
    PaperMetrics,
    Spectrum,
    alignment_curve,
    calibration_from_curve,
    component_change,
    decoded_ids,
    literal_token_ids,
    metrics_of_ranking,
    own_token_ids,
    own_token_mask,
    prepare_sample,
    projected_alignment,
    spectrum,
    uninformative_tokens,
)
from tokretrieve.encoding.encoder import Encoder
from tokretrieve.encoding.projection import PC1Adjustment, first_principal_direction
from tokretrieve.encoding.tokenizer import token_text
from tokretrieve.encoding.vocabulary import normalise_token, variant_map

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

FIGURE_DPI = 80
SHOWN_COMPONENTS = 20
EXAMPLE_TOKENS = 10


@dataclass
class Example:
    """One text's top decoded tokens before and after the calibrated adjustment, as
    (token as a reader sees it, whether it is one of the text's own informative tokens)."""

    text: str
    before: list[tuple[str, bool]]
    after: list[tuple[str, bool]]


@dataclass
class BackboneComparison:
    """The embedder against its backbone LLM: the per-component change, and the backbone's own
    alignment before and after the authors' move along its v1 by λ_v1 = mean_difference[0]."""

    name: str
    change: ComponentChange | None = None
    before: AlignmentMetrics | None = None
    after: AlignmentMetrics | None = None
    note: str = ""


@dataclass
class PaperAlignment:
    """The paper's measurements of one model (its Table 2 and alignment rates), at λ = 0 and at
    the calibrated λ: the example sentence's top tokens marked literal / variant / other, Hit@10,
    LAR and GAR on the sample, and each sampled text's top-10 ids (to compare two models that
    share a vocabulary token for token, `vocabulary` being its fingerprint)."""

    recipe: dict
    head: str
    example: dict[float, list[tuple[str, str]]]
    metrics: dict[float, PaperMetrics]
    top_ids: dict[float, np.ndarray]
    vocabulary: str


@dataclass
class Analysis:
    """Everything report.md shows, for one model on one corpus sample."""

    model: str
    method: str
    max_length: int
    hidden_size: int
    texts: int
    spectrum: Spectrum
    curve: list[tuple[float, AlignmentMetrics]]
    calibration: Calibration
    examples: list[Example]
    uninformative: int
    max_df: float
    seconds: float
    backbone: BackboneComparison | None = None
    figures: dict[str, str] = field(default_factory=dict)
    paper: PaperAlignment | None = None

    def metrics_at(self, strength: float) -> AlignmentMetrics:
        return next(m for s, m in self.curve if s == strength)


def analyze(encoder: Encoder, texts: Sequence[str], backbone: Encoder | None = None,
            grid: Sequence[float] | None = None, *, sample: int | None = DEFAULT_SAMPLE,
            k: int = DEFAULT_CALIBRATION_K, ks: Sequence[int] = DEFAULT_KS, seed: int = 0,
            examples: int = 3, max_df: float = DEFAULT_MAX_DF,
            progress: bool = True) -> Analysis:
    """Measure spectrum, alignment vs λ, the calibrated λ and (with `backbone`, the generative LLM
    the embedder was trained from) the per-component change, on a seeded sample of `texts`."""
    started = time.perf_counter()
    ks = tuple(sorted({*ks, k}))
    grid = tuple(DEFAULT_GRID if grid is None else grid)
    prepared = prepare_sample(encoder, texts, None, sample, seed, max_df, progress)
    strengths = [g * prepared.mean_norm for g in grid]
    projector = encoder.projector()
    curve = alignment_curve(prepared.embeddings, projector, prepared.own_mask,
                            prepared.direction, strengths, ks, progress)
    calibration = calibration_from_curve(curve, k, prepared.mean_norm, grid)
    shown = []
    for row in range(min(examples, len(prepared.texts))):
        lists = [_decoded(encoder, prepared.embeddings[row:row + 1], prepared.own_mask[row],
                          PC1Adjustment(prepared.direction, strength))
                 for strength in (0.0, calibration.strength)]
        shown.append(Example(prepared.texts[row], *lists))
    comparison = None
    if backbone is not None:
        comparison = compare_backbone(encoder, backbone, prepared.texts, prepared.embeddings,
                                      max_df, progress)
    paper = paper_alignment(encoder, prepared, (0.0, calibration.strength))
    return Analysis(
        model=encoder.model.name, method=encoder.method.name, max_length=encoder.max_length,
        hidden_size=encoder.model.hidden_size, texts=len(prepared.texts),
        spectrum=spectrum(prepared.embeddings), curve=curve, calibration=calibration,
        examples=shown, uninformative=len(prepared.uninformative), max_df=max_df,
        seconds=time.perf_counter() - started, backbone=comparison, paper=paper,
    )


# Table 2's example sentence (arXiv 2406.17378).
EXAMPLE_SENTENCE = ("Revealed in March 2003, it was released across Game Boy Advance, "
                    "PlayStation 2, GameCube, Xbox and Microsoft Windows in November 2003")
MARKS = ("literal", "variant", "other")


def paper_alignment(encoder: Encoder, prepared: AlignmentSample,
                    strengths: Sequence[float]) -> PaperAlignment:
    """The paper's measurements at each λ: nothing filtered from the decoded lists (the
    authors filter nothing), T_i the text's tokens with its tokenizer's special tokens."""
    literal = literal_token_ids(encoder, prepared.texts)
    example_ids = literal_token_ids(encoder, [EXAMPLE_SENTENCE])[0]
    example_embedding = encoder.embed([EXAMPLE_SENTENCE])
    # one projection of the sample per λ serves the metrics and the shared-vocabulary sets
    depth = max([EXAMPLE_TOKENS, *(len(set(ids)) for ids in literal)])
    example, metrics, top_ids = {}, {}, {}
    for strength in strengths:
        projector = encoder.projector(PC1Adjustment(prepared.direction, strength),
                                      exclude_special=False)
        ranked = decoded_ids(prepared.embeddings, projector, depth)
        metrics[strength] = metrics_of_ranking(ranked, literal)
        top_ids[strength] = ranked[:, :EXAMPLE_TOKENS]
        example[strength] = [(token_text(encoder.tokenizer, i),
                              mark_token(encoder.tokenizer, i, example_ids))
                             for i in decoded_ids(example_embedding, projector,
                                                  EXAMPLE_TOKENS)[0].tolist()]
    # The tokens of the projection's rows: tokenizers may add tokens past them (EmbeddingGemma's
    # image token) and still spell every row as another model does.
    rows = encoder.tokenizer.convert_ids_to_tokens(list(range(encoder.model.vocab_size)))
    vocabulary = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    return PaperAlignment(encoder.method.record(), encoder.model.head_description, example,
                          metrics, top_ids, vocabulary)


def mark_token(tokenizer, token_id: int, literal_ids: Sequence[int]) -> str:
    """Table 2's marks: 'literal' (one of the text's own token ids), 'variant' (the same word
    as one of them but for case, a word-boundary marker or a plural s), else 'other'."""
    if token_id in set(literal_ids):
        return "literal"
    words = {_word(tokenizer, i) for i in literal_ids} - {""}
    return "variant" if _word(tokenizer, token_id) in words else "other"


def _word(tokenizer, token_id: int) -> str:
    word = normalise_token(tokenizer.convert_ids_to_tokens(int(token_id)) or "")
    word = "".join(ch for ch in word if ch.isalnum())
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def compare_backbone(encoder: Encoder, backbone: Encoder, texts: Sequence[str],
                     embeddings: np.ndarray, max_df: float = DEFAULT_MAX_DF,
                     progress: bool = True) -> BackboneComparison:
    """The authors' before/after variation of `texts` between `backbone` and `encoder` (whose
    `embeddings` of the texts are given). Models of different hidden sizes have no shared
    components to compare: the result then only says so, and nothing is encoded."""
    name = backbone.model.name
    if backbone.model.hidden_size != encoder.model.hidden_size:
        return BackboneComparison(name, note=(
            f"not comparable: the backbone '{name}' has hidden size "
            f"{backbone.model.hidden_size} and the embedder '{encoder.model.name}' "
            f"{encoder.model.hidden_size}; the per-component change reads both models' "
            "embeddings on the backbone's principal directions, so both must live in one space "
            "(give the generative LLM the embedder was trained from)"))
    backbone_embeddings = backbone.embed(list(texts), progress=progress)
    change = component_change(embeddings, backbone_embeddings)
    token_map = variant_map(backbone.tokenizer, backbone.model.vocab_size)
    own_ids = own_token_ids(backbone, texts)
    mask = own_token_mask(own_ids, backbone.model.vocab_size, token_map,
                          uninformative_tokens(backbone.tokenizer, token_map, own_ids, max_df))
    direction = first_principal_direction(backbone_embeddings)
    before = projected_alignment(backbone_embeddings, backbone.projector(), mask)
    after = projected_alignment(backbone_embeddings, backbone.projector(
        PC1Adjustment(direction, float(change.mean_difference[0]))), mask)
    return BackboneComparison(name, change, before, after)


def _decoded(encoder: Encoder, embedding: np.ndarray, own: torch.Tensor,
             adjustment: PC1Adjustment) -> list[tuple[str, bool]]:
    with torch.inference_mode():
        logits = encoder.projector(adjustment).logits(torch.from_numpy(embedding))[0]
    ids = torch.topk(logits, EXAMPLE_TOKENS).indices.tolist()
    return [(token_text(encoder.tokenizer, i), bool(own[i])) for i in ids]


# ---------------------------------------------------------------------------- figures
def plot_alignment(analysis: Analysis, path: Path) -> Path:
    """Hit rate @k and MRR against λ, with λ = 0 and the calibrated λ marked."""
    strengths = [s for s, _ in analysis.curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for k in analysis.curve[0][1].hit_rate:
        left.plot(strengths, [m.hit_rate[k] for _, m in analysis.curve], "o-", label=f"hit@{k}")
    right.plot(strengths, [m.mrr for _, m in analysis.curve], "o-", color="tab:purple")
    for ax, label in ((left, "hit rate"), (right, "MRR of own tokens")):
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.axvline(analysis.calibration.strength, color="tab:red", linestyle="--", linewidth=1,
                   label=f"calibrated λ = {analysis.calibration.strength:.3g}")
        ax.set_xlabel("λ (PC1 strength, embedding units)")
        ax.set_ylabel(label)
    left.legend(fontsize=7)
    fig.suptitle(f"{analysis.model}: alignment of decoded tokens vs λ", fontsize=10)
    return _save(fig, path)


def plot_spectrum(analysis: Analysis, path: Path) -> Path:
    """Energy share of the first components (uncentred, as PC1 is computed) and the variance
    share after centring, on a log scale since PC1 dwarfs the rest."""
    shown = min(SHOWN_COMPONENTS, len(analysis.spectrum.energy_share))
    positions = np.arange(1, shown + 1)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.bar(positions - 0.2, analysis.spectrum.energy_share[:shown], 0.4, label="uncentred")
    ax.bar(positions + 0.2, analysis.spectrum.centred_variance_share[:shown], 0.4,
           label="centred (PCA)")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("component")
    ax.set_ylabel("share")
    ax.set_title(f"{analysis.model}: share per principal component", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_backbone_change(analysis: Analysis, path: Path) -> Path:
    """Mean coefficient change per backbone component (the authors' variation figure)."""
    assert analysis.backbone is not None and analysis.backbone.change is not None
    difference = analysis.backbone.change.mean_difference
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(np.arange(1, len(difference) + 1), difference, linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("component i of the backbone's embeddings")
    ax.set_ylabel("mean change (embedder - backbone)")
    ax.set_title(f"{analysis.backbone.name} → {analysis.model}", fontsize=10)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)
    return path


def write_figures(analysis: Analysis, folder: Path, prefix: str = "") -> dict[str, str]:
    """Draw the figures into `folder`; returns {figure: file name} and records it."""
    figures = {"alignment": plot_alignment, "spectrum": plot_spectrum}
    if analysis.backbone is not None and analysis.backbone.change is not None:
        figures["backbone"] = plot_backbone_change
    analysis.figures = {name: draw(analysis, folder / f"{prefix}{name}.png").name
                        for name, draw in figures.items()}
    return analysis.figures


# ---------------------------------------------------------------------------- markdown
def render_markdown(analysis: Analysis, image_dir: str = "", level: int = 1) -> str:
    """report.md's text; `image_dir` is put before figure names, `level` is the title's depth."""
    h = "#" * level
    cal, spec = analysis.calibration, analysis.spectrum
    base = analysis.metrics_at(0.0) if 0.0 in dict(analysis.curve) else None
    tuned = analysis.metrics_at(cal.strength)
    lines = [
        f"{h} Alignment analysis: {analysis.model}", "",
        f"{analysis.texts} texts (seeded sample), method `{analysis.method}`, max_length "
        f"{analysis.max_length}, hidden size {analysis.hidden_size}; {analysis.seconds:.0f} s.",
        "", f"{h}# Spectrum of the embeddings", "",
        f"PC1 carries **{spec.energy_share[0]:.1%}** of the embeddings' energy (uncentred SVD, "
        f"as v1 is computed) and **{spec.centred_variance_share[0]:.1%}** of the variance "
        f"after centring; the cosine between v1 and the mean embedding is "
        f"{spec.mean_cosine:.3f}, mean embedding norm {spec.mean_norm:.3g}.", "",
        "| component | singular value | energy share (uncentred) | variance share (centred) |",
        "|---|---|---|---|",
    ]
    for i in range(min(5, len(spec.singular_values))):
        lines.append(f"| {i + 1} | {spec.singular_values[i]:.4g} | {spec.energy_share[i]:.2%} "
                     f"| {spec.centred_variance_share[i]:.2%} |")
    lines += _figure(analysis, "spectrum", image_dir)
    ks = list(analysis.curve[0][1].hit_rate)
    lines += [
        f"{h}# Alignment of decoded tokens with the text's own tokens, vs λ", "",
        f"λ = g x mean norm ({spec.mean_norm:.3g}) for g in {list(cal.relative_grid)}; "
        f"e' = e + λ·v1.", "",
        "| g | λ | " + " | ".join(f"hit@{k}" for k in ks) + " | MRR | median best rank |",
        "|---|---|" + "---|" * (len(ks) + 2),
    ]
    for g, (strength, m) in zip(cal.relative_grid, analysis.curve, strict=True):
        mark = " **(chosen)**" if strength == cal.strength else ""
        lines.append(f"| {g:g} | {strength:.4g}{mark} | "
                     + " | ".join(f"{m.hit_rate[k]:.3f}" for k in ks)
                     + f" | {m.mrr:.3f} | {m.median_best_rank:g} |")
    lines += ["", f"Calibrated λ = **{cal.strength:.4g}** ({cal.strength / spec.mean_norm:g} x "
                  f"mean norm), criterion {cal.criterion}"
              + (f": {base.hit_rate[cal.k]:.3f} at λ = 0 → {tuned.hit_rate[cal.k]:.3f}."
                 if base is not None else f": {tuned.hit_rate[cal.k]:.3f}.")]
    lines += _figure(analysis, "alignment", image_dir)
    lines += [f"{h}# Examples: top {EXAMPLE_TOKENS} decoded tokens", "",
              "Own (informative) tokens of the text in **bold**.", ""]
    for example in analysis.examples:
        snippet = example.text[:160] + ("…" if len(example.text) > 160 else "")
        lines += [f"- *{_escape(snippet)}*",
                  f"  - λ = 0: {_tokens(example.before)}",
                  f"  - λ = {cal.strength:.4g}: {_tokens(example.after)}"]
    lines += ["", f"{h}# Embedder vs backbone", "", *_backbone_lines(analysis, image_dir)]
    lines += [
        f"{h}# Definitions", "",
        "- *Decoded tokens*: the top-k vocabulary entries of the (adjusted) embedding sent "
        "through the LM head (or tied word embeddings), special tokens excluded.",
        "- *Own tokens*: the text's token ids as the encoder feeds them (prompt and special "
        "tokens removed), compared through tokretrieve.encoding.vocabulary.variant_map, so "
        "case and word-boundary variants ('Ġheat', 'heat', 'Heat') are one word. Tokens "
        f"spelling no letter or digit, and tokens in more than {analysis.max_df:.0%} of the "
        f"sampled texts ({analysis.uninformative} canonical tokens here), are not counted: they "
        "occur in every text and would reward the shared component.",
        "- *hit@k*: share of the top-k decoded tokens that are own tokens, averaged over texts. "
        "Variants of one word take separate slots of the decoded list, so each counts.",
        "- *Best rank*: rank in the whole vocabulary of the text's highest-scored own token; "
        "*MRR*: mean of 1/best rank.",
        "- *Calibration*: the grid λ with the highest hit@k; ties go to the smallest |λ|. "
        "Unsupervised: no relevance judgments are read.", "",
    ]
    return "\n".join(lines)


def _backbone_lines(analysis: Analysis, image_dir: str) -> list[str]:
    comparison = analysis.backbone
    if comparison is None:
        return ["No backbone given: the per-component change needs the generative LLM the "
                "embedder was trained from (same hidden size).", ""]
    if comparison.change is None:
        return [f"Backbone `{comparison.name}`: {comparison.note}.", ""]
    change, before, after = comparison.change, comparison.before, comparison.after
    top = np.argsort(-np.abs(change.mean_difference))[:5]
    listed = ", ".join(f"PC{i + 1}: {change.mean_difference[i]:+.4g}" for i in top)
    verdict = "dominates" if change.first_dominates else "does **not** dominate"
    lines = [
        f"Backbone `{comparison.name}`. Mean change per backbone component (embedder - backbone "
        f"coefficients, the authors' `before_after_variation`); largest: {listed}. The first "
        f"component {verdict} and holds {change.first_share:.1%} of the squared change of the "
        "mean embedding.", "",
    ]
    if before is not None and after is not None:
        lines += [f"Backbone's own alignment, moved along its v1 by λ_v1 = "
                  f"{change.mean_difference[0]:.4g}: hit@10 {before.hit_rate[10]:.3f} → "
                  f"{after.hit_rate[10]:.3f}, MRR {before.mrr:.3f} → {after.mrr:.3f}.", ""]
    return lines + _figure(analysis, "backbone", image_dir)


def _figure(analysis: Analysis, name: str, image_dir: str) -> list[str]:
    if name not in analysis.figures:
        return [""]
    return ["", f"![{name}]({image_dir}{analysis.figures[name]})", ""]


def _tokens(tokens: list[tuple[str, bool]]) -> str:
    return " ".join(f"**{_code(t)}**" if own else _code(t) for t, own in tokens)


def _code(token: str) -> str:
    token = token.replace("\n", "\\n").replace("|", "\\|")
    return f"`` {token} ``" if "`" in token else f"`{token}`"


def _escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "\\`*_[]<>|#" else ch for ch in text)


def write_analysis_report(encoder: Encoder, texts: Sequence[str], output_dir: str | Path,
                          backbone: Encoder | None = None, grid: Sequence[float] | None = None,
                          *, sample: int | None = DEFAULT_SAMPLE, k: int = DEFAULT_CALIBRATION_K,
                          seed: int = 0, progress: bool = True) -> Path:
    """Analyse a seeded sample of `texts` and write report.md with its PNG figures into
    `output_dir`; returns report.md's path."""
    output_dir = Path(output_dir)
    analysis = analyze(encoder, texts, backbone, grid, sample=sample, k=k, seed=seed,
                       progress=progress)
    write_figures(analysis, output_dir)
    report = output_dir / "report.md"
    report.write_text(render_markdown(analysis), encoding="utf-8")
    return report


# ---------------------------------------------------------------------------- several models
def render_models_report(analyses: Sequence[Analysis], title: str) -> str:
    """One page over several models: the paper's alignment rates and Table 2 for each, the
    comparison of models sharing a vocabulary, then each model's own report."""
    lines = [f"# {title}", "",
             "Hit@10, LAR and GAR with the paper's definitions (tokretrieve.encoding.alignment."
             "PaperMetrics: literal tokens with the tokenizer's special tokens, nothing filtered "
             "from the decoded list), at λ = 0 and at the calibrated λ (best hit@10 of the "
             "informative own tokens on the sample; see each model's section).", "",
             "| model | recipe | projection | PC1 energy | calibrated λ | Hit@10 / LAR / GAR, "
             "λ = 0 | at calibrated λ |", "|---|---|---|---|---|---|---|"]
    for a in analyses:
        if a.paper is None:
            continue
        before, after = (a.paper.metrics[s] for s in (0.0, a.calibration.strength))
        lines.append(f"| {a.model} | `{a.method}` ({a.paper.recipe['pooling']}) | "
                     f"{a.paper.head} | {a.spectrum.energy_share[0]:.1%} | "
                     f"{a.calibration.strength:.4g} "
                     f"({a.calibration.strength / a.spectrum.mean_norm:g} x norm) | "
                     f"{_rates(before)} | {_rates(after)} |")
    lines += ["", "## Table 2: the example sentence's top-10 decoded tokens", "",
              f"*{_escape(EXAMPLE_SENTENCE)}*", "",
              "**Literal** token of the sentence, *variant* (case, word boundary, plural), "
              "plain: other.", "",
              "| model | λ | tokens | literal / variant / other |", "|---|---|---|---|"]
    for a in analyses:
        for strength, tokens in (a.paper.example.items() if a.paper else ()):
            counts = " / ".join(str(sum(m == mark for _, m in tokens)) for mark in MARKS)
            lines.append(f"| {a.model} | {strength:.4g} | {_marked(tokens)} | {counts} |")
    lines += ["", *_shared_vocabulary_lines(analyses)]
    for a in analyses:
        lines += ["", render_markdown(a, level=2)]
    return "\n".join(lines)


def _rates(m: PaperMetrics) -> str:
    return f"{m.hit:.3f} / {m.lar:.3f} / {m.gar:.3f}"


def _marked(tokens: list[tuple[str, str]]) -> str:
    style = {"literal": "**{}**", "variant": "*{}*", "other": "{}"}
    return " ".join(style[mark].format(_code(token)) for token, mark in tokens)


def _shared_vocabulary_lines(analyses: Sequence[Analysis]) -> list[str]:
    """For each pair of models with one vocabulary (token for token) on the same sample: how
    alike their top-10 decoded sets are, text by text (mean Jaccard)."""
    lines = []
    for i, a in enumerate(analyses):
        for b in analyses[i + 1:]:
            if (a.paper is None or b.paper is None or a.paper.vocabulary != b.paper.vocabulary
                    or a.texts != b.texts):
                continue
            if not lines:
                lines = ["## Models sharing a vocabulary", "",
                         "Mean Jaccard similarity of the two models' top-10 decoded token sets "
                         "on the same sampled texts (1 = the same tokens).", "",
                         "| models | at λ = 0 | at their calibrated λ |", "|---|---|---|"]
            same = _jaccard(a.paper.top_ids[0.0], b.paper.top_ids[0.0])
            tuned = _jaccard(a.paper.top_ids[a.calibration.strength],
                             b.paper.top_ids[b.calibration.strength])
            lines.append(f"| {a.model} / {b.model} | {same:.3f} | {tuned:.3f} |")
    return [*lines, ""] if lines else []


def _jaccard(left: np.ndarray, right: np.ndarray) -> float:
    scores = [len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(left.tolist(),
                                                                         right.tolist(),
                                                                         strict=True)]
    return float(np.mean(scores)) if scores else 0.0


def write_models_report(models: Sequence[str], load: Callable[[str], Encoder],
                        texts: Sequence[str], output_dir: str | Path, *,
                        sample: int | None = DEFAULT_SAMPLE, seed: int = 0,
                        progress: bool = True) -> Path:
    """Analyse each model (loaded by `load`, one at a time: two LLMs need not fit in memory
    together) on the same seeded sample of `texts`; write one report.md over all of them, with
    each model's figures, into `output_dir`."""
    output_dir = Path(output_dir)
    analyses = []
    for name in models:
        encoder = load(name)
        analysis = analyze(encoder, texts, sample=sample, seed=seed, progress=progress)
        del encoder
        prefix = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in Path(name).name)
        write_figures(analysis, output_dir, prefix=f"{prefix}-")
        analyses.append(analysis)
    report = output_dir / "report.md"
    report.write_text(render_models_report(analyses, f"Paper analysis of {len(analyses)} "
                                                     "models"), encoding="utf-8")
    return report
