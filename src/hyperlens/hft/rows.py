"""Rows of a ``.npy`` file read on demand, so a training set larger than memory stays out of it.

A memory map of the stored features would be simplest, but every page an epoch touches
then counts in the process's resident memory until the end (a 250k-row featurisation is
4 GB of float16). :class:`RowFile` reads the rows a batch asks for with ``pread`` instead:
the operating system's page cache still keeps a file that fits, but it is not the
process's memory, and the kernel gives it back under pressure.

``rf[a:b]`` and ``rf[idx]`` (an index tensor or array, any order) return tensors;
``rf.rows(a, b)`` is a view of rows ``a..b`` (nothing read); ``rf.take_rows(idx)`` is what
the training loop calls for a batch; ``len(rf)`` and ``rf.shape`` as for an array.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

__all__ = ["RowFile"]


class RowFile:
    """The rows ``start..stop`` of a 2-D ``.npy`` file (C order), read with ``pread``."""

    def __init__(self, path: str | Path, start: int = 0, stop: int | None = None) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(f)
            except ValueError as exc:
                raise DataError(f"{self.path} is not a readable .npy file ({exc}); delete it "
                                "and its folder to compute the features again.") from exc
            self._offset = f.tell()
        if fortran or len(shape) != 2:
            raise DataError(f"{self.path} holds a {'Fortran-order ' if fortran else ''}"
                            f"{len(shape)}-D array; expected 2-D rows in C order.")
        self.dtype = np.dtype(dtype)
        self._n, self._width = int(shape[0]), int(shape[1])
        self._row = self._width * self.dtype.itemsize
        need = self._offset + self._n * self._row
        if os.path.getsize(self.path) < need:
            raise DataError(f"{self.path} is truncated ({os.path.getsize(self.path)} of {need} "
                            "bytes); delete its folder to compute the features again.")
        self.start = int(start)
        self.stop = self._n if stop is None else int(stop)
        self._fd: int | None = None
        self._pid = -1

    # a process opens its own descriptor (workers receive the object by pickling)
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None and self._pid == os.getpid():
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
        """Rows ``a..b`` (absolute) into ``out``."""
        want = (b - a) * self._row
        buf = os.pread(self._file(), want, self._offset + a * self._row)
        if len(buf) != want:
            raise DataError(f"{self.path} ended early; delete its folder to compute the "
                            "features again.")
        out[...] = np.frombuffer(buf, self.dtype).reshape(b - a, self._width)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, slice):
            a, b, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile slices take a step of 1.")
            out = np.empty((max(0, b - a), self._width), self.dtype)
            if b > a:
                self._read(self.start + a, self.start + b, out)
            return torch.from_numpy(out)
        idx = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key, np.int64)
        if idx.ndim != 1:
            raise IndexError("RowFile takes a slice or a 1-D index.")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows.")
        idx = np.where(idx < 0, idx + n, idx) + self.start
        order = np.argsort(idx, kind="stable")
        srt = idx[order]
        out = np.empty((idx.size, self._width), self.dtype)
        tmp = np.empty_like(out)
        # contiguous runs of the sorted rows are read at once
        cuts = np.flatnonzero(np.diff(srt) != 1) + 1
        for run in np.split(np.arange(srt.size), cuts) if srt.size else []:
            self._read(int(srt[run[0]]), int(srt[run[-1]]) + 1, tmp[run[0]:run[-1] + 1])
        out[order] = tmp
        return torch.from_numpy(out)

    def take_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch of rows ``idx`` (the training loop's protocol for row sources)."""
        return self[idx]

    def to(self, device: torch.device | str) -> Any:
        """Itself on the CPU; elsewhere every row, copied to ``device``."""
        if torch.device(device).type == "cpu":
            return self
        return self[:].to(device)
