"""Transfer evaluation: ceilings, transfer accuracy, efficiency, controls and seed statistics.

The protocol, for one teacher -> student pair and one seed:

1. *Ceiling*: a linear probe trained on the student's own HDC codes of the training texts
   and tested on the student's codes of the test texts (and the same on float
   embeddings, the float ceiling).
2. *Transfer*: an aligner is fitted on paired anchor embeddings. The teacher's training
   embeddings and the student's test embeddings are mapped into the shared space, each
   side standardised with the statistics of its own mapped anchors (centre, then one
   global scale), and encoded with **one** random projection and ternary threshold
   shared by both sides, so teacher and student codes live in the same HDC space. A
   probe trained on teacher codes is scored on student codes.
3. *Scores*: accuracy, balanced accuracy, efficiency = transfer / ceiling, and
   chance-corrected efficiency = (transfer - majority) / (ceiling - majority), where
   majority is the test accuracy of always answering the training set's majority class.
   Raw efficiency flatters weak transfer on unbalanced test sets (always answering the
   majority class already scores ``majority / ceiling``); the chance-corrected figure is
   0 for that classifier and 1 at the ceiling.
4. The float control repeats 2-3 on the standardised shared-space vectors without HDC.

Across seeds, :func:`summarize` gives mean, standard deviation and a Student-t 95 %
confidence interval.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..utils import as_float_matrix, check_int
from .base import Aligner

__all__ = [
    "LinearProbe",
    "select_probe",
    "balanced_accuracy",
    "majority_accuracy",
    "check_labels",
    "check_disjoint",
    "shared_projection",
    "hdc_codes",
    "INPUT_SCALING",
    "FeatureScaler",
    "ProbeScores",
    "CeilingScores",
    "TransferScores",
    "probe_scores",
    "ceiling_scores",
    "transfer_scores",
    "efficiency",
    "chance_corrected_efficiency",
    "summarize",
]


# --------------------------------------------------------------------------- labels
def check_labels(y: Any, name: str, n: int | None = None) -> np.ndarray:
    """Validate integer class labels ``[n]`` with at least two classes; return int64."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D [n], got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise ShapeError(
            f"{name} has {arr.shape[0]} labels but the matching embeddings have {n} rows; "
            "pass one label per row."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{name} must hold integer class ids, got dtype {arr.dtype}.")
    if arr.size and arr.min() < 0:
        raise InputError(
            f"{name} must hold class ids >= 0, got minimum {arr.min()}; map labels such as -1 "
            "to 0..C-1 first."
        )
    return arr.astype(np.int64)


def _require_two_classes(y: np.ndarray, name: str) -> None:
    classes = np.unique(y)
    if classes.size < 2:
        raise InputError(
            f"{name} holds a single class ({classes.tolist()}); a classifier needs at least two. "
            "Use a stratified split or a larger sample."
        )


def check_disjoint(
    anchors: Sequence[str], test: Sequence[str], *, allow_overlap: bool = False
) -> int:
    """Count anchor texts that also occur in the test texts; refuse any unless allowed.

    Anchors are seen by the aligner, so an anchor in the test set leaks its pairing.
    Returns the number of overlapping texts (0 unless ``allow_overlap``).
    """
    overlap = set(anchors) & set(test)
    if overlap and not allow_overlap:
        example = next(iter(sorted(overlap)))
        raise InputError(
            f"{len(overlap)} anchor text(s) also appear in the test set (e.g. {example[:60]!r}); "
            "anchors must be disjoint from the test split. Draw anchors from the training "
            "split, or pass allow_overlap=True (--allow-anchor-overlap) to accept the leak."
        )
    return len(overlap)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    classes, inv = np.unique(y_true, return_inverse=True)
    hits = np.bincount(inv, weights=(y_true == y_pred).astype(np.float64), minlength=classes.size)
    counts = np.bincount(inv, minlength=classes.size)
    return float(np.mean(hits / counts))


def majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent training class."""
    top = int(np.bincount(np.asarray(y_train)).argmax())
    return float(np.mean(np.asarray(y_test) == top))


def efficiency(acc: float, ceiling: float) -> float:
    """``acc / ceiling``."""
    return float(acc / ceiling) if ceiling > 0 else float("nan")


def chance_corrected_efficiency(acc: float, ceiling: float, majority: float) -> float:
    """``(acc - majority) / (ceiling - majority)``: 0 for the majority answer, 1 at the ceiling.

    NaN when the ceiling does not beat the majority answer (nothing to transfer).
    """
    gap = ceiling - majority
    return float((acc - majority) / gap) if gap > 1e-9 else float("nan")


# --------------------------------------------------------------------------- linear probe
class LinearProbe:
    """The linear probe of the package: a scikit-learn linear classifier on (optionally
    standardised) features.

    Args:
        C: inverse L2 strength of the logistic regression (scikit-learn convention:
            ``sum_i CE_i + ||w||^2 / (2 C)``); unused by ``method="ridge"``.
        standardize: z-score features with the training rows' statistics
            (:class:`sklearn.preprocessing.StandardScaler`: population std, constant
            features left unscaled); for float embeddings, not for ternary codes.
        max_iter: solver iterations.
        solver: a scikit-learn solver, or ``"auto"``: ``newton-cholesky`` up to
            :attr:`CHOLESKY_MAX_DIM` features (one d x d Hessian per step, about six steps),
            ``newton-cg`` above (Hessian-vector products only). On the transfer study's
            probes (3,000 rows) both converged to the optimum 2-10x faster than L-BFGS,
            which needed 130-660 iterations on correlated float features and stopped short
            of the optimum on 4,096-d codes.
        method: ``"logistic"`` (multinomial logistic regression) or ``"ridge"`` (a ridge
            classifier whose penalty is chosen among 13 values from 1e-2 to 1e4 by exact
            leave-one-out cross-validation on the training rows: one SVD for all
            penalties, and no overfitting when the dimension nears the number of rows).
        dual: solve the dual problem (``solver="liblinear"``, two classes): the small
            problem when there are more features than training rows.
        seed: ``random_state`` of the solver (only the stochastic solvers use it).

    Features are read as float32 (:func:`hyperlens.utils.as_float_matrix`).

    Shapes:
        fit: ``x [n, d]``, ``y [n]``; predict: ``[N, d]`` -> ``[N]``.
    """

    CHOLESKY_MAX_DIM = 2048
    METHODS = ("logistic", "ridge")
    RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))

    def __init__(
        self, C: float = 1.0, standardize: bool = False, max_iter: int = 1000,
        solver: str = "auto", *, method: str = "logistic", dual: bool = False,
        seed: int | None = None,
    ) -> None:
        if isinstance(C, bool) or not (isinstance(C, (int, float)) and C > 0):
            raise InputError(f"C={C!r} must be > 0 (inverse regularisation strength).")
        if method not in self.METHODS:
            raise InputError(f"method={method!r} is unknown; use 'logistic' or 'ridge'.")
        self.C = C
        self.standardize = standardize
        self.max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.solver = solver
        self.method = method
        self.dual = dual
        self.seed = seed

    def fit(self, x: Any, y: Any) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
        from sklearn.preprocessing import StandardScaler

        xt = _features(x)
        yy = check_labels(y, "probe labels", xt.shape[0])
        _require_two_classes(yy, "training labels")
        self.scaler_ = StandardScaler().fit(xt) if self.standardize else None
        if self.scaler_ is not None:
            xt = self.scaler_.transform(xt)
        model: Any
        if self.method == "ridge":
            self.solver_ = "ridge-loo"
            model = RidgeClassifierCV(alphas=np.asarray(self.RIDGE_ALPHAS))
        else:
            solver = self.solver
            if solver == "auto":
                solver = "newton-cholesky" if xt.shape[1] <= self.CHOLESKY_MAX_DIM else "newton-cg"
            self.solver_ = solver
            model = LogisticRegression(C=self.C, max_iter=self.max_iter, solver=solver,
                                       dual=self.dual, random_state=self.seed)
        self.model_ = model.fit(xt, yy)
        return self

    def predict(self, x: Any) -> np.ndarray:
        xt = _features(x)
        if self.scaler_ is not None:
            xt = self.scaler_.transform(xt)
        return self.model_.predict(xt)


def _features(
    x: Any, name: str = "probe features", *, finite: bool = True, min_rows: int = 1
) -> np.ndarray:
    """Features as a float32 ``[n, d]`` NumPy array (:func:`~hyperlens.utils.as_float_matrix`)."""
    t = as_float_matrix(x, name, finite=finite, min_rows=min_rows)
    return t.detach().cpu().numpy()


def select_probe(
    x: Any, y: Any, rows: dict[str, np.ndarray], Cs: Sequence[float] = (0.01, 0.1, 1.0), *,
    max_iter: int = 500,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A standardised logistic :class:`LinearProbe` with ``C`` chosen on held-out rows.

    One probe per ``C`` is fitted on ``rows["train"]``; the first with the best accuracy
    on ``rows["val"]`` predicts ``rows["eval"]``. With more features than training rows
    and two classes, the dual problem is solved (liblinear), else L-BFGS.

    Returns:
        the predictions on the eval rows and ``{"C": chosen C, "val_acc": its accuracy}``.

    Shapes:
        x: ``[n, d]``, y: ``[n]``, rows: index arrays into both.
    """
    xa = _features(x)
    ya = np.asarray(y)
    tr = rows["train"]
    dual = xa.shape[1] > len(tr) and np.unique(ya).size == 2
    best: tuple[float, LinearProbe, float] | None = None
    for C in Cs:
        probe = LinearProbe(C=C, standardize=True, max_iter=max_iter,
                            solver="liblinear" if dual else "lbfgs", dual=dual)
        probe.fit(xa[tr], ya[tr])
        acc = float((probe.predict(xa[rows["val"]]) == ya[rows["val"]]).mean())
        if best is None or acc > best[0]:
            best = (acc, probe, C)
    if best is None:
        raise InputError("Cs is empty; pass at least one inverse regularisation strength.")
    return best[1].predict(xa[rows["eval"]]), {"C": best[2], "val_acc": best[0]}


# ------------------------------------------------------------------------ HDC in the shared space
def shared_projection(dim_in: int, hdc_dim: int, seed: int) -> torch.Tensor:
    """Gaussian random projection ``[dim_in, hdc_dim]`` drawn from ``seed`` (same bits anywhere)."""
    from ..functional.hdc import random_projection

    return random_projection(dim_in, hdc_dim, "gaussian", seed=seed)


def hdc_codes(z: Any, projection: torch.Tensor, tau: float = 0.3) -> torch.Tensor:
    """Project and ternarise each row with its own threshold ``tau * std(row)``.

    A per-row threshold makes the code invariant to the scale of each vector, which two
    different models never share.

    Shapes: ``z [N, k]``, ``projection [k, D]`` -> ``int8 [N, D]`` in ``{-1, 0, +1}``.
    """
    from ..functional.hdc import ternarize

    zt = as_float_matrix(z, "shared-space vectors")
    return ternarize(zt @ projection.to(zt.dtype), threshold="tau_std", tau=tau)


STANDARDIZE = ("scalar", "zscore", "center")
INPUT_SCALING = ("none", "zscore")


class FeatureScaler:
    """Per-feature standardisation of one model's raw embeddings, fitted on label-free rows.

    Decoder hidden states carry a few "rogue" dimensions whose variance is orders of
    magnitude above the rest (SmolLM2's last layer: mean pairwise cosine 0.84). A random
    projection, an isotropic ridge penalty or an orthogonal map is then driven by those
    few directions. ``mode="zscore"`` centres every feature and divides it by its standard
    deviation on the rows it was fitted on (in ``hyperlens transfer``: the anchor pool,
    which is disjoint from the test split); ``"none"`` passes vectors through.

    Shapes: ``fit(x [n, d])``; ``transform(x [N, d]) -> [N, d]`` float32.
    """

    def __init__(self, mode: str = "zscore") -> None:
        if mode not in INPUT_SCALING:
            raise InputError(f"input scaling {mode!r} must be one of {INPUT_SCALING}.")
        self.mode = mode

    def fit(self, x: Any) -> FeatureScaler:
        arr = _features(x, "embeddings to scale", finite=False, min_rows=0).astype(np.float64)
        if arr.shape[0] < 2:
            raise InputError(
                f"feature scaling needs at least 2 rows to estimate a spread, got {arr.shape[0]}."
            )
        self.mean_ = arr.mean(0)
        sd = arr.std(0)
        # a constant feature keeps its (zero) spread instead of being blown up to unit scale
        floor = max(float(np.median(sd)) * 1e-6, 1e-12)
        self.scale_ = np.where(sd > floor, sd, 1.0)
        return self

    def transform(self, x: Any) -> np.ndarray:
        arr = _features(x, "embeddings to scale", finite=False, min_rows=0)
        if self.mode == "none":
            return arr
        if arr.shape[1] != self.mean_.shape[0]:
            raise ShapeError(
                f"embeddings have {arr.shape[1]} features but the scaler was fitted on "
                f"{self.mean_.shape[0]}; scale each model with its own scaler."
            )
        return ((arr - self.mean_) / self.scale_).astype(np.float32)


def _standardizer(anchors: torch.Tensor, mode: str = "scalar") -> tuple[torch.Tensor, torch.Tensor]:
    """Statistics of one side's mapped anchors: their mean and a scale.

    ``"scalar"``: one scale, the RMS norm of the centred anchors; ``"zscore"``: one scale per
    shared dimension (undoes per-direction shrinkage of regression maps); ``"center"``:
    no scaling.
    """
    mu = anchors.mean(0)
    if mode == "zscore":
        return mu, anchors.std(0).clamp_min(1e-6)
    if mode == "center":
        return mu, torch.ones((), dtype=anchors.dtype)
    if mode != "scalar":
        raise InputError(f"standardize={mode!r} must be one of {STANDARDIZE}.")
    return mu, (anchors - mu).pow(2).sum(1).mean().sqrt().clamp_min(1e-12)


# --------------------------------------------------------------------------- scores
@dataclass
class ProbeScores:
    """Accuracy and balanced accuracy of one probe on one test set."""

    acc: float
    bal_acc: float


def probe_scores(
    train_x: Any, train_y: np.ndarray, test_x: Any, test_y: np.ndarray, *,
    C: float, standardize: bool,
) -> ProbeScores:
    """Fit a :class:`LinearProbe` on train, score on test."""
    probe = LinearProbe(C=C, standardize=standardize).fit(train_x, train_y)
    pred = probe.predict(test_x)
    return ProbeScores(float(np.mean(pred == test_y)), balanced_accuracy(test_y, pred))


@dataclass
class CeilingScores:
    """The student's own probes: HDC codes and float embeddings, plus the majority answer."""

    hdc: ProbeScores
    float: ProbeScores
    majority: builtins.float


def ceiling_scores(
    train: Any, y_train: Any, test: Any, y_test: Any, *,
    hdc_dim: int = 4096, tau: float = 0.3, seed: int = 0, C: float = 1.0, C_float: float = 1.0,
) -> CeilingScores:
    """Probe trained and tested on one model's own embeddings (float) and HDC codes.

    The codes use the same recipe as transfer (centre and scale by the training mean,
    shared-projection encoding), so ceiling and transfer differ only in where the
    classifier's training vectors come from.

    Shapes: ``train [n, d]``, ``test [m, d]``, labels ``[n]``, ``[m]``.
    """
    tr = as_float_matrix(train, "train embeddings")
    te = as_float_matrix(test, "test embeddings")
    if tr.shape[1] != te.shape[1]:
        raise ShapeError(f"train {tuple(tr.shape)} and test {tuple(te.shape)} widths differ.")
    ytr = check_labels(y_train, "y_train", tr.shape[0])
    yte = check_labels(y_test, "y_test", te.shape[0])
    _require_two_classes(ytr, "y_train")
    mu, scale = _standardizer(tr)
    tr, te = (tr - mu) / scale, (te - mu) / scale
    proj = shared_projection(tr.shape[1], hdc_dim, seed)
    hdc = probe_scores(hdc_codes(tr, proj, tau), ytr, hdc_codes(te, proj, tau), yte,
                       C=C, standardize=False)
    flt = probe_scores(tr, ytr, te, yte, C=C_float, standardize=True)
    return CeilingScores(hdc=hdc, float=flt, majority=majority_accuracy(ytr, yte))


@dataclass
class TransferScores:
    """One transfer cell: teacher-trained probe scored on the student, HDC and float."""

    acc: float
    bal_acc: float
    eff: float
    cc_eff: float
    float_acc: float
    float_bal_acc: float
    float_eff: float
    float_cc_eff: float
    ceiling: float
    float_ceiling: float
    majority: float
    shared_dim: int
    fit_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def transfer_scores(
    aligner: Aligner,
    teacher_anchors: Any,
    student_anchors: Any,
    teacher_train: Any,
    y_train: Any,
    student_test: Any,
    y_test: Any,
    *,
    ceiling: CeilingScores,
    hdc_dim: int = 4096,
    tau: float = 0.3,
    seed: int = 0,
    C: float = 1.0,
    C_float: float = 1.0,
    standardize: str = "scalar",
    fit: bool = True,
) -> TransferScores:
    """Fit ``aligner`` on the anchors, train on the mapped teacher, test on the mapped student.

    Shapes:
        teacher_anchors ``[a, d_t]``, student_anchors ``[a, d_s]``, teacher_train
        ``[n, d_t]``, student_test ``[m, d_s]``; labels ``[n]`` and ``[m]``.
    """
    ytr = check_labels(y_train, "y_train")
    yte = check_labels(y_test, "y_test")
    _require_two_classes(ytr, "y_train")
    start = time.perf_counter()
    if fit:
        aligner.fit(teacher_anchors, student_anchors)
    fit_seconds = time.perf_counter() - start
    to_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    za_t = to_t(aligner.transform_teacher(teacher_anchors))
    za_s = to_t(aligner.transform_student(student_anchors))
    z_tr = to_t(aligner.transform_teacher(teacher_train))
    z_te = to_t(aligner.transform_student(student_test))
    if z_tr.shape[0] != ytr.shape[0] or z_te.shape[0] != yte.shape[0]:
        raise ShapeError(
            f"teacher_train has {z_tr.shape[0]} rows for {ytr.shape[0]} labels and student_test "
            f"{z_te.shape[0]} rows for {yte.shape[0]} labels; pass one label per row."
        )
    mu_t, sc_t = _standardizer(za_t, standardize)
    mu_s, sc_s = _standardizer(za_s, standardize)
    z_tr = (z_tr - mu_t) / sc_t
    z_te = (z_te - mu_s) / sc_s
    proj = shared_projection(z_tr.shape[1], hdc_dim, seed)
    hdc = probe_scores(hdc_codes(z_tr, proj, tau), ytr, hdc_codes(z_te, proj, tau), yte,
                       C=C, standardize=False)
    flt = probe_scores(z_tr, ytr, z_te, yte, C=C_float, standardize=True)
    maj = ceiling.majority
    return TransferScores(
        acc=hdc.acc,
        bal_acc=hdc.bal_acc,
        eff=efficiency(hdc.acc, ceiling.hdc.acc),
        cc_eff=chance_corrected_efficiency(hdc.acc, ceiling.hdc.acc, maj),
        float_acc=flt.acc,
        float_bal_acc=flt.bal_acc,
        float_eff=efficiency(flt.acc, ceiling.float.acc),
        float_cc_eff=chance_corrected_efficiency(flt.acc, ceiling.float.acc, maj),
        ceiling=ceiling.hdc.acc,
        float_ceiling=ceiling.float.acc,
        majority=maj,
        shared_dim=int(z_tr.shape[1]),
        fit_seconds=fit_seconds,
    )


# --------------------------------------------------------------------------- statistics
def summarize(values: Iterable[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and Student-t confidence interval of ``values``.

    NaNs are dropped. With one value the interval collapses to the value (``std`` 0). The
    interval is :func:`hyperlens.functional.stats.t_interval`'s; this is its dict form.
    """
    from ..functional.stats import t_interval

    vals = [float("nan") if v is None else float(v) for v in values]
    est = t_interval(vals, confidence)
    if est.n == 1:
        return {"mean": est.value, "std": 0.0, "lo": est.value, "hi": est.value, "n": 1}
    return {"mean": est.value, "std": est.std, "lo": est.lo, "hi": est.hi, "n": est.n}
