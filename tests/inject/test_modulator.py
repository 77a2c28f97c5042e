"""lerp and field modulators on tiny random models: identity, effect, cache, save/load, errors."""

from __future__ import annotations

import pytest
import torch

from hyperlens.errors import ConfigError, InputError, ShapeError
from hyperlens.inject import (
    FieldModulator,
    LerpModulator,
    attach,
    available_adapters,
    load_adapter,
    make_adapter,
    save_adapter,
)
from hyperlens.inject.modulator import KSimplexExpert, regular_simplex

V, D, L = 120, 32, 2


def _geometry(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    vec = torch.randn(V, 8, generator=gen)
    mask = torch.zeros(V)
    mask[10:90] = 1.0  # tokens 0-9 and 90-119 have no geometry
    return vec * mask[:, None], mask


def _make(kind: str, alpha: float, **extra) -> LerpModulator | FieldModulator:
    ad = make_adapter(
        kind, d_model=D, vocab_size=V, n_layers=L, layers=[0, 1], dim=8, alpha=alpha, **extra
    )
    ad.set_geometry(*_geometry())
    return ad


IDS = torch.tensor([[5, 12, 40, 77, 95, 33], [12, 13, 14, 15, 16, 17]])


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_registered_and_identity_at_alpha_zero(kind, tiny_llama, tiny_bert):
    assert {"lerp", "field"} <= set(available_adapters())
    for model in (tiny_llama, tiny_bert):
        ad = _make(kind, 0.0)
        with torch.no_grad():
            ref = model(input_ids=IDS)[0]
            with attach(model, ad):
                out = model(input_ids=IDS)[0]
        assert torch.equal(ref, out)


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_changes_only_after_matched_tokens(kind, tiny_llama):
    alpha = 0.3
    ad = _make(kind, alpha)
    ids = torch.tensor([[5, 6, 7, 40, 8]])  # only position 3 has geometry
    with torch.no_grad():
        ref = tiny_llama(input_ids=ids).logits
        with attach(tiny_llama, ad):
            out = tiny_llama(input_ids=ids).logits
    assert torch.equal(ref[:, :3], out[:, :3])  # causal: positions before the matched token
    assert not torch.allclose(ref[:, 3:], out[:, 3:])
    unmatched = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        plain = tiny_llama(input_ids=unmatched).logits
        with attach(tiny_llama, ad):
            assert torch.equal(tiny_llama(input_ids=unmatched).logits, plain)


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_generate_with_kv_cache_matches_full_forward(kind, tiny_llama):
    ad = _make(kind, 0.3)
    prompt = torch.tensor([[12, 40, 5, 77]])
    with torch.no_grad(), attach(tiny_llama, ad):
        gen = tiny_llama.generate(
            prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0
        )
        nocache = tiny_llama.generate(
            prompt, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0
        )
        full = tiny_llama(input_ids=gen[:, :-1]).logits.argmax(-1)[:, prompt.shape[1] - 1 :]
    assert torch.equal(gen, nocache)
    assert torch.equal(full, gen[:, prompt.shape[1] :])


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_gradients_reach_adapter_not_model(kind, tiny_llama):
    ad = _make(kind, 0.2)
    tiny_llama.requires_grad_(False)
    with attach(tiny_llama, ad):
        loss = tiny_llama(input_ids=IDS).logits.pow(2).mean()
    loss.backward()
    assert ad.theta.grad is not None and torch.isfinite(ad.theta.grad).all()
    assert ad.theta.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_llama.parameters())


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_bfloat16_model_float32_adapter(kind, tiny_llama):
    """A bfloat16 copy of the model: identity at alpha 0, the update matches the float32
    adapter's to bfloat16 precision, and gradients reach the float32 parameters."""
    import copy

    model = copy.deepcopy(tiny_llama).to(torch.bfloat16).requires_grad_(False)
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
        with attach(model, _make(kind, 0.0)):
            assert torch.equal(model(input_ids=IDS).logits, ref)
    ad = _make(kind, 0.3)
    with attach(model, ad):
        out = model(input_ids=IDS).logits
    assert out.dtype == torch.bfloat16 and not torch.equal(out, ref)
    out.float().square().mean().backward()
    grads = [p.grad for p in ad.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    act = torch.randn(2, 6, D)
    with torch.no_grad():
        full = ad.modulate(act, IDS, 0)
        half = ad.modulate(act.to(torch.bfloat16), IDS, 0).float()
    assert torch.allclose(full, half, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("kind", ["lerp", "field"])
def test_save_load_round_trip(kind, tiny_llama, tmp_path):
    ad = _make(kind, 0.25)
    with torch.no_grad():
        for p in ad.parameters():
            p.add_(0.01)
    path = save_adapter(ad, tmp_path / f"{kind}.safetensors")
    back = load_adapter(path)
    assert type(back) is type(ad)
    with torch.no_grad(), attach(tiny_llama, ad):
        a = tiny_llama(input_ids=IDS).logits
    with torch.no_grad(), attach(tiny_llama, back):
        b = tiny_llama(input_ids=IDS).logits
    assert torch.equal(a, b)


def test_lerp_alpha_one_sets_the_geometry_subspace_to_the_scaled_target():
    ad = _make("lerp", 1.0, target_norm="residual")  # the seed's form: the residual's norm
    ad.resid_norm.fill_(3.0)
    P = ad.proj.detach()
    assert torch.allclose(P.T @ P, torch.eye(8), atol=1e-5)  # orthonormal columns at init
    x = torch.randn(2, 6, D)
    with torch.no_grad():
        out = ad.modulate(x, IDS, 0)
    m = ad.token_mask[IDS].bool()
    g = ad.geometry[IDS]
    assert torch.allclose((out @ P)[m], 3.0 * g[m], atol=1e-4)  # coordinates in span(P): r g
    perp = torch.eye(D) - P @ P.T
    assert torch.allclose(out @ perp, x @ perp, atol=1e-5)  # the rest passes through
    assert torch.equal(out[~m], x[~m])


def test_lerp_subspace_target_turns_the_component_and_keeps_its_length():
    """The default target has the length of the token's own component in the subspace:
    at alpha 1 that component points along the geometry with its old norm (no inflation),
    and the residual's norm outside the subspace is untouched."""
    ad = _make("lerp", 1.0)
    assert ad.config.target_norm == "subspace"
    P = ad.proj.detach()
    unit = torch.nn.functional.normalize(ad.geometry, dim=1) * ad.token_mask[:, None]
    ad.set_geometry(unit, ad.token_mask)
    x = torch.randn(2, 6, D)
    with torch.no_grad():
        out = ad.modulate(x, IDS, 0)
    m = ad.token_mask[IDS].bool()
    before, after = (x @ P)[m], (out @ P)[m]
    assert torch.allclose(after.norm(dim=-1), before.norm(dim=-1), atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(after, ad.geometry[IDS][m], dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)
    half = _make("lerp", 0.5)
    half.set_geometry(unit, half.token_mask)
    with torch.no_grad():  # halfway: the component moves, and differs from the seed's form
        seed_form = _make("lerp", 0.5, target_norm="residual")
        seed_form.set_geometry(unit, seed_form.token_mask)
        seed_form.resid_norm.fill_(5.0)
        assert not torch.allclose(half.modulate(x, IDS, 0), seed_form.modulate(x, IDS, 0))
    with pytest.raises(ConfigError, match="target_norm"):
        _make("lerp", 0.5, target_norm="whole")
    with pytest.raises(ConfigError, match="cannot train"):  # a zero projection: no gradient
        _make("lerp", 0.5, zero_init=True)


def test_field_zero_init_gates_start_at_one_and_train():
    """zero_init: gates start at exactly 1 (identity at any alpha), and the gate layers get
    gradient, so training can move them."""
    ad = _make("field", 0.3, zero_init=True)
    x = torch.randn(2, 6, D)
    out = ad.modulate(x, IDS, 0)
    assert torch.equal(out.detach(), x)
    out.pow(2).sum().backward()
    grads = [e.gate.weight.grad for e in ad.experts]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_field_null_space_untouched():
    ad = _make("field", 0.35)
    x = torch.randn(2, 6, D)
    out = ad.modulate(x, IDS, 1)
    na = ad.n_active
    assert torch.equal(out[..., na:], x[..., na:])
    assert not torch.allclose(out[..., :na], x[..., :na])


def test_field_query_null_space(tiny_llama):
    ad = _make("field", 0.3, null_space="query")
    ad.set_null_space(tiny_llama)
    U = ad.basis[0]
    assert torch.allclose(U.T @ U, torch.eye(ad.n_active), atol=1e-5)
    x = torch.randn(1, 6, D)
    out = ad.modulate(x, IDS[:1], 0)
    W = tiny_llama.model.layers[0].self_attn.q_proj.weight
    comp = torch.eye(D) - U @ U.T  # the null space: the query's weakest directions
    assert torch.allclose((out - x) @ comp, torch.zeros_like(x), atol=1e-5)
    assert W.shape[1] == D


def test_simplex_expert_uses_cayley_menger():
    t = regular_simplex(4, 8)
    d = torch.cdist(t, t)
    off = d[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off, torch.ones_like(off), atol=1e-5)
    e = KSimplexExpert(4, in_dim=10, n_out=6)
    gate, val, vol2 = e(torch.randn(3, 10))
    assert gate.shape == (3, 6) and val.shape == (3,)
    assert torch.all(
        vol2 > 0
    )  # near-regular simplices are valid (vol^2 of unit 4-simplex ~ 5.4e-4)


def test_bad_input_errors(tiny_bert):
    with pytest.raises(ConfigError, match="out of range"):
        make_adapter("lerp", d_model=D, vocab_size=V, n_layers=L, layers=[0, 2], dim=8)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        make_adapter("lerp", d_model=D, vocab_size=V, n_layers=L, layers=[0], dim=8, alpha=1.5)
    with pytest.raises(ConfigError, match="alpha_max"):
        make_adapter("field", d_model=D, vocab_size=V, n_layers=L, layers=[0], dim=8, alpha=0.5)
    ad = make_adapter("lerp", d_model=D, vocab_size=V + 1, n_layers=L, layers=[0], dim=8)
    with pytest.raises(InputError, match="vocabulary"):
        ad.interventions(tiny_bert)
    ad = make_adapter("lerp", d_model=D, vocab_size=V, n_layers=L, layers=[0], dim=8)
    with pytest.raises(ShapeError):
        ad.set_geometry(torch.zeros(V - 1, 8), torch.zeros(V - 1))
    with pytest.raises(InputError):
        ad.set_alpha(-0.1)


def test_lerp_restricted_leaves_the_excluded_coordinates_alone_and_saves_them(tmp_path):
    ad = _make("lerp", 0.8)
    keep = torch.ones(D, dtype=torch.bool)
    keep[[3, 17]] = False
    ad.restrict(keep)
    x = torch.randn(2, 6, D)
    x[..., 3] += 500.0  # a massive coordinate
    out = ad.modulate(x, IDS, 0)
    m = ad.token_mask[IDS].bool()
    assert torch.equal(out[..., ~keep], x[..., ~keep])  # the excluded pass through
    assert not torch.allclose(out[m], x[m])  # the rest moves
    ad.proj.data.normal_()  # training cannot move them back in: the mask applies at use
    assert torch.equal(ad.modulate(x, IDS, 1)[..., ~keep], x[..., ~keep])
    save_adapter(ad, tmp_path / "a")
    back = load_adapter(tmp_path / "a")
    assert torch.equal(back.dims, ad.dims)
    with pytest.raises(ShapeError):
        ad.restrict(torch.ones(D + 1, dtype=torch.bool))
    with pytest.raises(InputError, match="no residual coordinate"):
        ad.restrict(torch.zeros(D, dtype=torch.bool))


def test_massive_dims_finds_a_coordinate_far_above_the_rest(tiny_llama):
    ad = _make("lerp", 0.1)
    batches = [{"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}]
    assert not bool(ad.massive_dims(tiny_llama, batches).any())  # a random model has none
    norms = ad.calibrate(tiny_llama, batches)
    block = tiny_llama.model.layers[0]

    def boost(module, args):  # the residual entering block 0 gets one huge coordinate
        h = args[0].clone()
        h[..., 5] = 1e4
        return (h, *args[1:])

    hook = block.register_forward_pre_hook(boost)
    try:
        found = ad.massive_dims(tiny_llama, batches)
        assert found.nonzero().flatten().tolist() == [5]
        assert float(ad.calibrate(tiny_llama, batches)[1]) > 100 * float(norms[1])
    finally:
        hook.remove()
    with pytest.raises(InputError, match="above 1"):
        ad.massive_dims(tiny_llama, batches, factor=0.5)
