"""Similarity and top-k search over packed codes with bounded memory.

Codes stay packed; blocks of ``block_size`` codes are unpacked (one table look-up per
byte) and multiplied with the dense queries by an exact GEMM chosen by the CPU's
capability (:mod:`hyperlens.functional.kernels`): ``int8 x int8 -> int32``
(``torch._int_mm``) where VNNI exists, a float32 GEMM (exact on codes while
``d < 2**24``) where it does not, since oneDNN's int8 kernel without VNNI is several times
slower than float32. The queries are converted once per search, each block once for all
query blocks. bf16 products are not used at search sizes (their output keeps 8 mantissa
bits) and popcount over bit planes measured about 20x slower per pair than int8
(``benchmarks/bench_hdc.py``). Results are exact and equal, bit for bit, to the dense
functions in :mod:`hyperlens.functional.hdc` whichever GEMM runs.

Peak memory of :func:`search` is about ``2 * block_size * d`` bytes for the unpacked block
(twice for Hamming) plus ``12 * query_block_size * block_size`` bytes of scores, whatever
``n`` is; top-k candidates are merged block by block.

Ranking is deterministic: higher similarity first (lower Hamming distance first), and
among equal scores the lower code index first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..errors import InputError, ShapeError
from ..functional import hdc as F, kernels as K
from ..utils import check_int
from .packed import PackedCodes

__all__ = ["similarity", "search", "SearchResult", "METRICS"]

Metric = Literal["dot", "cosine", "hamming"]
METRICS: tuple[str, ...] = ("dot", "cosine", "hamming")
_LOW32 = 0xFFFFFFFF


@dataclass(frozen=True)
class SearchResult:
    """Top-k neighbours per query.

    Shapes:
        scores: ``[q, k]`` (int32 for ``dot``/``hamming``, float32 for ``cosine``)
        indices: ``[q, k]`` int64 row numbers into the searched codes
    """

    scores: torch.Tensor
    indices: torch.Tensor
    metric: str


def _queries(queries: torch.Tensor | PackedCodes, codes: PackedCodes) -> torch.Tensor:
    if not isinstance(codes, PackedCodes):
        raise InputError(
            f"codes must be PackedCodes, got {type(codes).__name__}; wrap dense codes with "
            "PackedCodes.from_dense(codes)."
        )
    if isinstance(queries, PackedCodes):
        q = queries.to_dense()
    else:
        q = F.check_codes(queries, "queries")
        if q.ndim == 1:
            q = q.unsqueeze(0)
    if q.ndim != 2 or q.shape[1] != codes.dim:
        raise ShapeError(
            f"queries must be [q, {codes.dim}] to match codes of dim={codes.dim}, got shape "
            f"{tuple(q.shape)}."
        )
    return q.to(codes.device)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InputError(f"metric must be one of {METRICS}, got {metric!r}.")


class _Gemm:
    """One GEMM implementation for a whole search: operands converted once per tensor.

    On the CPU the implementation is :func:`hyperlens.functional.kernels.kernel_for`'s
    choice (int8 ``torch._int_mm`` with VNNI, float32 without; exact either way); other
    devices use :func:`hyperlens.functional.hdc.int_matmul`.
    """

    def __init__(self, impl: str | None) -> None:
        self.impl = impl
        self._packed: dict[tuple[int, int, int], Any] = {}

    def operand(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.impl is None else F.gemm_operand(x, self.impl)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a @ b.T``; ``a`` (a query block) is packed once when the kernel packs."""
        if self.impl is None:
            return F.int_matmul(a, b)
        if self.impl == "amx_int8":
            key = (a.data_ptr(), a.shape[0], a.shape[1])
            packed = self._packed.get(key)
            if packed is None:
                packed = self._packed[key] = F.amx_int8_pack(a)
            return F.amx_int8_gemm(packed, b).t().contiguous()
        return F.gemm_prepared(a, b, self.impl)


def _gemm_for(q: torch.Tensor, d: int, n: int, block: int) -> _Gemm:
    if q.device.type != "cpu":
        return _Gemm(None)
    impl = K.kernel_for("gemm", d=d, work=q.shape[0] * block * d)
    if impl == "amx_int8" and n < F.AMX_MIN_ROWS:
        impl = "int8"  # too few codes to pay for packing the queries
    return _Gemm(impl)


def _scores(
    q: torch.Tensor,
    q_abs: torch.Tensor | None,
    q_nnz: torch.Tensor,
    block: torch.Tensor,
    metric: str,
) -> torch.Tensor:
    """Exact similarity of dense queries ``[q, d]`` against one dense block ``[b, d]``."""
    dots = F.int_matmul(q, block)
    if metric == "dot":
        return dots
    b_nnz = F.nonzeros(block)
    if metric == "cosine":
        return F.cosine_from_dot(dots, q_nnz, b_nnz)
    if q_abs is None:
        q_abs = q.abs()
    return F.hamming_from_dot(dots, F.int_matmul(q_abs, block.abs()), q_nnz, b_nnz)


def similarity(
    queries: torch.Tensor | PackedCodes,
    codes: PackedCodes,
    metric: Metric = "cosine",
    *,
    block_size: int = 4096,
) -> torch.Tensor:
    """All query-code similarities, computed from packed codes block by block.

    Equal to ``hyperlens.functional.hdc.<metric>(queries, codes.to_dense())`` exactly,
    without holding the dense codes.

    Shapes:
        queries: ``[q, d]`` int8 (or PackedCodes), codes: ``n`` codes of dim ``d``
        -> ``[q, n]`` (int32 for dot/hamming, float32 for cosine)
    """
    _check_metric(metric)
    check_int(block_size, "block_size", minimum=1)
    q = _queries(queries, codes)
    q_nnz = F.nonzeros(q)
    q_abs = q.abs() if metric == "hamming" else None
    dtype = torch.float32 if metric == "cosine" else torch.int32
    out = torch.empty(q.shape[0], len(codes), dtype=dtype, device=q.device)
    for start, block in codes.iter_blocks(block_size):
        out[:, start : start + block.shape[0]] = _scores(q, q_abs, q_nnz, block, metric)
    return out


def _to_key(scores: torch.Tensor, metric: str, index: torch.Tensor) -> torch.Tensor:
    """Order-preserving int64 keys: high 32 bits the score, low 32 bits the inverted index.

    A larger key is a better match: higher similarity (lower Hamming distance), then the
    lower code index.
    """
    if metric == "cosine":
        bits = scores.view(torch.int32)
        key32 = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # IEEE order as signed integers
    elif metric == "hamming":
        key32 = -scores
    else:
        key32 = scores
    return (key32.to(torch.int64) << 32) | (_LOW32 - index)


def _from_key(keys: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    indices = _LOW32 - (keys & _LOW32)
    key32 = (keys >> 32).to(torch.int32)
    if metric == "cosine":
        scores = (key32 ^ ((key32 >> 31) & 0x7FFFFFFF)).view(torch.float32)
    elif metric == "hamming":
        scores = -key32
    else:
        scores = key32
    return scores, indices


_TIE_PAD = 16


def _block_candidates(sc: torch.Tensor, metric: str, start: int, k: int) -> torch.Tensor:
    """Keys of a superset of each row's top ``k`` in one block of scores.

    ``torch.topk`` on the raw scores with ``k + 16`` slots is cheap but picks arbitrarily
    among equal scores; when the last slot is strictly worse than the ``k``-th, every code
    that can enter the top ``k`` (ties at the ``k``-th score included) is among the
    candidates. Rows where ties run past the extra slots are ranked by full keys instead.

    Shapes:
        sc: ``[q, b]`` -> ``[q, min(b, k + 16)]`` int64 keys
    """
    b = sc.shape[1]
    largest = metric != "hamming"
    kk = min(b, k + _TIE_PAD)
    if kk == b:
        idx = torch.arange(start, start + b, device=sc.device).expand(sc.shape[0], b)
        return _to_key(sc, metric, idx)
    vals, idx = torch.topk(sc, kk, dim=1, largest=largest, sorted=True)
    keys = _to_key(vals, metric, idx + start)
    unsure = torch.nonzero(vals[:, kk - 1] == vals[:, k - 1]).flatten()
    if unsure.numel():
        rows = sc.index_select(0, unsure)
        full = _to_key(
            rows, metric, torch.arange(start, start + b, device=sc.device).expand(rows.shape[0], b)
        )
        keys[unsure] = torch.topk(full, kk, dim=1, sorted=False).values
    return keys


def search(
    queries: torch.Tensor | PackedCodes,
    codes: PackedCodes,
    k: int = 10,
    metric: Metric = "cosine",
    *,
    block_size: int = 4096,
    query_block_size: int = 1024,
) -> SearchResult:
    """The ``k`` nearest codes of every query, streaming over packed codes.

    ``metric="cosine"`` or ``"dot"`` rank by descending similarity, ``"hamming"`` by
    ascending distance; ties go to the lower index. ``k`` larger than ``len(codes)`` is
    reduced to ``len(codes)``.

    Shapes:
        queries: ``[q, d]`` int8 (or PackedCodes); codes: ``n`` codes of dim ``d``
        -> SearchResult with ``scores`` and ``indices`` of shape ``[q, min(k, n)]``
    """
    _check_metric(metric)
    check_int(block_size, "block_size", minimum=1)
    check_int(query_block_size, "query_block_size", minimum=1)
    k = check_int(k, "k", minimum=1)
    q = _queries(queries, codes)
    n = len(codes)
    if n == 0:
        raise InputError("codes is empty; there is nothing to search.")
    if n >= 2**31:
        raise InputError(
            f"codes holds {n} rows; search supports fewer than 2**31 per call, split them."
        )
    k = min(k, n)
    nq = q.shape[0]
    q_nnz = F.nonzeros(q)
    q_abs = q.abs() if metric == "hamming" else None
    c_nnz = codes.nonzeros() if metric != "dot" else None
    gemm = _gemm_for(q, codes.dim, n, min(block_size, n))
    q_op = gemm.operand(q)
    qa_op = gemm.operand(q_abs) if q_abs is not None else None
    best = torch.full((nq, k), torch.iinfo(torch.int64).min, dtype=torch.int64, device=q.device)
    # float32 GEMMs read blocks unpacked straight to float32 (no conversion pass)
    unpack_dtype = torch.float32 if gemm.impl == "fp32" else torch.int8
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        block = codes.unpack(start, stop, dtype=unpack_dtype)
        b_nnz = c_nnz[start:stop] if c_nnz is not None else None
        b_op = gemm.operand(block)
        ba_op = gemm.operand(block.abs()) if metric == "hamming" else None
        for qs in range(0, nq, query_block_size):
            qe = min(nq, qs + query_block_size)
            dots = gemm(q_op[qs:qe], b_op)
            if metric == "dot":
                sc = dots.to(torch.int32)
            elif metric == "cosine":
                sc = F.cosine_from_dot(dots, q_nnz[qs:qe], b_nnz)  # type: ignore[arg-type]
            else:
                assert qa_op is not None and ba_op is not None and b_nnz is not None
                sc = F.hamming_from_dot(
                    dots.to(torch.int32),
                    gemm(qa_op[qs:qe], ba_op).to(torch.int32),
                    q_nnz[qs:qe],
                    b_nnz,
                )
            cand = _block_candidates(sc, metric, start, k)
            merged = torch.cat([best[qs:qe], cand], dim=1)
            best[qs:qe] = torch.topk(merged, k, dim=1, sorted=False).values
    best = torch.sort(best, dim=1, descending=True).values
    scores, indices = _from_key(best, metric)
    return SearchResult(scores=scores, indices=indices, metric=metric)
