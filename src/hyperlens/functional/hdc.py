"""Hyperdimensional computing on ternary and bipolar codes: pure tensor functions.

Codes are ``int8`` tensors with values in ``{-1, 0, +1}`` (ternary) or ``{-1, +1}``
(bipolar); the last dimension is the hypervector dimension ``d``. Every function here
works on CPU and CUDA tensors alike and keeps the device of its input.

Contents
--------
- :func:`random_projection`: seeded Gaussian, Rademacher or sparse (Achlioptas / Li)
  projection matrices, drawn on the CPU so the same seed gives the same bits everywhere.
- :func:`ternarize` and :func:`ternary_thresholds`: real vectors to ternary codes by a
  per-row magnitude quantile, a multiple of the row's standard deviation, or a fixed value.
- The algebra: :func:`bind`, :func:`bundle`, :func:`permute`, :func:`dot`, :func:`cosine`,
  :func:`hamming` (exact integer arithmetic; pairwise ``[n, m]`` similarity matrices).
- Packing lives in :mod:`hyperlens.functional.packing` (two bit planes, or five trits per
  byte).

Exactness: similarities are exact integer products of the codes. Which GEMM computes them
(``torch._int_mm`` int8 with VNNI, a float32 GEMM, exact while ``d < 2**24``, without it;
bf16 with AMX for ``d <= 256``; float64 as the last resort) is chosen by the CPU's
capability in :mod:`hyperlens.functional.kernels`; every choice gives the same bits.

Examples
--------
>>> import torch
>>> from hyperlens.functional.hdc import random_projection, ternarize, cosine
>>> x = torch.randn(4, 384, generator=torch.Generator().manual_seed(0))
>>> codes = ternarize(x @ random_projection(384, 1000, seed=0), sparsity=0.7)
>>> codes.dtype, tuple(codes.shape), int((codes == 0).sum(1)[0])
(torch.int8, (4, 1000), 700)
>>> float(cosine(codes[:1], codes[:1])[0, 0])
1.0
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import as_real_tensor, check_int, make_generator
from . import kernels as K

__all__ = [
    "random_projection",
    "random_hypervectors",
    "ternary_thresholds",
    "ternarize",
    "bind",
    "bundle",
    "permute",
    "dot",
    "cosine",
    "hamming",
    "nonzeros",
    "cosine_from_dot",
    "hamming_from_dot",
    "int_matmul",
    "int_mm_padded",
    "gemm_operand",
    "gemm_prepared",
    "check_codes",
    "quantile_zero_count",
    "SCHEMES",
]

ProjectionKind = Literal["gaussian", "rademacher", "sparse"]
ThresholdKind = Literal["quantile", "tau_std", "fixed"]
Scheme = Literal["twobit", "base3"]
SCHEMES: tuple[str, ...] = ("twobit", "base3")


# --------------------------------------------------------------------------- validation
def check_codes(x: object, name: str, *, check_values: bool = True) -> torch.Tensor:
    """Validate a code tensor and return it as ``int8``.

    Accepts integer, boolean-free floating or ``int8`` tensors whose values lie in
    ``{-1, 0, +1}``; raises :class:`InputError` naming ``name`` otherwise. ``check_values``
    can be turned off by callers that produced the codes themselves.

    Shapes:
        x: ``[..., d]`` -> ``[..., d]`` int8
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"{name} must be a tensor of codes in {{-1, 0, +1}}, got {type(x).__name__}."
            ) from exc
    if x.dtype == torch.bool or x.is_complex():
        raise InputError(
            f"{name} must hold codes in {{-1, 0, +1}} as int8 (or another real dtype), "
            f"got dtype {x.dtype}; convert with ternarize() or .to(torch.int8)."
        )
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ShapeError(
            f"{name} must have a non-empty last (hypervector) dimension, got shape "
            f"{tuple(x.shape)}."
        )
    if check_values:
        bad = (x < -1) | (x > 1)
        if x.is_floating_point():
            bad |= x != torch.round(x)
            bad |= ~torch.isfinite(x)
        if bool(bad.any()):
            first = tuple(torch.nonzero(bad)[0].tolist())
            raise InputError(
                f"{name} must contain only -1, 0 and +1, but holds {x[first].item()!r} at index "
                f"{first} (shape {tuple(x.shape)}); ternarize real vectors with ternarize() first."
            )
    return x if x.dtype == torch.int8 else x.to(torch.int8)


def _as_rows(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Flatten ``[..., d]`` to ``[n, d]``; return the leading shape to restore."""
    lead = tuple(x.shape[:-1])
    return x.reshape(-1, x.shape[-1]), lead


def _check_real(x: object, name: str) -> torch.Tensor:
    x = as_real_tensor(x, name, allow_bool=False)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ShapeError(f"{name} must be [..., d] with d > 0, got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    return x


def _check_finite_rows(x2: torch.Tensor, name: str) -> None:
    """Raise naming the first non-finite row. One cheap reduction decides the common case."""
    if x2.numel() == 0:
        return
    # A row sum is finite when every entry is; overflow of huge finite values can make it
    # infinite, so only the exact element check below decides that an error is due.
    if bool(torch.isfinite(x2.sum(dim=1)).all()):
        return
    bad = ~torch.isfinite(x2)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        raise InputError(
            f"{name} has NaN or Inf in {rows.numel()} row(s) (first: row {int(rows[0])}, "
            f"shape {tuple(x2.shape)}); drop or impute those rows before encoding."
        )


# --------------------------------------------------------------------------- random draws
def random_projection(
    d_in: int,
    d_out: int,
    kind: ProjectionKind = "gaussian",
    seed: int = 0,
    *,
    generator: torch.Generator | None = None,
    density: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A seeded random projection matrix ``R`` so that ``x @ R`` maps ``d_in -> d_out``.

    Entries are scaled so that ``E ||x @ R||^2 = ||x||^2`` (Johnson-Lindenstrauss scaling):

    - ``"gaussian"``: i.i.d. ``N(0, 1 / d_out)``;
    - ``"rademacher"``: ``+-1 / sqrt(d_out)`` with equal probability;
    - ``"sparse"``: ``+-1 / sqrt(density * d_out)`` each with probability ``density / 2``,
      zero otherwise (Achlioptas 2003, Li et al. 2006); ``density`` defaults to
      ``1 / sqrt(d_in)``.

    The matrix is drawn on the CPU from ``generator`` (or a fresh generator seeded with
    ``seed``) and then moved to ``device``, so a seed gives identical bits on every device.

    Shapes:
        returns ``[d_in, d_out]``
    """
    d_in = check_int(d_in, "d_in", minimum=1)
    d_out = check_int(d_out, "d_out", minimum=1)
    if generator is None:
        generator = make_generator(seed, "cpu")
    elif generator.device.type != "cpu":
        raise InputError(
            f"generator must be a CPU torch.Generator (projections are drawn on the CPU for "
            f"device-independent bits), got one on {generator.device}; pass seed= instead."
        )
    if kind == "gaussian":
        mat = torch.randn(d_in, d_out, generator=generator, dtype=torch.float32)
        mat.mul_(1.0 / math.sqrt(d_out))
    elif kind == "rademacher":
        bits = torch.randint(0, 2, (d_in, d_out), generator=generator, dtype=torch.int8)
        mat = bits.to(torch.float32).mul_(2.0).sub_(1.0).mul_(1.0 / math.sqrt(d_out))
    elif kind == "sparse":
        dens = 1.0 / math.sqrt(d_in) if density is None else density
        if not isinstance(dens, (int, float)) or not 0.0 < float(dens) <= 1.0:
            raise InputError(
                f"density must be in (0, 1], got {density!r}; the default is 1/sqrt(d_in)."
            )
        u = torch.rand(d_in, d_out, generator=generator, dtype=torch.float32)
        scale = 1.0 / math.sqrt(float(dens) * d_out)
        mat = torch.zeros(d_in, d_out, dtype=torch.float32)
        mat[u < dens / 2] = scale
        mat[(u >= dens / 2) & (u < dens)] = -scale
    else:
        raise InputError(f"kind must be 'gaussian', 'rademacher' or 'sparse', got {kind!r}.")
    return mat.to(device=device if device is not None else "cpu", dtype=dtype)


def random_hypervectors(
    n: int,
    d: int,
    kind: Literal["bipolar", "ternary"] = "bipolar",
    seed: int = 0,
    *,
    sparsity: float = 0.5,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``n`` random codes of dimension ``d``: bipolar ``+-1``, or ternary with a fraction
    ``sparsity`` of zeros in expectation (the non-zeros are ``+-1`` with equal probability).

    Drawn on the CPU (device-independent bits) and moved to ``device``.

    Shapes:
        returns ``[n, d]`` int8
    """
    n = check_int(n, "n", minimum=1)
    d = check_int(d, "d", minimum=1)
    if generator is None:
        generator = make_generator(seed, "cpu")
    signs = torch.randint(0, 2, (n, d), generator=generator, dtype=torch.int8).mul_(2).sub_(1)
    if kind == "bipolar":
        out = signs
    elif kind == "ternary":
        _check_sparsity(sparsity)
        keep = torch.rand(n, d, generator=generator) >= sparsity
        out = signs * keep.to(torch.int8)
    else:
        raise InputError(f"kind must be 'bipolar' or 'ternary', got {kind!r}.")
    return out.to(device if device is not None else "cpu")


# --------------------------------------------------------------------------- ternarisation
def _check_sparsity(sparsity: object) -> float:
    if (
        isinstance(sparsity, bool)
        or not isinstance(sparsity, (int, float))
        or not (0.0 < float(sparsity) < 1.0)
    ):
        raise InputError(
            f"sparsity must be a fraction strictly between 0 and 1 (the share of zeros per "
            f"code), got {sparsity!r}; e.g. sparsity=0.7 keeps the 30 % largest magnitudes."
        )
    return float(sparsity)


def _check_tau(tau: object, name: str = "tau") -> float:
    if (
        isinstance(tau, bool)
        or not isinstance(tau, (int, float))
        or not (math.isfinite(float(tau)) and float(tau) >= 0.0)
    ):
        raise InputError(f"{name} must be a finite number >= 0, got {tau!r}.")
    return float(tau)


def quantile_zero_count(d: int, sparsity: float) -> int:
    """How many entries per row the ``"quantile"`` rule zeroes when magnitudes are distinct:
    ``k = floor(sparsity * (d - 1)) + 1`` (the rank of the linearly interpolated quantile)."""
    return min(d, int(math.floor(sparsity * (d - 1))) + 1)


def _partition_rows(a: np.ndarray, kth: int) -> None:
    """In-place ``np.partition`` of every row, split over threads (NumPy drops the GIL)."""
    workers = max(1, min(torch.get_num_threads(), a.shape[0] // 64))
    if workers == 1:
        a.partition(kth, axis=1)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, a.shape[0], workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(lambda i: a[bounds[i] : bounds[i + 1]].partition(kth, axis=1), range(workers))
        )


def _kth_smallest_abs(
    x2: torch.Tensor, k: int, *, codes: bool = False, check_finite: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ``k``-th smallest ``|x|`` of every row (1-based) and, with ``codes``, the codes.

    The implementation is the ``"select"`` kernel of :mod:`hyperlens.functional.kernels`
    (all give the same bits): ``"sampled"`` (compiled; a sampled bracket narrowed by exact
    counts, codes written in the same visit of the row), ``"introselect"``
    (NumPy's ``np.partition`` on a scratch copy of ``|x|``, row blocks in parallel) or
    ``"topk"`` (``torch.topk`` on the smaller side of the split; CUDA). Codes are returned
    only by the sampled path (None otherwise; the caller compares against the threshold).

    ``check_finite``: NaN or Inf rows raise :class:`InputError` naming the first; the
    compiled path that writes codes notes them in the same visit of each row (no separate
    pass over ``x``), the others check before selecting.

    Shapes:
        x2: ``[n, d]`` -> (``[n]`` (dtype of ``x2``), ``[n, d]`` int8 or None)
    """
    d = x2.shape[1]
    cpu_float = x2.device.type == "cpu" and x2.dtype in (torch.float32, torch.float64)
    impl = K.kernel_for("select", device=x2.device)
    compiled = cpu_float and impl == "sampled"
    if check_finite and not (compiled and codes):
        _check_finite_rows(x2, "x")
    if compiled:
        from .compiled import kth_smallest_abs_rows

        arr = x2.detach().contiguous().numpy()
        thr, out, finite = kth_smallest_abs_rows(arr, k, codes=codes)
        if check_finite and finite is not None and not finite.all():
            _check_finite_rows(x2, "x")  # raises, naming the first row with NaN or Inf
        return torch.from_numpy(thr), (torch.from_numpy(out) if out is not None else None)
    if cpu_float and impl == "introselect":
        a = x2.detach().abs().contiguous()  # fresh scratch buffer, safe to reorder in place
        an = a.numpy()
        _partition_rows(an, k - 1)
        return torch.from_numpy(np.ascontiguousarray(an[:, k - 1])), None
    a = x2.abs()
    m = d - k + 1  # the k-th smallest is the m-th largest; select on the smaller side
    if m <= k:
        return torch.topk(a, m, dim=1, largest=True, sorted=False).values.amin(dim=1), None
    return torch.topk(a, k, dim=1, largest=False, sorted=False).values.amax(dim=1), None


def ternary_thresholds(
    x: torch.Tensor,
    threshold: ThresholdKind = "quantile",
    sparsity: float = 0.7,
    tau: float = 0.3,
    *,
    check_finite: bool = True,
) -> torch.Tensor:
    """Per-row magnitude thresholds ``t`` used by :func:`ternarize` (``|x| > t`` survives).

    - ``"quantile"``: ``t`` is the ``k``-th smallest ``|x|`` of the row with
      ``k = floor(sparsity * (d - 1)) + 1``. This equals ``torch.quantile(|x|, sparsity)``
      (linear interpolation) followed by the strict comparison ``|x| > t`` for rows with
      distinct magnitudes: exactly ``k`` zeros (7,000 of 10,000 at ``sparsity=0.7``).
      Found by one selection per row, with no sort and no Python loop: the ``"select"``
      kernel of :mod:`hyperlens.functional.kernels` (a sampled bracket plus one exact
      count-and-collect pass, or introselect, on the CPU; ``torch.topk`` on other devices).
    - ``"tau_std"``: ``t = tau * std(x_row)`` (population standard deviation, i.e.
      ``correction=0``, about the row mean).
    - ``"fixed"``: ``t = tau`` for every row.

    Shapes:
        x: ``[..., d]`` -> ``[...]`` (same floating dtype as ``x``)
    """
    x = _check_real(x, "x")
    x2, lead = _as_rows(x)
    if check_finite:
        _check_finite_rows(x2, "x")
    n, d = x2.shape
    if threshold == "quantile":
        s = _check_sparsity(sparsity)
        k = quantile_zero_count(d, s)
        if n == 0:
            return x2.new_zeros(lead)
        t = _kth_smallest_abs(x2, k)[0]
    elif threshold == "tau_std":
        tt = _check_tau(tau)
        t = x2.std(dim=1, correction=0).mul_(tt) if n else x2.new_zeros(0)
    elif threshold == "fixed":
        tt = _check_tau(tau)
        t = x2.new_full((n,), tt)
    else:
        raise InputError(f"threshold must be 'quantile', 'tau_std' or 'fixed', got {threshold!r}.")
    return t.reshape(lead)


def ternarize(
    x: torch.Tensor,
    threshold: ThresholdKind = "quantile",
    sparsity: float = 0.7,
    tau: float = 0.3,
    *,
    check_finite: bool = True,
) -> torch.Tensor:
    """Map real vectors to ternary codes: ``sign(x)`` where ``|x| > t_row``, else ``0``.

    ``t_row`` comes from :func:`ternary_thresholds` (``threshold`` = ``"quantile"`` with
    ``sparsity``, ``"tau_std"`` or ``"fixed"`` with ``tau``).

    Ties and degenerate rows (exact semantics):
        - the comparison is strict, so every entry whose magnitude *equals* the threshold
          becomes 0. Under ``"quantile"`` a row whose magnitudes tie at the threshold gets
          more than ``k`` zeros, never fewer;
        - an all-zero row maps to an all-zero code under every rule, and so does any row
          whose magnitudes are all equal under ``"quantile"`` or ``"tau_std"``;
        - ``-0.0`` and ``+0.0`` both map to 0.

    All rows are processed at once (no Python loop); NaN or Inf rows raise
    :class:`InputError` naming the row unless ``check_finite=False``.

    Shapes:
        x: ``[..., d]`` float -> ``[..., d]`` int8 in ``{-1, 0, +1}``
    """
    x = _check_real(x, "x")
    if threshold == "quantile" and x.device.type == "cpu" and x.numel():
        x2, lead = _as_rows(x)
        k = quantile_zero_count(x2.shape[1], _check_sparsity(sparsity))
        t, codes = _kth_smallest_abs(x2, k, codes=True, check_finite=check_finite)
        if codes is not None:
            return codes.reshape(x.shape)
        t = t.reshape(lead)
    else:
        t = ternary_thresholds(x, threshold, sparsity, tau, check_finite=check_finite)
    t = t.unsqueeze(-1)
    # bool tensors are bytes holding 0/1, so viewing them as int8 costs nothing
    return torch.gt(x, t).view(torch.int8) - torch.lt(x, -t).view(torch.int8)


# --------------------------------------------------------------------------- algebra
def bind(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bind two codes by elementwise multiplication (MAP binding; self-inverse for bipolar).

    Broadcasts like ``*``; the last dimensions must match.

    Shapes:
        a: ``[..., d]``, b: ``[..., d]`` -> broadcast ``[..., d]`` int8
    """
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    if a.shape[-1] != b.shape[-1]:
        raise ShapeError(
            f"a and b must share the last (hypervector) dimension, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    try:
        return a * b
    except RuntimeError as exc:
        raise ShapeError(
            f"a {tuple(a.shape)} and b {tuple(b.shape)} do not broadcast; give them equal "
            "leading shapes or leading 1s."
        ) from exc


def bundle(
    x: torch.Tensor,
    *,
    dim: int = 0,
    kind: Literal["majority", "sum"] = "majority",
    tie: Literal["first", "positive", "negative", "zero"] = "first",
    threshold: int = 0,
) -> torch.Tensor:
    """Superpose codes along ``dim`` into one code per remaining position.

    Let ``s`` be the integer sum along ``dim``.

    - ``kind="majority"``: ``sign(s)``; where ``s == 0`` the ``tie`` rule decides:
      ``"first"`` takes the element of the first code along ``dim`` (deterministic and
      unbiased for bipolar inputs), ``"positive"`` gives +1, ``"negative"`` gives -1,
      ``"zero"`` gives 0. With ``"first"``, ``"positive"`` or ``"negative"`` bipolar inputs
      give a bipolar result.
    - ``kind="sum"`` (ternary bundling): ``sign(s)`` where ``|s| > threshold``, else 0.

    Shapes:
        x: ``[..., n, ..., d]`` (``n`` codes along ``dim``) -> the shape without ``dim``, int8
    """
    x = check_codes(x, "x")
    if x.ndim < 2:
        raise ShapeError(
            f"x must stack at least one code along dim={dim}, got shape {tuple(x.shape)}."
        )
    if not -x.ndim <= dim < x.ndim or dim in (-1, x.ndim - 1):
        raise InputError(
            f"dim must index a stacking dimension of x (not the last, hypervector one), got "
            f"dim={dim} for shape {tuple(x.shape)}."
        )
    if x.shape[dim] == 0:
        raise ShapeError(f"x has no codes to bundle along dim={dim} (shape {tuple(x.shape)}).")
    s = x.sum(dim=dim, dtype=torch.int32)
    out = torch.sign(s).to(torch.int8)
    if kind == "majority":
        if tie == "first":
            out = torch.where(s == 0, x.select(dim, 0), out)
        elif tie == "positive":
            out = torch.where(s == 0, torch.ones_like(out), out)
        elif tie == "negative":
            out = torch.where(s == 0, -torch.ones_like(out), out)
        elif tie != "zero":
            raise InputError(f"tie must be 'first', 'positive', 'negative' or 'zero', got {tie!r}.")
        return out
    if kind == "sum":
        threshold = check_int(threshold, "threshold", minimum=0, hint="(a vote count)")
        return out * (s.abs() > threshold).to(torch.int8)
    raise InputError(f"kind must be 'majority' or 'sum', got {kind!r}.")


def permute(x: torch.Tensor, shifts: int = 1) -> torch.Tensor:
    """Cyclically shift codes along the hypervector dimension (``permute(x, -s)`` undoes it).

    Shapes:
        x: ``[..., d]`` -> ``[..., d]``
    """
    if isinstance(shifts, bool) or not isinstance(shifts, int):
        raise InputError(f"shifts must be an int, got {shifts!r}.")
    x = check_codes(x, "x", check_values=False)
    return torch.roll(x, shifts=shifts, dims=-1)


_GEMM_DTYPES = {
    "int8": torch.int8,
    "amx_int8": torch.int8,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp64": torch.float64,
}


def gemm_operand(x: torch.Tensor, impl: str) -> torch.Tensor:
    """Codes in the dtype the ``impl`` GEMM reads (int8, float32, bfloat16 or float64).

    Convert queries once and reuse them for every block of a search.

    Shapes:
        x: ``[n, d]`` int8 -> ``[n, d]``
    """
    return x.to(_GEMM_DTYPES[impl])


def gemm_prepared(a: torch.Tensor, b: torch.Tensor, impl: str) -> torch.Tensor:
    """Exact ``a @ b.T`` of operands from :func:`gemm_operand` with the same ``impl``.

    Returns int32 for ``"int8"`` and the operands' floating dtype otherwise; the floating
    results are exact integers (``fp32`` while ``d < 2**24``, ``bf16`` while ``d <= 256``,
    ``fp64`` while ``d < 2**53``; :func:`hyperlens.functional.kernels.kernel_for` never
    picks an implementation outside its exact range).

    Shapes:
        a: ``[n, d]``, b: ``[m, d]`` -> ``[n, m]``
    """
    if impl == "int8":
        try:
            return torch._int_mm(a, b.t())
        except RuntimeError:  # pragma: no cover - builds without the integer kernel
            return (a.to(torch.float64) @ b.to(torch.float64).t()).round_().to(torch.int32)
    if impl == "amx_int8":
        return amx_int8_gemm(amx_int8_pack(a), b).t()
    if impl == "bf16":
        return (a @ b.t()).to(torch.float32)
    return a @ b.t()


AMX_MIN_ROWS = 3000  # rows streamed past one packed operand before packing pays off


def amx_int8_pack(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Pack int8 codes ``[m, d]`` as oneDNN int8 matmul weights (AMX tile layout).

    Packing is a reorder of ``m * d`` bytes that costs about as much as multiplying
    3,000 rows against them, so pack the operand that is reused (a search's queries).
    """
    return torch.ops.onednn.qlinear_prepack(w, [AMX_MIN_ROWS, w.shape[1]]), int(w.shape[0])


def amx_int8_gemm(packed: tuple[torch.Tensor, int], x: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` for int8 ``x`` ``[n, d]`` and packed ``w`` ``[m, d]`` -> ``[n, m]`` float32.

    oneDNN's int8 matmul (AMX tiles on CPUs that have them) accumulates in int32 and
    writes float32 with unit scales: exact integers while ``d < 2**24``.
    """
    w, m = packed
    ones = torch.ones(m, dtype=torch.float32)
    zeros = torch.zeros(m, dtype=torch.int64)
    return torch.ops.onednn.qlinear_pointwise(
        x, 1.0, 0, w, ones, zeros, None, 1.0, 0, torch.float32, "none", [], ""
    )


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b.T`` for ``int8`` matrices, accumulated in ``int32``.

    On the CPU the implementation is the ``"gemm"`` kernel of
    :mod:`hyperlens.functional.kernels`, chosen by the CPU's capability (or forced):
    ``torch._int_mm`` (oneDNN int8; fast with VNNI), oneDNN's int8 matmul on packed
    weights (AMX tiles; for products with at least 3,000 rows), a float32 GEMM (exact: every partial
    sum of codes in ``{-1, 0, +1}`` is an integer below ``2**24``; the fast exact path
    without VNNI), a bf16 GEMM (exact only for ``d <= 256``; fast with AMX) or float64.
    Small products use float32 (the integer kernel's set-up cost dominates). On CUDA
    ``torch._int_mm`` with the padding cuBLASLt requires, else float64.

    Shapes:
        a: ``[n, d]`` int8, b: ``[m, d]`` int8 -> ``[n, m]`` int32
    """
    n, d = a.shape
    m = b.shape[0]
    if n == 0 or m == 0:
        return torch.zeros(n, m, dtype=torch.int32, device=a.device)
    if a.device.type == "cpu":
        impl = K.kernel_for("gemm", d=d, work=n * m * d)
        if impl == "amx_int8" and max(n, m) < AMX_MIN_ROWS:
            impl = "int8"  # packing would cost more than it saves
        elif impl == "amx_int8":
            # pack the smaller side, stream the larger one past it
            big, small = (a, b) if n >= m else (b, a)
            out = amx_int8_gemm(amx_int8_pack(small), big)
            return (out if n >= m else out.t()).to(torch.int32)
        out = gemm_prepared(gemm_operand(a, impl), gemm_operand(b, impl), impl)
        return out if out.dtype == torch.int32 else out.to(torch.int32)
    if a.device.type == "cuda":
        try:
            return int_mm_padded(a, b)
        except RuntimeError as exc:  # pragma: no cover - GPUs without int8 tensor cores
            warnings.warn(
                f"torch._int_mm refused int8 codes on {a.device} ({exc}); similarities there "
                "use an exact but slower float64 GEMM.", RuntimeWarning, stacklevel=2)
    return (a.to(torch.float64) @ b.to(torch.float64).t()).round_().to(torch.int32)


def int_mm_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` of int8 matrices by ``torch._int_mm`` (int32 accumulation), padded to the
    shapes cuBLASLt's int8 GEMM requires: more than 16 rows in ``a``, ``d`` and ``m``
    multiples of 8 (zero rows and columns change no product). ``b`` goes in as the
    column-major ``[d, m]`` view ``b.T`` of a row-major ``[m, d]`` matrix.

    Shapes:
        a: ``[n, d]`` int8, b: ``[m, d]`` int8 -> ``[n, m]`` int32
    """
    n, d = a.shape
    m = b.shape[0]
    pn, pd, pm = max(17, n), -(-d // 8) * 8, -(-m // 8) * 8
    pad = torch.nn.functional.pad
    ap = pad(a, (0, pd - d, 0, pn - n)) if (pn, pd) != (n, d) else a.contiguous()
    bp = pad(b, (0, pd - d, 0, pm - m)) if (pm, pd) != (m, d) else b.contiguous()
    return torch._int_mm(ap, bp.t())[:n, :m].contiguous()


def _pairwise_args(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    a = check_codes(a, "a")
    b = check_codes(b, "b")
    squeeze = a.ndim == 1 and b.ndim == 1
    if a.ndim == 1:
        a = a.unsqueeze(0)
    if b.ndim == 1:
        b = b.unsqueeze(0)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ShapeError(
            f"a and b must be [n, d] and [m, d] (or 1-D [d]) with the same d, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.device != b.device:
        raise InputError(f"a is on {a.device} but b is on {b.device}; move both to one device.")
    return a, b, squeeze


def nonzeros(x: torch.Tensor) -> torch.Tensor:
    """Number of non-zero entries per code (the squared norm of a ternary code).

    Shapes:
        x: ``[n, d]`` int8 -> ``[n]`` int32
    """
    return (x != 0).sum(dim=-1, dtype=torch.int32)


def cosine_from_dot(dots: torch.Tensor, nnz_a: torch.Tensor, nnz_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity from integer dot products and non-zero counts (0 for a zero code).

    Dense and packed paths both call this, so their results agree bit for bit.

    Shapes:
        dots: ``[n, m]`` int32, nnz_a: ``[n]``, nnz_b: ``[m]`` -> ``[n, m]`` float32
    """
    na = nnz_a.to(torch.float32)
    nb = nnz_b.to(torch.float32)
    # float32 throughout: sqrt(n_a n_b) is correctly rounded, so a code against itself gives
    # exactly 1.0; four passes over the [n, m] block instead of six in float64.
    denom = torch.outer(na, nb).sqrt_()
    out = dots.to(torch.float32).div_(denom)
    if bool((nnz_a == 0).any()) or bool((nnz_b == 0).any()):
        out.masked_fill_(denom == 0, 0.0)
    return out


def hamming_from_dot(
    dots: torch.Tensor, abs_dots: torch.Tensor, nnz_a: torch.Tensor, nnz_b: torch.Tensor
) -> torch.Tensor:
    """Hamming distance (number of differing positions) of ternary codes.

    With ``D = a . b``, ``A = |a| . |b|`` and ``n_a, n_b`` the non-zero counts, the number of
    differing positions is ``n_a + n_b - (3 A + D) / 2`` (for bipolar codes this reduces to
    ``(d - D) / 2``).

    Shapes:
        dots, abs_dots: ``[n, m]`` int32; nnz_a: ``[n]``; nnz_b: ``[m]`` -> ``[n, m]`` int32
    """
    return nnz_a.unsqueeze(1) + nnz_b.unsqueeze(0) - (3 * abs_dots + dots) // 2


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise dot products of codes, exact in ``int32``.

    Shapes:
        a: ``[n, d]`` or ``[d]``, b: ``[m, d]`` or ``[d]`` -> ``[n, m]`` int32
        (a scalar when both are 1-D)
    """
    a, b, squeeze = _pairwise_args(a, b)
    out = int_matmul(a, b)
    return out.reshape(()) if squeeze else out


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of codes: ``dot / sqrt(nnz_a * nnz_b)``, 0 for a zero code.

    Shapes:
        a: ``[n, d]`` or ``[d]``, b: ``[m, d]`` or ``[d]`` -> ``[n, m]`` float32
    """
    a, b, squeeze = _pairwise_args(a, b)
    out = cosine_from_dot(int_matmul(a, b), nonzeros(a), nonzeros(b))
    return out.reshape(()) if squeeze else out


def hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Hamming distance: the number of positions where two codes differ.

    Shapes:
        a: ``[n, d]`` or ``[d]``, b: ``[m, d]`` or ``[d]`` -> ``[n, m]`` int32
    """
    a, b, squeeze = _pairwise_args(a, b)
    out = hamming_from_dot(int_matmul(a, b), int_matmul(a.abs(), b.abs()), nonzeros(a), nonzeros(b))
    return out.reshape(()) if squeeze else out
