"""Randomised linear sketches: CountSketch, fast Walsh–Hadamard transform, SRHT, block SRHT
and a dense Gaussian sketch for comparison.

Every sketch is a random linear map ``S: R^{d_in} -> R^{d_out}`` applied to the *last*
dimension of its input (row-vector convention: ``y = x @ S.matrix()``), scaled so that
``E ||S x||^2 = ||x||^2`` and ``E <S x, S y> = <x, y>``. All four satisfy
``Var(||S x||^2 / ||x||^2) <= 2 / d_out`` (derivations in the class docstrings), which is
what the Johnson–Lindenstrauss tests in ``tests/functional/test_sketch.py`` check.

Two ways to use them:

* functions (``countsketch(x, d_out, seed=0)``, ``srht``, ``block_srht``,
  ``gaussian_sketch``) draw the operator from the seed and apply it once;
* operators (``CountSketch.draw(d_in, d_out, seed=0)`` and friends) hold the random
  signs / indices / matrix, so one draw is applied to any number of batches, moved between
  devices, composed (``compose(cs, bsrht)``) and saved (``state_dict`` / ``from_state_dict``).
  This is how a streaming pipeline such as CountSketch -> block SRHT -> PCA is built.

Randomness: every random draw uses an explicit ``seed`` (a CPU :class:`torch.Generator`
seeded with it) or a caller's ``generator``. Draws happen on the generator's device and
are then moved, so with a seed the operator's bits are the same whatever ``device`` it is
placed on. Applying an operator is deterministic on the CPU; on CUDA, ``index_add_`` in
CountSketch uses atomic adds, so sums of colliding coordinates may differ in the last bit
between runs unless ``torch.use_deterministic_algorithms(True)`` is set.

Why our own kernels: ``scipy.linalg.hadamard`` builds the dense matrix (``O(d^2)``) and
scikit-learn's random projections are NumPy/SciPy only, with no SRHT and no torch/CUDA path.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import numpy as np
import torch

from ..errors import DeviceError, InputError, ShapeError
from ..utils import check_int
from .hadamard import (
    _SPARSE_LAYOUTS,
    _as_input,
    _densify,
    _fwht_unnormalised,
    _is_power_of_two,
    _rows,
    fwht,
    hadamard_matrix,
    next_power_of_two,
)

__all__ = [
    "SketchOperator",
    "CountSketch",
    "SRHT",
    "BlockSRHT",
    "GaussianSketch",
    "ComposedSketch",
    "compose",
    "countsketch",
    "fwht",
    "srht",
    "block_srht",
    "gaussian_sketch",
    "next_power_of_two",
    "hadamard_matrix",
]



# --------------------------------------------------------------------------- validation
def _check_dims(d_in: Any, d_out: Any) -> tuple[int, int]:
    d_in = check_int(d_in, "d_in", minimum=1)
    d_out = check_int(d_out, "d_out", minimum=1)
    if d_out > d_in:
        raise InputError(
            f"d_out must not exceed d_in for a sketch (it reduces dimension), got "
            f"d_out={d_out} > d_in={d_in}; choose d_out <= {d_in}."
        )
    return d_in, d_out


def _resolve_generator(seed: Any, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise InputError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
                "pass hyperlens.utils.make_generator(seed) or use seed=."
            )
        return generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(
            f"seed must be an int, got {type(seed).__name__} {seed!r}; pass seed=0 or a "
            "torch.Generator as generator=."
        )
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


# --------------------------------------------------------------------------- operators
@dataclass(frozen=True, eq=False)
class SketchOperator(ABC):
    """A drawn random linear map ``R^{d_in} -> R^{d_out}`` applied to the last dimension.

    Subclasses are frozen dataclasses that add their random state as tensor fields and
    implement :meth:`_draw`; ``apply`` (or calling the object) maps
    ``[..., d_in] -> [..., d_out]`` and equals ``x @ self.matrix()`` up to rounding.
    """

    d_in: int
    d_out: int
    kind: ClassVar[str] = ""

    @classmethod
    def draw(
        cls,
        d_in: int,
        d_out: int,
        *,
        seed: int = 0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        **options: Any,
    ) -> Self:
        """Draw the random state from ``seed`` (or ``generator``) and place it on ``device``.

        ``options`` are the operator's own: ``block_size`` for :class:`BlockSRHT`,
        ``dtype`` for :class:`GaussianSketch` (see their ``_draw``).
        """
        own = [p.name for p in inspect.signature(cls._draw).parameters.values()
               if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(own))
        if unknown:
            raise InputError(
                f"{cls.__name__}.draw got unknown option(s) {unknown}; besides seed, generator "
                f"and device it takes {own or 'nothing'}."
            )
        d_in, d_out = _check_dims(d_in, d_out)
        gen = _resolve_generator(seed, generator)
        return cls._draw(d_in, d_out, gen, **options).to(device)

    @classmethod
    @abstractmethod
    def _draw(
        cls, d_in: int, d_out: int, gen: torch.Generator, *args: Any, **options: Any
    ) -> Self:
        """The operator drawn with ``gen``, its tensors on ``gen``'s device. Each operator
        declares its own keyword options here (``*args`` only lets it narrow the signature)."""

    @abstractmethod
    def apply(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """Sketch ``x``. Shapes: ``[..., d_in] -> [..., d_out]``.

        ``validate=False`` skips the checks of ``x`` (type, shape, finiteness, device): for
        callers that built ``x`` themselves and apply the operator once per row, where the
        checks cost more than the sketch (a wrong ``x`` then gives a torch error or a wrong
        answer, not a named one)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]: ...

    def to(self, device: torch.device | str) -> Self:
        """A copy whose random state lives on ``device``."""
        moved: dict[str, Any] = {k: v.to(device) for k, v in self._tensors().items()}
        return replace(self, **moved)

    @property
    def device(self) -> torch.device:
        return next(iter(self._tensors().values())).device

    def matrix(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The dense matrix ``M`` with ``apply(x) == x @ M`` (for tests and small sizes).

        Shapes:
            returns ``[d_in, d_out]``.
        """
        eye = torch.eye(self.d_in, dtype=dtype, device=self.device)
        return self.apply(eye)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the operator: kind, sizes and CPU tensors."""
        state: dict[str, Any] = {"kind": self.kind, "d_in": self.d_in, "d_out": self.d_out}
        state.update({k: v.detach().cpu() for k, v in self._tensors().items()})
        state.update(self._extra_state())
        return state

    def _extra_state(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def from_state_dict(state: dict[str, Any]) -> SketchOperator:
        """Rebuild an operator saved with :meth:`state_dict`."""
        kinds = {c.kind: c for c in (CountSketch, SRHT, BlockSRHT, GaussianSketch)}
        kind = state.get("kind")
        if kind not in kinds:
            raise InputError(
                f"state['kind'] must be one of {sorted(kinds)}, got {kind!r}; pass a dict "
                "written by SketchOperator.state_dict()."
            )
        cls = kinds[kind]
        fields = {k: v for k, v in state.items() if k != "kind"}
        return cls(**fields)  # type: ignore[arg-type]

    def _input(self, x: torch.Tensor, validate: bool) -> torch.Tensor:
        """``x`` checked (type, shape, finiteness, device) unless ``validate`` is False."""
        if validate:
            x = _as_input(x, "x", self.d_in)
            self._check_device(x)
        return x

    def _check_device(self, x: torch.Tensor) -> None:
        if x.device != self.device:
            raise DeviceError(
                f"x is on {x.device} but this {type(self).__name__} lives on {self.device}; "
                f"call sketch.to({str(x.device)!r}) once and reuse the returned operator."
            )


@dataclass(frozen=True, eq=False)
class CountSketch(SketchOperator):
    """CountSketch (signed feature hashing): coordinate ``j`` is added, with sign ``s_j``, to
    bucket ``h(j)``: ``(S x)_k = sum_{j: h(j) = k} s_j x_j``.

    ``h`` is uniform over ``[0, d_out)`` and ``s`` uniform over ``{-1, +1}``, both stored as
    tables of length ``d_in`` drawn from the seed (fully independent hashing, which the
    variance formula below assumes). Each input coordinate touches one output, so the cost
    is ``O(nnz)``: dense inputs use ``index_add_``, sparse COO/CSR inputs scatter their
    non-zeros only.

    ``E <Sx, Sy> = <x, y>`` and
    ``Var <Sx, Sy> = (||x||^2 ||y||^2 + <x, y>^2 - 2 sum_j x_j^2 y_j^2) / d_out``, so
    ``Var ||Sx||^2 = 2 (||x||^4 - sum_j x_j^4) / d_out <= 2 ||x||^4 / d_out``.

    Shapes:
        buckets: ``[d_in]`` int64 in ``[0, d_out)``; signs: ``[d_in]`` float32 ``+-1``.
        apply: dense ``[..., d_in]`` or sparse ``[n, d_in]`` -> ``[..., d_out]``.
    """

    buckets: torch.Tensor
    signs: torch.Tensor
    kind: ClassVar[str] = "countsketch"

    @classmethod
    def _draw(cls, d_in: int, d_out: int, gen: torch.Generator) -> Self:
        """The hash and sign tables."""
        buckets = torch.randint(0, d_out, (d_in,), generator=gen, device=gen.device)
        signs = torch.randint(0, 2, (d_in,), generator=gen, device=gen.device)
        return cls(d_in, d_out, buckets, (2 * signs - 1).to(torch.float32))

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"buckets": self.buckets, "signs": self.signs}

    def apply(self, x: torch.Tensor, *, sparse_output: bool = False, validate: bool = True
              ) -> torch.Tensor:
        """Sketch ``x``; ``sparse_output=True`` returns a coalesced sparse COO tensor
        (sparse 2-D input only), useful when ``d_out`` is large and rows are very sparse."""
        x = self._input(x, validate)
        if x.layout in _SPARSE_LAYOUTS:
            return self._apply_sparse(x, sparse_output)
        if sparse_output:
            raise InputError(
                "sparse_output=True needs a sparse COO/CSR input x; got a dense tensor. "
                "Pass x.to_sparse() or leave sparse_output=False."
            )
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.d_in)
        signed = flat * self.signs.to(flat.dtype)  # [n, d_in]
        out = torch.zeros(flat.shape[0], self.d_out, dtype=flat.dtype, device=flat.device)
        out.index_add_(1, self.buckets, signed)
        return out.reshape(*lead, self.d_out)

    def _apply_sparse(self, x: torch.Tensor, sparse_output: bool) -> torch.Tensor:
        n = x.shape[0]
        if x.layout == torch.sparse_csr:
            crow = x.crow_indices()
            cols = x.col_indices()
            rows = torch.repeat_interleave(
                torch.arange(n, device=x.device), crow[1:] - crow[:-1]
            )
            vals = x.values()
        else:
            x = x.coalesce()
            rows, cols = x.indices()
            vals = x.values()
        new_cols = self.buckets[cols]
        new_vals = vals * self.signs.to(vals.dtype)[cols]
        if sparse_output:
            return torch.sparse_coo_tensor(
                torch.stack((rows, new_cols)), new_vals, (n, self.d_out), check_invariants=False
            ).coalesce()
        out = torch.zeros(n * self.d_out, dtype=vals.dtype, device=x.device)
        out.index_add_(0, rows * self.d_out + new_cols, new_vals)  # flat index: fast path
        return out.view(n, self.d_out)


@dataclass(frozen=True, eq=False)
class SRHT(SketchOperator):
    """Subsampled randomised Hadamard transform ``S x = sqrt(d/d_out) * P H D x``.

    ``D`` flips signs at random, ``H`` is the orthonormal Walsh–Hadamard transform of size
    ``d = next_power_of_two(d_in)`` (inputs whose ``d_in`` is not a power of two are
    zero-padded at the end to ``d``; :class:`BlockSRHT` avoids most of that padding), and
    ``P`` keeps ``d_out`` coordinates sampled uniformly *without* replacement (stored sorted).
    The ``sqrt(d/d_out)`` factor makes ``E ||Sx||^2 = ||x||^2`` exactly.

    Variance: with ``y = H D x``, ``E_D sum_k y_k^4 <= 3 ||x||^4 / d``, hence
    ``Var ||Sx||^2 <= 2 ||x||^4 / d_out`` (sampling without replacement only lowers it).
    Cost ``O(d log d)`` per vector against ``O(d_in d_out)`` for a dense projection.

    Shapes:
        signs: ``[d_in]`` float32 ``+-1``; rows: ``[d_out]`` int64 in ``[0, d)``.
        apply: ``[..., d_in] -> [..., d_out]``.
    """

    signs: torch.Tensor
    rows: torch.Tensor
    kind: ClassVar[str] = "srht"

    @property
    def d_padded(self) -> int:
        """The transform length ``next_power_of_two(d_in)``."""
        return next_power_of_two(self.d_in)

    @classmethod
    def _draw(cls, d_in: int, d_out: int, gen: torch.Generator) -> Self:
        """The signs and the sampled coordinates."""
        d = next_power_of_two(d_in)
        signs = (2 * torch.randint(0, 2, (d_in,), generator=gen, device=gen.device) - 1).float()
        rows = torch.randperm(d, generator=gen, device=gen.device)[:d_out].sort().values
        return cls(d_in, d_out, signs, rows)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"signs": self.signs, "rows": self.rows}

    def apply(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        x = self._input(x, validate)
        x = _densify(x)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.d_in)
        d = self.d_padded
        # sqrt(d / d_out) * (1 / sqrt(d)) from H = 1 / sqrt(d_out), folded into the signs
        signs = self.signs.to(flat.dtype) * (1.0 / math.sqrt(self.d_out))
        out = torch.empty(flat.shape[0], self.d_out, dtype=flat.dtype, device=flat.device)
        step = max(1, min(_rows(flat, d), flat.shape[0]))
        # one zeroed buffer per call: the sign flip writes into it, the padding stays zero
        buf = torch.zeros(step, d, dtype=flat.dtype, device=flat.device)
        for start in range(0, flat.shape[0], step):  # row chunks bound the temporary memory
            chunk = flat[start : start + step]
            n = chunk.shape[0]
            torch.mul(chunk, signs, out=buf[:n, : self.d_in])
            y = _fwht_unnormalised(buf[:n])
            torch.index_select(y, 1, self.rows, out=out[start : start + n])
        return out.reshape(*lead, self.d_out)


@dataclass(frozen=True, eq=False)
class BlockSRHT(SketchOperator):
    """Block SRHT for any ``d_in``: split the input into blocks, sketch each block with its
    own signs, and add the results with independent output signs.

    Construction (the block SRHT of Balabanov, Beaupère and Grigori, 2022):
    ``x`` is zero-padded to ``p * b`` coordinates (``b = block_size``, a power of two
    ``>= d_out``; ``p = ceil(d_in / b)``) and cut into blocks ``x_1 .. x_p``;
    ``S x = sum_i E_i P H_b D_i x_i / sqrt(d_out)`` with independent input signs ``D_i``,
    the unnormalised Hadamard matrix ``H_b``, one shared set ``P`` of ``d_out`` sampled
    coordinates and independent output signs ``E_i``. Each block term is an SRHT of its
    block; the output signs make cross-block terms mean zero, so ``E ||Sx||^2 = ||x||^2``
    and ``Var ||Sx||^2 <= 2 ||x||^4 / d_out`` (same bound as a Gaussian sketch).

    Padding is below ``b`` coordinates, where :class:`SRHT` pads up to
    ``next_power_of_two(d_in)`` (for ``d_in = 20,000``: 480 zeros with ``b = 4,096`` against
    12,768 for SRHT). The default ``b = next_power_of_two(d_out)`` minimises both padding
    and work (``O(d_in log b)`` per vector); with ``b == d_out`` every coordinate is kept
    (``P`` is the identity, as a fixed reordering changes no distance) and every block term
    is an exact isometry.

    Shapes:
        signs_in: ``[p, b]``; rows: ``[d_out]``; signs_out: ``[p, d_out]``.
        apply: ``[..., d_in] -> [..., d_out]``.
    """

    signs_in: torch.Tensor
    rows: torch.Tensor
    signs_out: torch.Tensor
    kind: ClassVar[str] = "block_srht"

    @property
    def block_size(self) -> int:
        return int(self.signs_in.shape[1])

    @property
    def n_blocks(self) -> int:
        return int(self.signs_in.shape[0])

    @property
    def padding(self) -> int:
        """Number of zero coordinates appended to every input."""
        return self.n_blocks * self.block_size - self.d_in

    @classmethod
    def _draw(
        cls, d_in: int, d_out: int, gen: torch.Generator, *, block_size: int | None = None
    ) -> Self:
        """Signs and sampled coordinates; ``block_size`` defaults to
        ``next_power_of_two(d_out)``."""
        if block_size is None:
            b = next_power_of_two(d_out)
        else:
            b = check_int(block_size, "block_size", minimum=1)
            if not _is_power_of_two(b) or b < d_out:
                raise InputError(
                    f"block_size must be a power of two >= d_out={d_out}, got {b}; use "
                    f"block_size={next_power_of_two(max(b, d_out))} or leave it None."
                )
        p = -(-d_in // b)
        signs_in = 2 * torch.randint(0, 2, (p, b), generator=gen, device=gen.device) - 1
        if d_out == b:  # every coordinate is kept; a fixed order changes no distance
            rows = torch.arange(b, device=gen.device)
        else:
            rows = torch.randperm(b, generator=gen, device=gen.device)[:d_out].sort().values
        signs_out = 2 * torch.randint(0, 2, (p, d_out), generator=gen, device=gen.device) - 1
        return cls(d_in, d_out, signs_in.float(), rows, signs_out.float())

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"signs_in": self.signs_in, "rows": self.rows, "signs_out": self.signs_out}

    def apply(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        x = self._input(x, validate)
        x = _densify(x)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.d_in)
        p, b = self.n_blocks, self.block_size
        signs_in = self.signs_in.to(flat.dtype)
        signs_out = self.signs_out.to(flat.dtype) * (1.0 / math.sqrt(self.d_out))
        out = torch.empty(flat.shape[0], self.d_out, dtype=flat.dtype, device=flat.device)
        keep_all = self.d_out == b
        step = max(1, min(_rows(flat, p * b), flat.shape[0]))
        signs_in_flat = signs_in.reshape(-1)[: self.d_in]
        # one zeroed buffer per call: the sign flip writes into it, the padding stays zero
        buf = torch.zeros(step, p * b, dtype=flat.dtype, device=flat.device)
        for start in range(0, flat.shape[0], step):  # row chunks bound the temporary memory
            chunk = flat[start : start + step]
            n = chunk.shape[0]
            torch.mul(chunk, signs_in_flat, out=buf[:n, : self.d_in])
            y = _fwht_unnormalised(buf[:n].reshape(n * p, b)).reshape(n, p, b)
            z = y if keep_all else y.index_select(2, self.rows)  # [n, p, d_out]
            torch.sum(z.mul_(signs_out), dim=1, out=out[start : start + n])
        return out.reshape(*lead, self.d_out)


@dataclass(frozen=True, eq=False)
class GaussianSketch(SketchOperator):
    """Dense Gaussian projection ``S x = G^T x`` with ``G_{jk} ~ N(0, 1 / d_out)``.

    The reference point for the structured sketches: ``||Sx||^2 / ||x||^2`` is
    ``chi^2_{d_out} / d_out`` (variance ``2 / d_out``) but storage is ``d_in * d_out``
    floats and cost ``O(d_in d_out)`` per vector.

    Shapes:
        weight: ``[d_in, d_out]``; apply: ``[..., d_in] -> [..., d_out]``.
    """

    weight: torch.Tensor
    kind: ClassVar[str] = "gaussian"

    @classmethod
    def _draw(
        cls, d_in: int, d_out: int, gen: torch.Generator, *, dtype: torch.dtype = torch.float32
    ) -> Self:
        """``G`` in ``dtype``."""
        weight = torch.randn((d_in, d_out), generator=gen, device=gen.device, dtype=dtype)
        weight.mul_(1.0 / math.sqrt(d_out))
        return cls(d_in, d_out, weight)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight}

    def apply(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        x = self._input(x, validate)
        if x.layout in _SPARSE_LAYOUTS:
            return torch.sparse.mm(x, self.weight.to(x.values().dtype))
        w = self.weight.to(x.dtype)
        return x @ w


@dataclass(frozen=True, eq=False)
class ComposedSketch:
    """Operators applied one after the other, e.g. CountSketch -> block SRHT.

    Shapes:
        apply: ``[..., ops[0].d_in] -> [..., ops[-1].d_out]``.
    """

    ops: tuple[SketchOperator, ...]

    @property
    def d_in(self) -> int:
        return self.ops[0].d_in

    @property
    def d_out(self) -> int:
        return self.ops[-1].d_out

    def apply(self, x: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """Each operator in turn; ``x`` is checked once, by the first (each output is a
        valid input of the next)."""
        for i, op in enumerate(self.ops):
            x = op.apply(x, validate=validate and i == 0)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x)

    def to(self, device: torch.device | str) -> ComposedSketch:
        return ComposedSketch(tuple(op.to(device) for op in self.ops))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "composed", "ops": [op.state_dict() for op in self.ops]}

    @staticmethod
    def from_state_dict(state: dict[str, Any]) -> ComposedSketch:
        return ComposedSketch(tuple(SketchOperator.from_state_dict(s) for s in state["ops"]))


def compose(*ops: SketchOperator) -> ComposedSketch:
    """Chain sketches (applied left to right).

    Raises :class:`ShapeError` when one operator's ``d_out`` is not the next one's ``d_in``.
    """
    if not ops:
        raise InputError("compose needs at least one operator; pass e.g. compose(cs, srht).")
    for i, op in enumerate(ops):
        if not isinstance(op, SketchOperator):
            raise InputError(
                f"ops[{i}] must be a SketchOperator, got {type(op).__name__}; draw one with "
                "CountSketch.draw(...) or similar."
            )
    for i, (a, b) in enumerate(zip(ops[:-1], ops[1:], strict=True)):
        if a.d_out != b.d_in:
            raise ShapeError(
                f"ops[{i}].d_out={a.d_out} does not match ops[{i + 1}].d_in={b.d_in}; draw "
                f"ops[{i + 1}] with d_in={a.d_out}."
            )
    return ComposedSketch(tuple(ops))


# --------------------------------------------------------------------------- functions
def _d_in_of(x: Any) -> tuple[torch.Tensor, int]:
    t = _as_input(x, "x")
    return t, int(t.shape[-1])


def countsketch(
    x: torch.Tensor,
    d_out: int,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    sparse_output: bool = False,
) -> torch.Tensor:
    """CountSketch ``x`` to ``d_out`` dimensions (see :class:`CountSketch`).

    Accepts dense tensors or arrays ``[..., d_in]`` and torch sparse COO / CSR ``[n, d_in]``.

    Shapes:
        x: ``[..., d_in]`` -> ``[..., d_out]``.
    """
    t, d_in = _d_in_of(x)
    op = CountSketch.draw(d_in, d_out, seed=seed, generator=generator, device=t.device)
    return op.apply(t, sparse_output=sparse_output)


def srht(
    x: torch.Tensor, d_out: int, *, seed: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Subsampled randomised Hadamard transform of ``x`` (see :class:`SRHT`); a ``d_in``
    that is not a power of two is zero-padded to the next power of two.

    Shapes:
        x: ``[..., d_in]`` -> ``[..., d_out]``.
    """
    t, d_in = _d_in_of(x)
    return SRHT.draw(d_in, d_out, seed=seed, generator=generator, device=t.device).apply(t)


def block_srht(
    x: torch.Tensor,
    d_out: int,
    *,
    block_size: int | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Block SRHT of ``x`` for any ``d_in`` (see :class:`BlockSRHT`).

    Shapes:
        x: ``[..., d_in]`` -> ``[..., d_out]``.
    """
    t, d_in = _d_in_of(x)
    op = BlockSRHT.draw(
        d_in, d_out, block_size=block_size, seed=seed, generator=generator, device=t.device
    )
    return op.apply(t)


def gaussian_sketch(
    x: torch.Tensor, d_out: int, *, seed: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Dense Gaussian projection of ``x`` (see :class:`GaussianSketch`).

    Shapes:
        x: ``[..., d_in]`` -> ``[..., d_out]``.
    """
    t, d_in = _d_in_of(x)
    dtype = t.values().dtype if t.layout in _SPARSE_LAYOUTS else t.dtype
    op = GaussianSketch.draw(
        d_in, d_out, seed=seed, generator=generator, device=t.device, dtype=dtype
    )
    return op.apply(t)
