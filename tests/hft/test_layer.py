"""HyperTensor layer: the seed's geometry, gradients through every parameter, locality,
reseeding that keeps the output, and the online rule lowering the error."""

import math

import pytest
import torch
import torch.nn.functional as F

from hyperlens.errors import InputError, ShapeError
from hyperlens.hft.layer import HyperTensorLayer
from hyperlens.utils import make_generator


def _layer(**kw):
    args = dict(d_in=8, d_out=5, n_tensors=12, top_k=3, tau=1.0, d_route=4, seed=0)
    args.update(kw)
    return HyperTensorLayer(**args)


def test_interpolation_matches_the_three_controls():
    layer = _layer(n_tensors=1, top_k=1)
    with torch.no_grad():
        layer.normal.copy_(torch.eye(8)[:1])
        layer.offset.fill_(0.5)
        layer.c_neg.fill_(-1.0)
        layer.c_mid.fill_(0.0)
        layer.c_pos.fill_(2.0)
    d_neg, d_pos = layer.bands()
    assert float(d_neg.detach()) == pytest.approx(-1.0)
    assert float(d_pos.detach()) == pytest.approx(1.0)
    x = torch.zeros(4, 8)
    x[:, 0] = torch.tensor([0.5, 1.0, 5.0, -10.0])  # on the plane, half band, beyond, beyond
    y = layer(x)
    torch.testing.assert_close(y[:, 0], torch.tensor([0.0, 1.0, 2.0, -1.0]))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    layer = _layer()
    x = torch.randn(64, 8)
    layer.init_from_data(x)
    with torch.no_grad():
        for c in (layer.c_neg, layer.c_mid, layer.c_pos):
            c.normal_()
    layer(x).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_selection_is_local_after_data_init():
    torch.manual_seed(1)
    centres = torch.randn(4, 8) * 10
    x = (centres[:, None, :] + 0.1 * torch.randn(4, 50, 8)).reshape(-1, 8)
    layer = _layer(n_tensors=40, top_k=2)
    layer.init_from_data(x, seed=0)
    _, info = layer(x, return_info=True)
    # the selected tensors were seeded from points of the same cluster
    seed_cluster = torch.cdist(layer.centre, centres @ layer.router).argmin(1)
    cluster = torch.arange(4).repeat_interleave(50)
    same = (seed_cluster[info["idx"]] == cluster[:, None]).float().mean()
    assert same > 0.95


def test_reseed_moves_idle_tensors_and_keeps_the_output():
    torch.manual_seed(2)
    layer = _layer(n_tensors=20, top_k=2)
    x = torch.randn(200, 8)
    layer.init_from_data(x)
    with torch.no_grad():
        layer.usage.fill_(1.0)
        layer.usage[:5] = 0.0
    hard = torch.randn(3, 8) * 4
    layer.eval()
    before = layer(hard)
    layer.observe(hard, torch.tensor([9.0, 8.0, 7.0]))
    moved = layer.reseed()
    assert moved == 3 and layer.reseeds == 3
    after = layer(hard)
    # each hard sample now has a tensor centred on it whose controls equal the old output
    assert torch.allclose(after, before, atol=1e-4)
    _, info = layer(hard, return_info=True)
    assert set(info["idx"][:, 0].tolist()) <= set(range(5))


def test_router_is_held_column_major_under_its_usual_shape():
    """One row's routing product streams each output's weights in order; the parameter
    keeps its [d_in, heads * d_route] shape and values, and a row-major state dict loads
    into it (and keeps it column-major) with the same outputs."""
    layer = _layer(heads=2, n_tensors=12)
    r = layer.router
    assert r.shape == (8, 8) and r.t().is_contiguous()
    g = make_generator(0)
    torch.randn(12, 8, generator=g)  # the draws before the router's, in __init__'s order
    for _ in range(3):
        torch.randn(12, 5, generator=g)
    torch.testing.assert_close(r.detach(), torch.randn(8, 8, generator=g) / math.sqrt(8))
    x = torch.randn(5, 8)
    other = _layer(heads=2, n_tensors=12, seed=1)
    state = {k: v.contiguous() for k, v in other.state_dict().items()}
    assert state["router"].is_contiguous()
    layer.load_state_dict(state)
    assert layer.router.t().is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), other(x))


def test_online_rule_reduces_error():
    torch.manual_seed(3)
    layer = _layer(n_tensors=30, top_k=4)
    centres = torch.randn(6, 8) * 5
    cluster = torch.arange(6).repeat_interleave(40)
    x = centres[cluster] + 0.2 * torch.randn(240, 8)
    target = torch.randn(6, 5)[cluster] + 0.3 * x[:, :5]
    layer.init_from_data(x)
    first = layer.online_step(x, target, eta=0.5, eta_g=0.01).pow(2).mean()
    for _ in range(100):
        err = layer.online_step(x, target, eta=0.5, eta_g=0.01)
    assert err.pow(2).mean() < 0.2 * first
    assert torch.allclose(F.normalize(layer.normal, dim=1).norm(dim=1), torch.ones(30))


def test_bad_arguments():
    with pytest.raises(InputError):
        _layer(top_k=13)
    with pytest.raises(InputError):
        _layer(tau=0.0)
    with pytest.raises(ShapeError):
        _layer()(torch.zeros(2, 7))
    assert math.isfinite(float(_layer().log_tau.detach()))


def test_heads_add_up_and_each_mixes_its_own_top_k():
    torch.manual_seed(4)
    layer = _layer(n_tensors=12, top_k=2, heads=3)
    x = torch.randn(30, 8)
    layer.init_from_data(x)
    with torch.no_grad():
        for c in (layer.c_neg, layer.c_mid, layer.c_pos):
            c.normal_()
    y, info = layer(x, return_info=True)
    torch.testing.assert_close(layer.head_outputs(x).sum(1), y, atol=1e-5, rtol=1e-5)
    head = info["idx"] // 4  # [B, heads * top_k]
    assert (head == torch.arange(3).repeat_interleave(2)).all()
    torch.testing.assert_close(info["weights"].view(30, 3, 2).sum(2), torch.ones(30, 3))
    # a single-head layer is the sum's special case: one convex mixture
    one = _layer(n_tensors=12, top_k=2, heads=1)
    assert one.head_outputs(x).shape == (30, 1, 5)


def test_reseed_with_heads_keeps_the_output():
    torch.manual_seed(5)
    layer = _layer(n_tensors=20, top_k=1, heads=2)
    layer.init_from_data(torch.randn(200, 8))
    with torch.no_grad():
        for c in (layer.c_neg, layer.c_mid, layer.c_pos):
            c.normal_()
        layer.usage.fill_(1.0)
        layer.usage[[0, 1, 10, 11]] = 0.0
    hard = torch.randn(2, 8) * 4
    layer.eval()
    before = layer(hard)
    layer.observe(hard, torch.tensor([9.0, 8.0]))
    assert layer.reseed() == 2
    torch.testing.assert_close(layer(hard), before, atol=1e-4, rtol=1e-4)


def test_heads_must_divide_the_tensors():
    with pytest.raises(InputError, match="multiple of heads"):
        _layer(n_tensors=12, heads=5)
    with pytest.raises(InputError, match="tensors per head"):
        _layer(n_tensors=12, heads=6, top_k=3)


def test_distill_loss_matches_autograd_of_kl_and_ce():
    from hyperlens.hft.model import distill_loss, kl_and_ce

    torch.manual_seed(6)
    z = torch.randn(16, 50, requires_grad=True)
    t, y = 3 * torch.randn(16, 50), torch.randint(0, 50, (16,))
    loss, kl, ce = distill_loss(z * 1.0, t, y, 0.3)
    loss.backward()
    g = z.grad.clone()
    z.grad = None
    kl2, ce2, _ = kl_and_ce(z * 1.0, t, y)
    (kl2.mean() + 0.3 * ce2.mean()).backward()
    torch.testing.assert_close(kl, kl2.detach())
    torch.testing.assert_close(ce, ce2.detach())
    torch.testing.assert_close(g, z.grad)


def test_vocabulary_products_use_bf16_only_with_native_bf16() -> None:
    import torch

    from hyperlens.functional import kernels
    from hyperlens.hft.capture import Unembedding
    from hyperlens.hft.train import StudentConfig, _unembed_dtype, train_bf16

    U = Unembedding(torch.zeros(5, 3))  # on the CPU: the CPU's capability decides
    with kernels.force_kernels("avx2"):
        assert _unembed_dtype(StudentConfig(), U) == torch.float32
        assert not train_bf16(StudentConfig(bf16=None)) and train_bf16(StudentConfig(bf16=True))
    with kernels.force_kernels("amx"):
        assert _unembed_dtype(StudentConfig(), U) == torch.bfloat16
        assert train_bf16(StudentConfig(bf16=None)) and not train_bf16(StudentConfig(bf16=False))
    assert _unembed_dtype(StudentConfig(fast_unembed=False), U) == torch.float32


@pytest.mark.parametrize("heads,top_k", [(1, 3), (2, 2)])
def test_inference_path_on_the_picked_rows_equals_the_dense_path(heads, top_k):
    torch.manual_seed(7)
    layer = _layer(n_tensors=96, top_k=top_k, heads=heads)
    x = torch.randn(40, 8)
    layer.init_from_data(x)
    with torch.no_grad():
        for c in (layer.c_neg, layer.c_mid, layer.c_pos):
            c.normal_()
        layer.band_neg.normal_()
        layer.band_pos.normal_()
    layer.eval()
    with torch.no_grad():
        assert layer._sparse_pays(1) and not layer._sparse_pays(40)
        dense = layer(x)  # a batch of 40: the dense product
        rows = torch.cat([layer(x[i:i + 1]) for i in range(40)])  # one row: picked rows only
    torch.testing.assert_close(rows, dense, atol=1e-5, rtol=1e-5)
    # with gradients on, the dense path runs (the sparse one is inference only)
    y1 = layer(x[:1])
    assert y1.requires_grad


def _reference(layer: HyperTensorLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer written the direct way: planes normalised first, the dense ``[B, 3K]``
    coefficient matrix times the stacked controls."""
    idx, w, _ = layer._pick(x)
    s = (x @ F.normalize(layer.normal, dim=1).T).gather(1, idx) - layer.offset[idx]
    u_neg, u_pos = layer._band_weights(s, idx)
    K = layer.n_tensors
    A = x.new_zeros(x.shape[0], 3 * K).scatter(
        1, torch.cat([idx, idx + K, idx + 2 * K], 1),
        torch.cat([w * u_neg, w * (1 - u_neg - u_pos), w * u_pos], 1))
    return A @ layer.controls()


@pytest.mark.parametrize("heads", [1, 4])
def test_training_path_matches_the_direct_formula_in_value_and_gradient(heads):
    torch.manual_seed(3)
    layer = _layer(n_tensors=48, top_k=4, heads=heads)
    layer.init_from_data(torch.randn(64, 8))
    # rows other than the ones that seeded the planes (a seeding row sits at s = 0, the
    # kink of the interpolation, where rounding decides the side of a one-sided gradient)
    x = torch.randn(30, 8)
    with torch.no_grad():
        for c in (layer.c_neg, layer.c_mid, layer.c_pos):
            c.normal_()
        layer.band_neg.normal_()
        layer.band_pos.normal_()
    target = torch.randn(30, 5)
    grads = []
    for fn in (layer, lambda v: _reference(layer, v)):
        layer.zero_grad(set_to_none=True)
        y = fn(x)
        (y - target).pow(2).sum().backward()
        grads.append((y.detach(), {n: p.grad.clone() for n, p in layer.named_parameters()}))
    (y_new, g_new), (y_ref, g_ref) = grads
    torch.testing.assert_close(y_new, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.coefficients(x) @ layer.controls(), y_ref,
                               atol=1e-5, rtol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g_new[name], g_ref[name], atol=1e-4, rtol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_region_means_sum_head_by_head_as_one_pass_would():
    """The initial controls: each tensor's mean target over the inputs routed nearest to it,
    summed head by head without H copies of the targets, bit for bit what one pass over
    the expanded targets gives (every tensor belongs to one head, so the order of each
    row's additions is the same)."""
    from hyperlens.hft.model import _region_means

    torch.manual_seed(0)
    layer = HyperTensorLayer(24, 5, n_tensors=32, top_k=2, heads=4, seed=0)
    x, y = torch.randn(300, 24), torch.randn(300, 7)
    layer.init_from_data(x, seed=0)
    near = layer.route(x).argmin(2) + torch.arange(4) * 8  # [n, H]
    flat = near.reshape(-1)
    yy = y[:, None, :].expand(-1, 4, -1).reshape(-1, 7)
    sums = torch.zeros(32, 7).index_add_(0, flat, yy)
    cnt = torch.bincount(flat, minlength=32).float()[:, None]
    ref = torch.where(cnt > 0, sums / cnt.clamp_min(1), y.mean(0, keepdim=True)) / 4
    assert torch.equal(_region_means(layer, x, y), ref)


def test_picked_products_equal_the_gathered_dense_product_in_value_and_gradient():
    from hyperlens.hft.layer import picked_dot

    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 7, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(20, 7, dtype=torch.float64, generator=g, requires_grad=True)
    idx = torch.stack([torch.randperm(20, generator=g)[:3] for _ in range(9)])  # unsorted
    torch.testing.assert_close(picked_dot(x, v, idx), (x @ v.T).gather(1, idx))
    assert torch.autograd.gradcheck(lambda a, b: picked_dot(a, b, idx), (x, v))
    # deterministic: the same gradients, bit for bit, on a second pass
    w = torch.randn(9, 3, dtype=torch.float64, generator=g)
    grads = []
    for _ in range(2):
        x.grad = v.grad = None
        (picked_dot(x, v, idx) * w).sum().backward()
        grads.append((x.grad.clone(), v.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(grads[0], grads[1], strict=True))


def test_training_path_takes_the_picked_products_only_where_they_pay():
    wide = _layer(n_tensors=96, top_k=3)  # 3 of 96 picked: the picked products
    narrow = _layer(n_tensors=12, top_k=3)  # 3 of 12: the dense product
    x = torch.randn(5, 8)
    assert wide._sampled_pays(x) and not narrow._sampled_pays(x)
    assert not wide._sampled_pays(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not wide._sampled_pays(x)
    # the two ways give the same layer output and parameter gradients
    torch.manual_seed(2)
    wide.init_from_data(torch.randn(200, 8))
    with torch.no_grad():
        for c in (wide.c_neg, wide.c_mid, wide.c_pos):
            c.normal_()
    x = torch.randn(50, 8)
    target = torch.randn(50, 5)
    out = []
    for force in (True, False):
        wide._sampled_pays = lambda _x, f=force: f  # type: ignore[method-assign]
        wide.zero_grad(set_to_none=True)
        y = wide(x)
        (y - target).pow(2).sum().backward()
        out.append((y.detach(), {n: p.grad.clone() for n, p in wide.named_parameters()
                                 if p.grad is not None}))
    torch.testing.assert_close(out[0][0], out[1][0], atol=1e-5, rtol=1e-5)
    assert out[0][1].keys() == out[1][1].keys()
    assert float(out[1][1]["normal"].abs().max()) > 0  # the planes do learn
    for name in out[1][1]:
        torch.testing.assert_close(out[0][1][name], out[1][1][name], atol=1e-4, rtol=1e-4)
