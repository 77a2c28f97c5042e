"""Packed bfloat16 linear maps: the same answers as F.linear, gradients through the plain
path, copies and pickles that repack, and swapping only what can be packed."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hyperlens.functional.packed import PackedLinear, pack_linears, packable
from hyperlens.hft.capture import Unembedding

NATIVE = packable(torch.zeros(2, 2, dtype=torch.bfloat16))


@pytest.mark.parametrize("batch", [1, 5])
def test_packed_linear_answers_as_f_linear(batch):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 48, generator=g).bfloat16()
    b = torch.randn(300, generator=g).bfloat16()
    lin = PackedLinear(w, b)
    x = torch.randn(batch, 3, 48, generator=g).bfloat16()  # any leading shape
    with torch.no_grad():
        y = lin(x)
    assert y.shape == (batch, 3, 300) and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), F.linear(x, w, b).float(), atol=2e-2, rtol=2e-2)
    assert (lin._packed is not None) == NATIVE  # packed on first use where the CPU has bf16


def test_gradients_take_the_plain_path_and_copies_repack():
    w = torch.randn(40, 8).bfloat16()
    lin = PackedLinear(w)
    x = torch.randn(2, 8).bfloat16().requires_grad_()
    lin(x).float().sum().backward()
    torch.testing.assert_close(x.grad.float(), w.float().sum(0).expand(2, 8), atol=1e-2,
                               rtol=1e-2)
    with torch.no_grad():
        ref = lin(x.detach())
        for other in (copy.deepcopy(lin), pickle.loads(pickle.dumps(lin))):
            assert other._packed is None  # an opaque packed tensor is not copied
            torch.testing.assert_close(other(x.detach()), ref, atol=0, rtol=0)


def test_pack_linears_swaps_only_packable_weights():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 4)))
    assert pack_linears(model) == 0  # float32 weights stay nn.Linear
    keys = list(model.state_dict())
    low = copy.deepcopy(model).bfloat16()
    x = torch.randn(3, 8).bfloat16()
    with torch.no_grad():
        ref = low(x)
        n = pack_linears(low)
        assert n == (2 if NATIVE else 0)
        assert list(low.state_dict()) == keys  # the same tensors under the same names
        torch.testing.assert_close(low(x).float(), ref.float(), atol=2e-2, rtol=2e-2)


def test_unembedding_in_bf16_matches_the_plain_product_and_keeps_its_state():
    U = Unembedding(torch.randn(500, 32), compute_dtype=torch.bfloat16)
    x = torch.randn(4, 32)
    with torch.no_grad():
        y = U(x)
    ref = (x.bfloat16() @ U.weight.bfloat16().T).float()
    torch.testing.assert_close(y, ref, atol=2e-2, rtol=2e-2)
    assert list(U.state_dict()) == ["weight"]  # the packed cache is not a submodule
    assert U.low_linear() is U.low_linear()
    xr = x.clone().requires_grad_()
    U(xr).sum().backward()  # training through it takes the plain, differentiable path
    assert xr.grad is not None and xr.grad.shape == x.shape
