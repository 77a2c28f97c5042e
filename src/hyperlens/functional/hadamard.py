"""The fast Walsh-Hadamard transform and the input checks every sketch shares.

:func:`fwht` applies the (by default orthonormal) Hadamard transform along the last
dimension in ``O(d log d)`` without building the matrix; :func:`hadamard_matrix` builds the
dense matrix (Sylvester's construction) for small ``n`` and tests. Both run on CPU and CUDA
tensors and keep the input's device. The sketches in :mod:`hyperlens.functional.sketch`
(SRHT, block SRHT) are built on them.

Examples
--------
>>> import torch
>>> from hyperlens.functional.hadamard import fwht, hadamard_matrix
>>> x = torch.arange(8, dtype=torch.float64)
>>> H = hadamard_matrix(8, dtype=torch.float64)
>>> bool(torch.allclose(fwht(x, normalize=False), x @ H))
True
>>> bool(torch.allclose(fwht(fwht(x)), x))
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import check_int

__all__ = ["fwht", "hadamard_matrix", "next_power_of_two"]

# SRHT / block SRHT process rows in chunks of about this many elements: this bounds the
# temporary memory whatever the batch size and, on CPU, keeps each chunk's transform stages
# inside the caches (small chunks measured about 2x less CPU time than 32 MiB ones
# on a 2-core EPYC). ``None``: 2^20 elements per CPU thread (at most 2^23), 2^25 on CUDA.
_CHUNK_ELEMENTS: int | None = None
_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def next_power_of_two(n: int) -> int:
    """The smallest power of two ``>= n`` (``n >= 1``)."""
    n = check_int(n, "n", minimum=1)
    return 1 << (n - 1).bit_length()


def _as_input(x: Any, name: str, d_in: int | None = None) -> torch.Tensor:
    """Validate ``x`` (tensor, ndarray or sparse COO/CSR tensor) without copying dense floats."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{name} must be a tensor or array, got {type(x).__name__}; "
                "pass a torch.Tensor, numpy array or torch sparse tensor."
            ) from exc
    if x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"{name} must be real-valued, got dtype {x.dtype}; cast it to float32.")
    if x.layout in _SPARSE_LAYOUTS:
        if x.ndim != 2:
            raise ShapeError(
                f"{name} is sparse with shape {tuple(x.shape)}; sparse input must be 2-D "
                "[n, d_in]. Reshape it or pass a dense tensor."
            )
        if x.layout == torch.sparse_coo:
            x = x.coalesce()  # sums duplicate entries; returns x itself when already coalesced
        values = x.values()
        if not values.is_floating_point():
            raise InputError(
                f"{name} has integer values ({values.dtype}); convert with x.to(torch.float32)."
            )
    else:
        if x.layout != torch.strided:
            raise InputError(
                f"{name} has layout {x.layout}; pass a dense, sparse COO or sparse CSR tensor."
            )
        if x.ndim == 0:
            raise ShapeError(f"{name} must have at least one dimension [..., d_in], got a scalar.")
        if not x.is_floating_point():
            x = x.to(torch.float32)
        values = x
    if d_in is not None and x.shape[-1] != d_in:
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)} but this sketch expects last dimension "
            f"d_in={d_in}; pass vectors of length {d_in} or draw a sketch with "
            f"d_in={x.shape[-1]}."
        )
    if x.shape[-1] == 0:
        raise ShapeError(f"{name} has an empty last dimension (shape {tuple(x.shape)}).")
    if values.numel() and not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).sum())
        raise InputError(
            f"{name} contains NaN or Inf ({bad} value(s), shape {tuple(x.shape)}); "
            "drop or impute those entries before sketching."
        )
    return x


def _densify(x: torch.Tensor) -> torch.Tensor:
    return x.to_dense() if x.layout in _SPARSE_LAYOUTS else x


def _rows(x: torch.Tensor, d: int) -> int:
    budget = _CHUNK_ELEMENTS
    if budget is None:
        if x.device.type == "cpu":
            budget = min(1 << 23, (1 << 20) * max(1, torch.get_num_threads()))
        else:
            budget = 1 << 25
    return max(1, budget // max(d, 1))


# --------------------------------------------------------------------------- Hadamard
def hadamard_matrix(
    n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """The Sylvester Hadamard matrix ``H_n`` (entries ``+-1``, ``H[i, j] = (-1)^popcount(i & j)``).

    Same ordering as :func:`scipy.linalg.hadamard`. ``n`` must be a power of two.

    Shapes:
        returns ``[n, n]``.
    """
    n = check_int(n, "n", minimum=1)
    if not _is_power_of_two(n):
        raise InputError(f"n must be a power of two, got {n}; use {next_power_of_two(n)}.")
    idx = torch.arange(n, device=device)
    bits = idx[:, None] & idx[None, :]
    parity = torch.zeros_like(bits)
    for shift in range(max(1, n.bit_length() - 1)):  # log2(n) bit positions, not elements
        parity ^= (bits >> shift) & 1
    return (1 - 2 * parity).to(dtype)


_HADAMARD_CACHE: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def _cached_hadamard(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (n, dtype, device)
    h = _HADAMARD_CACHE.get(key)
    if h is None:
        h = hadamard_matrix(n, dtype=dtype, device=device)
        _HADAMARD_CACHE[key] = h
    return h


def _fwht_unnormalised(x: torch.Tensor, radix: int | None = None) -> torch.Tensor:
    """``x @ H_d`` over the last dim of a contiguous 2-D ``x`` ([n, d], d a power of two)."""
    n, d = x.shape
    if d == 1:
        return x.clone()
    if radix is None:  # measured faster than the radix-2 butterfly at every size, one row
        radix = 64     # of 1,024 included (bench_sketch: fwht_small)
    if radix == 2:
        # Classic butterfly: log2(d) steps; step h pairs i with i + h inside blocks of 2h.
        h = 1
        while h < d:
            v = x.view(n, d // (2 * h), 2, h)
            a, b = v[:, :, 0], v[:, :, 1]
            x = torch.stack((a + b, a - b), dim=2).view(n, d)
            h *= 2
        return x
    # Radix-r: H_d = H_{r1} (x) H_{r2} (x) ... (Kronecker product), so d is split into axes of
    # size <= radix and each axis is multiplied by a small dense Hadamard matrix. Each stage
    # does log2(r) butterfly steps at once as a matrix product, which runs at matmul speed
    # instead of being limited by memory bandwidth like the radix-2 adds.
    log_d = d.bit_length() - 1
    log_r = radix.bit_length() - 1
    n_stages = -(-log_d // log_r)
    base, extra = divmod(log_d, n_stages)  # balanced stage sizes, e.g. 16384 -> 32, 32, 16
    sizes = [1 << (base + (1 if i < extra else 0)) for i in range(n_stages)]
    last = sizes[-1]
    y = (x.reshape(-1, last) @ _cached_hadamard(last, x.dtype, x.device)).reshape(n, d)
    inner = last
    for m in reversed(sizes[:-1]):
        outer = d // (inner * m)
        hm = _cached_hadamard(m, x.dtype, x.device)
        y = torch.matmul(hm, y.reshape(n * outer, m, inner))  # H is symmetric
        inner *= m
    return y.reshape(n, d)


def fwht(
    x: torch.Tensor,
    *,
    normalize: bool = True,
    pad: bool = False,
    radix: int | None = None,
) -> torch.Tensor:
    """Fast Walsh–Hadamard transform over the last dimension, in Sylvester (natural) order.

    ``fwht(x) = x @ H_d / sqrt(d)`` where ``H_d`` is :func:`scipy.linalg.hadamard(d)`.

    * Normalisation: with ``normalize=True`` (default) the transform is orthonormal and its
      own inverse, ``fwht(fwht(x)) == x``; with ``normalize=False`` it is the plain ``+-1``
      transform and applying it twice gives ``d * x``.
    * Padding rule: the last dimension must be a power of two. With ``pad=True`` other
      sizes are zero-padded *at the end* to the next power of two and the result has that
      padded length (the normalisation then uses the padded length); with ``pad=False``
      (default) other sizes raise :class:`InputError`.
    * Algorithm: ``log2(d)`` reshaped butterfly steps, vectorised over all rows; no Python
      loop over elements. ``radix`` groups ``log2(radix)`` consecutive butterfly steps into
      one product with a ``radix x radix`` Hadamard matrix (Kronecker factorisation of
      ``H_d``). ``radix=2`` is the textbook add/subtract butterfly; 32 or 64 measured
      several times faster on large CPU batches (``benchmarks/bench_sketch.py``) because the
      small matrix products are compute-bound instead of memory-bound. ``radix=None``
      (default) uses 2 below 65,536 elements and 64 above. Results agree to rounding.

    Cost per vector: ``d log2(d)`` additions with ``radix=2``; about ``d r log_r(d)``
    multiply-adds with radix ``r`` (more arithmetic, but at matrix-product speed). Integer
    inputs are converted to float32.

    Shapes:
        x: ``[..., d]`` -> ``[..., d]`` (``[..., next_power_of_two(d)]`` with ``pad=True``).
    """
    x = _as_input(x, "x")
    x = _densify(x)
    if radix is not None and (
        isinstance(radix, bool)
        or not isinstance(radix, int)
        or radix < 2
        or not _is_power_of_two(radix)
    ):
        raise InputError(
            f"radix must be None or a power of two >= 2, got {radix!r}; use radix=64 or None."
        )
    d = x.shape[-1]
    if not _is_power_of_two(d):
        if not pad:
            raise InputError(
                f"x has last dimension {d}, which is not a power of two; pass pad=True to "
                f"zero-pad it to {next_power_of_two(d)}, or use block_srht for sketches."
            )
        d_pad = next_power_of_two(d)
        x = torch.nn.functional.pad(x, (0, d_pad - d))
        d = d_pad
    lead = x.shape[:-1]
    flat = x.reshape(-1, d)
    scale = 1.0 / math.sqrt(d) if normalize else 1.0
    out = torch.empty_like(flat)
    step = _rows(flat, d)
    for start in range(0, flat.shape[0], step):  # row chunks: bounded memory, cache-sized
        y = _fwht_unnormalised(flat[start : start + step].contiguous(), radix)
        out[start : start + step] = y * scale if normalize else y
    return out.reshape(*lead, d)
