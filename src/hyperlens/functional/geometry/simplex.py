"""Simplex volumes (Cayley-Menger) and the CV of sampled simplex volumes against null models."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from ...errors import InputError, ShapeError
from ...utils import (
    as_real_tensor,
    check_finite,
    check_int,
    check_level,
    derive_seed,
    make_generator,
)
from ..stats import Estimate, cv_delta_interval, from_replicates, ratio_delta_interval
from ._base import (
    _DEGENERATE_RTOL,
    _INT_DTYPES,
    _NULL_MODELS,
    NullModel,
    SimplexCV,
    _chunk_rows,
    _matrix,
    _second_moment,
    coefficient_of_variation,
)

CIMethod = Literal["auto", "bootstrap", "delta"]
_CI_METHODS = ("auto", "bootstrap", "delta")
#: from this many volumes on, ``ci="auto"`` takes the delta-method interval: at 20,000
#: volumes its bounds are within a few percent of the interval's width of a 1,000-resample
#: bootstrap (``tests/functional/test_simplex_ci.py``), and it costs one pass, not 1,000.
DELTA_MIN_VOLUMES = 20_000

# --------------------------------------------------------------------------- simplex volumes
def _volumes_from_vertices(points: torch.Tensor) -> torch.Tensor:
    """Volumes of simplices ``[m, k+1, d]`` (float64 in) -> ``[m]`` float64."""
    k = points.shape[-2] - 1
    edges = points[:, 1:, :] - points[:, :1, :]  # [m, k, d]
    gram = edges @ edges.transpose(-1, -2)  # [m, k, k]
    return _volumes_from_gram(gram, k)


def _volumes_from_gram(gram: torch.Tensor, k: int) -> torch.Tensor:
    det = torch.linalg.det(gram)  # [m]  = (k! V)^2
    bound = torch.diagonal(gram, dim1=-2, dim2=-1).prod(-1)  # Hadamard: det <= prod diag
    flat = det <= _DEGENERATE_RTOL * bound
    vol_sq = torch.where(flat, torch.zeros_like(det), det) / float(math.factorial(k)) ** 2
    return vol_sq.clamp_min(0.0).sqrt()


def cayley_menger_volume(points: Any) -> torch.Tensor:
    """k-dimensional volume of every simplex in a batch ``[..., k+1, d]``.

    Method: the Cayley-Menger determinant of a simplex equals, up to the factor
    ``(-1)^(k+1) 2^k``, the Gram determinant of its edge vectors from vertex 0, so we form
    ``E = P[1:] - P[0]`` (``[k, d]``), ``G = E E^T`` (``[k, k]``) and return
    ``sqrt(det G) / k!`` with a batched :func:`torch.linalg.det`, all in float64. The Gram
    form needs ``k x k`` rather than ``(k+2) x (k+2)`` determinants and avoids the bordered
    matrix's cancellation between squared distances, so it is both faster and more accurate
    than building the bordered matrix. Simplices whose determinant is within
    ``1e-12 * prod(diag G)`` of zero (flat to round-off; e.g. collinear or repeated points,
    or any simplex with ``k > d``) get volume exactly 0, never NaN.

    Args:
        points: vertices, any leading batch shape; ``k = points.shape[-2] - 1 >= 1``.

    Returns:
        float64 tensor of shape ``points.shape[:-2]`` on the input's device.

    Shapes:
        points: ``[..., k+1, d]`` -> ``[...]``

    Raises:
        ShapeError: fewer than 2 vertices (k < 1) or fewer than 2 dimensions.
        InputError: NaN / Inf in ``points``.
    """
    t = as_real_tensor(points, "points")
    if t.ndim < 2:
        raise ShapeError(
            f"points must have shape [..., k+1, d], got shape {tuple(t.shape)}; "
            "stack the k+1 vertices of each simplex along dimension -2."
        )
    if t.shape[-2] < 2:
        raise ShapeError(
            f"points needs k+1 >= 2 vertices per simplex (k >= 1) along dimension -2, "
            f"got shape {tuple(t.shape)}."
        )
    if t.shape[-1] < 1:
        raise ShapeError(f"points has zero coordinates per vertex (shape {tuple(t.shape)}).")
    check_finite(t, "points")
    batch = t.shape[:-2]
    kp1, d = t.shape[-2], t.shape[-1]
    flat = t.reshape(-1, kp1, d)
    out = torch.empty(flat.shape[0], dtype=torch.float64, device=t.device)
    step = _chunk_rows(kp1 * d * 8 * 2)
    for s in range(0, flat.shape[0], step):
        out[s : s + step] = _volumes_from_vertices(flat[s : s + step].to(torch.float64))
    return out.reshape(batch)


def sample_simplices(
    n: int, k: int, n_samples: int, *, seed: int = 0, device: Any = "cpu"
) -> torch.Tensor:
    """Draw ``n_samples`` sets of ``k + 1`` distinct row indices from ``range(n)``.

    Each row is a uniform random (k+1)-subset, drawn independently of the others. Small
    pools use a batched random permutation (argsort of uniform keys); large pools draw with
    replacement and redraw only the rows that contain a repeat (few, since the chance of a
    repeat is about ``(k+1)^2 / 2n``).

    Shapes:
        returns: ``[n_samples, k+1]`` int64 on ``device``.
    """
    k = check_int(k, "k", minimum=1, hint=" k is the simplex dimension; k=4 is the pentachoron.")
    n_samples = check_int(n_samples, "n_samples", minimum=1)
    n = check_int(n, "n", minimum=1)
    if n < k + 1:
        raise ShapeError(
            f"a {k}-simplex needs k+1 = {k + 1} distinct rows but the matrix has n = {n} rows; "
            f"pass more rows or a smaller k."
        )
    dev = torch.device(device)
    gen = make_generator(seed, dev)
    if n * n_samples <= 4_000_000 or (k + 1) ** 2 > n // 4:
        out = torch.empty(n_samples, k + 1, dtype=torch.int64, device=dev)
        step = max(1, 4_000_000 // n)
        for s in range(0, n_samples, step):
            m = min(step, n_samples - s)
            keys = torch.rand(m, n, generator=gen, device=dev)
            out[s : s + m] = keys.topk(k + 1, dim=1).indices
        return out
    idx = torch.randint(0, n, (n_samples, k + 1), generator=gen, device=dev)
    pairs = [(a, b) for a in range(k + 1) for b in range(a + 1, k + 1)]
    while True:
        bad = idx[:, 0] == idx[:, 1]  # a repeat: some pair of columns agrees
        for a, b in pairs[1:]:
            bad |= idx[:, a] == idx[:, b]
        n_bad = int(bad.sum())
        if n_bad == 0:
            return idx
        idx[bad] = torch.randint(0, n, (n_bad, k + 1), generator=gen, device=dev)


def simplex_volumes(X: Any, indices: Any) -> torch.Tensor:
    """Volumes of the simplices whose vertices are rows ``indices`` of ``X``.

    The rows are gathered a chunk at a time (bounded memory), centred on the column mean
    of ``X`` (volumes are translation invariant; centring keeps the float64 products well
    conditioned) and passed to the Gram-determinant kernel of :func:`cayley_menger_volume`.

    Shapes:
        X: ``[n, d]``; indices: ``[m, k+1]`` -> ``[m]`` float64.
    """
    Xt = _matrix(X, "X", min_rows=2)
    idx = torch.as_tensor(indices, device=Xt.device)
    if idx.ndim != 2 or idx.shape[1] < 2 or idx.dtype not in _INT_DTYPES - {torch.bool}:
        raise ShapeError(
            f"indices must be an integer tensor [m, k+1] with k+1 >= 2, got shape "
            f"{tuple(idx.shape)} and dtype {idx.dtype}."
        )
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= Xt.shape[0]):
        raise InputError(
            f"indices must lie in [0, {Xt.shape[0]}) for X with {Xt.shape[0]} rows, got values in "
            f"[{int(idx.min())}, {int(idx.max())}]."
        )
    return _volumes_at(Xt, idx.long())


def _centred64(X: torch.Tensor) -> torch.Tensor:
    X64 = X.to(torch.float64)
    return X64 - X64.mean(dim=0, keepdim=True)


def _volumes_at(X: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Volumes of the simplices ``idx`` ``[m, k+1]`` over the rows of ``X`` ``[n, d]``.

    Exact float64 paths: when the simplices need more than ``n^2 / 16`` pair products
    (many simplices per point, e.g. a small pool), one Gram matrix of all rows and a
    look-up per simplex (:func:`_volumes_by_gram`); otherwise, on the CPU with numba, one
    compiled pass per simplex forms its edges and their inner products from the rows in
    place with its determinant (:func:`hyperlens.functional.compiled.edge_volumes`);
    elsewhere only the inner products a simplex needs are computed: the ``(k+1)k/2`` vertex
    pairs of every simplex go into one sparse CSR pattern and a sampled dense-dense product
    (:func:`torch.sparse.sampled_addmm`) fills in ``<x_a, x_b>`` for exactly those pairs,
    reading rows of ``X`` in place. Gathering ``[m, k+1, d]`` vertex blocks instead moves
    ``(k+1) d`` floats per simplex through memory and is several times slower on CPU. The
    edge Gram matrix then follows from ``G_ij = H_ij - H_i0 - H_0j + H_00`` (rows of X are
    centred here first so the subtraction loses nothing in float64). The compiled pass
    reads float32 or float64 rows as they are: an edge of two float32 rows is exact in
    float64, so it needs no centred float64 copy of the cloud.
    """
    if _use_gram(X.shape[0], idx.shape[0], idx.shape[1]):
        return _volumes_by_gram(_centred64(X), idx)
    from ..kernels import numba_available

    if X.device.type == "cpu" and numba_available():
        from ..compiled import edge_volumes

        rows = X if X.dtype in (torch.float32, torch.float64) else X.to(torch.float32)
        vols = edge_volumes(rows.detach().contiguous().numpy(), idx.cpu().numpy(),
                            _DEGENERATE_RTOL)
        return torch.from_numpy(vols)
    return _volumes_by_pairs(_centred64(X), idx)


def _volumes_by_pairs(X64: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """:func:`_volumes_at` through the simplices' own pair products (large clouds)."""
    m, kp1 = idx.shape
    k = kp1 - 1
    out = torch.empty(m, dtype=torch.float64, device=X64.device)
    sq = (X64 * X64).sum(1)  # [n]
    iu, ju = torch.triu_indices(kp1, kp1, offset=1, device=X64.device)  # [P] vertex pairs
    step = max(1, 2_000_000 // max(1, iu.numel()))
    for s in range(0, m, step):
        ix = idx[s : s + step]  # [c, k+1]
        c = ix.shape[0]
        dots = _pair_dots(X64, ix[:, iu].reshape(-1), ix[:, ju].reshape(-1)).view(c, -1)
        H = torch.empty(c, kp1, kp1, dtype=torch.float64, device=X64.device)  # vertex Gram
        H[:, iu, ju] = dots
        H[:, ju, iu] = dots
        diag = torch.arange(kp1, device=X64.device)
        H[:, diag, diag] = sq[ix]
        G = H[:, 1:, 1:] - H[:, 1:, :1] - H[:, :1, 1:] + H[:, :1, :1]  # [c, k, k]
        out[s : s + c] = _volumes_from_gram(G, k)
    return out


GRAM_MAX_ROWS = 8192  # a float64 Gram of 8,192 rows takes 512 MiB


def _use_gram(n: int, m: int, kp1: int) -> bool:
    """Whether one float64 Gram of all ``n`` rows beats computing the simplices' pairs.

    A dense GEMM runs about 16x more flops per second than the sampled pair products, so
    the Gram wins once the simplices need more than ``n^2 / 16`` pair products.
    """
    pairs = m * kp1 * (kp1 - 1) // 2
    return n <= GRAM_MAX_ROWS and n * n <= 16 * pairs


def _volumes_by_gram(X64: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Volumes from one float64 Gram matrix ``H = X X^T`` of the (centred) rows.

    Every simplex is then a look-up of its ``(k+1)(k+2)/2`` vertex inner products and a
    ``k x k`` determinant: ``G_ij = H_ij - H_i0 - H_0j + H_00``.

    Shapes:
        X64: ``[n, d]`` float64; idx: ``[m, k+1]`` -> ``[m]`` float64
    """
    n = X64.shape[0]
    m, kp1 = idx.shape
    k = kp1 - 1
    H = (X64 @ X64.T).reshape(-1)  # [n * n]
    out = torch.empty(m, dtype=torch.float64, device=X64.device)
    step = 262_144
    for s in range(0, m, step):
        ix = idx[s : s + step]
        e = ix[:, 1:]  # [c, k] edge end points
        o = ix[:, :1]  # [c, 1] the shared vertex
        Hij = H[(e.unsqueeze(2) * n + e.unsqueeze(1)).reshape(-1)].view(-1, k, k)
        Hi0 = H[(e * n + o).reshape(-1)].view(-1, k)
        H00 = H[(o * n + o).reshape(-1)].view(-1, 1, 1)
        G = Hij - Hi0.unsqueeze(2) - Hi0.unsqueeze(1) + H00
        out[s : s + ix.shape[0]] = _volumes_from_gram(G, k)
    return out


def _pair_dots(X: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<X[a_p], X[b_p]>`` for every pair ``p`` via a sampled dense-dense product.

    Shapes:
        X: ``[n, d]``; a, b: ``[P]`` -> ``[P]``.
    """
    import warnings

    n = X.shape[0]
    # one CSR entry per distinct unordered pair (the sparse kernels want no repeats)
    key = torch.minimum(a, b) * n + torch.maximum(a, b)
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    rows = torch.div(uniq, n, rounding_mode="floor")
    crow = torch.zeros(n + 1, dtype=torch.int64, device=X.device)
    crow[1:] = torch.bincount(rows, minlength=n).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, uniq - rows * n, torch.zeros(uniq.numel(), dtype=X.dtype, device=X.device),
            size=(n, n), check_invariants=False,
        )
        vals = torch.sparse.sampled_addmm(pattern, X, X.T, beta=0.0).values()
    return vals[inverse]


def cv_ci(
    volumes: torch.Tensor,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ci: CIMethod = "bootstrap",
) -> Estimate:
    """CV (std / mean, population std) of ``volumes`` with a confidence interval.

    ``ci="bootstrap"``: a percentile bootstrap over the volumes (``n_boot`` resamples);
    ``ci="delta"``: the large-sample interval from the volumes' first four moments
    (:func:`hyperlens.functional.stats.cv_delta_interval`, one pass, no resampling);
    ``ci="auto"``: the delta method from :data:`DELTA_MIN_VOLUMES` volumes on, where the two
    agree (tested), the bootstrap below.

    Shapes:
        volumes: ``[m]`` -> Estimate.
    """
    v = volumes.to(torch.float64).flatten()
    if v.numel() < 2:
        raise InputError(
            f"volumes needs at least 2 values for a CV, got {v.numel()}; sample more simplices."
        )
    level = check_level(level)
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    if _ci_method(ci, v.numel()) == "delta":
        return cv_delta_interval(v.cpu().numpy(), level)
    point = float(coefficient_of_variation(v))  # v is 1-D, so its CV is one number
    reps = _boot_cvs(v, n_boot, seed)
    return _percentile_estimate(point, reps, level, "percentile bootstrap over simplices")


def _ci_method(ci: Any, m: int) -> str:
    if ci not in _CI_METHODS:
        raise InputError(f"ci must be one of {_CI_METHODS}, got {ci!r}.")
    if ci == "auto":
        return "delta" if m >= DELTA_MIN_VOLUMES else "bootstrap"
    return str(ci)


def _boot_cvs(v: torch.Tensor, n_boot: int, seed: int) -> torch.Tensor:
    """CVs of ``n_boot`` resamples of ``v`` with replacement.

    On the CPU with numba, replicates run in parallel in one compiled pass that draws each
    resample segment by segment (multinomial counts per block of 4,096 values, then uniform
    draws inside the block, which sits in L1) and sums as it goes, with no ``[n_boot, m]``
    index matrix (:func:`hyperlens.functional.compiled.bootstrap_cv`; 3.5x less CPU time
    than drawing one index of all ``m`` at a time, at 1,000 x 100,000); otherwise chunks
    of ``torch.randint`` indices. The two draw different (equally valid) streams.

    Shapes:
        v: ``[m]`` float64 -> ``[n_boot]`` float64
    """
    from ..kernels import numba_available

    if v.device.type == "cpu" and numba_available():
        from ..compiled import bootstrap_cv

        return torch.from_numpy(bootstrap_cv(v.numpy(), n_boot, seed))
    gen = make_generator(seed, v.device)
    reps = torch.empty(n_boot, dtype=torch.float64, device=v.device)
    step = max(1, 8_000_000 // v.numel())
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        ix = torch.randint(0, v.numel(), (b, v.numel()), generator=gen, device=v.device)
        reps[s : s + b] = coefficient_of_variation(v[ix])
    return reps


def _percentile_estimate(point: float, reps: torch.Tensor, level: float, method: str) -> Estimate:
    return from_replicates(float(point), reps, level=level, method=method)


def null_points(X: Any, null: NullModel, *, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """Draw a null-model point cloud matched to ``X``.

    * ``"gaussian"``: a Gaussian with the same mean and covariance as ``X`` (drawn as
      ``mean + Z V diag(sqrt(l))^T`` from the ``d x d`` covariance eigendecomposition);
    * ``"norms"``: the rows of ``X`` keep their norms but point in uniformly random
      directions (a random rotation per row: the same norm distribution, no structure);
    * ``"isotropic"``: an isotropic Gaussian with the same mean and total variance.

    Shapes:
        X: ``[n_x, d]`` -> ``[n or n_x, d]`` float64 on X's device.
    """
    Xt = _matrix(X, "X", min_rows=2)
    if null not in _NULL_MODELS:
        raise InputError(f"null must be one of {_NULL_MODELS} or None, got {null!r}.")
    m = Xt.shape[0] if n is None else check_int(n, "n", minimum=1)
    dev = Xt.device
    gen = make_generator(seed, dev)
    X64 = Xt.to(torch.float64)
    mean = X64.mean(dim=0, keepdim=True)
    d = X64.shape[1]
    z = torch.randn(m, d, generator=gen, device=dev, dtype=torch.float64)
    if null == "norms":
        norms = X64.norm(dim=1)
        if m != Xt.shape[0]:
            norms = norms[torch.randint(0, Xt.shape[0], (m,), generator=gen, device=dev)]
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-300) * norms[:, None]
    Xc = X64 - mean
    if null == "isotropic":
        total = float((Xc * Xc).sum()) / max(1, Xt.shape[0] - 1)
        return mean + z * math.sqrt(total / d)
    cov = _second_moment(Xt, center=True) / max(1, Xt.shape[0] - 1)  # [d, d]
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0.0).sqrt()[None, :]  # [d, d]; cov = root root^T
    return mean + z @ root.T


def simplex_volume_cv(
    X: Any,
    k: int = 4,
    n_samples: int = 1000,
    seed: int = 0,
    null: NullModel | None = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    pool: int | None = None,
    ci: CIMethod = "auto",
) -> SimplexCV:
    """CV of the volumes of random k-simplices whose vertices are rows of ``X``.

    ``n_samples`` (k+1)-subsets of rows are drawn uniformly (distinct rows within a
    simplex), their volumes computed in float64 (:func:`simplex_volumes`), degenerate ones
    (volume 0) counted and left out, and ``cv = std / mean`` reported with an interval over
    the simplices: a percentile bootstrap, or from :data:`DELTA_MIN_VOLUMES` volumes on
    (``ci="auto"``) the delta-method interval, which agrees with it there at the cost of
    one pass instead of ``n_boot``. With ``null`` the same is done on a matched null
    point cloud of the same size (see :func:`null_points`) and the ratio ``cv / null_cv`` is
    reported with an interval from resampling both sides. The published pentachoron bands
    (CV about 0.20-0.23 for token embeddings) are claims to check against this null, since a
    structureless Gaussian in high dimension already has a small, dimension-dependent CV.

    Args:
        X: the point cloud (rows are points).
        k: simplex dimension (k=4: pentachora, 5 vertices).
        n_samples: simplices to draw.
        seed: seeds the simplex draw, the null cloud and the bootstraps.
        null: ``None``, ``"gaussian"``, ``"norms"`` or ``"isotropic"``.
        n_boot: bootstrap resamples for the intervals.
        level: interval coverage.
        pool: draw simplices only from the first ``pool`` rows (``None``: all rows).
        ci: ``"auto"``, ``"bootstrap"`` or ``"delta"`` (see :func:`cv_ci`); the interval's
            ``method`` says which was used.

    Shapes:
        X: ``[n, d]`` with ``n >= k + 1``.

    Raises:
        InputError: k < 1, NaN / Inf in X, unknown null or ci.
        ShapeError: fewer than k+1 rows.
    """
    k = check_int(k, "k", minimum=1, hint=" k is the simplex dimension; k=4 is the pentachoron.")
    n_samples = check_int(n_samples, "n_samples", minimum=2)
    _ci_method(ci, n_samples)  # unknown ci fails before any volume is computed
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    Xt = _matrix(X, "X", min_rows=1)
    if null is not None and null not in _NULL_MODELS:
        raise InputError(f"null must be None or one of {_NULL_MODELS}, got {null!r}.")
    if pool is not None:
        pool = check_int(pool, "pool", minimum=k + 1)
        Xt = Xt[:pool]
    if Xt.shape[0] < k + 1:
        raise ShapeError(
            f"X needs at least k+1 = {k + 1} rows for {k}-simplices, got shape {tuple(Xt.shape)}; "
            "pass more rows or a smaller k."
        )
    level = check_level(level)
    seeds = [derive_seed(seed, part) for part in ("simplices", "cv", "null", "null_cv", "ratio")]
    idx = sample_simplices(Xt.shape[0], k, n_samples, seed=seeds[0], device=Xt.device)
    vols = _volumes_at(Xt, idx)
    good = vols > 0
    n_deg = int((~good).sum())
    if int(good.sum()) < 2:
        raise InputError(
            f"X gives only {int(good.sum())} non-degenerate {k}-simplices out of {n_samples}: its "
            "rows "
            f"span fewer than k = {k} dimensions (shape {tuple(Xt.shape)}); use a smaller k."
        )
    v = vols[good]
    cv = cv_ci(v, n_boot=n_boot, level=level, seed=seeds[1], ci=ci)
    if null is None:
        return SimplexCV(
            cv, None, None, None, float(v.mean()), None, None, k, n_samples, n_deg, None
        )
    Y = null_points(Xt, null, seed=seeds[2])
    nvols = _volumes_at(Y, idx)
    ngood = nvols > 0
    nv = nvols[ngood]
    if nv.numel() < 2:
        raise InputError(
            f"the {null!r} null model gave fewer than 2 non-degenerate simplices for X."
        )
    ncv = cv_ci(nv, n_boot=n_boot, level=level, seed=seeds[3], ci=ci)
    if cv.method == ncv.method == "delta method":
        ratio = ratio_delta_interval(cv, ncv, level)
    else:
        ratio = _ratio_ci(v, nv, n_boot=n_boot, level=level, seed=seeds[4])
    return SimplexCV(
        cv=cv,
        null=null,
        null_cv=ncv,
        ratio=ratio,
        mean_volume=float(v.mean()),
        null_mean_volume=float(nv.mean()),
        volume_ratio=float(v.mean() / nv.mean()),
        k=k,
        n_samples=n_samples,
        n_degenerate=n_deg,
        null_n_degenerate=int((~ngood).sum()),
    )


def _ratio_ci(
    a: torch.Tensor, b: torch.Tensor, *, n_boot: int, level: float, seed: int
) -> Estimate:
    point = float(coefficient_of_variation(a)) / float(coefficient_of_variation(b))
    ra = _boot_cvs(a, n_boot, seed)
    rb = _boot_cvs(b, n_boot, derive_seed(seed, "denominator"))
    return _percentile_estimate(
        float(point), ra / rb, level, "percentile bootstrap over simplices, both sides"
    )
