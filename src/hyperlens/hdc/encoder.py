"""``TernaryEncoder``: real embeddings to ternary hypervectors, scikit-learn style.

``fit`` draws the random projection from ``seed`` and, when asked, learns per-feature
centring and scaling from the data (streamed in batches, float64 sums). ``transform``
projects, ternarises and optionally packs, batch by batch, so inputs larger than memory
(``np.memmap``) and outputs of ``10^6`` codes work in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import InputError, NotFittedError, ShapeError
from ..functional import hdc as F, packing as P
from ..utils import check_array_kind, check_min_shape, resolve_device
from .packed import PackedCodes

__all__ = ["TernaryEncoder"]

Output = Literal["dense", "twobit", "base3"]


def _n_rows(X: Any, name: str) -> int:
    check_array_kind(X, name)
    shape = getattr(X, "shape", None)
    if shape is None:
        raise InputError(
            f"{name} must be a 2-D array or tensor [n, d_in] (NumPy, np.memmap or torch), got "
            f"{type(X).__name__}; for a stream of batches use transform_batches()."
        )
    if len(shape) != 2:
        raise ShapeError(
            f"{name} must be 2-D [n, d_in], got shape {tuple(shape)}. Reshape your data: "
            f"{name}.reshape(-1, 1) for one feature or .reshape(1, -1) for one sample."
        )
    check_min_shape(tuple(shape), name)
    return int(shape[0])


def _batch_tensor(batch: Any, device: torch.device, name: str) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        t = batch
    else:
        arr = np.asarray(batch)
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float32)
            except (TypeError, ValueError) as exc:
                raise InputError(f"{name} must be numeric, got object values ({exc}).") from exc
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{name} must be numeric, got dtype {arr.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name} must be real-valued, got dtype {t.dtype}.")
    return t.to(device=device, dtype=torch.float32)


@dataclass(eq=False, repr=False)
class TernaryEncoder(TransformerMixin, BaseEstimator):
    """Project real vectors to ``dim`` dimensions and ternarise them to ``{-1, 0, +1}``.

    Args:
        dim: hypervector dimension ``d`` (seed 000 used 10,000; seed 001 used 4,096).
        threshold: ``"quantile"`` (zero a ``sparsity`` share of each row by magnitude),
            ``"tau_std"`` (zero ``|z| <= tau * std(z_row)``) or ``"fixed"`` (``|z| <= tau``);
            see :func:`hyperlens.functional.hdc.ternarize` for exact tie semantics.
        sparsity: share of zeros per code for ``"quantile"``, in ``(0, 1)``.
        tau: multiplier (``"tau_std"``) or absolute threshold (``"fixed"``).
        projection: ``"gaussian"``, ``"rademacher"`` or ``"sparse"``.
        density: non-zero share of a ``"sparse"`` projection (default ``1/sqrt(d_in)``).
        center: learn and subtract the per-feature mean in ``fit``.
        scale: learn and divide by the per-feature standard deviation in ``fit``.
        output: ``"dense"`` (``int8`` tensor), ``"twobit"`` or ``"base3"`` (:class:`PackedCodes`).
        batch_size: rows projected at once in ``fit`` and ``transform``.
        seed: seed of the projection (same seed, same bits on every device).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Fitted attributes:
        projection_: ``[d_in, dim]`` float32 random projection.
        mean_: ``[d_in]`` float32 feature means (``None`` unless ``center``).
        scale_: ``[d_in]`` float32 feature standard deviations, 1 where constant
            (``None`` unless ``scale``).
        weight_, bias_: the projection with centring and scaling folded in
            (``((x - mean_) / scale_) @ projection_ == x @ weight_ + bias_``).
        device_: the resolved torch device.
        n_features_in_: ``d_in``.

    Shapes:
        fit(X): ``[n, d_in]``; transform(X): ``[n, d_in]`` -> ``[n, dim]`` int8 or
        :class:`PackedCodes` of ``n`` codes.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 384)).astype("float32")
        >>> enc = TernaryEncoder(dim=4096, threshold="tau_std", tau=0.3, seed=0).fit(X)
        >>> codes = enc.transform(X)
        >>> tuple(codes.shape), str(codes.dtype)
        ((100, 4096), 'torch.int8')
        >>> enc.set_params(output="base3").transform(X).bytes_per_code
        820
    """

    dim: int = 10_000
    threshold: F.ThresholdKind = "quantile"
    sparsity: float = 0.7
    tau: float = 0.3
    projection: F.ProjectionKind = "gaussian"
    density: float | None = None
    center: bool = False
    scale: bool = False
    output: Output = "dense"
    batch_size: int = 4096
    seed: int = 0
    device: str = "cpu"

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> torch.device:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim <= 0:
            raise InputError(f"dim must be a positive int, got {self.dim!r}; e.g. dim=10000.")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size <= 0
        ):
            raise InputError(f"batch_size must be a positive int, got {self.batch_size!r}.")
        if self.threshold not in ("quantile", "tau_std", "fixed"):
            raise InputError(
                f"threshold must be 'quantile', 'tau_std' or 'fixed', got {self.threshold!r}."
            )
        if self.threshold == "quantile":
            F._check_sparsity(self.sparsity)
        else:
            F._check_tau(self.tau)
        if self.output not in ("dense", "twobit", "base3"):
            raise InputError(f"output must be 'dense', 'twobit' or 'base3', got {self.output!r}.")
        if self.projection not in ("gaussian", "rademacher", "sparse"):
            raise InputError(
                f"projection must be 'gaussian', 'rademacher' or 'sparse', got {self.projection!r}."
            )
        return resolve_device(self.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "projection_"):
            raise NotFittedError(
                "This TernaryEncoder is not fitted yet; call fit(X) before transform(X)."
            )

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> TernaryEncoder:
        """Draw the projection and, if ``center`` / ``scale``, learn feature statistics.

        ``X`` is read in ``batch_size`` row slices, so a ``np.memmap`` larger than memory works.

        Shapes:
            X: ``[n, d_in]``
        """
        device = self._validate_params()
        if not hasattr(X, "shape"):
            X = np.asarray(X, dtype=np.float32)
        n = _n_rows(X, "X")
        d_in = int(X.shape[1])
        mean = scale = None
        if not (self.center or self.scale):  # no statistics needed, but refuse NaN / Inf
            for start in range(0, n, self.batch_size):
                self._batch(X, start, device)
        if self.center or self.scale:
            s1 = torch.zeros(d_in, dtype=torch.float64, device=device)
            s2 = torch.zeros(d_in, dtype=torch.float64, device=device)
            for start in range(0, n, self.batch_size):
                xb = self._batch(X, start, device).to(torch.float64)
                s1 += xb.sum(0)
                s2 += (xb * xb).sum(0)
            mu = s1 / n
            if self.center:
                mean = mu.to(torch.float32)
            if self.scale:
                var = (s2 / n - mu * mu).clamp_min(0.0)
                sd = var.sqrt()
                sd = torch.where(sd > 1e-12 * (mu.abs() + 1.0), sd, torch.ones_like(sd))
                scale = sd.to(torch.float32)
        self.n_features_in_ = d_in
        self.mean_ = mean
        self.scale_ = scale
        self.projection_ = F.random_projection(
            d_in, self.dim, self.projection, self.seed, density=self.density, device=device
        )
        # Fold the affine preprocessing into the projection: ((x - m) / s) @ R = x @ W + b.
        weight = self.projection_
        bias = None
        if scale is not None:
            weight = weight / scale.unsqueeze(1)
        if mean is not None:
            bias = -(mean.unsqueeze(0) @ weight).squeeze(0)
        self.weight_ = weight
        self.bias_ = bias
        self.device_ = device
        return self

    # ------------------------------------------------------------------ transform
    def _batch(self, X: Any, start: int, device: torch.device) -> torch.Tensor:
        stop = min(start + self.batch_size, int(X.shape[0]))
        xb = _batch_tensor(X[start:stop], device, "X")
        F._check_finite_rows(xb, f"X (rows {start} to {stop - 1})")
        return xb

    def project(self, X: Any) -> torch.Tensor:
        """The real-valued projection (after centring / scaling), before ternarisation.

        Shapes:
            X: ``[n, d_in]`` -> ``[n, dim]`` float32
        """
        self._check_fitted()
        if not hasattr(X, "shape"):
            X = np.asarray(X, dtype=np.float32)
        n = _n_rows(X, "X")
        self._check_width(X)
        out = torch.empty(n, self.dim, dtype=torch.float32, device=self.device_)
        for start in range(0, n, self.batch_size):
            z = self._project_batch(self._batch(X, start, self.device_))
            out[start : start + z.shape[0]] = z
        return out

    def _check_width(self, X: Any) -> None:
        if int(X.shape[1]) != self.n_features_in_:
            raise ShapeError(
                f"X has {int(X.shape[1])} features, but TernaryEncoder is expecting "
                f"{self.n_features_in_} features as input (the width seen in fit); pass "
                "embeddings of the same model or refit."
            )

    def _project_batch(self, xb: torch.Tensor) -> torch.Tensor:
        z = xb @ self.weight_
        if self.bias_ is not None:
            z += self.bias_
        return z

    def _encode_batch(self, xb: torch.Tensor) -> torch.Tensor:
        z = self._project_batch(xb)
        return F.ternarize(z, self.threshold, self.sparsity, self.tau, check_finite=False)

    def transform(self, X: Any, output: Output | None = None) -> torch.Tensor | PackedCodes:
        """Encode ``X`` batch by batch; ``output`` overrides the constructor's choice.

        Returns a dense ``int8`` tensor ``[n, dim]`` or :class:`PackedCodes`; only the
        output and one batch are in memory at a time.

        Shapes:
            X: ``[n, d_in]`` -> ``[n, dim]`` int8, or PackedCodes of ``n`` codes
        """
        self._check_fitted()
        out_kind = self.output if output is None else output
        if out_kind not in ("dense", "twobit", "base3"):
            raise InputError(f"output must be 'dense', 'twobit' or 'base3', got {out_kind!r}.")
        if not hasattr(X, "shape"):
            X = np.asarray(X, dtype=np.float32)
        n = _n_rows(X, "X")
        self._check_width(X)
        if out_kind == "dense":
            dense = torch.empty(n, self.dim, dtype=torch.int8, device=self.device_)
            for start in range(0, n, self.batch_size):
                codes = self._encode_batch(self._batch(X, start, self.device_))
                dense[start : start + codes.shape[0]] = codes
            return dense
        packed = PackedCodes.empty(n, self.dim, out_kind, self.device_)
        for start in range(0, n, self.batch_size):
            codes = self._encode_batch(self._batch(X, start, self.device_))
            packed.data[start : start + codes.shape[0]] = P.pack(
                codes, out_kind, check_values=False
            )
        return packed

    def transform_batches(
        self, batches: Iterable[Any], output: Output | None = None
    ) -> Iterator[torch.Tensor | PackedCodes]:
        """Encode a stream of ``[b, d_in]`` batches, yielding one result per batch.

        Batches larger than ``batch_size`` are split internally; nothing else is kept.
        """
        self._check_fitted()
        for i, batch in enumerate(batches):
            if not hasattr(batch, "shape"):
                batch = np.asarray(batch)
            _n_rows(batch, f"batch {i}")
            self._check_width(batch)
            yield self.transform(batch, output=output)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``hdc0 .. hdc{dim-1}`` for scikit-learn pipelines."""
        self._check_fitted()
        return np.asarray([f"hdc{i}" for i in range(self.dim)], dtype=object)
