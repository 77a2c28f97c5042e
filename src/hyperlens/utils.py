"""Small shared helpers: devices, seeds, cache folders, atomic writes, progress, checks,
and the one registry pattern (classes registered by short name).

Everything here is import-light (no transformers, no matplotlib) so any layer may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from .errors import ConfigError, DataError, DeviceError, HyperlensError, InputError, ShapeError

__all__ = [
    "resolve_device",
    "make_generator",
    "derive_seed",
    "seed_everything",
    "cache_dir",
    "retain_freed_memory",
    "release_freed_memory",
    "trimmed",
    "trim_every",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_path",
    "save_safetensors",
    "load_safetensors",
    "progress",
    "Timer",
    "stable_hash",
    "as_float_matrix",
    "as_real_tensor",
    "check_array_kind",
    "check_finite",
    "check_int",
    "check_level",
    "Registry",
]

T = TypeVar("T")
C = TypeVar("C", bound=type)


# --------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | None`` into a :class:`torch.device`.

    ``"auto"`` and ``None`` pick CUDA when a GPU is visible, else the CPU. Asking for
    CUDA without a GPU raises :class:`DeviceError` instead of failing deep inside torch.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r} was requested but no CUDA GPU is visible to torch "
                f"{torch.__version__} (torch.cuda.is_available() is False); "
                "use --device cpu or --device auto, or install a CUDA build of torch."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r} asks for GPU {dev.index} but only "
                f"{torch.cuda.device_count()} GPU(s) are visible; pick an index below that."
            )
    elif dev.type not in {"cpu", "mps"}:
        raise DeviceError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    return dev


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed`` (the one randomness source)."""
    seed = check_int(seed, "seed")
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed for the random stream named by ``keys`` under base ``seed``: the one
    way to derive a seed (stable across runs, platforms and Python versions), instead of
    arithmetic such as ``seed * 10 + k`` whose streams can collide.

    >>> derive_seed(3)
    3
    >>> derive_seed(0, "split") == derive_seed(0, "split") != derive_seed(0, "init")
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}.")
    if not keys:
        return int(seed)
    text = "\x1f".join(str(k) for k in keys).encode("utf-8")
    digest = hashlib.blake2b(text, digest_size=8, key=int(seed).to_bytes(16, "little"))
    return int.from_bytes(digest.digest(), "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (for third-party code we call)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- folders
_RETAINED: bool | None = None
_LIBC: Any = None


def retain_freed_memory() -> bool:
    """Keep freed large blocks in the process heap instead of returning them to the OS.

    glibc hands allocations above its mmap threshold (128 KB, growing to at most 32 MB)
    straight to ``mmap`` and unmaps them on free, so a training step that makes and drops
    tensors of tens of MB (a ``[256, 49152]`` logit block is 50 MB) page-faults every page
    of them again on every step: a quarter of the wall time in system time on a 2-core
    CPU. Raising the mmap and trim thresholds (``mallopt``) lets the heap reuse those
    blocks; the peak resident memory is unchanged. Called by the training loop; a no-op
    (returns False) where the C library is not glibc. Idempotent.
    """
    global _RETAINED
    if _RETAINED is None:
        lib = _glibc()
        m_trim, m_mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
        _RETAINED = lib is not None and bool(lib.mallopt(m_mmap, 1 << 30)) and bool(
            lib.mallopt(m_trim, (1 << 31) - 1))
    return _RETAINED


def _glibc() -> Any:
    """The C library when it is glibc (``malloc_trim`` and ``mallopt`` exist), else None."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                lib = ctypes.CDLL("libc.so.6")
                if hasattr(lib, "malloc_trim"):
                    _LIBC = lib
            except OSError:
                pass
    return _LIBC or None


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (``malloc_trim``): after a phase whose
    large blocks :func:`retain_freed_memory` kept, so that the next phase does not start on
    top of them, and now and then in a long pass (:func:`trimmed`); glibc's own heap
    fragments too. A no-op where the C library is not glibc."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def trimmed(items: Iterable[T], every: int) -> Iterator[T]:
    """Yield ``items``, handing the heap's free pages back (:func:`release_freed_memory`)
    after every ``every`` of them.

    A long pass over batches whose buffers differ in size from batch to batch (sparse
    sketches, the last short batch) fragments a heap that :func:`retain_freed_memory`
    keeps: the free blocks never fit the next request exactly, so the heap grows with the
    number of batches (a peak 4.8 GB above the start over 65k rows of the HyperField
    featuriser's fit on real windows, 1.4 GB trimmed every ~4k rows, in 1.4x the time;
    ``benchmarks/bench_hft_fit_memory.py``). Trimming bounds it at the cost of touching
    the freed pages again.

    >>> list(trimmed(range(5), every=2))
    [0, 1, 2, 3, 4]
    """
    if every < 1:
        raise InputError(f"every must be at least 1, got {every}.")
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            release_freed_memory()


def trim_every(batch: int, rows: int = 4096) -> int:
    """How many batches of ``batch`` rows make about ``rows`` rows: the :func:`trimmed`
    period of a pass over rows (at least 1).

    >>> trim_every(2048), trim_every(256), trim_every(100_000)
    (2, 16, 1)
    """
    return max(1, rows // max(1, batch))


def cache_dir(*parts: str, create: bool = True) -> Path:
    """The hyperlens cache folder (``$HYPERLENS_CACHE``, default ``~/.cache/hyperlens``).

    Holds converted models, embedding caches and WordNet files. ``parts`` name a
    sub-folder, created on demand.
    """
    root = os.environ.get("HYPERLENS_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hyperlens"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would (0666 / 0777 minus umask).

    Temporary files and folders are created private (0600 / 0700); after the rename they
    would stay that way, so shared or served reports could not be read.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A crash or exception inside the block leaves ``path`` untouched and removes the
    temporary file, so readers never see a half-written file. Works for files and folders
    (the yielded path does not exist yet; create a file or a directory there).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    inner = tmp / target.name
    try:
        yield inner
        if not inner.exists():
            raise FileNotFoundError(f"atomic_path block did not create {inner}")
        if inner.is_file() and not inner.is_symlink():
            apply_umask(inner)
        if target.is_dir() and inner.is_dir():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
            os.replace(inner, target)
            _rmtree(backup)
        else:
            os.replace(inner, target)
    finally:
        _rmtree(tmp)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        apply_umask(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` to JSON (NumPy and torch values converted) and write it atomically."""
    return atomic_write_text(
        path, json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    )


def save_safetensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``tensors`` (and string ``metadata``) to one safetensors file, atomically.

    safetensors itself creates its files private (0600); this writes through
    :func:`atomic_path`, so the file gets the umask's mode and a crash leaves no half file.
    """
    from safetensors.torch import save_file

    target = Path(path)
    with atomic_path(target) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)
    return target


def load_safetensors(
    path: str | os.PathLike[str], *, what: str, fix: str,
    check: Callable[[dict[str, str]], None] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file, on the CPU.

    A damaged file (empty, truncated, garbage) raises :class:`DataError` naming ``what``
    (e.g. ``"adapter file"``), the path and ``fix`` (what to do about it), instead of
    safetensors' own error. ``check(metadata)`` runs before any tensor is read (a format
    test that raises its own error).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            if check is not None:
                check(meta)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise DataError(f"{what} {str(path)!r} is damaged ({exc}); {fix}.") from exc
    return tensors, meta


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy / torch scalars and arrays, paths, sets and dataclasses into JSON types.

    NaN and infinities become ``None`` so the JSON stays standard.
    """
    import dataclasses
    import math

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        val = float(obj)
        return val if math.isfinite(val) else None
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, torch.device | torch.dtype):
        return str(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


# --------------------------------------------------------------------------- progress, timing
def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool | None = None,
    unit: str = "it",
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr when ``enabled`` (default: stderr is a TTY
    or ``HYPERLENS_PROGRESS=1``; ``HYPERLENS_PROGRESS=0`` silences every bar)."""
    if enabled is None:
        env = os.environ.get("HYPERLENS_PROGRESS")
        enabled = (env == "1") if env in {"0", "1"} else sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def peak_rss_mb() -> float | None:
    """The process's peak resident memory so far in MB, or ``None`` where the platform
    cannot say.

    On Linux the high-water mark of this process image (``VmHWM``): ``ru_maxrss`` would
    carry over a forking parent's size across ``exec``, so a small child of a large
    process would report the parent's peak. Elsewhere ``ru_maxrss`` (bytes on macOS, KB on
    the other Unixes).

    Example:
        >>> peak = peak_rss_mb()
        >>> peak is None or peak > 0
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


class Timer:
    """Collect named wall-clock timings: ``with timer("embed"): ...``; ``timer.seconds``.

    ``seconds`` is the dict the timings add up in (default: a new one), so an owner such as
    :class:`hyperlens.report.Report` can have them land in its own ``timings``.
    """

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds: dict[str, float] = {} if seconds is None else seconds

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


# --------------------------------------------------------------------------- hashing, checks
def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short hex digest of ``parts`` (strings, bytes, numbers, lists), stable across runs."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode("utf-8")
        else:
            data = json.dumps(to_jsonable(part), sort_keys=True).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


def check_finite(x: torch.Tensor | np.ndarray, name: str) -> None:
    """Raise :class:`InputError` naming ``name`` and the first bad row if ``x`` has NaN/Inf."""
    t = torch.as_tensor(x)
    if t.is_floating_point() and t.numel() and bool(torch.isfinite(t.sum())):
        return  # a finite sum has no NaN or Inf terms (one reduction, no mask)
    if t.is_floating_point() or t.is_complex():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            idx = torch.nonzero(bad)[0].tolist()
            raise InputError(
                f"{name} contains NaN or Inf (first at index {tuple(idx)}, "
                f"{int(bad.sum())} value(s) in all, shape {tuple(t.shape)}); "
                "drop or impute those rows before calling."
            )


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    hint: str = "",
    error: type[HyperlensError] = InputError,
) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (either bound optional).

    The one integer check of the package: Python and NumPy integers pass; ``bool``,
    floats, strings and everything else raise ``error`` naming ``name``, the accepted
    range and what arrived, followed by ``hint`` (how to fix it). Library arguments raise
    :class:`~hyperlens.errors.InputError` (the default); configuration files and
    command-line options pass ``error=ConfigError``.

    Example:
        >>> check_int(3, "k", minimum=1)
        3
        >>> check_int(True, "k", minimum=1)
        Traceback (most recent call last):
        ...
        hyperlens.errors.InputError: k must be an int >= 1, got bool True.
    """
    if minimum is not None and maximum is not None:
        want = f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        want = f" >= {minimum}"
    elif maximum is not None:
        want = f" <= {maximum}"
    else:
        want = ""
    tail = f" {hint.strip()}" if hint.strip() else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{name} must be an int{want}, got {type(value).__name__} {value!r}.{tail}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise error(f"{name} must be >= {minimum}, got {v}.{tail}")
    if maximum is not None and v > maximum:
        raise error(f"{name} must be <= {maximum}, got {v}.{tail}")
    return v


def check_level(level: Any, name: str = "level") -> float:
    """A confidence level as a float in (0, 1), or an :class:`InputError` saying what to pass.

    Example:
        >>> check_level(0.9)
        0.9
    """
    if isinstance(level, bool) or not isinstance(level, (float, int, np.floating, np.integer)):
        raise InputError(
            f"{name} must be a float in (0, 1), got {type(level).__name__} {level!r}; "
            "use 0.95 for a 95 % interval."
        )
    if not 0.0 < float(level) < 1.0:
        raise InputError(
            f"{name} must be a float in (0, 1), got {level!r}; use 0.95 for a 95 % interval."
        )
    return float(level)


def check_array_kind(x: Any, name: str) -> None:
    """Refuse inputs no hyperlens estimator accepts: sparse matrices and complex values.

    The messages use scikit-learn's wording ("sparse input is not supported", "Complex data
    not supported") so its estimator checks recognise them.
    """
    if type(x).__module__.startswith("scipy.sparse"):
        raise InputError(
            f"{name} is a scipy sparse matrix; sparse input is not supported. Pass a dense "
            f"array ({name}.toarray())."
        )
    dtype = getattr(x, "dtype", None)
    if dtype is not None and (
        (isinstance(dtype, np.dtype) and dtype.kind == "c")
        or (isinstance(dtype, torch.dtype) and dtype.is_complex)
    ):
        raise InputError(
            f"Complex data not supported: {name} has dtype {dtype}; pass real values "
            "(e.g. the real part or the magnitude)."
        )


def check_min_shape(shape: Sequence[int], name: str, *, min_rows: int = 1) -> None:
    """Raise :class:`ShapeError` for too few rows or no columns (``shape`` is ``[n, d]``)."""
    if shape[0] < min_rows:
        raise ShapeError(
            f"{name} needs at least {min_rows} row(s), got n_samples={shape[0]} "
            f"(shape {tuple(shape)}); pass more rows."
        )
    if shape[1] == 0:
        raise ShapeError(
            f"{name} has 0 feature(s) (shape={tuple(shape)}) while a minimum of 1 is "
            "required; pass at least one column."
        )


_REAL_DTYPES = frozenset({
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
})


def as_real_tensor(x: Any, name: str, *, allow_bool: bool = True) -> torch.Tensor:
    """The one array coercion: ``x`` (tensor, ndarray, nested lists) as a real tensor.

    Tensors pass through unchanged (same dtype, device and memory); anything else goes
    through :func:`numpy.asarray` (so Python floats become float64) and shares the NumPy
    buffer. Sparse and complex inputs are refused (:func:`check_array_kind`), as are
    non-numeric values and, with ``allow_bool=False``, booleans. No shape is imposed:
    :func:`as_float_matrix` adds the ``[n, d]`` checks.

    Example:
        >>> as_real_tensor([[1, 2]], "x").dtype
        torch.int64
    """
    check_array_kind(x, name)
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
            if arr.dtype == object:
                arr = arr.astype(np.float64)
            t = torch.as_tensor(arr)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(
                f"{name} must be a numeric array or tensor, got {type(x).__name__} ({exc}); "
                "convert it to numbers first (a torch.Tensor or numpy array)."
            ) from exc
    if t.dtype not in _REAL_DTYPES or (t.dtype == torch.bool and not allow_bool):
        raise InputError(
            f"{name} must be real-valued, got dtype {t.dtype}; cast it to float first."
        )
    return t


def as_float_matrix(
    x: Any,
    name: str,
    *,
    dtype: torch.dtype | None = torch.float32,
    device: torch.device | str | None = None,
    min_rows: int = 1,
    finite: bool = True,
) -> torch.Tensor:
    """Validate and convert ``x`` (array-like) to a 2-D floating tensor ``[n, d]``.

    ``dtype=None`` keeps a floating dtype (integers and booleans become float32);
    ``device=None`` keeps the device. Raises :class:`ShapeError` for the wrong number of
    dimensions or too few rows and :class:`InputError` for NaN/Inf (when ``finite``).
    """
    t = as_real_tensor(x, name)
    if t.ndim != 2:
        raise ShapeError(
            f"{name} must be 2-D [n, d], got shape {tuple(t.shape)}. Reshape your data: "
            f"{name}.reshape(-1, 1) for one feature or .reshape(1, -1) for one sample."
        )
    check_min_shape(tuple(t.shape), name, min_rows=min_rows)
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.float32
    t = t.to(dtype=dtype, device=device)
    if finite:
        check_finite(t, name)
    return t


# --------------------------------------------------------------------------- registries
class Registry(dict[str, type[T]], Generic[T]):
    """Classes registered under short names: the one pattern behind ``register_aligner``,
    ``register_adapter`` and friends (those are this class's bound methods).

    A ``dict`` from name to class. :meth:`register` is a class decorator that checks the
    name, that the class derives from ``base`` (set once the base class exists), and that
    the name is free (``replace=True`` overrides); it sets ``cls.name``. :meth:`lookup`
    raises :class:`~hyperlens.errors.ConfigError` listing the registered names;
    :meth:`check_known` rejects options the registered class does not take.
    """

    def __init__(self, kind: str, how: str) -> None:
        super().__init__()
        self.kind = kind  # "aligner", "adapter", ...
        self.how = how  # how a user registers one, for error messages
        self.base: type | None = None

    def register(self, name: str, *, replace: bool = False) -> Callable[[C], C]:
        """Class decorator that adds a subclass of ``base`` under ``name``:
        ``@register_aligner("mine")``. Raises :class:`~hyperlens.errors.ConfigError` when
        ``name`` is taken (pass ``replace=True`` to override)."""
        if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
            raise ConfigError(
                f"register_{self.kind}(name=...) expects a short identifier such as 'ridge', "
                f"got {name!r}."
            )

        def decorate(cls: Any) -> Any:
            base = self.base
            if not (isinstance(cls, type) and (base is None or issubclass(cls, base))):
                want = base.__name__ if base is not None else "class"
                raise ConfigError(f"register_{self.kind}({name!r}) decorates {want} subclasses, "
                                  f"got {cls!r}.")
            if name in self and self[name] is not cls and not replace:
                raise ConfigError(
                    f"an {self.kind} named {name!r} is already registered ({self[name].__name__}); "
                    "pick another name or pass replace=True."
                )
            cls.name = name  # type: ignore[attr-defined]
            self[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self)

    def lookup(self, name: str) -> type[T]:
        """The class registered under ``name``."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"{self.kind}={name!r} is not registered; available: {', '.join(self.names())}. "
                f"{self.how}"
            ) from None

    def check_known(
        self, name: str, given: Iterable[str], accepted: Sequence[str], what: str
    ) -> None:
        """Raise :class:`~hyperlens.errors.ConfigError` naming the options in ``given`` that
        the class registered under ``name`` does not accept (``what``: "parameter", "field")."""
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} got unknown {what}(s) {unknown}; it accepts "
                f"{list(accepted)}."
            )


#: ``/proc/cpuinfo`` flags of native bfloat16 arithmetic (AVX-512 BF16, AMX)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def vector_flags() -> list[str]:
    """The flags that decide the CPU kernels' arithmetic (AVX, AMX, FMA), sorted."""
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))


def cpu_model_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
