"""Which implementation each multi-path kernel uses on this machine, and how to force one.

Several operations have more than one exact implementation whose speed depends on the CPU:

- ``"gemm"``: products of ternary codes, ``a @ b.T`` for ``{-1, 0, +1}`` matrices.
  ``"int8"`` (``torch._int_mm``, oneDNN; fast with VNNI), ``"amx_int8"`` (oneDNN's int8
  matmul on packed weights: AMX tiles, about 2.4x ``torch._int_mm`` on such CPUs; float32
  output, exact while ``d < 2**24``; used where one operand meets 3,000+ rows), ``"fp32"``
  (a float32 GEMM, exact while ``d < 2**24`` because every partial sum is an integer below
  ``2**24``), ``"bf16"``
  (a bfloat16 GEMM; its output keeps 8 mantissa bits, so it is exact only while
  ``d <= 256``; fast with AMX) and ``"fp64"`` (exact for any ``d < 2**53``, the last resort).
- ``"popcount"``: set bits of packed code words. ``"bitwise_count"`` (NumPy's hardware
  popcount) or ``"swar"`` (bit arithmetic in torch, any device).
- ``"select"``: the k-th smallest magnitude of every row (the quantile threshold of
  ternarisation). ``"sampled"`` (a compiled per-row pass: a threshold bracket from a sample
  of the row, narrowed by exact vectorised counts, a small selection among the few
  magnitudes left; needs numba), ``"introselect"`` (NumPy's ``np.partition`` on a copy of
  ``|x|``) or ``"topk"`` (``torch.topk``, any device).
- ``"unpack"``: two-bit packed codes to dense int8 or float32 rows. ``"compiled"`` (one
  numba pass straight into the GEMM's dtype) or ``"lut"`` (a 65,536-entry table look-up
  in torch, any device).

Every implementation of an op returns the same bits (tests/functional/test_kernels.py
checks that); only the time differs. The choice comes, in this order, from

1. :func:`force_kernels` (a context manager) or the ``HYPERLENS_KERNELS`` environment
   variable: a CPU profile (``"avx2"``, ``"avx512"``, ``"avx512_vnni"``, ``"amx"``;
   ``"native"`` = this machine) and/or per-op choices, e.g. ``HYPERLENS_KERNELS=avx2`` or
   ``HYPERLENS_KERNELS=gemm=fp32,select=introselect`` or ``avx2,select=topk``;
2. a one-time micro-probe of the GEMM implementations (:func:`probe`), cached per machine
   under the hyperlens cache (``kernels/<machine key>.json``); it only overrides the rule
   when the measured winner is clearly faster (``HYPERLENS_KERNEL_PROBE=0`` turns it off);
3. the capability rule (:func:`rule`): int8 where VNNI is usable, else float32; bf16 only
   where native bf16/AMX exists and ``d <= 256``; the sampled selection where numba is
   installed; NumPy's popcount on the CPU.

A profile changes only what hyperlens chooses. To also make torch, oneDNN, MKL and numba
behave like that CPU (what ``benchmarks/bench_hdc.py --kernels avx2`` does), start the
process with :func:`emulation_env` added to the environment.

CUDA tensors keep their paths: int8 ``torch._int_mm`` (padded for cuBLASLt), SWAR popcount
and ``torch.topk`` selection.

Examples:
    >>> from hyperlens.functional.kernels import force_kernels, kernel_for
    >>> with force_kernels("avx2"):
    ...     kernel_for("gemm", d=10_000)
    'fp32'
    >>> with force_kernels(select="topk"):
    ...     kernel_for("select")
    'topk'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..utils import BF16_FLAGS, cpu_flags, cpu_model_name, vector_flags

__all__ = [
    "BF16_EXACT_DIM",
    "FP32_EXACT_DIM",
    "OPS",
    "PROFILES",
    "CpuFeatures",
    "cpu_features",
    "cpu_info",
    "emulation_env",
    "force_kernels",
    "forced",
    "kernel_for",
    "machine_key",
    "amx_int8_available",
    "numba_available",
    "probe",
    "rule",
]

OPS: dict[str, tuple[str, ...]] = {
    "gemm": ("int8", "amx_int8", "fp32", "bf16", "fp64"),
    "popcount": ("bitwise_count", "swar"),
    "select": ("sampled", "introselect", "topk"),
    "unpack": ("compiled", "lut"),
}
FP32_EXACT_DIM = 1 << 24  # float32 sums of d terms in {-1, 0, 1} are exact while d < 2**24
BF16_EXACT_DIM = 256  # bf16 outputs hold integers exactly up to 2**8
ENV = "HYPERLENS_KERNELS"
PROBE_ENV = "HYPERLENS_KERNEL_PROBE"
_PROBE_MARGIN = 1.3  # the probe overrides the rule only when this much faster


@dataclass(frozen=True)
class CpuFeatures:
    """What the kernel choice depends on.

    ``capability`` is torch's dispatch level (``torch.backends.cpu.get_cpu_capability()``);
    the flags say whether oneDNN can use VNNI int8 dot products, native bf16 and AMX tiles.
    """

    capability: str
    vnni: bool
    bf16: bool
    amx: bool
    profile: str = "native"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, CpuFeatures] = {
    "avx2": CpuFeatures("AVX2", vnni=False, bf16=False, amx=False, profile="avx2"),
    "avx512": CpuFeatures("AVX512", vnni=False, bf16=False, amx=False, profile="avx512"),
    "avx512_vnni": CpuFeatures("AVX512", vnni=True, bf16=False, amx=False, profile="avx512_vnni"),
    "amx": CpuFeatures("AVX512", vnni=True, bf16=True, amx=True, profile="amx"),
}

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below which VNNI / bf16 / AMX are unusable
_ISA_NO_VNNI = {"SSE41", "AVX", "AVX2", "AVX512_CORE"}
_ISA_NO_BF16 = _ISA_NO_VNNI | {"AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE_VNNI"}
_ISA_NO_AMX = _ISA_NO_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


_NATIVE: CpuFeatures | None = None


def cpu_features() -> CpuFeatures:
    """This machine's features as torch and oneDNN will use them (cached).

    Hardware flags come from torch's cpuinfo queries (``/proc/cpuinfo`` as a cross-check);
    ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA`` caps are honoured.
    """
    global _NATIVE
    if _NATIVE is not None:
        return _NATIVE
    cap = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    tc = torch.cpu

    def has(name: str, flag: str) -> bool:
        fn = getattr(tc, name, None)
        if fn is not None:
            with contextlib.suppress(RuntimeError, AttributeError):
                return bool(fn())
        return flag in flags

    vnni = has("_is_vnni_supported", "avx512_vnni") or "avx_vnni" in flags
    bf16 = has("_is_avx512_bf16_supported", "avx512_bf16") or bool(BF16_FLAGS & flags)
    amx = has("_is_amx_tile_supported", "amx_tile")
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if isa and isa != "ALL":
        vnni = vnni and isa not in _ISA_NO_VNNI
        bf16 = bf16 and isa not in _ISA_NO_BF16
        amx = amx and isa not in _ISA_NO_AMX
    _NATIVE = CpuFeatures(cap, vnni=vnni, bf16=bf16, amx=amx, profile="native")
    return _NATIVE


def cpu_info() -> dict[str, Any]:
    """CPU model, torch capability, features and the current kernel choices (for JSON)."""
    model = cpu_model_name()
    flags = cpu_flags()
    feats = features()
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "hardware_flags": sorted(
            f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2", "fma"))
        ),
        "features": feats.as_dict(),
        "forced": os.environ.get(ENV, "") or None,
        "emulation_env": {
            k: os.environ[k] for k in _EMULATION_KEYS if k in os.environ
        },
        "kernels": {op: kernel_for(op, d=10_000) for op in OPS},
        "numba": numba_available(),
    }


# --------------------------------------------------------------------------- forcing
_LOCAL = threading.local()


def _parse(spec: str) -> tuple[str | None, dict[str, str]]:
    profile: str | None = None
    ops: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" in part:
            op, impl = (s.strip() for s in part.split("=", 1))
            _check_choice(op, impl, ENV)
            ops[op] = impl
        else:
            _check_profile(part, ENV)
            profile = part
    return profile, ops


def _check_profile(name: str, where: str) -> None:
    if name != "native" and name not in PROFILES:
        raise ConfigError(
            f"{where}: unknown CPU profile {name!r}; expected one of "
            f"{('native', *PROFILES)} (e.g. HYPERLENS_KERNELS=avx2)."
        )


def _check_choice(op: str, impl: str, where: str) -> None:
    if op not in OPS:
        raise ConfigError(f"{where}: unknown kernel op {op!r}; expected one of {tuple(OPS)}.")
    if impl not in OPS[op]:
        raise ConfigError(
            f"{where}: {op}={impl!r} is not an implementation of {op}; expected one of "
            f"{OPS[op]} (e.g. {op}={OPS[op][0]})."
        )


def _stack() -> list[tuple[str | None, dict[str, str]]]:
    st = getattr(_LOCAL, "stack", None)
    if st is None:
        st = []
        _LOCAL.stack = st
    return st


@contextlib.contextmanager
def force_kernels(profile: str | None = None, **ops: str) -> Iterator[None]:
    """Use ``profile``'s choices and/or the given per-op implementations inside the block.

    Overrides ``HYPERLENS_KERNELS`` and the probe; nests (inner blocks win per op).

    Examples: ``force_kernels("avx2")``, ``force_kernels(gemm="int8", select="sampled")``.
    """
    if profile is not None:
        _check_profile(profile, "force_kernels")
    for op, impl in ops.items():
        _check_choice(op, impl, "force_kernels")
    st = _stack()
    st.append((profile, dict(ops)))
    try:
        yield
    finally:
        st.pop()


def forced() -> tuple[str | None, dict[str, str]]:
    """The profile and per-op choices in force (context managers over the environment)."""
    profile, ops = _parse(os.environ.get(ENV, ""))
    for p, o in _stack():
        if p is not None:
            profile = p
        ops = {**ops, **o}
    return profile, ops


def features() -> CpuFeatures:
    """The features choices are made for: the forced profile's, else this machine's."""
    profile, _ = forced()
    if profile is None or profile == "native":
        return cpu_features()
    return PROFILES[profile]


# --------------------------------------------------------------------------- choice
_NUMBA: bool | None = None
_AMX_OP: bool | None = None


def amx_int8_available() -> bool:
    """Whether torch has oneDNN's packed int8 matmul (``torch.ops.onednn.qlinear_*``)."""
    global _AMX_OP
    if _AMX_OP is None:
        try:
            _AMX_OP = hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(
                torch.ops.onednn, "qlinear_prepack"
            )
        except (AttributeError, RuntimeError):
            _AMX_OP = False
    return _AMX_OP


def numba_available() -> bool:
    """Whether numba imports (the compiled ``"sampled"`` selection needs it)."""
    global _NUMBA
    if _NUMBA is None:
        try:
            import numba  # noqa: F401

            _NUMBA = True
        except ImportError:
            _NUMBA = False
    return _NUMBA


def _exact(op: str, impl: str, d: int | None) -> bool:
    if op != "gemm" or d is None:
        return True
    if impl in ("fp32", "amx_int8"):
        return d < FP32_EXACT_DIM
    if impl == "bf16":
        return d <= BF16_EXACT_DIM
    return True


def _usable(op: str, impl: str, device: str) -> bool:
    if device != "cpu":
        return (op, impl) in {("gemm", "int8"), ("gemm", "fp64"), ("popcount", "swar"),
                              ("select", "topk"), ("unpack", "lut")}
    if (op, impl) in (("select", "sampled"), ("unpack", "compiled")):
        return numba_available()
    if (op, impl) == ("gemm", "amx_int8"):
        return amx_int8_available()
    if op == "popcount" and impl == "bitwise_count":
        return hasattr(np, "bitwise_count")
    return True


SMALL_GEMM = 1 << 22  # n * m * d at or below which the float32 GEMM is used (set-up cost)


def rule(
    op: str, feats: CpuFeatures | None = None, *, d: int | None = None, work: int | None = None
) -> str:
    """The capability rule's choice for ``op`` on a CPU with ``feats`` (default: in force).

    ``d`` is the code dimension and ``work`` the product size ``n * m * d`` of a GEMM.
    """
    f = feats if feats is not None else features()
    if op == "gemm":
        if work is not None and work <= SMALL_GEMM and (d is None or d < FP32_EXACT_DIM):
            return "fp32"
        if f.amx and f.bf16 and d is not None and d <= BF16_EXACT_DIM:
            return "bf16"
        if f.amx and (d is None or d < FP32_EXACT_DIM) and amx_int8_available():
            return "amx_int8"
        if f.vnni:
            return "int8"
        return "fp32" if d is None or d < FP32_EXACT_DIM else "int8"
    if op == "popcount":
        return "bitwise_count" if _usable(op, "bitwise_count", "cpu") else "swar"
    if op == "select":
        return "sampled" if numba_available() else "introselect"
    if op == "unpack":
        return "compiled" if numba_available() else "lut"
    raise InputError(f"op must be one of {tuple(OPS)}, got {op!r}.")


def kernel_for(
    op: str,
    *,
    device: str | torch.device = "cpu",
    d: int | None = None,
    work: int | None = None,
) -> str:
    """The implementation of ``op`` to use for tensors on ``device``.

    ``d`` is the code dimension and ``work`` the GEMM size ``n * m * d`` (small products
    use float32 unless an implementation is forced).

    A forced choice that cannot run here (numba missing) or cannot be exact for ``d``
    (``fp32`` with ``d >= 2**24``, ``bf16`` with ``d > 256``) is passed over for the rule's.
    """
    if op not in OPS:
        raise InputError(f"op must be one of {tuple(OPS)}, got {op!r}.")
    dev = torch.device(device).type
    if dev != "cpu":
        return {"gemm": "int8", "popcount": "swar", "select": "topk", "unpack": "lut"}[op]
    profile, ops = forced()
    impl = ops.get(op)
    if impl is not None and _usable(op, impl, dev) and _exact(op, impl, d):
        return impl
    chosen = rule(op, d=d, work=work)
    if profile is None and op == "gemm" and (work is None or work > SMALL_GEMM):
        # the probe settles int8 against float32 (the rule's other choices stand)
        probed = _probed_gemm() if chosen in ("int8", "fp32") else None
        if probed in ("int8", "fp32") and _exact(op, probed, d):
            return probed
    return chosen


# --------------------------------------------------------------------------- probe
_EMULATION_KEYS = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "NUMBA_CPU_NAME",
)


def machine_key() -> str:
    """A short hash of what the GEMM speeds depend on: CPU, capability, torch, threads, caps."""
    parts = {
        "machine": platform.machine(),
        "flags": vector_flags(),
        "model": cpu_model_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "env": {k: os.environ.get(k, "") for k in _EMULATION_KEYS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


_PROBED: dict[str, str | None] = {}


def _probe_path() -> Any:
    from ..utils import cache_dir

    return cache_dir("kernels") / f"{machine_key()}.json"


def _probed_gemm() -> str | None:
    if os.environ.get(PROBE_ENV, "1") == "0":
        return None
    key = machine_key()
    if key in _PROBED:
        return _PROBED[key]
    result: str | None = None
    try:
        path = _probe_path()
        if path.is_file():
            result = json.loads(path.read_text()).get("gemm")
        else:
            result = probe()["gemm"]
    except (OSError, ValueError, RuntimeError):
        result = None
    if result not in OPS["gemm"]:
        result = None
    _PROBED[key] = result
    return result


def probe(repeats: int = 5, *, save: bool = True) -> dict[str, Any]:
    """Time the exact GEMM implementations on a code-search-shaped product, once.

    ``int8`` and ``fp32`` are timed interleaved on a ``256 x 2048 x 4096`` product (best of
    ``repeats``, after a warm-up); the rule's choice stands unless the other is at least
    1.3x faster. The result is written to ``kernels/<machine_key()>.json`` in the hyperlens
    cache and used by :func:`kernel_for` from then on.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-1, 2, (256, 4096), generator=gen, dtype=torch.int8)
    b = torch.randint(-1, 2, (2048, 4096), generator=gen, dtype=torch.int8)
    fa, fb = a.float(), b.float()
    bt = b.t()
    calls = {"int8": lambda: torch._int_mm(a, bt), "fp32": lambda: fa @ fb.t()}
    best = {name: float("inf") for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    chosen = "int8" if cpu_features().vnni else "fp32"  # the rule between these two
    other = "fp32" if chosen == "int8" else "int8"
    if best[other] * _PROBE_MARGIN < best[chosen]:
        chosen = other
    out = {"gemm": chosen, "seconds": best, "machine_key": machine_key(),
           "features": cpu_features().as_dict(), "shape": [256, 2048, 4096]}
    if save:
        from ..utils import atomic_write_json

        atomic_write_json(_probe_path(), out)
    _PROBED[machine_key()] = chosen
    return out


def emulation_env(profile: str) -> dict[str, str]:
    """Environment variables that make torch, oneDNN, MKL and numba behave like ``profile``.

    Must be set before torch is imported (a fresh process); includes ``HYPERLENS_KERNELS``.
    """
    _check_profile(profile, "emulation_env")
    if profile == "native":
        return {}
    isa = {"avx2": "AVX2", "avx512": "AVX512_CORE", "avx512_vnni": "AVX512_CORE_VNNI",
           "amx": "ALL"}[profile]
    return {
        ENV: profile,
        "ATEN_CPU_CAPABILITY": "avx2" if profile == "avx2" else "avx512",
        "ONEDNN_MAX_CPU_ISA": isa,
        "MKL_ENABLE_INSTRUCTIONS": "AVX2" if profile == "avx2" else "AVX512",
        "NUMBA_CPU_NAME": "haswell" if profile == "avx2" else "skylake-avx512",
    }
