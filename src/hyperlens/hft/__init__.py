"""HyperField transformer: distil a teacher LM into a routed HyperTensor mixture over
sketched token context.

- :mod:`~hyperlens.hft.capture`: teacher states, q/k/v and targets in float16 shards;
- :mod:`~hyperlens.hft.features`: window embeddings, hashed n-grams, phases, sketched;
- :mod:`~hyperlens.hft.layer`: :class:`HyperTensorLayer` (planes, bands, three controls,
  routed top-k mixing, high-error reseeding, the seed's online rule);
- :mod:`~hyperlens.hft.model`: the two-stage student, the equal-size MLP, the tuned lens;
- :mod:`~hyperlens.hft.ngram`: interpolated modified Kneser-Ney baselines;
- :mod:`~hyperlens.hft.train`, :mod:`~hyperlens.hft.evaluate`, :mod:`~hyperlens.hft.checks`,
  :mod:`~hyperlens.hft.generate`: training, held-out metrics, information-flow checks,
  rolling-buffer inference.
"""

from __future__ import annotations

from .capture import Capture, CaptureConfig, Unembedding, load_capture, run_capture
from .features import FeatureConfig, Featurizer
from .layer import HyperTensorLayer
from .model import HyperFieldModel, MLPStudent, TunedLens
from .ngram import KneserNey

__all__ = [
    "Capture", "CaptureConfig", "Unembedding", "load_capture", "run_capture",
    "FeatureConfig", "Featurizer", "HyperTensorLayer", "HyperFieldModel", "MLPStudent",
    "TunedLens", "KneserNey",
]
