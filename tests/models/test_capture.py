"""Capture: named hook points on tiny random BERT, Llama, GPT-2, T5 (encoder) and OPT."""

from __future__ import annotations

import pytest
import torch

from hyperlens.errors import InputError
from hyperlens.models import capture, from_module, point_names
from hyperlens.models.arch import resolve_backbone

ARCHS = ["tiny_bert", "tiny_llama", "tiny_gpt2", "tiny_t5", "tiny_opt"]


def _inputs(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 120, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    stack = resolve_backbone(model).stack
    with torch.no_grad():
        return stack(**inputs, output_hidden_states=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_unchanged_and_hidden_states_match(arch, request):
    model = request.getfixturevalue(arch)
    inputs = _inputs(model)
    plain = _forward(model, inputs)
    L = resolve_backbone(model).num_layers
    with capture(model, point_names(L)) as acts:
        hooked = _forward(model, inputs)
    # bit-identical outputs while capturing
    assert torch.equal(plain.last_hidden_state, hooked.last_hidden_state)
    for a, b in zip(plain.hidden_states, hooked.hidden_states, strict=True):
        assert torch.equal(a, b)
    # hidden.l is exactly Hugging Face's hidden_states[l]
    for li in range(L + 1):
        torch.testing.assert_close(acts[f"hidden.{li}"], plain.hidden_states[li], rtol=0, atol=0)
    for i in range(L):
        torch.testing.assert_close(
            acts[f"blocks.{i}.resid_pre"], plain.hidden_states[i], rtol=0, atol=0
        )
    for i in range(L - 1):
        torch.testing.assert_close(
            acts[f"blocks.{i}.resid_post"], plain.hidden_states[i + 1], rtol=0, atol=0
        )


@pytest.mark.parametrize("arch", ARCHS)
def test_hooks_removed_on_exit_and_error(arch, request):
    model = request.getfixturevalue(arch)
    bb = resolve_backbone(model)

    def n_hooks() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = n_hooks()
    with capture(model, ["hidden.*", "blocks.*.attn.q", "blocks.0.attn.z"]):
        assert n_hooks() > before
    assert n_hooks() == before
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["blocks.-1.attn.out"]):
            raise RuntimeError("boom")
    assert n_hooks() == before
    assert bb.num_layers == 2


@pytest.mark.parametrize("arch", ARCHS)
def test_per_head_shapes(arch, request):
    model = request.getfixturevalue(arch)
    bb = resolve_backbone(model)
    inputs = _inputs(model)
    with capture(model, ["blocks.*.attn.q", "blocks.*.attn.k", "blocks.*.attn.v", "blocks.*.attn.z",
                         "blocks.*.attn.out"]) as acts:
        _forward(model, inputs)
    B, T = inputs["input_ids"].shape
    for i in range(bb.num_layers):
        assert acts[f"blocks.{i}.attn.q"].shape == (B, T, bb.n_heads, bb.d_head)
        assert acts[f"blocks.{i}.attn.k"].shape == (B, T, bb.n_kv_heads, bb.d_head)
        assert acts[f"blocks.{i}.attn.v"].shape == (B, T, bb.n_kv_heads, bb.d_head)
        assert acts[f"blocks.{i}.attn.z"].shape == (B, T, bb.n_heads, bb.d_head)
        assert acts[f"blocks.{i}.attn.out"].shape == (B, T, bb.d_model)


def test_grouped_query_heads(tiny_llama):
    bb = resolve_backbone(tiny_llama)
    assert (bb.n_heads, bb.n_kv_heads, bb.d_head) == (4, 2, 8)
    attn = tiny_llama.model.layers[1].self_attn
    x = _inputs(tiny_llama)
    with capture(tiny_llama, ["blocks.1.attn.k", "blocks.1.resid_pre"]) as acts:
        _forward(tiny_llama, x)
    # oracle: the key projection of the (normed) block input, reshaped by hand
    normed = tiny_llama.model.layers[1].input_layernorm(acts["blocks.1.resid_pre"])
    ref = (normed @ attn.k_proj.weight.T).reshape(3, 7, 2, 8)
    torch.testing.assert_close(acts["blocks.1.attn.k"], ref, rtol=1e-5, atol=1e-6)


def test_gpt2_fused_qkv_split(tiny_gpt2):
    x = _inputs(tiny_gpt2)
    blk = tiny_gpt2.transformer.h[0]
    with capture(
        tiny_gpt2, ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v", "hidden.0"]
    ) as acts:
        _forward(tiny_gpt2, x)
    fused = blk.attn.c_attn(blk.ln_1(acts["hidden.0"]))  # [3, 7, 96] oracle
    q, k, v = fused[..., :32], fused[..., 32:64], fused[..., 64:]
    for name, ref in (("q", q), ("k", k), ("v", v)):
        torch.testing.assert_close(
            acts[f"blocks.0.attn.{name}"], ref.reshape(3, 7, 4, 8), rtol=1e-5, atol=1e-6
        )


def test_attention_out_is_projection_of_z(tiny_bert):
    x = _inputs(tiny_bert)
    dense = tiny_bert.encoder.layer[1].attention.output.dense
    with capture(tiny_bert, ["blocks.1.attn.z", "blocks.1.attn.out"]) as acts:
        _forward(tiny_bert, x)
    z = acts["blocks.1.attn.z"].reshape(3, 7, 32)
    torch.testing.assert_close(acts["blocks.1.attn.out"], dense(z), rtol=1e-5, atol=1e-6)


def test_negative_indices_and_handle(tiny_opt, tiny_tokenizer):
    handle = from_module(tiny_opt, tiny_tokenizer)
    assert handle.kind == "decoder" and handle.num_layers == 2 and handle.hidden_size == 32
    x = _inputs(tiny_opt)
    with capture(handle, ["blocks.-1.attn.q", "hidden.-1"]) as acts:
        out = _forward(tiny_opt, x)
    assert torch.equal(acts["blocks.-1.attn.q"], acts["blocks.1.attn.q"])
    torch.testing.assert_close(acts["hidden.-1"], out.last_hidden_state, rtol=0, atol=0)


def test_stop_early_skips_later_blocks(tiny_llama):
    calls: list[int] = []
    hooks = [blk.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
             for i, blk in enumerate(tiny_llama.model.layers)]
    try:
        with capture(tiny_llama, ["hidden.1"], stop_early=True) as acts, torch.no_grad():
            assert acts.run(**_inputs(tiny_llama)) is None
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0]
    assert acts["hidden.1"].shape == (3, 7, 32)


@pytest.mark.parametrize(
    "bad", ["hidden.3", "blocks.2.attn.q", "blocks.0.mlp", "resid", "blocks.x.attn.q"]
)
def test_unknown_points_list_valid_names(tiny_llama, bad):
    with pytest.raises(InputError, match=r"hidden\.0\.\.hidden\.2"):
        with capture(tiny_llama, [bad]):
            pass


def test_static_models_cannot_be_captured():
    from hyperlens.models import ModelHandle

    h = ModelHandle("vecs", "static", None, None, 4, 0, torch.device("cpu"), torch.float32)
    with pytest.raises(InputError, match="static"):
        with capture(h, ["hidden.0"]):
            pass
