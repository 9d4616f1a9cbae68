"""The paper-analysis report: does a model's embedding decode to its text's tokens, and how PC1
and its adjustment shape that (arXiv 2406.17378), measured on a sample of the user's corpus.

`analyze` computes everything (tokretrieve.encoding.alignment holds the maths) into an `Analysis`;
`render_markdown` and the plot functions turn it into report.md and PNGs, so that a report can be
re-laid out (several models in one page) without encoding anything again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
    Calibration,
    ComponentChange,
    Spectrum,
    alignment_curve,
    calibration_from_curve,
    component_change,
    own_token_ids,
    own_token_mask,
    prepare_sample,
    projected_alignment,
    spectrum,
    uninformative_tokens,
)
from tokretrieve.encoding.encoder import Encoder, token_text
from tokretrieve.encoding.projection import PC1Adjustment, first_principal_direction
from tokretrieve.encoding.vocabulary import variant_map

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
    return Analysis(
        model=encoder.model.name, method=encoder.method.name, max_length=encoder.max_length,
        hidden_size=encoder.model.hidden_size, texts=len(prepared.texts),
        spectrum=spectrum(prepared.embeddings), curve=curve, calibration=calibration,
        examples=shown, uninformative=len(prepared.uninformative), max_df=max_df,
        seconds=time.perf_counter() - started, backbone=comparison,
    )


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
