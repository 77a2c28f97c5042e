"""scikit-learn's estimator contract, run over every estimator hyperlens ships.

``parametrize_with_checks`` turns scikit-learn's rules (``__init__`` stores parameters,
``fit`` returns ``self``, cloning, pickling, NaN / empty / sparse / complex input refused with
a clear message, ...) into one test per estimator and check. The deviations below are
deliberate and listed with their reason; anything else that fails is a bug.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is needed for the estimator contract")
from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from hyperlens.align import available_aligners, make_aligner  # noqa: E402
from hyperlens.errors import HyperlensError, NotFittedError  # noqa: E402
from hyperlens.hdc.encoder import TernaryEncoder  # noqa: E402
from hyperlens.hdc.pca import StreamingPCA  # noqa: E402

# Small settings so the whole contract runs in seconds; defaults are checked by
# scikit-learn's own "default constructible" check.
_SMALL: dict[str, dict[str, Any]] = {"contrastive": {"epochs": 3, "shared_dim": 4,
                                                     "hidden_dim": 8, "pca_dim": 4}}

_TORCH_OUT = ("outputs are torch tensors (int8 codes / float32 projections), by design: "
              "the codes feed torch kernels and stay on the estimator's device")
_OBJECT = ("an object array holding non-numbers raises InputError (a ValueError, the one "
           "hyperlens error family), not the TypeError scikit-learn expects")
_TEACHER = ("fit(teacher, student): an aligner maps two models' embeddings of the same "
            "anchors, so its arguments are named for what they are, not X and y")

_EXPECTED: dict[str, dict[str, str]] = {
    "TernaryEncoder": {"check_dtype_object": _OBJECT,
                       "check_transformer_preserve_dtypes": _TORCH_OUT,
                       "check_fit_idempotent": _TORCH_OUT},
    "StreamingPCA": {"check_dtype_object": _OBJECT,
                     "check_transformer_preserve_dtypes": _TORCH_OUT,
                     "check_fit_idempotent": _TORCH_OUT},
    "Aligner": {"check_fit_score_takes_y": _TEACHER, "check_dtype_object": _OBJECT},
}


def _estimators() -> list[Any]:
    ests: list[Any] = [TernaryEncoder(dim=64), StreamingPCA(n_components=2)]
    ests += [make_aligner(n, **_SMALL.get(n, {})) for n in available_aligners()]
    return ests


def _expected_failed_checks(est: Any) -> dict[str, str]:
    name = type(est).__name__
    return _EXPECTED.get(name, _EXPECTED["Aligner"] if name.endswith("Aligner") else {})


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed_checks)
def test_sklearn_contract(estimator: Any, check: Any) -> None:
    check(estimator)


@pytest.mark.parametrize("est", _estimators(), ids=lambda e: type(e).__name__)
def test_clone_and_unfitted_error(est: Any) -> None:
    twin = clone(est)
    assert type(twin) is type(est) and twin.get_params() == est.get_params()
    assert twin is not est
    import numpy as np

    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(NotFittedError) as info:
        if hasattr(est, "transform_teacher"):
            est.transform_teacher(x)
        else:
            est.transform(x)
    assert isinstance(info.value, HyperlensError)


def test_streaming_pca_set_params() -> None:
    import numpy as np

    x = np.random.default_rng(0).normal(size=(50, 6))
    pca = StreamingPCA(n_components=2).fit(x)
    assert pca.set_params(n_components=3) is pca
    assert pca.transform(x).shape == (50, 3)  # the kept statistics are re-solved
    with pytest.raises(ValueError):
        pca.set_params(no_such_parameter=1)
