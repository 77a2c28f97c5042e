"""Packed ternary codes: two bit planes (2 bits per trit) or base 3 (five trits per byte).

:func:`pack_twobit` / :func:`unpack_twobit` keep a positive and a negative bit plane, 16x
smaller than float32; :func:`pack_base3` / :func:`unpack_base3` store five trits per byte,
1.6 bits per trit, 20x smaller. :func:`packed_nonzeros` counts a packed code's non-zero trits
without unpacking it. Every function keeps the device of its input.

Examples
--------
>>> import torch
>>> from hyperlens.functional.packing import pack, unpack
>>> x = torch.tensor([[1, 0, -1, 1, 0, 0, -1, 1, 1, -1]], dtype=torch.int8)
>>> tuple(pack(x).shape), tuple(pack(x, "base3").shape)
((1, 4), (1, 2))
>>> bool((unpack(pack(x), 10) == x).all())
True
>>> bool((unpack(pack(x, "base3"), 10, "base3") == x).all())
True
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import check_int
from . import kernels as K
from .hdc import SCHEMES, Scheme, _as_rows, check_codes

__all__ = [
    "SCHEMES",
    "Scheme",
    "packed_width",
    "pack",
    "unpack",
    "packed_nonzeros",
    "pack_twobit",
    "unpack_twobit",
    "pack_base3",
    "unpack_base3",
]

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
_TRIT_WEIGHTS = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int16)
_LUT_CACHE: dict[tuple[str, str], torch.Tensor] = {}


def packed_width(d: int, scheme: Scheme) -> int:
    """Bytes per code of dimension ``d``: ``2 ceil(d/8)`` (two-bit) or ``ceil(d/5)`` (base-3)."""
    d = check_int(d, "d", minimum=1)
    if scheme == "twobit":
        return 2 * (-(-d // 8))
    if scheme == "base3":
        return -(-d // 5)
    raise InputError(f"scheme must be 'twobit' or 'base3', got {scheme!r}.")


def _twobit_lut(device: torch.device) -> torch.Tensor:
    """``[65536]`` int64: entry ``pos * 256 + neg`` holds that byte pair's 8 trits as int8 bytes."""
    key = ("twobit", str(device))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        idx = torch.arange(256, dtype=torch.int16)
        bits = ((idx.unsqueeze(1) >> torch.arange(8, dtype=torch.int16)) & 1).to(
            torch.int8
        )  # [256, 8]
        trits = bits.unsqueeze(1) - bits.unsqueeze(0)  # [pos 256, neg 256, 8]
        lut = trits.reshape(65536, 8).contiguous().view(torch.int64).reshape(65536).to(device)
        _LUT_CACHE[key] = lut
    return lut


def _base3_lut(device: torch.device) -> torch.Tensor:
    """``[256, 5]`` int8: byte value -> its five trits (bytes above 242 never occur)."""
    key = ("base3", str(device))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        v = torch.arange(256, dtype=torch.int16).unsqueeze(1)
        digits = (v // _TRIT_WEIGHTS) % 3
        lut = (digits - 1).to(torch.int8).to(device)
        _LUT_CACHE[key] = lut
    return lut


def packed_nonzeros(packed: torch.Tensor, d: int, scheme: Scheme = "twobit") -> torch.Tensor:
    """Non-zero count of every packed code, read from the bytes (one table look-up per byte).

    Shapes:
        packed: ``[n, packed_width(d, scheme)]`` uint8 -> ``[n]`` int32
    """
    width = packed_width(d, scheme)
    packed = _check_packed(packed, width, scheme, d)
    p2, lead = _as_rows(packed)
    if scheme == "twobit":
        nb = width // 2
        occupied = p2[:, :nb] | p2[:, nb:]  # a trit is non-zero when either plane bit is set
        pad = (-nb) % 8
        if pad:
            occupied = torch.nn.functional.pad(occupied, (0, pad))
        words = occupied.contiguous().view(torch.int64)
        if K.kernel_for("popcount", device=words.device) == "bitwise_count":
            counts = np.bitwise_count(words.numpy().view(np.uint64)).sum(axis=1, dtype=np.int32)
            return torch.from_numpy(counts).reshape(lead)
        return _popcount64(words).sum(dim=1, dtype=torch.int32).reshape(lead)
    key = ("nnz_base3", str(packed.device))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        lut = (_base3_lut(torch.device("cpu")) != 0).sum(1).to(torch.int32).to(packed.device)
        _LUT_CACHE[key] = lut
    counts = torch.index_select(lut, 0, p2.reshape(-1).to(torch.int32)).reshape(p2.shape)
    return counts.sum(dim=1, dtype=torch.int32).reshape(lead)


def _popcount64(w: torch.Tensor) -> torch.Tensor:
    """Set bits of every int64 word (SWAR bit counting; torch has no popcount operator)."""
    w = w - ((w >> 1) & 0x5555555555555555)
    w = (w & 0x3333333333333333) + ((w >> 2) & 0x3333333333333333)
    w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0F
    return (w * 0x0101010101010101) >> 56 & 0xFF


def _trit_groups(
    x: torch.Tensor, size: int, check_values: bool
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Check ternary codes and cut each into ``ceil(d / size)`` groups of ``size`` trits, the
    last one padded with zero trits; return the groups and the leading shape to restore.

    Shapes:
        x: ``[..., d]`` -> ``[n, ceil(d / size), size]``
    """
    x = check_codes(x, "x", check_values=check_values)
    x2, lead = _as_rows(x)
    n, d = x2.shape
    nb = -(-d // size)
    if nb * size != d:
        x2 = torch.nn.functional.pad(x2, (0, nb * size - d))
    return x2.reshape(n, nb, size), lead


def pack_twobit(x: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
    """Pack ternary codes into a positive and a negative bit plane (2 bits per trit).

    Layout per code: ``ceil(d/8)`` bytes of the ``+1`` plane followed by ``ceil(d/8)`` bytes
    of the ``-1`` plane; bit ``j`` (least significant first) of byte ``i`` is position
    ``8 i + j``; padding bits are 0. A 10,000-d code takes 2,500 bytes (16x smaller than
    float32).

    Shapes:
        x: ``[..., d]`` -> ``[..., 2 * ceil(d / 8)]`` uint8
    """
    groups, lead = _trit_groups(x, 8, check_values)  # [n, nb, 8]
    nb = groups.shape[1]
    w = _BIT_WEIGHTS.to(groups.device)
    pos = ((groups > 0).to(torch.uint8) * w).sum(dim=2, dtype=torch.uint8)
    neg = ((groups < 0).to(torch.uint8) * w).sum(dim=2, dtype=torch.uint8)
    return torch.cat([pos, neg], dim=1).reshape(*lead, 2 * nb)


def unpack_twobit(
    packed: torch.Tensor, d: int, *, dtype: torch.dtype = torch.int8
) -> torch.Tensor:
    """Inverse of :func:`pack_twobit`: one table look-up per byte pair yields 8 trits.

    ``dtype`` (int8 or float32) is the output's; float32 output feeds a float32 GEMM with
    no separate conversion pass. The ``"unpack"`` kernel of
    :mod:`hyperlens.functional.kernels` decides between one compiled pass (CPU) and a
    torch table look-up; both give the same values.

    Shapes:
        packed: ``[..., 2 * ceil(d / 8)]`` uint8 -> ``[..., d]`` (int8 or float32)
    """
    d = check_int(d, "d", minimum=1)
    nb = -(-d // 8)
    packed = _check_packed(packed, 2 * nb, "twobit", d)
    p2, lead = _as_rows(packed)
    if dtype not in (torch.int8, torch.float32):
        raise InputError(f"dtype must be torch.int8 or torch.float32, got {dtype}.")
    if p2.device.type == "cpu" and K.kernel_for("unpack") == "compiled":
        from .compiled import unpack_twobit_rows

        name = "int8" if dtype == torch.int8 else "float32"
        arr = unpack_twobit_rows(p2.contiguous().numpy(), d, name)
        return torch.from_numpy(arr).reshape(*lead, d)
    idx = (p2[:, :nb].to(torch.int32) << 8) | p2[:, nb:].to(torch.int32)
    # 1-D index_select is about 3x faster than advanced indexing for table look-ups
    words = torch.index_select(_twobit_lut(p2.device), 0, idx.reshape(-1))  # int64 = 8 trits
    out = words.view(torch.int8).reshape(p2.shape[0], nb * 8)
    if nb * 8 != d:
        out = out[:, :d]
    return out.reshape(*lead, d).to(dtype)


def pack_base3(x: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
    """Pack ternary codes five trits per byte (``sum_j (t_j + 1) 3^j``, values 0..242).

    Position ``5 i + j`` is digit ``j`` of byte ``i``; the last byte is padded with zero
    trits. A 10,000-d code takes 2,000 bytes (1.6 bits per trit, 20x smaller than float32).

    Shapes:
        x: ``[..., d]`` -> ``[..., ceil(d / 5)]`` uint8
    """
    groups, lead = _trit_groups(x, 5, check_values)  # [n, nb, 5]
    digits = groups.to(torch.int16) + 1
    out = (digits * _TRIT_WEIGHTS.to(groups.device)).sum(dim=2, dtype=torch.int16)
    return out.to(torch.uint8).reshape(*lead, groups.shape[1])


def unpack_base3(packed: torch.Tensor, d: int) -> torch.Tensor:
    """Inverse of :func:`pack_base3` (a 256-entry look-up table of five trits).

    Shapes:
        packed: ``[..., ceil(d / 5)]`` uint8 -> ``[..., d]`` int8
    """
    d = check_int(d, "d", minimum=1)
    nb = -(-d // 5)
    packed = _check_packed(packed, nb, "base3", d)
    p2, lead = _as_rows(packed)
    flat = p2.reshape(-1).to(torch.int32)
    out = torch.index_select(_base3_lut(p2.device), 0, flat).reshape(p2.shape[0], nb * 5)
    if nb * 5 != d:
        out = out[:, :d]
    return out.reshape(*lead, d)


def _check_packed(packed: object, width: int, scheme: str, d: int) -> torch.Tensor:
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        got = packed.dtype if isinstance(packed, torch.Tensor) else type(packed).__name__
        raise InputError(f"packed must be a uint8 tensor from pack_{scheme}(), got {got}.")
    if packed.ndim == 0 or packed.shape[-1] != width:
        raise ShapeError(
            f"packed must have last dimension {width} for {scheme} codes of d={d}, got shape "
            f"{tuple(packed.shape)}; check d and the packing scheme."
        )
    return packed


def pack(x: torch.Tensor, scheme: Scheme = "twobit", *, check_values: bool = True) -> torch.Tensor:
    """Pack ternary codes with ``scheme`` (``"twobit"`` or ``"base3"``); see the scheme functions.

    Shapes:
        x: ``[..., d]`` -> ``[..., packed_width(d, scheme)]`` uint8
    """
    if scheme == "twobit":
        return pack_twobit(x, check_values=check_values)
    if scheme == "base3":
        return pack_base3(x, check_values=check_values)
    raise InputError(f"scheme must be 'twobit' or 'base3', got {scheme!r}.")


def unpack(packed: torch.Tensor, d: int, scheme: Scheme = "twobit") -> torch.Tensor:
    """Unpack codes packed by :func:`pack` with the same ``scheme`` and dimension ``d``.

    Shapes:
        packed: ``[..., packed_width(d, scheme)]`` uint8 -> ``[..., d]`` int8
    """
    if scheme == "twobit":
        return unpack_twobit(packed, d)
    if scheme == "base3":
        return unpack_base3(packed, d)
    raise InputError(f"scheme must be 'twobit' or 'base3', got {scheme!r}.")
