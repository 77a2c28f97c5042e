"""Linear probes with confidence intervals, shared by the tour and other experiments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align.evaluate import LinearProbe, balanced_accuracy
from ..errors import InputError
from ..functional import stats

__all__ = ["ProbeResult", "linear_probe", "wilson_interval"]


def wilson_interval(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` for a proportion ``correct / n``.

    The bounds of :func:`hyperlens.functional.stats.wilson_interval`; NaN for ``n = 0``.
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    est = stats.wilson_interval(int(correct), int(n), level)
    return (est.lo, est.hi)



@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of a linear probe on held-out data, with its 95 % Wilson interval."""

    accuracy: float
    ci_low: float
    ci_high: float
    balanced_accuracy: float
    majority: float
    n_train: int
    n_test: int


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    method: str = "ridge",
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 2000,
) -> ProbeResult:
    """Standardise features, fit a linear classifier on the training part, score held-out data.

    The classifier is :class:`hyperlens.align.evaluate.LinearProbe` (standardised
    features). ``method="ridge"`` (default) is a ridge classifier whose penalty is chosen
    among 13 values from 1e-2 to 1e4 by exact leave-one-out cross-validation on the
    training part (one SVD for all penalties, so it costs about one fit); it does not
    overfit when the dimension is close to the number of training texts.
    ``method="logistic"`` is a multinomial logistic regression (L-BFGS) with inverse
    penalty ``C``.

    Shapes:
        x_train: [n_train, d], x_test: [n_test, d]; labels are integer class ids.
    """
    y_train = np.asarray(y_train)
    y_test = np.asarray(y_test)
    if np.unique(y_train).size < 2:
        raise InputError(
            "linear_probe needs at least two classes in y_train, got only "
            f"{np.unique(y_train).tolist()}; "
            "use a dataset or split with both classes."
        )
    if len(y_test) == 0:
        raise InputError("linear_probe got an empty test set; give at least one held-out row.")
    if method not in LinearProbe.METHODS:
        raise InputError(f"linear_probe method={method!r} is unknown; use 'ridge' or 'logistic'.")
    probe = LinearProbe(C=C, standardize=True, max_iter=max_iter, solver="lbfgs",
                        method=method, seed=seed).fit(x_train, y_train)
    pred = probe.predict(x_test)
    correct = int((pred == y_test).sum())
    lo, hi = wilson_interval(correct, len(y_test))
    counts = np.bincount(y_test)
    return ProbeResult(
        accuracy=correct / len(y_test),
        ci_low=lo,
        ci_high=hi,
        balanced_accuracy=balanced_accuracy(y_test, pred),
        majority=float(counts.max() / counts.sum()),
        n_train=len(y_train),
        n_test=len(y_test),
    )
