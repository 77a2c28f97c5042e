"""Tests for hyperlens.probes.terrain: naive references, planted structure, nulls, tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from reference import terrain_reference as ref

from hyperlens.errors import HyperlensError, InputError, ShapeError
from hyperlens.functional import geometry as G
from hyperlens.models import from_module
from hyperlens.probes import terrain as T, wordlists

RTOL = 1e-9  # float64 statistics against float64 NumPy loops


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _small_config(**kw: object) -> T.TerrainConfig:
    base = dict(cosine_sample=200, distance_sample=200, n_simplices=300, n_permutations=300,
                n_boot=200, spectrum_bootstrap=30, spectrum_blocks=16, max_positions=32,
                histogram_bins=20)
    base.update(kw)
    return T.TerrainConfig(**base)  # type: ignore[arg-type]


def _planted_vocab_matrix(d: int = 32, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """A vocabulary whose digits lie on an arc and whose category words form clusters."""
    g = torch.Generator().manual_seed(seed)
    rows, words = [], []
    # digits: points on a great-circle arc, so cosine falls with |i - j|
    a, b = torch.randn(d, generator=g), torch.randn(d, generator=g)
    b = b - (a @ b) / (a @ a) * a
    a, b = a / a.norm(), b / b.norm()
    for i in range(10):
        t = i * 0.15
        rows.append(math.cos(t) * a + math.sin(t) * b + 0.02 * torch.randn(d, generator=g))
        words.append(str(i))
    for ws in list(wordlists.SEMANTIC_CATEGORIES.values())[:4]:
        centre = torch.randn(d, generator=g)
        for w in ws[:6]:
            rows.append(centre + 0.3 * torch.randn(d, generator=g))
            words.append(w)
    for i in range(200 - len(rows)):
        rows.append(torch.randn(d, generator=g))
        words.append(f"tok{i}")
    return torch.stack(rows).float(), words


# --------------------------------------------------------------------------- exact statistics
def test_exact_pair_cosine_moments_match_naive_loop() -> None:
    x = _randn(40, 7, seed=1) + 0.5
    mean, std = G.cosine_moments(x)
    rmean, rstd = ref.pair_cosine_moments(x.numpy())
    assert mean == pytest.approx(rmean, rel=RTOL)
    assert std == pytest.approx(rstd, rel=1e-7)


def test_cosine_statistics_of_isotropic_gaussian() -> None:
    d = 64
    x = _randn(3000, d, seed=2).float()
    s = T.cosine_statistics(x, sample=500, seed=0, bins=20)
    assert abs(s["mean"]) < 0.01
    assert s["std"] == pytest.approx(1 / math.sqrt(d), rel=0.05)
    assert s["isotropic_std"] == pytest.approx(1 / math.sqrt(d))
    assert sum(s["histogram"]["counts"]) == s["sample_pairs"] == 500 * 499 // 2
    # a shared offset raises the mean cosine; centring removes it
    s2 = T.cosine_statistics(x + 0.5, sample=500, seed=0)
    assert s2["mean"] == pytest.approx(16 / 80, rel=0.05)  # |mu|^2 / (|mu|^2 + d)
    assert abs(s2["centered_mean"]) < 0.01


def test_norm_statistics() -> None:
    x = torch.zeros(10, 3)
    x[:, 0] = torch.arange(10).float()
    s = T.norm_statistics(x, [f"w{i}" for i in range(10)])
    assert s["min"] == 0.0 and s["argmin_token"] == "w0" and s["zero_rows"] == 1
    assert s["max"] == 9.0 and s["argmax"] == 9
    assert s["mean"] == pytest.approx(4.5)


def test_distance_statistics_match_cdist() -> None:
    x = _randn(50, 5, seed=3).float()
    s = T.distance_statistics(x, sample=1000, seed=0)
    d = torch.pdist(x.double())
    assert s["mean"] == pytest.approx(float(d.mean()), rel=1e-9)
    assert s["cv"] == pytest.approx(float(d.std() / d.mean()), rel=1e-9)


# --------------------------------------------------------------------------- spectrum
def test_spectrum_isotropic_gaussian_has_pr_near_d() -> None:
    x = _randn(20000, 16, seed=4)
    s = T.spectrum_statistics(x, seed=0, blocks=32, n_bootstrap=50)
    assert s["pr_over_d"] > 0.95
    lo, hi = s["pr_over_d_ci"]
    assert 0.9 < lo < s["pr_over_d"] < hi
    assert s["null_pr_over_d"] > 0.95
    dims = s["dims_for_variance"]
    assert dims["80"] <= dims["90"] <= dims["95"] <= dims["99"] <= 16


def test_spectrum_pr_matches_closed_form_and_null_sees_correlation() -> None:
    # two strongly correlated columns plus independent ones with unequal scales
    g = _randn(5000, 6, seed=5)
    x = torch.cat([g[:, :1], g[:, :1] + 0.01 * g[:, 1:2], 2.0 * g[:, 2:3], g[:, 3:]], dim=1)
    s = T.spectrum_statistics(x, seed=0, blocks=16, n_bootstrap=30)
    xc = x - x.mean(0)
    ev = torch.linalg.eigvalsh(xc.T @ xc / x.shape[0])
    assert s["participation_ratio"] == pytest.approx(float(ev.sum() ** 2 / (ev**2).sum()), rel=1e-7)
    var = xc.pow(2).mean(0)
    assert s["null_participation_ratio"] == pytest.approx(
        float(var.sum() ** 2 / (var**2).sum()), rel=1e-7
    )
    # correlation concentrates variance: PR below its column-shuffled null
    assert s["participation_ratio"] < s["null_participation_ratio"]
    lo, hi = s["pr_over_d_ci"]
    assert lo < s["pr_over_d"] < hi and hi - lo < 0.05
    assert s["eigenvalues"] == sorted(s["eigenvalues"], reverse=True)


# --------------------------------------------------------------------------- pentachora
def test_pentachoron_gaussian_data_matches_its_null() -> None:
    x = _randn(4000, 12, seed=7) * torch.linspace(0.5, 2.0, 12, dtype=torch.float64)
    p = T.pentachoron_statistics(x.float(), n_simplices=1500, seed=0, n_bootstrap=300)
    lo, hi = p["ratio_to_gaussian_ci"]
    assert lo < 1.0 < hi
    assert p["embeddings"]["cv_ci"][0] <= p["embeddings"]["cv"] <= p["embeddings"]["cv_ci"][1]


def test_pentachoron_clustered_data_exceeds_its_null() -> None:
    g = torch.Generator().manual_seed(8)
    centres = 6.0 * torch.randn(3, 12, generator=g)
    x = centres[torch.randint(0, 3, (3000,), generator=g)] + 0.3 * torch.randn(
        3000, 12, generator=g
    )
    p = T.pentachoron_statistics(x, n_simplices=1500, seed=0, n_bootstrap=300)
    assert p["ratio_to_gaussian_ci"][0] > 1.0


def test_pentachoron_isotropic_cv_scales_like_sqrt_two_over_d() -> None:
    for d in (32, 128):
        p = T.pentachoron_statistics(_randn(1000, d, seed=d).float(), n_simplices=2000, seed=1,
                                     n_bootstrap=100)
        assert p["isotropic"]["cv"] == pytest.approx(math.sqrt(2.0 / d), rel=0.25)


# --------------------------------------------------------------------------- number manifold
def test_digit_manifold_matches_naive_and_detects_arc() -> None:
    E, words = _planted_vocab_matrix()
    m = T.digit_manifold(E, list(range(10)), n_permutations=500, seed=0)
    r, gap = ref.digit_stats(np.asarray(m["cosine"]))
    assert m["corr_offset_cosine"] == pytest.approx(r, rel=1e-9)
    assert m["adjacency_gap"] == pytest.approx(gap, rel=1e-9)
    assert m["corr_offset_cosine"] < -0.9
    assert m["p_corr"] == pytest.approx(1 / 501)
    assert m["null_corr_ci"][0] > m["corr_offset_cosine"]


def test_digit_manifold_null_on_random_tokens() -> None:
    E = _randn(10, 32, seed=9)
    m = T.digit_manifold(E, list(range(10)), n_permutations=500, seed=0)
    assert m["p_corr"] > 0.01 and m["p_gap"] > 0.01


def test_digit_manifold_same_seed_same_bits() -> None:
    E = _randn(10, 8, seed=10)
    a = T.digit_manifold(E, list(range(10)), n_permutations=200, seed=3)
    b = T.digit_manifold(E, list(range(10)), n_permutations=200, seed=3)
    assert a == b


# --------------------------------------------------------------------------- categories
def test_category_clustering_matches_naive_and_planted_clusters() -> None:
    E, words = _planted_vocab_matrix()
    groups = {"a": list(range(10, 16)), "b": list(range(16, 22)), "c": list(range(22, 28))}
    res = T.category_clustering(E, groups, n_permutations=400, seed=0, reference_mean=0.0)
    labels = [0] * 6 + [1] * 6 + [2] * 6
    assert res["gap"] == pytest.approx(
        ref.category_gap(E[10:28].double().numpy(), labels), rel=1e-9
    )
    assert res["gap"] > 0.3
    assert res["p_gap"] == pytest.approx(1 / 401)
    assert res["nn_purity"] == 1.0
    assert all(c["p"] < 0.05 for c in res["per_category"])


def test_category_clustering_random_tokens_are_not_significant() -> None:
    E = _randn(30, 16, seed=11)
    groups = {"a": list(range(0, 10)), "b": list(range(10, 20)), "c": list(range(20, 30))}
    res = T.category_clustering(E, groups, n_permutations=400, seed=0)
    assert res["p_gap"] > 0.01
    lo, hi = res["null_gap_ci"]
    assert lo < 0.0 < hi


def test_category_clustering_bad_input() -> None:
    E = _randn(10, 4, seed=12)
    with pytest.raises(InputError, match="at least 2 categories"):
        T.category_clustering(E, {"a": [0, 1, 2], "b": [3, 4]})


# --------------------------------------------------------------------------- token lookup
def test_find_token_ids_word_level_vocab() -> None:
    E, words = _planted_vocab_matrix()
    subject = T.TerrainSubject("toy", "static", E, vocab=words)
    ids = T.find_token_ids(["3", "cat", "CAT", "nope"], subject)
    assert ids == {"3": 3, "cat": words.index("cat"), "CAT": words.index("cat")}


# --------------------------------------------------------------------------- positions
def test_positions_learned_absolute_bert(tiny_bert: torch.nn.Module) -> None:
    pos = T.position_structure(tiny_bert, kind="encoder", max_positions=32)
    assert pos["type"] == "absolute" and pos["module"].endswith("position_embeddings")
    assert pos["positions_total"] == 64 and pos["positions_used"] == 32
    W = tiny_bert.embeddings.position_embeddings.weight.detach().double()[:32]
    U = W / W.norm(dim=1, keepdim=True)
    C = U @ U.T
    assert pos["cosine_by_offset"][0] == pytest.approx(float(torch.diagonal(C, 1).mean()), rel=1e-9)
    assert pos["cosine_by_offset"][4] == pytest.approx(float(torch.diagonal(C, 5).mean()), rel=1e-9)


def test_positions_opt_skips_offset_rows(tiny_opt: torch.nn.Module) -> None:
    pos = T.position_structure(tiny_opt, kind="decoder", max_positions=200)
    assert pos["type"] == "absolute" and pos["offset_rows_skipped"] == 2
    assert pos["positions_used"] == 64


def test_positions_gpt2_wpe(tiny_gpt2: torch.nn.Module) -> None:
    pos = T.position_structure(tiny_gpt2, kind="decoder", max_positions=16)
    assert pos["type"] == "absolute" and pos["module"].endswith("wpe")
    assert len(pos["cosine_by_offset"]) == 15


def test_positions_t5_relative_buckets(tiny_t5: torch.nn.Module) -> None:
    pos = T.position_structure(tiny_t5, kind="encoder-decoder", max_positions=32)
    assert pos["type"] == "relative" and pos["buckets"] == 8 and pos["heads"] == 4
    assert pos["bidirectional"] is True
    W = (
        tiny_t5.encoder.block[0]
        .layer[0]
        .SelfAttention.relative_attention_bias.weight.detach()
        .double()
    )
    assert np.allclose(pos["bias"], W.T.numpy())
    # offset 0 falls in bucket 0 for the bidirectional encoder
    zero = pos["offsets"].index(0)
    assert pos["bias_by_offset_mean"][zero] == pytest.approx(float(W[0].mean()), rel=1e-9)


def test_positions_rotary_is_stated_as_analytic(tiny_llama: torch.nn.Module) -> None:
    pos = T.position_structure(tiny_llama, kind="decoder", max_positions=20)
    assert pos["type"] == "rotary" and "no learned position vectors" in pos["note"]
    assert pos["head_dim"] == 8 and pos["analytic_similarity"][0] == pytest.approx(1.0)
    assert all(v <= 1.0 for v in pos["analytic_similarity"])


def test_positions_rotary_per_layer_type_gemma3(tiny_gemma3: torch.nn.Module) -> None:
    """Gemma 3 configs give one RoPE base per layer type (sliding-window and global)."""
    pos = T.position_structure(tiny_gemma3, kind="decoder", max_positions=20)
    assert pos["type"] == "rotary" and pos["sliding_window"] == 4
    assert set(pos["by_layer_type"]) == {"full_attention", "sliding_attention"}
    assert pos["theta"] == pos["by_layer_type"]["full_attention"]["theta"]
    full = pos["by_layer_type"]["full_attention"]
    assert pos["analytic_similarity"] == full["analytic_similarity"]


def test_positions_static() -> None:
    assert T.position_structure(None, kind="static")["type"] == "none"


# --------------------------------------------------------------------------- layers
@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama", "tiny_t5"])
def test_layer_evolution_matches_direct_forward(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    module = request.getfixturevalue(fixture)
    handle = from_module(module, name=fixture)
    subject = T.TerrainSubject.from_handle(handle)
    res = T.layer_evolution(subject, None, max_length=16, batch_size=8, seed=0, n_bootstrap=100)
    assert res["available"] and res["source"].startswith("random token ids")
    rows = res["layers"]
    assert len(rows) == handle.num_layers + 1
    # oracle: the first sequence alone through the model, last layer token norms
    seqs, _, _ = T.layers._encode_texts(subject, None, max_length=16, seed=0)
    all_tokens = sum(len(s) for s in seqs)
    assert rows[0]["tokens"] == all_tokens
    with torch.inference_mode():
        hs = T.layers._hidden_states(
            module, torch.tensor([seqs[0]]), torch.ones(1, len(seqs[0]), dtype=torch.long)
        )
    assert len(hs) == len(rows)
    for r in rows:
        assert r["norm_ci"][0] <= r["norm_ci"][1]
        assert -1.0 <= r["cos_all"] <= 1.0 and 0.0 < r["pr_over_d"] <= 1.0


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_hidden_states_skip_the_lm_head_and_equal_the_whole_models(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    module = request.getfixturevalue(fixture)
    head = module.get_output_embeddings()
    calls: list[int] = []
    hook = head.register_forward_hook(lambda *_: calls.append(1))
    ids = torch.tensor([[5, 7, 9, 11], [0, 0, 3, 4]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    try:
        with torch.inference_mode():
            hs = T.layers._hidden_states(module, ids, mask)
            assert not calls  # the vocabulary product is not computed
            whole = module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    finally:
        hook.remove()
    assert calls and len(hs) == len(whole.hidden_states)
    for a, b in zip(hs, whole.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_layer_evolution_padding_does_not_change_statistics(tiny_bert: torch.nn.Module) -> None:
    subject = T.TerrainSubject.from_handle(from_module(tiny_bert))
    a = T.layer_evolution(subject, None, batch_size=4, seed=0, n_bootstrap=50)
    b = T.layer_evolution(subject, None, batch_size=32, seed=0, n_bootstrap=50)
    for ra, rb in zip(a["layers"], b["layers"], strict=True):
        assert ra["norm_mean"] == pytest.approx(rb["norm_mean"], rel=1e-4)
        assert ra["cos_within"] == pytest.approx(rb["cos_within"], rel=1e-4, abs=1e-6)


def test_layer_evolution_static_subject_says_so() -> None:
    subject = T.TerrainSubject("glove", "static", _randn(20, 4).float())
    res = T.layer_evolution(subject, ["a b c"])
    assert res["available"] is False and "static" in res["note"]


# --------------------------------------------------------------------------- the battery
def test_run_terrain_static_planted_vocab_and_panel(tmp_path) -> None:  # noqa: ANN001
    from hyperlens.report.plots import render

    E, words = _planted_vocab_matrix()
    subject = T.TerrainSubject("toy-static", "static", E, vocab=words)
    res = T.run_terrain(subject, _small_config())
    assert (
        res["numbers"]["digits"]["available"]
        and res["numbers"]["digits"]["corr_offset_cosine"] < -0.9
    )
    assert res["numbers"]["number_words"]["available"] is False
    assert res["categories"]["available"] and res["categories"]["p_gap"] < 0.01
    assert res["layers"]["available"] is False and res["positions"]["type"] == "none"
    assert res["special_tokens"]["available"] is False
    panel = T.terrain_panel(res)
    assert panel["kind"] == "panel" and len(panel["subplots"]) == 9
    assert render(panel, tmp_path / "p.png").stat().st_size > 10_000


def test_run_terrain_tiny_gpt2_with_word_vocab(tiny_gpt2: torch.nn.Module) -> None:
    handle = from_module(tiny_gpt2, name="tiny-gpt2")
    subject = T.TerrainSubject.from_handle(handle)
    assert subject.vocab is None  # no tokenizer: no vocabulary
    subject.vocab = [str(i) for i in range(10)] + [f"t{i}" for i in range(110)]
    res = T.run_terrain(subject, _small_config())
    assert res["vocab_size"] == 120 and res["dim"] == 32
    assert res["numbers"]["digits"]["available"]
    assert res["categories"]["available"] is False
    assert len(res["layers"]["layers"]) == 3
    assert res["positions"]["type"] == "absolute"
    assert len(T.terrain_panel(res)["subplots"]) == 9


def test_run_terrain_is_reproducible() -> None:
    E, words = _planted_vocab_matrix()
    subject = T.TerrainSubject("toy", "static", E, vocab=words)
    a = T.run_terrain(subject, _small_config(), seed=5)
    b = T.run_terrain(subject, _small_config(), seed=5)
    for k in ("timings", "cpu_seconds"):
        a.pop(k), b.pop(k)
    assert a == b
    c = T.run_terrain(subject, _small_config(), seed=6)
    assert c["pentachoron"]["embeddings"]["cv"] != a["pentachoron"]["embeddings"]["cv"]


def test_run_terrain_bad_input() -> None:
    E = _randn(20, 4).float()
    E[3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        T.run_terrain(T.TerrainSubject("bad", "static", E), _small_config())
    with pytest.raises(ShapeError):
        T.run_terrain(T.TerrainSubject("tiny", "static", _randn(3, 4).float()), _small_config())
    with pytest.raises(HyperlensError, match="--cosine-sample"):
        T.TerrainConfig(cosine_sample=1)
    with pytest.raises(HyperlensError, match="--cv-band"):
        T.TerrainConfig(cv_band=(0.3, 0.2))
    with pytest.raises(InputError, match="at least 4"):
        T.digit_manifold(E, [0, 1, 2])


class _PieceTokenizer:
    """A stand-in SentencePiece tokenizer: a lone boundary piece, then one piece per word."""

    all_special_ids = [0]
    all_special_tokens = ["<s>"]

    def __init__(self) -> None:
        self.vocab = {"<s>": 0, "\u2581": 1, "7": 2, "\u2581cat": 3, "\u2581dog": 4}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        word = text.strip()
        if "\u2581" + word in self.vocab:
            return [self.vocab["\u2581" + word]]
        return [1] + ([self.vocab[word]] if word in self.vocab else [1, 1])

    def decode(self, ids: list[int]) -> str:
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv[i] for i in ids).replace("\u2581", " ")


def test_find_token_ids_skips_a_lone_boundary_piece() -> None:
    subject = T.TerrainSubject("sp", "static", _randn(5, 4).float(), tokenizer=_PieceTokenizer())
    assert T.find_token_ids(["7", "cat", "dog", "emu"], subject, prefer_space=False) == {
        "7": 2,
        "cat": 3,
        "dog": 4,
    }
    sp = T.special_token_statistics(subject.embeddings, subject.tokenizer, sample=4)
    assert sp["available"] and sp["tokens"][0]["id"] == 0
