from __future__ import annotations

import numpy as np
import pytest

from hyperlens.errors import InputError
from hyperlens.experiments.probing import linear_probe, wilson_interval


@pytest.mark.parametrize("method", ["ridge", "logistic"])
def test_probe_separates_separable_classes(method):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = rng.normal(size=(400, 20)) + 3.0 * y[:, None] * np.eye(20)[0]
    r = linear_probe(x[:300], y[:300], x[300:], y[300:], method=method)
    assert r.accuracy > 0.9
    assert r.ci_low < r.accuracy < r.ci_high
    assert 0.4 < r.majority < 0.65 and r.n_train == 300 and r.n_test == 100


def test_probe_on_noise_is_near_chance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 50)), rng.integers(0, 2, 600)
    r = linear_probe(x[:400], y[:400], x[400:], y[400:])
    assert r.ci_low < 0.5 + 0.05 and r.accuracy < 0.62


def test_probe_rejects_single_class_and_unknown_method():
    x = np.zeros((10, 3))
    with pytest.raises(InputError, match="at least two classes"):
        linear_probe(x, np.zeros(10, int), x, np.zeros(10, int))
    with pytest.raises(InputError, match="method='svm'"):
        linear_probe(x, np.arange(10) % 2, x, np.arange(10) % 2, method="svm")


def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.1611, abs=1e-3)
