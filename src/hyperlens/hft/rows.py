"""Rows of ``.npy`` files read on demand, so a training set larger than memory stays out of it.

A memory map of the stored features would be simplest, but every page an epoch touches
then counts in the process's resident memory until the end (a 250k-row featurisation is
4 GB of float16). :class:`RowFile` reads the rows a batch asks for with ``pread`` instead:
the operating system's page cache still keeps a file that fits, but it is not the
process's memory, and the kernel gives it back under pressure.

One :class:`RowFile` may span several files of the same width and dtype, one after the
other (the shards of a capture): rows are numbered across them and a read that crosses a
file boundary is split there.

``rf[a:b]`` and ``rf[idx]`` (an index tensor or array, any order) return tensors;
``rf.rows(a, b)`` is a view of rows ``a..b`` (nothing read); ``rf.take_rows(idx)`` is what
the training loop calls for a batch; ``len(rf)`` and ``rf.shape`` as for an array.
:class:`RowWriter` writes such a file block after block with plain writes, for the same
reason: the dirty pages of a memory map being filled count in the process's resident memory
(the 250k-row featurisation's 5 GB did), written pages are the page cache's.
:class:`RowArray` is the same rows with NumPy's face (``ra[rows]`` returns arrays,
``np.asarray(ra)`` reads them all), for code written against arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

__all__ = ["RowArray", "RowFile", "RowWriter", "Standardised"]


def _header(path: Path) -> tuple[int, tuple[int, ...], np.dtype[Any]]:
    """``(data offset, shape, dtype)`` of a C-order ``.npy`` file, checked for length."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
        except ValueError as exc:
            raise DataError(f"{path} is not a readable .npy file ({exc}); delete it "
                            "and its folder to compute it again.") from exc
        offset = f.tell()
    if fortran or len(shape) != 2:
        raise DataError(f"{path} holds a {'Fortran-order ' if fortran else ''}"
                        f"{len(shape)}-D array; expected 2-D rows in C order.")
    dtype = np.dtype(dtype)
    need = offset + int(shape[0]) * int(shape[1]) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise DataError(f"{path} is truncated ({os.path.getsize(path)} of {need} bytes); "
                        "delete its folder to compute it again.")
    return offset, tuple(int(s) for s in shape), dtype


class RowFile:
    """The rows ``start..stop`` of one 2-D ``.npy`` file (C order), or of several of the
    same width and dtype read as one, with ``pread``."""

    def __init__(self, path: str | Path | Sequence[str | Path], start: int = 0,
                 stop: int | None = None) -> None:
        paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
        if not paths:
            raise DataError("a row file needs at least one .npy file.")
        heads = [_header(p) for p in paths]
        widths = {(h[1][1], h[2].str) for h in heads}
        if len(widths) != 1:
            raise DataError(f"the files {[str(p) for p in paths]} differ in width or dtype "
                            f"({sorted(widths)}); they cannot be read as one.")
        self.paths = paths
        self.path = paths[0]
        self.dtype = heads[0][2]
        self._width = heads[0][1][1]
        self._row = self._width * self.dtype.itemsize
        self._offsets = [h[0] for h in heads]
        self._bounds = np.cumsum([0] + [h[1][0] for h in heads])  # first row of each file
        self._n = int(self._bounds[-1])
        self.start = int(start)
        self.stop = self._n if stop is None else int(stop)
        self._fds: dict[int, int] = {}
        self._pid = -1

    # a process opens its own descriptors (workers receive the object by pickling)
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": {}, "_pid": -1}

    def _file(self, i: int) -> int:
        if self._pid != os.getpid():
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(i)
        if fd is None:
            fd = self._fds[i] = os.open(self.paths[i], os.O_RDONLY)
        return fd

    def __del__(self) -> None:
        if getattr(self, "_pid", -1) != os.getpid():
            return
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self._width

    def rows(self, a: int, b: int | None = None) -> RowFile:
        """A view of rows ``a..b`` of this one (nothing is read)."""
        n = len(self)
        a, b, _ = slice(a, b).indices(n)
        view = RowFile.__new__(RowFile)
        view.__dict__.update(self.__getstate__())
        view.start, view.stop = self.start + a, self.start + max(a, b)
        return view

    def _read(self, a: int, b: int, out: np.ndarray) -> None:
        """Rows ``a..b`` (absolute) into ``out``, split at file boundaries."""
        i = int(np.searchsorted(self._bounds, a, side="right")) - 1
        while a < b:
            end = min(b, int(self._bounds[i + 1]))
            want = (end - a) * self._row
            at = self._offsets[i] + (a - int(self._bounds[i])) * self._row
            buf = os.pread(self._file(i), want, at)
            if len(buf) != want:
                raise DataError(f"{self.paths[i]} ended early; delete its folder to compute "
                                "it again.")
            k = out.shape[0] - (b - a)  # rows of ``out`` already filled
            out[k:k + end - a] = np.frombuffer(buf, self.dtype).reshape(end - a, self._width)
            a, i = end, i + 1

    def read(self, key: Any) -> np.ndarray:
        """Rows ``key`` (a slice of step 1 or a 1-D index, any order) as an array."""
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile slices take a step of 1.")
            out = np.empty((max(0, b - a), self._width), self.dtype)
            if b > a:
                self._read(self.start + a, self.start + b, out)
            return out
        idx = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key, np.int64)
        if idx.ndim != 1:
            raise IndexError("RowFile takes a slice or a 1-D index.")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows.")
        idx = np.where(idx < 0, idx + n, idx) + self.start
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, self._width), self.dtype)
        if idx.size:
            out[order] = self._gather(idx[order])
        return out

    def _gather(self, srt: np.ndarray) -> np.ndarray:
        """Sorted absolute rows ``srt``: each run of consecutive rows within one file is
        one ``pread`` (where each run starts and how long it is, worked out at once)."""
        fi = np.searchsorted(self._bounds, srt, side="right") - 1
        new = np.ones(srt.size, bool)
        new[1:] = (np.diff(srt) != 1) | (np.diff(fi) != 0)
        first = np.flatnonzero(new)
        length = np.diff(np.append(first, srt.size)) * self._row
        at = (np.asarray(self._offsets)[fi[first]]
              + (srt[first] - self._bounds[fi[first]]) * self._row)
        parts = []
        for f, o, m in zip(fi[first].tolist(), at.tolist(), length.tolist(), strict=True):
            buf = os.pread(self._file(f), m, o)
            if len(buf) != m:
                raise DataError(f"{self.paths[f]} ended early; delete its folder to compute "
                                "it again.")
            parts.append(buf)
        return np.frombuffer(b"".join(parts), self.dtype).reshape(srt.size, self._width)

    def __getitem__(self, key: Any) -> torch.Tensor:
        return torch.from_numpy(self.read(key))

    def take_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch of rows ``idx`` (the training loop's protocol for row sources)."""
        return self[idx]

    def to(self, device: torch.device | str) -> Any:
        """Itself on the CPU; elsewhere every row, copied to ``device``."""
        if torch.device(device).type == "cpu":
            return self
        return self[:].to(device)


class RowWriter:
    """A 2-D ``.npy`` file of ``shape`` written in order, a block of rows at a time, with
    plain writes (the header first, for the whole shape). Blocks are cast to ``dtype`` as
    NumPy casts on assignment. Leaving the ``with`` block normally checks that every row
    was written.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.npy"
    >>> with RowWriter(path, (3, 2), np.float16) as w:
    ...     w.write(np.full((2, 2), 0.1, np.float32))
    ...     w.write(np.zeros((1, 2)))
    >>> np.load(path).tolist()
    [[0.0999755859375, 0.0999755859375], [0.0999755859375, 0.0999755859375], [0.0, 0.0]]
    """

    def __init__(self, path: str | Path, shape: tuple[int, int], dtype: Any) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.written = 0
        self._f = open(self.path, "wb")  # closed by close() or __exit__
        np.lib.format.write_array_header_1_0(self._f, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": self.shape})

    def write(self, block: Any) -> None:
        """Append ``block`` (``[rows, shape[1]]``, any numeric dtype)."""
        a = np.asarray(block)
        if a.ndim != 2 or a.shape[1] != self.shape[1]:
            raise DataError(f"{self.path.name}: a block of shape {a.shape}; expected "
                            f"[rows, {self.shape[1]}].")
        if self.written + a.shape[0] > self.shape[0]:
            raise DataError(f"{self.path.name}: {self.written + a.shape[0]} rows written, "
                            f"more than the {self.shape[0]} of its header.")
        np.ascontiguousarray(a.astype(self.dtype, copy=False)).tofile(self._f)
        self.written += int(a.shape[0])

    def close(self) -> None:
        """Close the file; raises :class:`DataError` if rows are missing."""
        self._f.close()
        if self.written != self.shape[0]:
            raise DataError(f"{self.path.name}: {self.written} of {self.shape[0]} rows "
                            "written.")

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.close()
        else:
            self._f.close()


class RowArray:
    """The rows of a :class:`RowFile` as NumPy arrays: ``ra[slice or index]`` and
    ``np.asarray(ra)`` read them, ``ra.file`` is the tensor-returning row source."""

    def __init__(self, file: RowFile) -> None:
        self.file = file

    @property
    def shape(self) -> tuple[int, int]:
        return self.file.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.file.dtype

    ndim = 2

    def __len__(self) -> int:
        return len(self.file)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):  # rows first, then the rest as NumPy indexes them
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])] if rows.ndim == 2 else rows[key[1:]]
        if isinstance(key, (int, np.integer)):
            return self.file.read(np.array([key]))[0]
        if isinstance(key, np.ndarray) and key.dtype == bool:
            key = np.flatnonzero(key)
        return self.file.read(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.file.read(slice(None))
        return a if dtype is None else a.astype(dtype, copy=False)

    def head(self, n: int) -> RowArray:
        """The first ``n`` rows (nothing read)."""
        return RowArray(self.file.rows(0, n))


def _part(v: Any, a: int, b: int) -> Any:
    return v.rows(a, b) if hasattr(v, "rows") else v[a:b]


def _get(v: Any, key: Any) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v[torch.as_tensor(key) if not isinstance(key, slice) else key]
    return v[key]


class Standardised:
    """Row sources side by side (``[n, d_i]`` each: :class:`RowFile`, tensor), z-scored
    with ``mean`` and ``std`` (``[sum d_i]``) as the rows are read: a standardised copy of
    every row is never held. Rows come back in ``dtype``, computed in float32."""

    def __init__(self, sources: Sequence[Any], mean: torch.Tensor, std: torch.Tensor,
                 dtype: torch.dtype = torch.float16) -> None:
        lens = {len(s) for s in sources}
        if len(lens) != 1:
            raise DataError(f"standardised row sources differ in length ({sorted(lens)}).")
        width = sum(int(s.shape[1]) for s in sources)
        if mean.numel() != width or std.numel() != width:
            raise DataError(f"{width} columns but a mean of {mean.numel()} and a std of "
                            f"{std.numel()}.")
        self.sources, self.mean, self.std, self.dtype = list(sources), mean, std, dtype
        self._mean = mean.detach().float().cpu().numpy()
        self._std = std.detach().float().cpu().numpy()

    def __len__(self) -> int:
        return len(self.sources[0])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), int(self.mean.numel())

    def rows(self, a: int, b: int | None = None) -> Standardised:
        """A view of rows ``a..b`` (nothing read)."""
        b = len(self) if b is None else b
        return Standardised([_part(s, a, b) for s in self.sources], self.mean, self.std,
                            self.dtype)

    def __getitem__(self, key: Any) -> torch.Tensor:
        # in NumPy: a batch is small, and torch's thread pool costs more than the arithmetic
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        parts = [_get(s, key) for s in self.sources]
        raw = np.empty((int(parts[0].shape[0]), int(self.mean.numel())), np.float32)
        c = 0
        for p in parts:
            raw[:, c:c + p.shape[1]] = p.numpy()
            c += p.shape[1]
        raw -= self._mean
        raw /= self._std
        return torch.from_numpy(raw).to(self.dtype)

    def take_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch of rows ``idx`` (the training loop's protocol for row sources)."""
        return self[idx]

    def to(self, device: torch.device | str) -> Any:
        """Itself on the CPU; elsewhere every row, standardised and copied to ``device``."""
        if torch.device(device).type == "cpu":
            return self
        n, step = len(self), 16384
        out = torch.empty(self.shape, dtype=self.dtype)
        for a in range(0, n, step):
            out[a:a + step] = self[a:a + step]
        return out.to(device)
