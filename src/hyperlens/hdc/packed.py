"""Packed ternary codes: a container that knows its dimension and scheme, plus save/load.

:class:`PackedCodes` holds ``n`` codes as a ``uint8`` matrix (two-bit planes or base-3,
see :func:`hyperlens.functional.packing.pack`). It unpacks in blocks, so similarity and search
(:mod:`hyperlens.hdc.retrieval`) never hold the dense ``[n, d]`` matrix. Files are
safetensors with the dimension, scheme and format version in the header; writes are
atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError, InputError, ShapeError
from ..functional import hdc as F, packing as P
from ..utils import check_int

__all__ = ["PackedCodes", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "hyperlens.packed_codes"
FORMAT_VERSION = "1"


class PackedCodes:
    """``n`` ternary codes of dimension ``dim`` packed with ``scheme``.

    Args:
        data: ``uint8`` matrix from :func:`hyperlens.functional.packing.pack` (a NumPy array,
            including a ``np.memmap``, is wrapped without copying).
        dim: the hypervector dimension ``d``.
        scheme: ``"twobit"`` (2 bits per trit) or ``"base3"`` (1.6 bits per trit).

    Shapes:
        data: ``[n, packed_width(dim, scheme)]`` uint8

    Examples:
        >>> import torch
        >>> from hyperlens.functional.hdc import random_hypervectors
        >>> codes = random_hypervectors(3, 10_000, "ternary", seed=0)
        >>> packed = PackedCodes.from_dense(codes, scheme="base3")
        >>> packed.bytes_per_code, torch.equal(packed.to_dense(), codes)
        (2000, True)
    """

    __slots__ = ("data", "dim", "scheme")

    def __init__(
        self, data: torch.Tensor | np.ndarray, dim: int, scheme: F.Scheme = "twobit"
    ) -> None:
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(data)
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
            got = data.dtype if isinstance(data, torch.Tensor) else type(data).__name__
            raise InputError(
                f"data must be a uint8 matrix of packed codes, got {got}; build it with "
                "PackedCodes.from_dense()."
            )
        width = P.packed_width(dim, scheme)  # validates dim and scheme
        if data.ndim != 2 or data.shape[1] != width:
            raise ShapeError(
                f"data must be [n, {width}] for {scheme} codes of dim={dim}, got shape "
                f"{tuple(data.shape)}; check dim and scheme."
            )
        self.data = data
        self.dim = int(dim)
        self.scheme = scheme

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dense(
        cls, codes: torch.Tensor, scheme: F.Scheme = "twobit", *, check_values: bool = True
    ) -> PackedCodes:
        """Pack dense codes ``[n, d]`` (values in ``{-1, 0, +1}``)."""
        codes = F.check_codes(codes, "codes", check_values=check_values)
        if codes.ndim == 1:
            codes = codes.unsqueeze(0)
        if codes.ndim != 2:
            raise ShapeError(f"codes must be [n, d], got shape {tuple(codes.shape)}.")
        return cls(P.pack(codes, scheme, check_values=False), codes.shape[1], scheme)

    @classmethod
    def empty(
        cls, n: int, dim: int, scheme: F.Scheme = "twobit", device: str | torch.device = "cpu"
    ) -> PackedCodes:
        """Zero codes to be filled block by block (``codes.data[i:j] = pack(...)``)."""
        return cls(
            torch.zeros(n, P.packed_width(dim, scheme), dtype=torch.uint8, device=device),
            dim,
            scheme,
        )

    @classmethod
    def concat(cls, parts: Sequence[PackedCodes]) -> PackedCodes:
        """Concatenate codes that share dimension and scheme."""
        if not parts:
            raise InputError("parts must hold at least one PackedCodes, got an empty sequence.")
        first = parts[0]
        for i, p in enumerate(parts):
            if p.dim != first.dim or p.scheme != first.scheme:
                raise ShapeError(
                    f"parts[{i}] has dim={p.dim}, scheme={p.scheme!r} but parts[0] has dim="
                    f"{first.dim}, scheme={first.scheme!r}; convert them to one format first."
                )
        return cls(torch.cat([p.data for p in parts]), first.dim, first.scheme)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return (
            f"PackedCodes(n={len(self)}, dim={self.dim}, scheme={self.scheme!r}, "
            f"bytes={self.nbytes}, device={self.device})"
        )

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> PackedCodes:
        """Rows as a new :class:`PackedCodes`; an int gives one row (still ``[1, width]``).

        An int outside ``-len(self) <= i < len(self)`` raises :class:`IndexError`, so
        iteration and NumPy's sequence protocol stop at the end.
        """
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = len(self)
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"row {i} is out of range for {n} packed codes.")
            i %= n
            index = slice(i, i + 1)
        return PackedCodes(self.data[index], self.dim, self.scheme)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, dim)``: the shape of the dense codes these packed rows stand for."""
        return (len(self), self.dim)

    def __iter__(self) -> Iterator[PackedCodes]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """The dense codes ``[n, dim]`` (int8 in {-1, 0, +1}): ``np.asarray(codes)``."""
        dense = self.to_dense().cpu().numpy()
        return dense if dtype is None else dense.astype(dtype, copy=False)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def bytes_per_code(self) -> int:
        return int(self.data.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the packed matrix."""
        return int(self.data.numel())

    def to(self, device: str | torch.device) -> PackedCodes:
        return PackedCodes(self.data.to(device), self.dim, self.scheme)

    def unpack(
        self, start: int = 0, stop: int | None = None, *, dtype: torch.dtype = torch.int8
    ) -> torch.Tensor:
        """Dense codes of rows ``start:stop`` as ``dtype`` (int8, or float32 for a GEMM).

        Shapes:
            returns ``[stop - start, dim]``
        """
        block = self.data[start:stop]
        if block.device.type == "cpu" and not block.is_contiguous():
            block = block.contiguous()
        if self.scheme == "twobit":
            return P.unpack_twobit(block, self.dim, dtype=dtype)
        return P.unpack(block, self.dim, self.scheme).to(dtype)

    def to_dense(self) -> torch.Tensor:
        """All codes as a dense ``int8`` matrix ``[n, dim]`` (materialises everything)."""
        return self.unpack()

    def iter_blocks(self, block_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start, dense_block)`` with at most ``block_size`` rows each."""
        block_size = check_int(block_size, "block_size", minimum=1)
        for start in range(0, len(self), block_size):
            yield start, self.unpack(start, start + block_size)

    def nonzeros(self, block_size: int = 65536) -> torch.Tensor:
        """Non-zero count per code (squared norm), computed block by block.

        Shapes:
            returns ``[n]`` int32
        """
        block_size = check_int(block_size, "block_size", minimum=1)
        out = torch.empty(len(self), dtype=torch.int32, device=self.device)
        for start in range(0, len(self), block_size):
            chunk = self.data[start : start + block_size]
            out[start : start + chunk.shape[0]] = P.packed_nonzeros(chunk, self.dim, self.scheme)
        return out

    def convert(self, scheme: F.Scheme, block_size: int = 65536) -> PackedCodes:
        """The same codes re-packed with another ``scheme`` (block by block)."""
        out = PackedCodes.empty(len(self), self.dim, scheme, self.device)
        for start, block in self.iter_blocks(block_size):
            out.data[start : start + block.shape[0]] = P.pack(block, scheme, check_values=False)
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
        """Write a safetensors file holding ``codes`` and a header with ``dim`` and ``scheme``.

        ``metadata`` adds string entries to the header (e.g. the encoder's settings). The
        write is atomic: a crash leaves either the old file or the new one.
        """
        from safetensors.torch import save_file

        from ..utils import atomic_path

        header = {str(k): str(v) for k, v in (metadata or {}).items()}
        header.update(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            dim=str(self.dim),
            scheme=self.scheme,
            n=str(len(self)),
        )
        target = Path(path)
        with atomic_path(target) as tmp:
            save_file({"codes": self.data.detach().cpu().contiguous()}, str(tmp), metadata=header)
        return target

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu", *, mmap: bool = False
    ) -> PackedCodes:
        """Read codes written by :meth:`save`; checks the header against the data.

        With ``mmap=True`` (CPU only) the codes stay on disk as a read-only memory map and
        are paged in block by block, so :func:`~hyperlens.hdc.search` can scan files larger
        than memory.
        """
        codes, _ = cls.load_with_metadata(path, device=device, mmap=mmap)
        return codes

    @classmethod
    def load_with_metadata(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        *,
        mmap: bool = False,
    ) -> tuple[PackedCodes, dict[str, str]]:
        """Like :meth:`load`, also returning the file's header entries."""
        from safetensors import SafetensorError, safe_open

        p = Path(path)
        if mmap and torch.device(device).type != "cpu":
            raise InputError(
                f"mmap=True maps the file into CPU memory, so it needs device='cpu', got "
                f"device={device!r}; load with mmap=False to read onto {device}."
            )
        if not p.is_file():
            raise DataError(
                f"path={str(p)!r} does not exist; write codes with PackedCodes.save() first."
            )
        try:
            with safe_open(str(p), framework="pt", device=str(torch.device(device))) as fh:
                meta = dict(fh.metadata() or {})
                if meta.get("format") != FORMAT_NAME or "codes" not in fh.keys():
                    raise DataError(
                        f"{str(p)!r} is not a hyperlens packed-codes file (header format="
                        f"{meta.get('format')!r}); write it with PackedCodes.save()."
                    )
                data = None if mmap else fh.get_tensor("codes")
        except SafetensorError as exc:
            raise DataError(f"{str(p)!r} is not a readable safetensors file: {exc}.") from exc
        if data is None:
            data = _memmap_tensor(p, "codes")
        if meta.get("version") != FORMAT_VERSION:
            raise DataError(
                f"{str(p)!r} has packed-codes format version {meta.get('version')!r}; this "
                f"hyperlens reads version {FORMAT_VERSION}."
            )
        try:
            dim = int(meta["dim"])
            scheme = meta["scheme"]
            n = int(meta["n"])
        except (KeyError, ValueError) as exc:
            raise DataError(
                f"{str(p)!r} has an incomplete header {meta}; re-save the codes."
            ) from exc
        if data.ndim != 2 or data.shape[0] != n:
            raise DataError(
                f"{str(p)!r} header says n={n} but the data has shape {tuple(data.shape)}."
            )
        try:
            return cls(data, dim, scheme), meta
        except (InputError, ShapeError) as exc:
            raise DataError(f"{str(p)!r} is inconsistent with its header: {exc}") from exc


def _memmap_tensor(path: Path, name: str) -> torch.Tensor:
    """A read-only memory map of one uint8 tensor in a safetensors file.

    The format is an 8-byte little-endian header length, a JSON header with each tensor's
    dtype, shape and byte range, then the raw data.
    """
    import json

    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(header_len))
    entry = header[name]
    if entry.get("dtype") != "U8":
        raise DataError(
            f"{str(path)!r}: tensor {name!r} has dtype {entry.get('dtype')}, expected U8."
        )
    begin, end = entry["data_offsets"]
    shape = tuple(int(v) for v in entry["shape"])
    if end - begin != int(np.prod(shape)):
        raise DataError(
            f"{str(path)!r}: tensor {name!r} has a byte range that does not fit its shape."
        )
    if begin == end:
        return torch.zeros(shape, dtype=torch.uint8)
    arr = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len + begin, shape=shape)
    import warnings

    with warnings.catch_warnings():  # torch warns that the map is read-only; we never write
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)
