"""The paper-analysis maths (tokretrieve.encoding.alignment) and report
(tokretrieve.encoding.analysis).

Metrics are checked on logits built by hand, whose decoded tokens and ranks are known; the
spectrum and the per-component change on matrices built from a chosen SVD, whose answer is known
in closed form; calibration on a projection where a shared component along v1 drowns each text's
own token unless exactly removed, so one grid λ is known to be best.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tokretrieve.encoding.alignment import (
    DEFAULT_GRID,
    alignment_curve,
    alignment_metrics,
    calibrate_from_embeddings,
    calibrate_pc1_strength,
    choose_strength,
    component_change,
    own_token_ids,
    own_token_mask,
    sample_indices,
    spectrum,
    uninformative_tokens,
)
from tokretrieve.encoding.analysis import analyze, render_markdown, write_analysis_report
from tokretrieve.encoding.projection import KeyTokenProjector, first_principal_direction
from tokretrieve.encoding.vocabulary import variant_map
from tokretrieve.errors import TokretrieveError

INF = float("inf")


class ListTokenizer:
    """The two tokenizer methods variant_map and uninformative_tokens call, over a token list
    spelled like byte-level BPE ('Ġ' a leading space, 'Ċ' a newline)."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens

    def convert_ids_to_tokens(self, ids):
        return [self.tokens[i] for i in ids]

    def decode(self, ids):
        return "".join(self.tokens[i] for i in ids).replace("Ġ", " ").replace("Ċ", "\n")


# ---------------------------------------------------------------------------- metrics
def test_hit_rate_and_ranks_on_hand_built_logits():
    logits = torch.tensor([
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0],    # decoded order 0,1,2,3,...
        [0.0, 1.0, 2.0, 3.0, 9.0, 5.0, 6.0, -INF],     # decoded order 4,6,5,3,...; 7 excluded
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],      # no own token: left out of every mean
    ])
    own = own_token_mask([[1, 3], [7, 4], []], vocab_size=8)
    metrics = alignment_metrics(logits, own, ks=(1, 2, 3))
    # text 0: top-1 {0} misses, top-2 {0,1} has 1, top-3 has 1; best own token (1) ranks 2nd.
    # text 1: top-1 {4} hits, top-2 {4,6} has 1, top-3 {4,6,5} has 1; 4 ranks 1st.
    assert metrics.texts == 2
    assert metrics.hit_rate == pytest.approx({1: 0.5, 2: 0.5, 3: (1 / 3 + 1 / 3) / 2})
    assert metrics.mrr == pytest.approx((1 / 2 + 1) / 2)
    assert metrics.median_best_rank == pytest.approx(1.5)
    assert metrics.mean_best_rank == pytest.approx(1.5)


def test_an_excluded_own_token_is_never_found():
    logits = torch.tensor([[-INF, 2.0, 1.0], [3.0, 2.0, 1.0]])
    metrics = alignment_metrics(logits, own_token_mask([[0], [2]], vocab_size=3), ks=(1, 3))
    # text 0's only own token is excluded (-inf): reciprocal rank 0, never a hit.
    # text 1's own token 2 ranks 3rd: hit@3 = 1/3, reciprocal rank 1/3.
    assert metrics.hit_rate == pytest.approx({1: 0.0, 3: (0 + 1 / 3) / 2})
    assert metrics.mrr == pytest.approx((0 + 1 / 3) / 2)
    assert metrics.median_best_rank == INF
    assert metrics.mean_best_rank == pytest.approx(3.0)


def test_variants_of_an_own_token_count_and_ignored_words_do_not():
    tokenizer = ListTokenizer(["[PAD]", "heat", "Ġheat", "Heat", "Ġthe", "the", "flow"])
    token_map = variant_map(tokenizer, 7)
    assert token_map.tolist() == [0, 1, 1, 1, 4, 4, 6]
    # The text holds 'Ġheat' and 'Ġthe'; its embedding decodes 'the', 'heat', 'flow'.
    logits = torch.tensor([[0.0, 8.0, 0.0, 0.0, 0.0, 9.0, 7.0]])
    merged = own_token_mask([[2, 4]], 7, token_map)
    assert alignment_metrics(logits, merged, ks=(1, 2, 3)).hit_rate == pytest.approx(
        {1: 1.0, 2: 1.0, 3: 2 / 3})
    ignored = own_token_mask([[2, 4]], 7, token_map, ignore={4})
    assert alignment_metrics(logits, ignored, ks=(1, 2, 3)).hit_rate == pytest.approx(
        {1: 0.0, 2: 0.5, 3: 1 / 3})
    unmerged = own_token_mask([[2, 4]], 7)
    assert alignment_metrics(logits, unmerged, ks=(3,)).hit_rate == {3: 0.0}


def test_uninformative_tokens_are_frequent_or_spell_no_word():
    tokenizer = ListTokenizer(["the", ",", "heat", "flow", "Ġthe", "Ċ", "wing"])
    token_map = variant_map(tokenizer, 7)
    own = [[0, 2, 1], [4, 3], [0, 6, 5]]  # 'the' in all three texts (as 'the' or 'Ġthe')
    assert uninformative_tokens(tokenizer, token_map, own, max_df=0.5) == {0, 1, 5}
    assert uninformative_tokens(tokenizer, token_map, own, max_df=1.0) == {1, 5}
    with pytest.raises(TokretrieveError, match="max_df"):
        uninformative_tokens(tokenizer, token_map, own, max_df=0.0)


def test_metrics_refuse_mismatched_shapes_and_texts_without_own_tokens():
    with pytest.raises(TokretrieveError, match="shape"):
        alignment_metrics(torch.zeros(2, 3), own_token_mask([[0]], 3))
    with pytest.raises(TokretrieveError, match="own token"):
        alignment_metrics(torch.zeros(1, 3), own_token_mask([[]], 3))


@pytest.mark.parametrize(("model", "method"), [("llama", "prompteol"), ("bert", "mean")])
def test_own_tokens_are_the_text_alone_truncated_like_the_input(tiny_encoder, model, method):
    encoder = tiny_encoder(model, method, max_length=256)
    tokenizer = encoder.tokenizer
    words = ["heat", "transfer", "in", "a", "turbulent", "boundary", "layer"]
    expected = tokenizer.convert_tokens_to_ids(words)
    assert own_token_ids(encoder, [" ".join(words)]) == [expected]
    # A short max_length keeps only as many of the text's ids as the encoder feeds (the
    # prompt's own length measured around a one-token text: around an empty one, its two
    # quotes would meet and tokenize as one).
    overhead = len(encoder.input_ids(["heat"])[0]) - 1
    short = tiny_encoder(model, method, max_length=overhead + 3)
    assert own_token_ids(short, [" ".join(words)]) == [expected[:3]]


# ---------------------------------------------------------------------------- spectrum
def _orthonormal(rows: int, cols: int, seed: int) -> np.ndarray:
    """Orthonormal columns, each flipped to a positive sum (so each column has positive mean)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(rows, cols)))
    return q * np.where(q.sum(axis=0) < 0, -1.0, 1.0)


def _matrix_with_svd(singular: list[float], rows: int = 40, dim: int = 6, seed: int = 0):
    u = _orthonormal(rows, len(singular), seed)
    v = np.linalg.qr(np.random.default_rng(seed + 1).normal(size=(dim, len(singular))))[0]
    return u @ np.diag(singular) @ v.T, v


def test_spectrum_matches_the_chosen_singular_values_and_numpy_pca():
    matrix, _ = _matrix_with_svd([5.0, 3.0, 1.0])
    result = spectrum(matrix)
    assert result.singular_values[:3] == pytest.approx([5.0, 3.0, 1.0])
    assert result.energy_share[:3] == pytest.approx([25 / 35, 9 / 35, 1 / 35])
    covariance = np.cov(matrix, rowvar=False)
    eigen = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    assert result.centred_variance_share[:3] == pytest.approx(eigen[:3] / eigen.sum(), abs=1e-9)
    assert result.mean_norm == pytest.approx(np.linalg.norm(matrix, axis=1).mean())


def test_spectrum_of_a_shared_offset_has_pc1_along_the_mean():
    rng = np.random.default_rng(3)
    offset = rng.normal(size=8)
    rows = rng.uniform(1.0, 2.0, size=(30, 1)) * offset  # every row a positive multiple
    result = spectrum(np.vstack([rows, np.zeros((2, 8))]))  # zero rows (empty texts) dropped
    assert result.mean_cosine == pytest.approx(1.0)
    assert result.energy_share[0] == pytest.approx(1.0)


def test_component_change_recovers_a_known_shift_along_backbone_components():
    backbone, v = _matrix_with_svd([9.0, 6.0, 4.0, 2.0], rows=50, dim=7)
    # Columns of u have positive means, so the backbone's mean has a positive coefficient on
    # each v_i: the orientation rule leaves v_i as built, and the answer is exact.
    embedder = backbone + 3.0 * v[:, 0] + 0.5 * v[:, 2]
    change = component_change(embedder, backbone)
    assert change.mean_difference[:4] == pytest.approx([3.0, 0.0, 0.5, 0.0], abs=1e-9)
    assert change.backbone_singular_values[:4] == pytest.approx([9.0, 6.0, 4.0, 2.0])
    assert change.first_share == pytest.approx(9 / 9.25)
    assert change.first_dominates

    second = component_change(backbone - 2.0 * v[:, 1], backbone)
    assert second.mean_difference[:4] == pytest.approx([0.0, -2.0, 0.0, 0.0], abs=1e-9)
    assert not second.first_dominates
    assert second.first_share == pytest.approx(0.0, abs=1e-12)


def test_component_change_refuses_different_hidden_sizes():
    with pytest.raises(TokretrieveError, match="same hidden size"):
        component_change(np.ones((4, 6)), np.ones((4, 8)))
    with pytest.raises(TokretrieveError, match="same non-zero number of texts"):
        component_change(np.ones((4, 6)), np.ones((5, 6)))


# ---------------------------------------------------------------------------- calibration
def _drowned_tokens(shared: float = 5.0):
    """Texts c·e0 ± e_j whose own token (up_j / down_j, rows ±e_j) is drowned by 'common'
    (row 10·e0) while the shared component is there, and by 'anti' (row -10·e0) once too much
    is removed: with λ on v1 = e0, only |c + λ| < 0.1 decodes the own token first."""
    dim = 5
    eye = np.eye(dim)
    weight = np.vstack([10 * eye[0], -10 * eye[0], eye[1:], -eye[1:]])  # 0, 1, up 2-5, down 6-9
    embeddings, own = [], []
    for j in range(1, dim):
        embeddings += [shared * eye[0] + eye[j], shared * eye[0] - eye[j]]
        own += [[1 + j], [5 + j]]
    projector = KeyTokenProjector(torch.tensor(weight, dtype=torch.float32), None,
                                  np.zeros(0, dtype=np.int64))
    return np.array(embeddings, dtype=np.float32), projector, own_token_mask(own, len(weight))


def test_calibration_picks_the_strength_that_removes_the_shared_component():
    embeddings, projector, own = _drowned_tokens(shared=5.0)
    direction = first_principal_direction(embeddings)
    assert direction == pytest.approx([1, 0, 0, 0, 0], abs=1e-6)  # oriented towards the mean
    mean_norm = float(np.sqrt(26.0))
    grid = [s / mean_norm for s in (-10.0, -5.0, -2.5, 0.0, 2.5)]
    calibration = calibrate_from_embeddings(embeddings, projector, own, direction, grid, k=1)
    assert calibration.mean_norm == pytest.approx(mean_norm)
    assert calibration.strength == pytest.approx(-5.0)
    assert [s for s, _ in calibration.curve] == pytest.approx([-10.0, -5.0, -2.5, 0.0, 2.5])
    assert [h for _, h in calibration.curve] == pytest.approx([0.0, 1.0, 0.0, 0.0, 0.0])
    record = json.loads(json.dumps(calibration.manifest_record()))
    assert record["criterion"] == "hit@1" and record["sample"] == len(embeddings)
    assert record["strength"] == pytest.approx(-5.0)


def test_alignment_curve_matches_numpy_logits_of_adjusted_embeddings():
    embeddings, projector, own = _drowned_tokens(shared=5.0)
    direction = np.array([1, 0, 0, 0, 0], dtype=np.float32)
    weight = projector.weight.numpy()
    for strength, metrics in alignment_curve(embeddings, projector, own, direction,
                                             [-7.0, -4.95, 1.0], ks=(1, 3)):
        reference = (embeddings + strength * direction) @ weight.T
        assert metrics == alignment_metrics(torch.from_numpy(reference), own, ks=(1, 3))


def test_choose_strength_prefers_the_least_intervention_among_ties():
    assert choose_strength([(-1.0, 0.5), (0.5, 0.5), (0.0, 0.2)]) == 0.5
    assert choose_strength([(-1.0, 0.5), (1.0, 0.5), (0.0, 0.5)]) == 0.0
    assert choose_strength([(-1.0, 0.5), (1.0, 0.5)]) == -1.0
    with pytest.raises(TokretrieveError):
        choose_strength([])


def test_sample_indices_are_seeded_sorted_and_skip_empty_texts():
    texts = ["a", "", "b", "  ", "c", "d", "e"]
    picked = sample_indices(texts, 3, seed=1)
    assert picked == sorted(picked) and len(picked) == 3
    assert set(picked) <= {0, 2, 4, 5, 6}
    assert picked == sample_indices(texts, 3, seed=1)
    assert sample_indices(texts, None) == [0, 2, 4, 5, 6]
    with pytest.raises(TokretrieveError):
        sample_indices(["", " "], 2)


CORPUS = [
    "heat transfer in a turbulent boundary layer", "wing flutter at supersonic speed",
    "shock wave and boundary layer interaction", "pressure on a blunt cone at mach number",
    "laminar flow over a flat plate", "buckling of a thin shell under load",
    "jet engine nozzle flow", "radiation heating of a satellite at entry", "",
]


def test_calibrate_pc1_strength_reuses_given_embeddings_and_their_v1(tiny_encoder, monkeypatch):
    encoder = tiny_encoder("llama", "prompteol")
    embeddings = encoder.embed(CORPUS)

    def no_encoding(*_args, **_kwargs):
        raise AssertionError("given embeddings must not be encoded again")

    monkeypatch.setattr(encoder, "embed", no_encoding)
    calibration = calibrate_pc1_strength(encoder, CORPUS, k=5, embeddings=embeddings, sample=5)
    present = embeddings[np.any(embeddings, axis=1)]
    mean_norm = float(np.linalg.norm(present, axis=1).mean())
    assert calibration.mean_norm == pytest.approx(mean_norm, rel=1e-6)
    assert [s for s, _ in calibration.curve] == pytest.approx([g * mean_norm
                                                               for g in DEFAULT_GRID])
    best = max(h for _, h in calibration.curve)
    assert dict(calibration.curve)[calibration.strength] == best
    assert calibration.sample <= 5 and calibration.k == 5


# ---------------------------------------------------------------------------- report
def test_report_with_a_backbone_of_the_same_hidden_size(tiny_encoder, tiny_llama_dir,
                                                         other_llama_dir, tmp_path):
    from tokretrieve import Encoder

    embedder = tiny_encoder("llama", "prompteol")
    backbone = Encoder.load(str(other_llama_dir), method="prompteol", device="cpu")
    report = write_analysis_report(embedder, CORPUS, tmp_path / "out", backbone=backbone,
                                   grid=[-1.0, 0.0, 0.5], progress=False)
    assert report == tmp_path / "out" / "report.md"
    assert sorted(p.name for p in report.parent.iterdir()) == [
        "alignment.png", "backbone.png", "report.md", "spectrum.png"]
    text = report.read_text(encoding="utf-8")
    texts = [t for t in CORPUS if t.strip()]
    change = component_change(embedder.embed(texts), backbone.embed(texts))
    assert f"PC1: {change.mean_difference[0]:+.4g}" in text
    assert "![backbone](backbone.png)" in text and "Calibrated λ" in text


def test_report_says_why_a_backbone_of_another_hidden_size_is_not_compared(tiny_encoder):
    embedder = tiny_encoder("bert", "mean")

    def no_encoding(*_args, **_kwargs):
        raise AssertionError("an incomparable backbone must not be encoded")

    backbone = SimpleNamespace(model=SimpleNamespace(name="big", hidden_size=64),
                               embed=no_encoding)
    analysis = analyze(embedder, CORPUS, backbone, grid=[-0.5, 0.0], progress=False)
    assert analysis.backbone.change is None
    assert "hidden size 64" in analysis.backbone.note and "32" in analysis.backbone.note
    assert "not comparable" in render_markdown(analysis)


# ---------------------------------------------------------------------------- the paper's metrics
def test_paper_metrics_on_hand_built_logits():
    """Hit@K, LAR and GAR by the authors' definitions, on an identity projection: each text's
    logits are its embedding, so its decoded ranking is known. Text 0 (own {0, 1}) ranks 0, 3,
    1...: hit@2 yes, LAR = |{0} ∩ {0,1}| / 2 = 0.5. Text 1 (own {2}) ranks 3, 2: hit@2 yes,
    LAR 0 (top-1 is 3). Text 2 (own {4}) ranks 0, 1: no hit. GAR = |{0}| / |{0,1,2,4}|."""
    from tokretrieve.encoding.alignment import paper_metrics

    embeddings = np.array([[5, 3, 0, 4, 0], [0, 0, 4, 5, 0], [5, 4, 0, 0, 1]], dtype=np.float32)
    projector = KeyTokenProjector(torch.eye(5), None, np.zeros(0, dtype=np.int64))
    metrics = paper_metrics(embeddings, projector, [[0, 1, 1], [2], [4]], k=2)
    assert (metrics.hit, metrics.lar, metrics.gar, metrics.texts) == pytest.approx(
        (2 / 3, (0.5 + 0 + 0) / 3, 1 / 4, 3))
    # excluding token 0 (as bags exclude special tokens) changes every list: text 0 ranks
    # 3, 1 (LAR 0.5 through token 1), text 2 ranks 1, 4 (a hit, LAR 0); GAR |{1}| / 4
    excluded = KeyTokenProjector(torch.eye(5), None, np.array([0]))
    got = paper_metrics(embeddings, excluded, [[0, 1, 1], [2], [4]], k=2)
    assert (got.hit, got.lar, got.gar) == pytest.approx((1.0, 0.5 / 3, 1 / 4))


def test_table_marks_literal_variant_and_other(tiny_encoder):
    """A token of the text is literal; the same word in another case, boundary form or plural
    is a variant; anything else is other."""
    from tokretrieve.encoding.analysis import mark_token

    tokenizer = tiny_encoder("llama", "prompteol").tokenizer
    ids = tokenizer("wing heat", add_special_tokens=False)["input_ids"]
    as_id = tokenizer.convert_tokens_to_ids
    assert mark_token(tokenizer, ids[0], ids) == "literal"
    assert [mark_token(tokenizer, as_id(t), ids) for t in ("Wing", "\u0120wing", "Heat",
                                                            "flow")] == [
        "variant", "variant", "variant", "other"]


def test_report_over_several_models(tiny_encoder, tmp_path):
    """One report over two models: its table row per model holds the metrics the paper's
    definitions give on the same sample, its Table 2 rows mark every token, and two models
    with one vocabulary are compared."""
    from tokretrieve.encoding.alignment import literal_token_ids, paper_metrics, prepare_sample
    from tokretrieve.encoding.analysis import write_models_report
    from tokretrieve.encoding.projection import PC1Adjustment

    encoders = {"a": tiny_encoder("llama", "prompteol"), "b": tiny_encoder("llama", "mean")}
    report = write_models_report(["a", "b"], encoders.__getitem__, CORPUS, tmp_path,
                                 sample=5, progress=False)
    text = report.read_text(encoding="utf-8")
    prepared = prepare_sample(encoders["a"], CORPUS, sample=5)
    expected = paper_metrics(prepared.embeddings, encoders["a"].projector(
        PC1Adjustment(prepared.direction, 0.0), exclude_special=False),
        literal_token_ids(encoders["a"], prepared.texts))
    assert f"{expected.hit:.3f} / {expected.lar:.3f} / {expected.gar:.3f}" in text
    name = encoders["a"].model.name  # both are the tiny Llama, with two recipes
    # a row each, and a Table 2 row per distinct λ (one where the calibrated λ is 0)
    assert 2 + 2 <= text.count(f"| {name} | ") <= 2 + 4
    assert f"| {name} | 0 | " in text
    assert "## Models sharing a vocabulary" in text and f"| {name} / {name} |" in text
    assert (tmp_path / "a-alignment.png").is_file() and (tmp_path / "b-spectrum.png").is_file()
