"""The HyperTensor layer: a routed mixture of banded hyperplanes with three control vectors.

Tensor ``k`` holds a hyperplane (unit normal ``n_k = v_k / ||v_k||``, offset ``delta_k``), a
band ``[d_neg_k, d_pos_k]`` (``d_neg < 0 < d_pos``) and three control vectors
``c_neg, c_mid, c_pos`` in the output space. For an input ``x`` its signed distance is
``s = n_k . x - delta_k``, clipped to the band, ``t = clip(s, d_neg, d_pos)``; the output
interpolates the controls piecewise linearly::

    out_k(x) = c_mid + relu(-t) / |d_neg| * (c_neg - c_mid) + relu(t) / d_pos * (c_pos - c_mid)

so a sample on the plane gets ``c_mid`` and one past the band edge gets ``c_neg`` / ``c_pos``.
The ``top_k`` tensors *nearest* the input are mixed with ``softmax(-dist / tau)``.

What makes it learn (the original stayed at the uniform distribution):

* **Local selection.** Nearness is measured in a learned routing space,
  ``dist_k = ||R x - m_k||^2 / d_route`` with a router ``R`` and a centre ``m_k`` per tensor,
  instead of ``|s_k|`` (with ``||x||`` near 90 every random plane is near every input, so
  selecting by plane distance picks arbitrary tensors). Centres and planes are seeded at
  training inputs (:meth:`init_from_data`), so each tensor starts where data is.
* **Gradients everywhere.** ``dist`` is differentiable, so router, centres and ``tau`` get
  gradients through the mixing weights; planes, offsets, bands and controls through the
  interpolation. Parameters are float32.
* **A high-error queue that reseeds idle tensors** (:meth:`observe`, :meth:`reseed`): usage
  is an exponential average of mixing mass; tensors below ``idle_fraction`` of the mean
  usage are moved to the queued inputs with the highest loss, keeping their output (so a
  reseed never resets the prediction to zero).
* The seed's **online rule** (:meth:`online_step`, rates ``eta`` for the controls and
  ``eta_g`` for the geometry) is kept as an alternative to gradient training.

Shapes:
    forward: ``x [B, d_in] -> [B, d_out]``; ``forward(x, return_info=True)`` also returns
    ``idx [B, top_k]``, ``weights [B, top_k]``, ``dist [B, top_k]``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ShapeError
from ..utils import make_generator

__all__ = ["HyperTensorLayer", "picked_dot"]


class _PickedDot(torch.autograd.Function):
    """``out[b, j] = x[b] . v[idx[b, j]]`` without the dense ``[B, K]`` product.

    Forward: a sampled matrix product (``torch.sparse.sampled_addmm``) at the picked
    entries only. Backward: the planes' gradient is the sparse ``[K, B]`` matrix of the
    output gradients times ``x`` (``torch.sparse.mm``), the input's a weighted sum of the
    picked planes (``embedding_bag``). Each works on ``B * P`` rows of ``d`` instead of
    ``B * K``: with 32 of 1,024 tensors picked, a thirty-second of the products.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, v: torch.Tensor, idx: torch.Tensor
                ) -> torch.Tensor:
        B, P = idx.shape
        col, order = idx.sort(1)  # CSR wants each row's columns sorted
        crow = torch.arange(0, B * P + 1, P, device=x.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            mask = torch.sparse_csr_tensor(crow, col.reshape(-1), x.new_zeros(B * P),
                                           size=(B, v.shape[0]))
            s = torch.sparse.sampled_addmm(mask, x, v.T, beta=0.0).values().view(B, P)
        ctx.save_for_backward(x, v, idx)
        return torch.empty_like(s).scatter_(1, order, s)  # back to the picks' order

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, v, idx = ctx.saved_tensors
        B, P = idx.shape
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = F.embedding_bag(idx, v, per_sample_weights=g.contiguous(), mode="sum")
        if ctx.needs_input_grad[1]:
            rows = torch.arange(B, device=x.device).repeat_interleave(P)
            G = torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), g.reshape(-1),
                                        (v.shape[0], B))
            gv = torch.sparse.mm(G, x)
        return gx, gv, None


def picked_dot(x: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(x @ v.T).gather(1, idx)`` computing only the gathered entries (and their
    gradients): ``x [B, d]``, ``v [K, d]``, ``idx [B, P]`` -> ``[B, P]``."""
    out: torch.Tensor = _PickedDot.apply(x, v, idx)
    return out


class HyperTensorLayer(nn.Module):
    band_scale: torch.Tensor
    usage: torch.Tensor
    queue_x: torch.Tensor
    queue_loss: torch.Tensor

    def __init__(self, d_in: int, d_out: int, n_tensors: int, top_k: int = 16, tau: float = 1.0,
                 d_route: int = 64, control_init: float = 0.0, queue_size: int = 2048,
                 idle_fraction: float = 0.05, heads: int = 1, seed: int = 0) -> None:
        super().__init__()
        for name, v in (("d_in", d_in), ("d_out", d_out), ("n_tensors", n_tensors),
                        ("top_k", top_k), ("d_route", d_route), ("heads", heads)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"{name} must be a positive int, got {v!r}.")
        if n_tensors % heads:
            raise InputError(f"n_tensors ({n_tensors}) must be a multiple of heads ({heads}).")
        if top_k > n_tensors // heads:
            raise InputError(f"top_k ({top_k}) must not exceed the tensors per head "
                             f"(n_tensors / heads = {n_tensors // heads}).")
        if not tau > 0:
            raise InputError(f"tau must be > 0, got {tau!r}.")
        g = make_generator(seed)
        K = n_tensors
        self.d_in, self.d_out, self.n_tensors, self.top_k = d_in, d_out, K, top_k
        self.heads, self.per_head, self.d_route = heads, K // heads, d_route
        self.normal = nn.Parameter(torch.randn(K, d_in, generator=g))
        self.offset = nn.Parameter(torch.zeros(K))
        self.band_neg = nn.Parameter(torch.zeros(K))  # d_neg = -softplus(.) * scale
        self.band_pos = nn.Parameter(torch.zeros(K))
        c = control_init
        self.c_neg = nn.Parameter(c * torch.randn(K, d_out, generator=g))
        self.c_mid = nn.Parameter(c * torch.randn(K, d_out, generator=g))
        self.c_pos = nn.Parameter(c * torch.randn(K, d_out, generator=g))
        # one routing subspace of d_route per head; tensor k belongs to head k // per_head
        # held column-major (a transposed view of [heads * d_route, d_in] rows): a product
        # with one input row then streams each output's weights in order, where the
        # row-major [d_in, heads * d_route] layout took about four times as long read from
        # memory (the router is the largest weight a row reads whole, ``bench_hft_step``);
        # the same values, shape and state-dict entry, the same products to float32 rounding
        w = torch.randn(d_in, heads * d_route, generator=g) / math.sqrt(d_in)
        self.router = nn.Parameter(w.t().contiguous().t())
        self.centre = nn.Parameter(torch.randn(K, d_route, generator=g))
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))
        self.register_buffer("band_scale", torch.ones(K))
        self.register_buffer("usage", torch.zeros(K))
        self.register_buffer("queue_x", torch.zeros(queue_size, d_in))
        self.register_buffer("queue_loss", torch.full((queue_size,), -math.inf))
        self.idle_fraction = idle_fraction
        self.reseeds = 0
        self._softplus1 = math.log(math.e - 1.0)  # softplus(_softplus1) == 1

    # ------------------------------------------------------------------ geometry
    def bands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d_neg [K] < 0, d_pos [K] > 0)``."""
        s = self.band_scale
        d_neg = -F.softplus(self.band_neg + self._softplus1) * s
        d_pos = F.softplus(self.band_pos + self._softplus1) * s
        return d_neg, d_pos

    def head_of(self, idx: torch.Tensor) -> torch.Tensor:
        """The head each tensor index belongs to."""
        return torch.div(idx, self.per_head, rounding_mode="floor")

    def routed(self, x: torch.Tensor) -> torch.Tensor:
        """Routing coordinates ``[B, heads, d_route]``."""
        return (x @ self.router).view(x.shape[0], self.heads, self.d_route)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Squared routing distance to every centre of each head ``[B, heads, K / heads]``;
        in float32 under autocast too (the expanded square cancels, and bf16 rounding would
        change which tensors are picked)."""
        with torch.autocast(x.device.type, enabled=False):
            r = self.routed(x.float()).transpose(0, 1)  # [heads, B, d_route]
            c = self.centre.view(self.heads, self.per_head, self.d_route)
            # |r|^2 - 2 r.c + |c|^2 as one batched product per head (an einsum's
            # permutes and copies cost more than the product at batch 1)
            d2 = torch.baddbmm(torch.linalg.vecdot(c, c)[:, None, :], r, c.transpose(1, 2),
                               alpha=-2.0).add_(torch.linalg.vecdot(r, r)[..., None])
        return d2.transpose(0, 1).clamp_min(0) / self.d_route

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest tensor in each head ``[B, heads]``."""
        base = torch.arange(self.heads, device=x.device) * self.per_head
        return self.route(x).argmin(2) + base

    def _pick(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The top_k nearest tensors of every head: ``idx``, mixing weights and routing
        distances, each ``[B, heads * top_k]``; each head's weights sum to one."""
        B = x.shape[0]
        neg, loc = torch.topk(-self.route(x), self.top_k, dim=2)  # nearest top_k per head
        dist = -neg  # [B, H, k]
        w = torch.softmax(-dist / self.log_tau.exp(), dim=2).reshape(B, -1)
        base = (torch.arange(self.heads, device=x.device) * self.per_head)[None, :, None]
        return (loc + base).reshape(B, -1), w, dist.reshape(B, -1)

    def _band_weights(self, s: torch.Tensor, idx: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights of ``c_neg`` and ``c_pos`` from signed distances ``s`` of tensors ``idx``
        (``c_mid`` gets the rest): the clipped distance over the band's side."""
        return self._interpolation(s, *self._picked_bands(idx))

    def _picked_bands(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``d_neg`` and ``d_pos`` of the tensors ``idx`` (index_select: far faster than
        advanced indexing for a few rows)."""
        d_neg, d_pos = self.bands()
        flat = idx.reshape(-1)
        return (d_neg.index_select(0, flat).view_as(idx),
                d_pos.index_select(0, flat).view_as(idx))

    @staticmethod
    def _interpolation(s: torch.Tensor, dn: torch.Tensor, dp: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.maximum(torch.minimum(s, dp), dn)
        return F.relu(-t) / (-dn), F.relu(t) / dp

    def inv_norms(self) -> torch.Tensor:
        """``1 / ||v_k||`` of every plane ``[K]`` (``||v_k||`` floored at 1e-12, as
        ``F.normalize`` does)."""
        return torch.linalg.vecdot(self.normal, self.normal).clamp_min(1e-24).rsqrt()

    def _mixture(self, x: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The picks of every row as rows of the stacked controls (:meth:`controls`):
        ``cols [B, 3 * heads * top_k]`` and their coefficients ``coef`` (negative, mid,
        positive parts; every head's top-k weights sum to one), and the routing info.

        The signed distances divide ``x . v_k`` by ``||v_k||`` instead of normalising the
        ``[K, d_in]`` planes first, and the output sums the picked control rows
        (``embedding_bag``) instead of multiplying a ``[B, 3K]`` coefficient matrix that
        is mostly zeros: the same function to float32 rounding, without the plane-sized
        temporaries and dense products in the backward pass
        (``benchmarks/bench_hft_layer.py``). On a CPU the products are taken with the
        picked planes only (:func:`picked_dot`) where a row picks few of them.
        Deterministic on the CPU; on CUDA the backward's accumulation into the control
        rows may differ in the last bits between runs, as ``index_add_`` does there.
        """
        idx, w, dist = self._pick(x)
        if self._sampled_pays(x):  # only the picked products: heads * top_k of K per row
            s = picked_dot(x, self.normal, idx) * self.inv_norms()[idx] - self.offset[idx]
        else:
            s_all = (x @ self.normal.T) * self.inv_norms()  # [B, K]
            s = s_all.gather(1, idx) - self.offset[idx]
        u_neg, u_pos = self._band_weights(s, idx)
        K = self.n_tensors
        coef = torch.cat([w * u_neg, w * (1 - u_neg - u_pos), w * u_pos], dim=1)
        cols = torch.cat([idx, idx + K, idx + 2 * K], dim=1)
        return cols, coef, {"idx": idx, "weights": w, "dist": dist, "signed": s}

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """Dense control coefficients ``[B, 3K]`` (negative, mid, positive):
        ``forward(x) == coefficients(x) @ controls()``."""
        cols, coef, _ = self._mixture(x)
        return x.new_zeros(x.shape[0], 3 * self.n_tensors).scatter(1, cols, coef)

    def _sampled_pays(self, x: torch.Tensor) -> bool:
        # a CPU computes the picked products faster than the dense [B, K] one when a row
        # picks at most an eighth of the tensors (``benchmarks/bench_hft_layer.py``); a GPU's
        # dense product stays the faster way, and autocast keeps its own precision rules
        return (x.device.type == "cpu" and x.dtype == self.normal.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")
                and self.heads * self.top_k * 8 <= self.n_tensors)

    def _sparse_pays(self, batch: int) -> bool:
        # the selected rows (normals and 3 controls per pick) are fewer than the dense
        # product reads: small batches, inference only
        return batch * self.heads * self.top_k * 4 <= self.n_tensors

    def _selected(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` without gradients, touching only the picked tensors' rows.

        The same mixture as the dense path (equal to float32 rounding; tested): the
        routing distances to every centre, then signed distances, bands and controls of
        the ``heads * top_k`` picks only, instead of ``x`` against every normal and a
        ``[B, 3K] @ [3K, d_out]`` product: at batch 1 it reads ``heads * top_k / K`` of the
        layer's planes and controls.
        """
        idx, w, _ = self._pick(x)  # [B, H*k] each: one bag of picks per row
        B, P = idx.shape
        flat = idx.reshape(-1)  # index_select reads rows far faster than advanced indexing
        nrm = self.normal.index_select(0, flat).view(B, P, self.d_in)
        s = (torch.bmm(nrm, x[:, :, None]).squeeze(2)
             * torch.linalg.vecdot(nrm, nrm).clamp_min(1e-24).rsqrt()
             - self.offset.index_select(0, flat).view(B, P))
        u_neg, u_pos = self._band_weights(s, idx)
        # each control table read at the picked rows only, no [B, H*k, d_out] temporaries:
        # the mixture as three weighted bag sums
        return (F.embedding_bag(idx, self.c_neg, per_sample_weights=w * u_neg, mode="sum")
                + F.embedding_bag(idx, self.c_mid, per_sample_weights=w * (1 - u_neg - u_pos),
                                  mode="sum")
                + F.embedding_bag(idx, self.c_pos, per_sample_weights=w * u_pos, mode="sum"))

    def controls(self) -> torch.Tensor:
        """``[3K, d_out]``: negative, mid and positive controls stacked."""
        return torch.cat([self.c_neg, self.c_mid, self.c_pos])

    def forward(self, x: torch.Tensor, return_info: bool = False):  # type: ignore[no-untyped-def]
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ShapeError(f"x must be [batch, {self.d_in}], got {tuple(x.shape)}.")
        if not return_info and not torch.is_grad_enabled() and self._sparse_pays(x.shape[0]):
            return self._selected(x)
        cols, coef, info = self._mixture(x)
        # the sum over heads of each head's top-k mixture, reading only the picked rows
        y = F.embedding_bag(cols, self.controls(), per_sample_weights=coef, mode="sum")
        if self.training:
            with torch.no_grad():
                idx, w = info["idx"], info["weights"]
                mass = torch.zeros_like(self.usage).index_add_(0, idx.reshape(-1),
                                                               w.detach().reshape(-1))
                self.usage.mul_(0.99).add_(0.01 * mass / max(1, x.shape[0] * self.heads))
        if return_info:
            return y, info
        return y

    @torch.no_grad()
    def head_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Each head's contribution ``[B, heads, d_out]`` (they sum to ``forward(x)``)."""
        A = self.coefficients(x)
        H, Kh = self.heads, self.per_head
        A3 = A.view(x.shape[0], 3, H, Kh)
        C = self.controls().view(3, H, Kh, self.d_out)
        return torch.einsum("bjhk,jhkd->bhd", A3, C)

    # ------------------------------------------------------------------ data-driven init
    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, seed: int = 0) -> None:
        """Seed centres and planes at ``n_tensors`` training inputs ``x [n, d_in]``.

        Centres are the routed samples, distinct ones when ``x`` has at least ``n_tensors``
        rows (so every tensor owns a region where data is), planes pass through their
        sample, bands are one standard deviation of the signed distance over ``x``, and the
        router is scaled so routing distances are O(1).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.d_in:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ShapeError(f"init_from_data: x must be [n, d_in={self.d_in}] training "
                             f"inputs, got {shape}.")
        if x.shape[0] < 1:
            raise InputError("init_from_data: x holds no rows; pass at least one training "
                             "input (ideally many more than n_tensors).")
        if not torch.isfinite(x).all():
            raise InputError("init_from_data: x holds NaN or infinite values.")
        x = x.float()
        g = make_generator(seed)
        n = x.shape[0]
        # distinct samples where there are enough: a sample drawn twice gives two tensors one
        # centre, tied routing distances (which tensor wins is then up to the device's
        # top-k) and a tensor that never owns a region
        pick = (torch.randperm(n, generator=g)[: self.n_tensors] if n >= self.n_tensors
                else torch.randint(0, n, (self.n_tensors,), generator=g))
        r = x @ self.router
        self.router.mul_(1.0 / r.std().clamp_min(1e-6))
        r = self.routed(x[pick])  # [K, H, d_route]
        heads = self.head_of(torch.arange(self.n_tensors))
        self.centre.copy_(r[torch.arange(self.n_tensors), heads])
        nrm = F.normalize(self.normal, dim=1)
        self.offset.copy_((nrm * x[pick]).sum(1))
        s_std = (x[: min(n, 4096)] @ nrm.T).std(0).clamp_min(1e-3)  # [K]
        self.band_scale.copy_(s_std)

    # ------------------------------------------------------------------ high-error queue
    @torch.no_grad()
    def observe(self, x: torch.Tensor, loss: torch.Tensor) -> None:
        """Offer samples ``x [B, d_in]`` with per-sample ``loss [B]`` to the high-error queue
        (the queue keeps the highest losses seen)."""
        allx = torch.cat([self.queue_x, x.detach().to(self.queue_x.dtype)])
        alll = torch.cat([self.queue_loss, loss.detach().float()])
        keep = torch.topk(alll, self.queue_x.shape[0]).indices
        self.queue_x.copy_(allx[keep])
        self.queue_loss.copy_(alll[keep])

    @torch.no_grad()
    def reseed(self, max_tensors: int = 64) -> int:
        """Move idle tensors to the queued high-error inputs; returns how many moved.

        A reseeded tensor of head ``h`` gets its centre at the sample, its plane through it,
        and all three controls set to head ``h``'s current output there, so the prediction
        does not jump; gradients then specialise it.
        """
        if float(self.usage.sum()) <= 0:
            return 0
        idle = torch.nonzero(self.usage < self.idle_fraction * self.usage.mean()).flatten()
        ok = torch.isfinite(self.queue_loss)
        m = int(min(len(idle), int(ok.sum()), max_tensors))
        if m == 0:
            return 0
        idle = idle[torch.argsort(self.usage[idle])[:m]]
        xs = self.queue_x[:m]
        heads = self.head_of(idle)
        rows = torch.arange(m, device=xs.device)
        y = self.head_outputs(xs)[rows, heads]  # [m, d_out]
        self.centre[idle] = self.routed(xs)[rows, heads]
        nrm = F.normalize(self.normal[idle], dim=1)
        self.offset[idle] = (nrm * xs).sum(1)
        for c in (self.c_neg, self.c_mid, self.c_pos):
            c[idle] = y
        self.usage[idle] = self.usage.mean()
        self.queue_loss[:m] = -math.inf
        self.reseeds += m
        return m

    # ------------------------------------------------------------------ the seed's online rule
    @torch.no_grad()
    def online_step(self, x: torch.Tensor, target: torch.Tensor, eta: float = 0.03,
                    eta_g: float = 0.003) -> torch.Tensor:
        """One online update toward ``target [B, d_out]`` (no autograd); returns the residual.

        Controls move by ``eta * w_k * (interpolation weight) * residual`` (the least-mean
        squares step of the interpolation), the plane by ``eta_g`` along the input in the
        direction that lowers the squared residual, and the centre toward the routed input
        in proportion to the mixing weight.
        """
        y, info = self.forward(x, return_info=True)
        err = target - y  # [B, d_out]
        idx, w, s = info["idx"], info["weights"], info["signed"]
        dn, dp = self._picked_bands(idx)
        u_neg, u_pos = self._interpolation(s, dn, dp)
        u_mid = 1 - u_neg - u_pos
        B = x.shape[0]
        flat = idx.reshape(-1)
        for c, u in ((self.c_neg, u_neg), (self.c_mid, u_mid), (self.c_pos, u_pos)):
            step = (eta * w * u)[..., None] * err[:, None, :]  # [B, H*k, d_out]
            c.index_add_(0, flat, step.reshape(-1, self.d_out) / B)
        # d out / d s inside the band: (c_pos - c_mid) / d_pos or (c_mid - c_neg) / |d_neg|
        inside = ((s > dn) & (s < dp)).float()
        slope = torch.where((s >= 0)[..., None],
                            (self.c_pos[idx] - self.c_mid[idx]) / dp[..., None],
                            (self.c_mid[idx] - self.c_neg[idx]) / (-dn)[..., None])
        gs = (slope * err[:, None, :]).sum(-1) * w * inside  # [B, k]
        nrm = F.normalize(self.normal, dim=1)
        self.normal.copy_(nrm)
        self.normal.index_add_(0, flat, (eta_g * gs[..., None] * x[:, None, :]).reshape(
            -1, self.d_in) / B)
        self.offset.index_add_(0, flat, (-eta_g * gs).reshape(-1) / B)
        r = self.routed(x)  # [B, H, d_route]
        r_sel = r.gather(1, self.head_of(idx)[..., None].expand(-1, -1, self.d_route))
        pull = (eta_g * w)[..., None] * (r_sel - self.centre[idx])
        self.centre.index_add_(0, flat, pull.reshape(-1, self.centre.shape[1]) / B)
        return err
