"""The weight topology battery: spectra, ranks, sparsity, QK geometry, neurons, layers.

:func:`weight_battery` analyses a safetensors checkpoint without building the model and
without running data. Tensors are read one role group at a time (every ``q`` of the
encoder, every ``mlp_up`` of the decoder, ...), in chunks no larger than ``chunk_bytes``,
and the file is unmapped between groups, so peak memory is bounded by the largest chunk
plus small per-matrix summaries, not by the model. Work inside a group is batched: one
batched Gram product and one batched symmetric eigensolve give the singular values of
every layer at once.

What it measures (every number lands in the returned dict, ready for ``results.json``):

- per matrix: singular values, stable rank, participation ratio of the singular values,
  active fraction (σ > 1 % of σ₁), rank holding 90 % of the energy Σσ², condition number,
  and a power-law fit of the tail of the eigenvalue spectrum of ``WᵀW / m`` (exponent α,
  xmin, KS distance, whether the KS test accepts the fit);
- sparsity per role group: share of entries with ``|w| < t`` for ``t`` in 1e-6 ... 1e-1;
- QK geometry per layer and head: the bilinear form ``W_Q[h]ᵀ W_K[g(h)]`` (grouped-query
  heads share their key head) with stable rank, participation ratio, symmetry deviation
  and the balance of positive and negative eigenvalues of its symmetric part;
- MLP neuron importance ``‖w_in‖ · ‖w_out‖`` (times ``‖w_gate‖`` for gated MLPs) with dead
  (< 1 % of the layer mean) and weak (< 10 %) counts;
- cross-layer cosine similarity of same-role matrices; norm-layer scale statistics;
  per-head relative position bias profiles (T5); tied input/output embeddings.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..models.roles import TensorRole, attention_geometry, norm_offset, unclassified
from ..utils import resolve_device
from .weights_io import Checkpoint, resolve_checkpoint
from .weights_spectra import (
    qk_head_geometry,
    relative_bias_profiles,
    spectral_metrics,
    t5_bucket_distances,
)

__all__ = ["DEFAULT_THRESHOLDS", "weight_battery", "spectra_of", "SPECTRAL_KEYS"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SPECTRAL_KEYS: tuple[str, ...] = ("stable_rank", "participation_ratio", "active_fraction", "rank90",
                                  "condition", "spectral_norm", "frobenius_norm", "alpha", "xmin",
                                  "ks", "n_tail", "ks_ok")
_LOG_EDGES = np.linspace(-9.0, 1.0, 101)  # log10 |w| histogram bins
_IMP_EDGES = np.concatenate([[0.0], np.logspace(-3, 1.5, 60)])  # importance / layer mean


def spectra_of(w: torch.Tensor, precision: str = "float32") -> torch.Tensor:
    """Singular values (descending, float64) of ``[B, m, n]`` matrices from the smaller Gram matrix.

    ``precision="float32"`` forms the Gram matrix and solves it in float32 (fast; singular
    values below about ``sqrt(20 · min(m, n) · 6e-8) · σ₁`` are not resolved, see
    ``condition_resolved``); ``"float64"`` does both in float64 (accurate to ~1e-7 σ₁; on
    SmolLM2 with one CPU thread 16 s against 13.5 s for float32); ``"svd"`` calls
    ``torch.linalg.svdvals`` (reference).

    Why a Gram matrix: one matrix product plus a symmetric eigensolve of size ``min(m, n)``
    does less work than the bidiagonalisation behind ``svdvals``/``svd``; measured on 2
    shared CPU cores (one thread, 30 matrices 1536 x 576) Gram + float32 ``eigvalsh`` took
    about 0.11 s per matrix against 0.26 s for float32 ``svdvals``.

    Shapes:
        w ``[B, m, n]`` -> ``[B, min(m, n)]``.
    """
    if precision == "svd":
        return torch.linalg.svdvals(w).double()
    dt = torch.float64 if precision == "float64" else torch.float32
    x = w.to(dt)
    m, n = x.shape[-2:]
    g = x.mT @ x if m >= n else x @ x.mT
    ev = torch.linalg.eigvalsh(g)
    return ev.double().clamp_min(0).sqrt().flip(-1)


def _chunks(items: Sequence[TensorRole], per_item: int, budget: int) -> list[list[TensorRole]]:
    size = max(1, budget // max(per_item, 1))
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _downsample(values: np.ndarray, points: int) -> tuple[list[float], list[float]]:
    """(x in [0, 1], y) with at most ``points`` indices, denser at the head of the spectrum."""
    n = len(values)
    if n <= points:
        idx = np.arange(n)
    else:
        idx = np.unique(np.round(np.geomspace(1, n, points)).astype(int) - 1)
    x = idx / max(n - 1, 1)
    return x.tolist(), values[idx].tolist()


def weight_battery(
    model: str | os.PathLike[str] | Checkpoint,
    *,
    device: str | torch.device = "auto",
    precision: str = "float32",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    chunk_bytes: int | None = None,
    spectrum_points: int = 64,
    keep_singular_values: bool = False,
) -> dict[str, Any]:
    """Run the whole weight battery on a checkpoint; returns a JSON-ready dict.

    Args:
        model: a folder with ``config.json`` and ``*.safetensors``, a ``.safetensors`` file,
            a zoo name (``smollm2``, ``minilm``) or an open :class:`Checkpoint`.
        device: where the linear algebra runs (``auto`` uses the GPU when there is one).
        precision: ``float32`` (default), ``float64`` or ``svd`` for singular values
            (see :func:`spectra_of`).
        thresholds: ascending magnitudes for the sparsity table.
        chunk_bytes: most float32 bytes of weights held at once (default: a quarter of the
            checkpoint's size, at least 64 MiB). Lower it to analyse a model larger than RAM.
        spectrum_points: how many points of each normalised spectrum to keep for plots.
        keep_singular_values: also return every singular value of every matrix.

    Returns:
        dict with ``model``, ``architecture``, ``roles``, ``matrices`` (one row per matrix),
        ``groups`` (per-role summaries), ``sparsity``, ``log_abs_hist``, ``qk``, ``mlp``,
        ``cross_layer``, ``norms``, ``position_bias``, ``tied_embeddings`` and ``timings``.
    """
    if precision not in {"float32", "float64", "svd"}:
        raise InputError(f"precision={precision!r} is not supported; expected 'float32', 'float64' "
                         "or 'svd'.")
    thr = [float(t) for t in thresholds]
    if not thr or any(b <= a for a, b in zip(thr, thr[1:], strict=False)) or thr[0] <= 0:
        raise InputError(
            f"thresholds={list(thresholds)!r} must be positive and strictly ascending, "
            "for example 1e-6 1e-4 1e-2."
        )
    dev = resolve_device(device)
    t_start = time.perf_counter()
    ckpt = model if isinstance(model, Checkpoint) else Checkpoint(resolve_checkpoint(model))
    budget = int(chunk_bytes) if chunk_bytes else max(64 << 20, ckpt.file_bytes // 4)
    timings: dict[str, float] = {}
    roles = ckpt.roles
    cfg = ckpt.config
    geom = attention_geometry(cfg)

    matrices = [r for r in roles if r.is_matrix and r.detail != "relative_bias"
                and ckpt.info(r.name).is_float]
    groups: dict[tuple[str, tuple[int, ...]], list[TensorRole]] = defaultdict(list)
    for r in matrices:
        groups[(r.group, r.canonical_shape)].append(r)
    matrix_keys = {r.key for r in matrices}
    vectors = [r for r in roles if r.key not in matrix_keys and ckpt.info(r.name).is_float
               and r.role not in {"buffer"} and r.detail != "relative_bias"]

    mags = _Magnitudes(thr)
    t0 = time.perf_counter()
    mp = _MatrixPass(ckpt, dev, budget, precision, spectrum_points, keep_singular_values, mags)
    for (label, shape), items in sorted(groups.items(), key=lambda kv: kv[0]):
        mp.group(label, shape, items)
    timings["matrices_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    norms = _vector_pass(ckpt, vectors, cfg, dev, mags)
    timings["vectors_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    qk = _qk_pass(ckpt, roles, geom, dev, budget)
    timings["qk_s"] = time.perf_counter() - t0

    mlp = _mlp_neurons(mp.neuron_norms)

    t0 = time.perf_counter()
    pos = _position_bias(ckpt, roles, cfg, dev)
    timings["position_s"] = time.perf_counter() - t0

    tied = _tied_embeddings(ckpt, roles, cfg, dev)
    group_rows = _group_summaries(mp.rows, groups)
    timings["total_s"] = time.perf_counter() - t_start
    out: dict[str, Any] = {
        **_describe(model, ckpt, geom, precision, dev),
        "n_matrices": len(mp.rows),
        "roles": [_role_row(r) for r in roles],
        "unclassified": unclassified(roles),
        "thresholds": thr,
        "matrices": mp.rows,
        "spectra": mp.spectra,
        "groups": group_rows,
        "sparsity": mags.sparsity(),
        "log_abs_hist": {"edges": _LOG_EDGES.tolist(), "counts": mags.hist.tolist()},
        "qk": qk,
        "mlp": mlp,
        "cross_layer": mp.cross,
        "norms": norms,
        "position_bias": pos,
        "tied_embeddings": tied,
        "timings": timings,
    }
    if keep_singular_values:
        out["singular_values"] = mp.singular_values
    return out


class _Magnitudes:
    """Exact sparsity counts per role group and the log10 |w| histogram (every 4th entry)."""

    def __init__(self, thresholds: list[float]) -> None:
        self.thr = thresholds
        self.counts: dict[str, np.ndarray] = defaultdict(
            lambda: np.zeros(len(thresholds), dtype=np.int64))
        self.total: dict[str, int] = defaultdict(int)
        self.hist = np.zeros(len(_LOG_EDGES) - 1, dtype=np.int64)

    def add(self, label: str, w: torch.Tensor) -> None:
        """Count ``w``'s entries (any shape) in slices of 16M, so temporaries stay small."""
        flat = w.reshape(-1)
        cnt = torch.zeros(len(self.thr), dtype=torch.long, device=flat.device)
        hist = torch.zeros(len(_LOG_EDGES) - 1, dtype=torch.float32, device=flat.device)
        step = 1 << 24
        for i0 in range(0, flat.numel(), step):
            a = flat[i0:i0 + step].abs()
            for j, t in enumerate(self.thr):  # one vectorised compare per threshold
                cnt[j] += torch.count_nonzero(a < t)
            # the magnitude histogram is a plot aid: every 4th entry is plenty (sparsity above
            # counts every entry exactly)
            la = torch.log10(a[::4].clamp_min(1e-30)).clamp_(_LOG_EDGES[0], _LOG_EDGES[-1] - 1e-6)
            hist += torch.histc(la, bins=len(_LOG_EDGES) - 1, min=float(_LOG_EDGES[0]),
                                max=float(_LOG_EDGES[-1]))
        self.counts[label] += cnt.cpu().numpy()
        self.total[label] += flat.numel()
        self.hist += hist.cpu().numpy().round().astype(np.int64)

    def sparsity(self) -> dict[str, dict[str, Any]]:
        """Per group and over all parameters: the total and the fraction below each threshold."""
        out = {}
        all_counts = np.zeros(len(self.thr), dtype=np.int64)
        all_total = 0
        for label in sorted(self.total):
            tot, cnt = self.total[label], self.counts[label]
            all_counts += cnt
            all_total += tot
            out[label] = {"total": int(tot), "fractions": (cnt / max(tot, 1)).tolist()}
        out["all"] = {"total": int(all_total),
                      "fractions": (all_counts / max(all_total, 1)).tolist()}
        return out


class _MatrixPass:
    """The matrix pass, one role group at a time, in chunks that fit the memory budget: each
    matrix's spectral row and downsampled spectrum, MLP neuron norms, and the cross-layer
    cosines of the group's matrices."""

    def __init__(self, ckpt: Checkpoint, dev: torch.device, budget: int, precision: str,
                 spectrum_points: int, keep_singular_values: bool, mags: _Magnitudes) -> None:
        self.ckpt, self.dev, self.budget, self.precision = ckpt, dev, budget, precision
        self.points, self.keep_sv, self.mags = spectrum_points, keep_singular_values, mags
        self.rows: list[dict[str, Any]] = []
        self.spectra: dict[str, dict[str, Any]] = {}
        self.singular_values: dict[str, list[float]] = {}
        self.neuron_norms: dict[tuple[str, int, str], np.ndarray] = {}
        self.cross: dict[str, dict[str, Any]] = {}

    def group(self, label: str, shape: tuple[int, ...], items: list[TensorRole]) -> None:
        items = sorted(items, key=lambda r: (-1 if r.layer is None else r.layer, r.name))
        chunks = _chunks(items, 4 * math.prod(shape), self.budget)
        flat_norm2: list[torch.Tensor] = []
        gram_blocks: dict[tuple[int, int], torch.Tensor] = {}
        for ci, chunk in enumerate(chunks):
            with self.ckpt.reader(self.dev) as rd:
                w = rd.stack(chunk)  # [b, m, n]
            self.mags.add(label, w)
            self._neurons(chunk, w)
            self._spectral_rows(chunk, w, label, shape)
            # cross-layer dot products: this chunk with itself and with every earlier chunk
            xf = w.reshape(w.shape[0], -1)  # float32 products, float64 accumulation below
            flat_norm2.append(torch.linalg.vector_norm(xf, dim=-1).double().pow(2))
            gram_blocks[(ci, ci)] = (xf @ xf.T).double()
            if ci > 0:
                with self.ckpt.reader(self.dev) as rd:
                    for cj in range(ci):
                        other = rd.stack(chunks[cj]).reshape(len(chunks[cj]), -1)
                        gram_blocks[(cj, ci)] = (other @ xf.T).double()
            del w, xf
        if len(items) >= 2:
            self.cross[label] = _cross_layer(items, chunks, gram_blocks, flat_norm2)

    def _neurons(self, chunk: list[TensorRole], w: torch.Tensor) -> None:
        role = chunk[0].role
        if role in {"mlp_up", "mlp_gate"}:
            nn_ = torch.linalg.vector_norm(w, dim=-1).cpu().numpy()  # [b, d_ff]
        elif role == "mlp_down":
            nn_ = torch.linalg.vector_norm(w, dim=-2).cpu().numpy()
        else:
            return
        for r, v in zip(chunk, nn_, strict=True):
            if r.layer is not None:
                self.neuron_norms[(r.location, r.layer, role)] = v

    def _spectral_rows(self, chunk: list[TensorRole], w: torch.Tensor, label: str,
                       shape: tuple[int, ...]) -> None:
        s = spectra_of(w, self.precision)
        met = spectral_metrics(s, shape)
        r_ = s.shape[-1]
        eps = 6e-8 if self.precision == "float32" else 1.2e-16
        resolved = (s[:, -1] ** 2) > 20.0 * r_ * eps * s[:, 0] ** 2
        met_np = {k: v.cpu().numpy() for k, v in met.items()}
        s_np = s.cpu().numpy()
        for i, r in enumerate(chunk):
            row: dict[str, Any] = {"key": r.key, "name": r.name, "group": label, "role": r.role,
                                   "location": r.location, "attention": r.attention,
                                   "layer": r.layer, "shape": list(shape)}
            for k in SPECTRAL_KEYS:
                v = met_np[k][i]
                row[k] = (
                    bool(v)
                    if k == "ks_ok"
                    else (int(v) if k in {"rank90", "n_tail"} else float(v))
                )
            row["condition_resolved"] = bool(resolved[i])
            if not row["condition_resolved"]:
                row["condition"] = float("nan")
            self.rows.append(row)
            sn = s_np[i] / max(s_np[i][0], 1e-300)
            x, y = _downsample(sn, self.points)
            self.spectra[r.key] = {"x": x, "y": y}
            if self.keep_sv:
                self.singular_values[r.key] = s_np[i].tolist()


def _cross_layer(items: list[TensorRole], chunks: list[list[TensorRole]],
                 gram_blocks: dict[tuple[int, int], torch.Tensor],
                 flat_norm2: list[torch.Tensor]) -> dict[str, Any]:
    """Cosines between a group's flattened matrices, from the Gram blocks of its chunks."""
    n = len(items)
    offs = np.cumsum([0] + [len(c) for c in chunks])
    g = torch.zeros(n, n, dtype=torch.float64)
    for (a, b), blk in gram_blocks.items():
        g[offs[a]:offs[a + 1], offs[b]:offs[b + 1]] = blk.cpu()
        g[offs[b]:offs[b + 1], offs[a]:offs[a + 1]] = blk.cpu().T
    nrm = torch.cat(flat_norm2).cpu().sqrt().clamp_min(1e-300)
    cos = (g / nrm[:, None] / nrm[None, :]).numpy()
    labels = [f"L{r.layer}" if r.layer is not None else r.name for r in items]
    adj = [float(cos[i, i + 1]) for i in range(n - 1)]
    off = cos[~np.eye(n, dtype=bool)]
    return {
        "labels": labels,
        "matrix": cos.tolist(),
        "adjacent_mean": float(np.mean(adj)),
        "adjacent_min": float(np.min(adj)),
        "adjacent_max": float(np.max(adj)),
        "offdiag_mean": float(off.mean()),
        "offdiag_abs_max": float(np.abs(off).max()),
    }


def _vector_pass(ckpt: Checkpoint, vectors: list[TensorRole], cfg: dict[str, Any],
                 dev: torch.device, mags: _Magnitudes) -> list[dict[str, Any]]:
    """Every vector (norms, biases) counted for sparsity; the norms' scale statistics."""
    norms: list[dict[str, Any]] = []
    with ckpt.reader(dev) as rd:
        for r in vectors:
            v = rd.read(r)
            mags.add(r.group + (".bias" if r.param == "bias" else ""), v[None])
            if r.role == "norm" and v.ndim == 1:
                # the scale the norm applies: Gemma stores w with scale 1 + w
                offset = norm_offset(cfg) if r.param == "weight" else 0.0
                vn = v.cpu().double().numpy() + offset
                norms.append({
                    "name": r.name,
                    "param": r.param,
                    "location": r.location,
                    "layer": r.layer,
                    "stored_offset": offset,
                    "kind": r.detail or "norm",
                    "size": int(vn.size),
                    "mean": float(vn.mean()),
                    "std": float(vn.std()),
                    "min": float(vn.min()),
                    "max": float(vn.max()),
                    "abs_mean": float(np.abs(vn).mean()),
                    "frac_above_1_5": float((vn > 1.5).mean()),
                    "frac_below_0_5": float((vn < 0.5).mean()),
                    "frac_near_one": float(((vn > 0.8) & (vn < 1.2)).mean()),
                })
    return norms


def _describe(model: Any, ckpt: Checkpoint, geom: Any, precision: str,
              dev: torch.device) -> dict[str, Any]:
    """What was read: the model's name, file, architecture, attention shape and sizes."""
    cfg = ckpt.config
    return {
        "model": str(model) if isinstance(model, str) and not os.path.exists(model) else ckpt.name,
        "path": str(ckpt.path),
        "file_bytes": ckpt.file_bytes,
        "architecture": (cfg.get("architectures") or [cfg.get("model_type", "unknown")])[0],
        "model_type": cfg.get("model_type"),
        "precision": precision,
        "device": str(dev),
        "attention": None
        if geom is None
        else {
            "hidden_size": geom.hidden_size,
            "num_heads": geom.num_heads,
            "num_kv_heads": geom.num_kv_heads,
            "head_dim": geom.head_dim,
        },
        "n_tensors": len(ckpt.tensors),
        "n_parameters": int(sum(math.prod(i.shape) for i in ckpt.tensors.values())),
    }


def _role_row(r: TensorRole) -> dict[str, Any]:
    return {"name": r.name, "key": r.key, "role": r.role, "param": r.param, "layer": r.layer,
            "location": r.location, "attention": r.attention, "shape": list(r.canonical_shape),
            "detail": r.detail}


def _group_summaries(
    rows: list[dict[str, Any]], groups: dict[tuple[str, tuple[int, ...]], list[TensorRole]]
) -> list[dict[str, Any]]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["group"]].append(r)
    out = []
    for label in sorted(by):
        rs = by[label]

        def col(k: str, rows: list[dict[str, Any]] = rs) -> np.ndarray:
            return np.array([r[k] for r in rows], dtype=float)

        cond = col("condition")
        alpha = col("alpha")
        out.append(
            {
                "group": label,
                "n": len(rs),
                "shapes": sorted({"x".join(map(str, r["shape"])) for r in rs}),
                "stable_rank_mean": float(col("stable_rank").mean()),
                "stable_rank_std": float(col("stable_rank").std()),
                "participation_ratio_mean": float(col("participation_ratio").mean()),
                "active_fraction_mean": float(col("active_fraction").mean()),
                "rank90_mean": float(col("rank90").mean()),
                "log10_condition_median": float(np.nanmedian(np.log10(cond)))
                if np.isfinite(cond).any()
                else float("nan"),
                "condition_resolved": int(sum(r["condition_resolved"] for r in rs)),
                "alpha_median": float(np.nanmedian(alpha))
                if np.isfinite(alpha).any()
                else float("nan"),
                "alpha_iqr": [
                    float(np.nanpercentile(alpha, 25)),
                    float(np.nanpercentile(alpha, 75)),
                ]
                if np.isfinite(alpha).any()
                else [float("nan"), float("nan")],
                "ks_ok_fraction": float(np.mean([r["ks_ok"] for r in rs])),
            }
        )
    return out


def _qk_pass(ckpt: Checkpoint, roles: list[TensorRole], geom: Any, dev: torch.device, budget: int
             ) -> dict[str, Any]:
    """Per-head and per-layer QK geometry for every attention kind with separate Q and K."""
    if geom is None:
        return {
            "heads": [],
            "layers": [],
            "note": "config gives no head count; QK geometry skipped",
        }
    qs: dict[tuple[str, str, int], TensorRole] = {}
    ks: dict[tuple[str, str, int], TensorRole] = {}
    for r in roles:
        if r.param != "weight" or r.layer is None or r.attention is None:
            continue
        if r.role == "q":
            qs[(r.location, r.attention, r.layer)] = r
        elif r.role == "k":
            ks[(r.location, r.attention, r.layer)] = r
    keys = sorted(set(qs) & set(ks))
    heads_rows: list[dict[str, Any]] = []
    layer_rows: list[dict[str, Any]] = []
    if not keys:
        return {"heads": [], "layers": [], "note": "no separate Q and K matrices found"}
    dh = geom.head_dim
    # Bytes per layer while the heads are analysed: Q and K, K repeated per query head,
    # their concatenation and its QR basis (all float32), so ~6x the stored Q + K.
    per = 6 * 4 * 2 * math.prod(qs[keys[0]].canonical_shape)
    for chunk in [
        keys[i : i + max(1, budget // max(per, 1))]
        for i in range(0, len(keys), max(1, budget // max(per, 1)))
    ]:
        # group by shapes so a chunk stacks cleanly
        by_shape: dict[tuple[tuple[int, ...], tuple[int, ...]], list[tuple[str, str, int]]] = (
            defaultdict(list)
        )
        for key in chunk:
            by_shape[(qs[key].canonical_shape, ks[key].canonical_shape)].append(key)
        for (qshape, kshape), kk in by_shape.items():
            hq, hk = qshape[0] // dh, kshape[0] // dh
            if (
                hq * dh != qshape[0]
                or hk * dh != kshape[0]
                or hk == 0
                or hq % hk != 0
                or qshape[1] != kshape[1]
            ):
                continue
            with ckpt.reader(dev) as rd:
                wq = rd.stack([qs[k] for k in kk])  # [L, Hq·dh, d]
                wk = rd.stack([ks[k] for k in kk])  # [L, Hk·dh, d]
            d = qshape[1]
            a = wq.reshape(len(kk), hq, dh, d)
            b = wk.reshape(len(kk), hk, dh, d).repeat_interleave(hq // hk, dim=1)
            res = qk_head_geometry(a.reshape(-1, dh, d), b.reshape(-1, dh, d))
            res_np = {k_: v.reshape(len(kk), hq).cpu().numpy() for k_, v in res.items()}
            for li, (loc, att, layer) in enumerate(kk):
                for h in range(hq):
                    heads_rows.append(
                        {
                            "location": loc,
                            "attention": att,
                            "layer": layer,
                            "head": h,
                            "kv_head": h // (hq // hk),
                            **{
                                k_: (int(v[li, h]) if k_ in {"n_pos", "n_neg"} else float(v[li, h]))
                                for k_, v in res_np.items()
                            },
                        }
                    )
                layer_rows.append({
                    "location": loc, "attention": att, "layer": layer, "heads": hq, "kv_heads": hk,
                    "stable_rank_mean": float(res_np["stable_rank"][li].mean()),
                    "participation_ratio_mean": float(res_np["participation_ratio"][li].mean()),
                    "symmetry_deviation_mean": float(res_np["symmetry_deviation"][li].mean()),
                    "pos_mass_mean": float(res_np["pos_mass"][li].mean()),
                    "pos_mass_min": float(res_np["pos_mass"][li].min()),
                    "pos_mass_max": float(res_np["pos_mass"][li].max()),
                    "pos_fraction_mean": float(res_np["pos_fraction"][li].mean()),
                })
    layer_rows.sort(key=lambda r: (r["location"], r["attention"], r["layer"]))
    return {
        "heads": heads_rows,
        "layers": layer_rows,
        "head_dim": dh,
        "note": (
            "Per head, the symmetric part of W_Q[h]^T W_K[h] is a difference of two PSD "
            "matrices of rank <= head_dim, so it has at most head_dim positive and head_dim "
            "negative eigenvalues and the count balance sits at 0.5 by construction; "
            "pos_mass (sum of positive over sum of absolute eigenvalues) is the informative "
            "balance: 1 for Q = K, 0.5 for unrelated Q and K, 0 for Q = -K."
        ),
    }


def _mlp_neurons(norms: dict[tuple[str, int, str], np.ndarray]) -> dict[str, Any]:
    layers: dict[tuple[str, int], dict[str, np.ndarray]] = defaultdict(dict)
    for (loc, layer, role), v in norms.items():
        layers[(loc, layer)][role] = v
    rows: list[dict[str, Any]] = []
    hist_counts = np.zeros(len(_IMP_EDGES) - 1, dtype=np.int64)
    for (loc, layer), parts in sorted(layers.items()):
        if "mlp_down" not in parts or ("mlp_up" not in parts and "mlp_gate" not in parts):
            continue
        imp = parts["mlp_down"].astype(np.float64).copy()
        for role in ("mlp_up", "mlp_gate"):
            if role in parts and parts[role].shape == imp.shape:
                imp = imp * parts[role]
        mean = float(imp.mean())
        rel = imp / max(mean, 1e-300)
        hist_counts += np.histogram(np.clip(rel, 0, _IMP_EDGES[-1]), bins=_IMP_EDGES)[0]
        n = imp.size
        rows.append(
            {
                "location": loc,
                "layer": layer,
                "d_ff": int(n),
                "gated": "mlp_gate" in parts,
                "importance_mean": mean,
                "importance_cv": float(imp.std() / max(mean, 1e-300)),
                "dead": int((rel < 0.01).sum()),
                "weak": int((rel < 0.10).sum()),
                "dead_fraction": float((rel < 0.01).mean()),
                "weak_fraction": float((rel < 0.10).mean()),
                "max_over_mean": float(rel.max()),
            }
        )
    total = sum(r["d_ff"] for r in rows)
    return {"layers": rows, "total_neurons": int(total),
            "dead": int(sum(r["dead"] for r in rows)), "weak": int(sum(r["weak"] for r in rows)),
            "hist": {"edges": _IMP_EDGES.tolist(), "counts": hist_counts.tolist()}}


def _position_bias(ckpt: Checkpoint, roles: list[TensorRole], cfg: dict[str, Any], dev: torch.device
                   ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rel = [
        r
        for r in roles
        if r.detail == "relative_bias" and r.param == "weight" and len(r.shape) == 2
    ]
    if not rel:
        return out
    max_dist = int(cfg.get("relative_attention_max_distance", 128))
    with ckpt.reader(dev) as rd:
        for r in rel:
            tab = rd.read(r).cpu().double().numpy()  # [buckets, heads]
            nb = tab.shape[0]
            bidir = r.location != "decoder" or r.attention == "cross"
            buckets = t5_bucket_distances(nb, max_dist, bidir)
            prof = relative_bias_profiles(tab, buckets)
            kinds = [p.get("kind", "mixed") for p in prof]
            out.append(
                {
                    "name": r.name,
                    "location": r.location,
                    "attention": r.attention,
                    "layer": r.layer,
                    "bidirectional": bidir,
                    "num_buckets": nb,
                    "num_heads": int(tab.shape[1]),
                    "buckets": buckets,
                    "bias": tab.tolist(),
                    "heads": prof,
                    "local": kinds.count("local"),
                    "global": kinds.count("global"),
                    "mixed": kinds.count("mixed"),
                }
            )
    return out


def _tied_embeddings(
    ckpt: Checkpoint, roles: list[TensorRole], cfg: dict[str, Any], dev: torch.device
) -> dict[str, Any]:
    emb = [
        r
        for r in roles
        if r.role == "embedding" and r.param == "weight" and r.detail in {"token", ""}
    ]
    unemb = [r for r in roles if r.role == "unembedding" and r.param == "weight"]
    declared = cfg.get("tie_word_embeddings")
    archs = " ".join(cfg.get("architectures") or [])
    lm = any(
        s in archs
        for s in ("CausalLM", "LMHead", "ConditionalGeneration", "MaskedLM", "ForPreTraining")
    )
    if not emb:
        return {"tied": None, "evidence": "no token embedding found", "declared": declared}
    if not unemb:
        if lm:
            return {"tied": True, "evidence": f"no output projection stored; {archs} reuses "
                                              f"{emb[0].name} (tie_word_embeddings={declared})",
                    "declared": declared, "embedding": emb[0].name}
        return {"tied": None, "evidence": "no output projection (encoder or base model)",
                "declared": declared}
    e, u = emb[0], unemb[0]
    if e.canonical_shape != u.canonical_shape:
        return {
            "tied": False,
            "evidence": f"shapes differ {e.canonical_shape} vs {u.canonical_shape}",
            "declared": declared,
        }
    with ckpt.reader(dev) as rd:
        a = rd.read(e).reshape(-1).double()
        b = rd.read(u).reshape(-1).double()
    equal = bool(torch.equal(a, b))
    cos = float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))
    return {
        "tied": equal,
        "evidence": "identical tensors" if equal else f"distinct tensors, cosine {cos:.4f}",
        "cosine": cos,
        "declared": declared,
        "embedding": e.name,
        "unembedding": u.name,
    }
