"""The embedding terrain battery: the geometry of a model's token embeddings and hidden states.

One call, :func:`run_terrain`, measures for one model:

* **norms** of the token embedding rows (percentiles, zero rows, extreme tokens);
* **cosines** between token embeddings: mean and standard deviation over *all* pairs
  (exact, from the Gram matrix of unit rows), percentiles and a histogram from a seeded
  sample, the same after centring, and the isotropic reference ``1 / sqrt(d)``;
* **eigenspectrum** of the embedding covariance: participation ratio (PR), PR / d with a
  bootstrap interval, dimensions for 80/90/95/99 % of the variance, entropy effective rank
  (of the singular values, as in :mod:`hyperlens.functional.geometry`) and stable
  rank, against the *column-shuffled* null (same per-dimension variances, no correlation);
* **pentachoron volumes** (Cayley-Menger, k = 4): the coefficient of variation of the
  volumes of random 5-token simplices against a Gaussian with the same mean and
  covariance and an isotropic Gaussian with the same total variance, each with a bootstrap
  interval; the published 0.20-0.23 band and PR / d 0.53-0.56 band are checked, not assumed;
* **digit manifold**: correlation of ``|i - j|`` with the cosine of digit tokens ``i, j`` and
  the adjacency gap (adjacent minus non-adjacent mean cosine), each against a label
  permutation null; the same for the number words "zero" ... "nine";
* **semantic categories** from :mod:`hyperlens.probes.wordlists`: within- minus
  between-category cosine against a label permutation null, per-category lifts and the
  centroid cosine matrix;
* **special tokens**: norms, norm percentile, mean cosine to ordinary tokens, pairwise cosines;
* **Euclidean distances** between sampled tokens (mean, CV, percentiles, histogram);
* **layer evolution** over a text set: per layer, token norm, pairwise token cosine (all
  tokens and within a sentence), PR of token states and of mean-pooled sentence vectors;
* **position structure**: learned absolute position vectors (cosine against offset), T5
  relative attention buckets (bias against offset per head), or rotary embeddings (no
  learned position vectors; the analytic similarity against offset is shown as such).

Static models (word vectors) have no layers and no positions; the result says so.

Sampled statistics are seeded: the same ``seed`` gives the same numbers.
"""

from __future__ import annotations

from .battery import run_terrain
from .config import TerrainConfig, TerrainSubject
from .embedding import (
    cosine_statistics,
    distance_statistics,
    norm_statistics,
    pentachoron_statistics,
    spectrum_statistics,
)
from .layers import layer_evolution, position_structure
from .plots import terrain_panel
from .tokens import category_clustering, digit_manifold, find_token_ids, special_token_statistics

__all__ = [
    "TerrainConfig",
    "TerrainSubject",
    "norm_statistics",
    "cosine_statistics",
    "distance_statistics",
    "spectrum_statistics",
    "pentachoron_statistics",
    "digit_manifold",
    "category_clustering",
    "special_token_statistics",
    "layer_evolution",
    "position_structure",
    "find_token_ids",
    "run_terrain",
    "terrain_panel",
]
