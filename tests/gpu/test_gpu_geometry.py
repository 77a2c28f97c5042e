"""Sketches and geometry on the device against the CPU.

Sketch tables are drawn on the CPU and moved, so a seed gives the same operator on every
device and its float32 products agree to :data:`gpu_support.F32`. Simplex volumes of the
same simplices are float64 and agree to :data:`gpu_support.F64`. The simplex CV draws its
simplices and bootstrap resamples on the data's device, so the CPU and the GPU draw
different (equally valid) samples: their CVs agree within the sampling error, checked here
as a difference below four standard errors of the two estimates.
"""

from __future__ import annotations

import math

import pytest
import torch
from gpu_support import F32, F64

from hyperlens.errors import DeviceError
from hyperlens.functional import geometry as G
from hyperlens.functional.sketch import SRHT, BlockSRHT, CountSketch, GaussianSketch, compose

pytestmark = pytest.mark.cuda

DRAWERS = {"countsketch": CountSketch.draw, "srht": SRHT.draw, "block_srht": BlockSRHT.draw,
           "gaussian": GaussianSketch.draw}


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_sketch_on_the_device_equals_the_cpu(kind, device):
    draw = DRAWERS[kind]
    cpu = draw(1000, 128, seed=21)
    dev = draw(1000, 128, seed=21, device=device)
    assert dev.device.type == device.type
    for name, t in cpu._tensors().items():
        assert torch.equal(dev._tensors()[name].cpu(), t), name
    x = _randn(300, 1000, seed=22)
    got = dev(x.to(device))
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), cpu(x), **F32)
    moved_op = cpu.to(device)
    torch.testing.assert_close(moved_op(x.to(device)).cpu(), cpu(x), **F32)
    if device.type == "cuda":
        with pytest.raises(DeviceError, match="sketch.to"):
            dev(x)  # a CPU input is refused, not moved behind the caller's back


def test_countsketch_of_sparse_input_and_a_composed_sketch(device):
    cs = CountSketch.draw(5000, 512, seed=23)
    bs = BlockSRHT.draw(512, 64, seed=24)
    dense = _randn(40, 5000, seed=25) * (torch.rand(40, 5000) < 0.01)
    sparse = dense.to_sparse()
    ref = cs(dense)
    got = cs.to(device)(sparse.to(device))
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), ref, **F32)
    pipe = compose(cs, bs)
    torch.testing.assert_close(pipe.to(device)(dense.to(device)).cpu(), pipe(dense), **F32)


def test_simplex_volumes_and_spectra_equal_the_cpu(device):
    X = _randn(600, 48, seed=26, dtype=torch.float64)
    Xd = X.to(device)
    idx = G.sample_simplices(600, 4, 3000, seed=1)
    vols = G.simplex_volumes(Xd, idx.to(device))
    assert vols.device.type == device.type
    torch.testing.assert_close(vols.cpu(), G.simplex_volumes(X, idx), **F64)
    drawn = G.sample_simplices(600, 4, 3000, seed=1, device=device)
    assert drawn.device.type == device.type and drawn.shape == idx.shape
    assert bool((drawn.sort(1).values.diff(dim=1) > 0).all())  # distinct vertices
    assert math.isclose(G.participation_ratio(Xd), G.participation_ratio(X), rel_tol=1e-9)
    assert math.isclose(G.effective_rank(Xd), G.effective_rank(X), rel_tol=1e-9)
    assert math.isclose(G.linear_cka(Xd, Xd**2), G.linear_cka(X, X**2), rel_tol=1e-9)
    assert math.isclose(G.unbiased_cka(Xd, Xd**2), G.unbiased_cka(X, X**2), rel_tol=1e-9)
    null = G.null_points(Xd, "gaussian", seed=2)
    assert null.device.type == device.type and null.shape == X.shape


def test_simplex_cv_on_the_device_agrees_with_the_cpu(device):
    X = _randn(2000, 32, seed=27)
    ref = G.simplex_volume_cv(X, n_samples=20_000, seed=0, null="gaussian", n_boot=200,
                              ci="bootstrap")
    got = G.simplex_volume_cv(X.to(device), n_samples=20_000, seed=0, null="gaussian",
                              n_boot=200, ci="bootstrap")
    for a, b in ((got.cv, ref.cv), (got.null_cv, ref.null_cv), (got.ratio, ref.ratio)):
        assert a.lo <= a.value <= a.hi
        se = math.hypot(a.hi - a.lo, b.hi - b.lo) / (2 * 1.96)
        assert abs(a.value - b.value) <= 4 * se, (a, b)
    delta = G.simplex_volume_cv(X.to(device), n_samples=20_000, seed=0, ci="delta")
    assert delta.cv.method == "delta method" and delta.cv.lo <= delta.cv.value <= delta.cv.hi
