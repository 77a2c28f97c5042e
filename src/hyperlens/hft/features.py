"""Student input features from token windows, sketched with CountSketch -> block SRHT.

Stage-1 raw vector of a row (tokens only, Track A), concatenated:

* the last ``W`` token embeddings (slot 0 = current token), from the teacher's frozen input
  embedding scaled to unit mean norm, zeros where the window runs past the start;
* the ``W`` window-validity bits (the attention mask of the window);
* ``n_phase`` positional phases ``sin/cos(p * 10000^(-2i/n_phase))`` of the position ``p``;
* hashed 1..4-gram indicators: the n-grams ending at the current token ("recent") and
  every n-gram inside the window ("bag", weighted ``1/sqrt(count)``), hashed into
  ``2^hash_bits`` signed buckets.

The raw vector (``W*d + W + n_phase + 2^hash_bits`` wide, sparse in the n-gram part) goes
through :class:`~hyperlens.functional.sketch.CountSketch` to ``d_count`` and
:class:`~hyperlens.functional.sketch.BlockSRHT` to ``d_sketch``, then is z-scored with
training statistics, or projected by :class:`~hyperlens.hdc.pca.StreamingPCA` when
``pca`` is set. Beside the sketch, ``exact`` > 0 passes the last ``exact`` token embeddings
(slot 0 first) *unsketched*, z-scored (``exact * d`` values): the sketch mixes the current
token's 576 values with 18k others and a million hash buckets, so it reaches the student
under several parts of noise per part of signal, while an n-gram model reads the last
tokens exactly. ``exact=0`` is the seed's pure sketch. Track B appends the z-scored teacher
state at layer ``l``. The Stage-2 tail (the last 16 token embeddings) is block-SRHT
sketched to ``d_tail``.

Nothing here reads the teacher's final state: features are functions of token ids (and,
in Track B, of the layer-``l`` state). Tokens outside the window cannot enter: the window
is cut before anything is computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError, ShapeError
from ..functional.sketch import BlockSRHT, CountSketch, compose
from ..hdc.pca import StreamingPCA
from ..utils import derive_seed, trim_every, trimmed

__all__ = ["FeatureConfig", "Featurizer", "ngram_keys"]

_MULT = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


@dataclass
class FeatureConfig:
    window: int = 32
    tail: int = 16
    n_phase: int = 32
    hash_bits: int = 20
    max_n: int = 4
    d_count: int = 16_384
    d_sketch: int = 4_096
    d_tail: int = 2_048
    pca: int | None = None
    recent_weight: float = 1.0
    bag_weight: float = 0.5
    track: str = "A"
    exact: int = 0
    seed: int = 0

    def validate(self) -> None:
        if self.track not in ("A", "B"):
            raise InputError(f"track must be 'A' or 'B', got {self.track!r}.")
        if self.tail > self.window:
            raise InputError(f"tail ({self.tail}) must not exceed window ({self.window}).")
        if not 1 <= self.max_n <= 6:
            raise InputError(f"max_n must be in 1..6, got {self.max_n}.")
        if not 0 <= self.exact <= self.window:
            raise InputError(f"exact ({self.exact}) must be in 0..window ({self.window}).")
        if self.d_sketch > self.d_count:
            raise InputError(f"d_sketch ({self.d_sketch}) must be <= d_count ({self.d_count}).")


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * _MIX
    x = (x ^ (x >> np.uint64(27))) * _MULT
    return x ^ (x >> np.uint64(31))


def ngram_keys(ctx: np.ndarray, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit keys of every n-gram (n = 1..max_n) ending at every window slot.

    Args:
        ctx: ``[rows, W]`` int token ids, slot 0 the newest, ``-1`` padding.

    Returns:
        ``keys [rows, W, max_n]`` uint64 and ``valid [rows, W, max_n]`` bool (the n-gram
        ending at slot ``s`` uses slots ``s .. s+n-1``, all inside the window and not padding).
    """
    rows, W = ctx.shape
    keys = np.zeros((rows, W, max_n), np.uint64)
    valid = np.zeros((rows, W, max_n), bool)
    with np.errstate(over="ignore"):
        acc = np.zeros((rows, W), np.uint64)
        ok = np.ones((rows, W), bool)
        for n in range(1, max_n + 1):
            shifted = np.full((rows, W), -1, np.int64)
            shifted[:, : W - n + 1] = ctx[:, n - 1:]
            ok = ok & (shifted >= 0)
            acc = _splitmix(acc * _MULT + shifted.astype(np.uint64) + np.uint64(n))
            keys[:, :, n - 1] = acc
            valid[:, :, n - 1] = ok
    return keys, valid


class Featurizer:
    """Deterministic feature pipeline; :meth:`fit` learns only the normalisation.

    Shapes:
        stage1(ctx [n, W], pos [n], state [n, d] | None) -> [n, d1]
        tail(ctx [n, W]) -> [n, d_tail]
    """

    def __init__(self, embedding: torch.Tensor, cfg: FeatureConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        emb = embedding.detach().float().cpu()
        if emb.ndim != 2 or not bool(torch.isfinite(emb).all()):
            raise InputError("the token embedding must be a finite [vocab, d] matrix (NaN or "
                             "Inf entries would reach every sketch); check the teacher's "
                             "weights.")
        self.emb = emb / emb.norm(dim=1).mean().clamp_min(1e-12)  # [V, d]
        self.d = int(emb.shape[1])
        W = cfg.window
        self.d_dense = W * self.d + W + cfg.n_phase
        self.d_raw = self.d_dense + (1 << cfg.hash_bits)
        cs = CountSketch.draw(self.d_raw, cfg.d_count, seed=cfg.seed)
        bs = BlockSRHT.draw(cfg.d_count, cfg.d_sketch, seed=derive_seed(cfg.seed, "srht"))
        self.sketch = compose(cs, bs)
        # the CountSketch is linear: the dense block and the hashed n-grams are sketched
        # apart, the dense block by the first d_dense columns of the same tables (made once:
        # building an operator validates its tables, a cost per row at batch 1)
        self._cs_dense = CountSketch(self.d_dense, cs.d_out, cs.buckets[: self.d_dense],
                                     cs.signs[: self.d_dense])
        self._buckets, self._signs = cs.buckets.numpy(), cs.signs.numpy()
        self.tail_sketch = BlockSRHT.draw(cfg.tail * self.d, cfg.d_tail,
                                          seed=derive_seed(cfg.seed, "tail"))
        self.stats: dict[str, torch.Tensor] = {}
        self.pca: StreamingPCA | None = None
        self.n_fitted = 0  # training rows the statistics came from

    # ------------------------------------------------------------------ raw parts
    def _ngram_entries(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The hashed n-gram part of the raw vectors as ``(rows, columns, values)``: each
        valid n-gram ending at slot 0 (weight ``recent_weight``) and each one in the window's
        bag (``bag_weight / sqrt(count)``), in disjoint halves of the buckets; an n-gram
        that occurs twice in a bag is two entries (the sketch adds them)."""
        cfg = self.cfg
        n = ctx.shape[0]
        keys, valid = ngram_keys(ctx, cfg.max_n)
        half = 1 << (cfg.hash_bits - 1)
        hashed = _splitmix(keys)
        # recent n-grams (ending at slot 0) and the bag over the window use disjoint halves
        rec_b = (hashed[:, 0, :] % np.uint64(half)).astype(np.int64)
        rec_v = valid[:, 0, :]
        bag_b = (hashed % np.uint64(half)).astype(np.int64) + half
        cnt = valid.reshape(n, -1).sum(1).clip(min=1)
        rows_r, cols_r = np.nonzero(rec_v)
        rows_b, s_b, n_b = np.nonzero(valid)
        r_idx = np.concatenate([rows_r, rows_b])
        c_idx = np.concatenate([rec_b[rows_r, cols_r], bag_b[rows_b, s_b, n_b]]) + self.d_dense
        vals = np.concatenate([
            np.full(len(rows_r), cfg.recent_weight, np.float32),
            (cfg.bag_weight / np.sqrt(cnt[rows_b])).astype(np.float32),
        ])
        return r_idx, c_idx, vals

    def _dense(self, ctx: np.ndarray, pos: np.ndarray) -> torch.Tensor:
        cfg = self.cfg
        n, W = ctx.shape
        ids = torch.from_numpy(ctx.astype(np.int64))
        ok = ids >= 0
        win = self.emb[ids.clamp_min(0)] * ok[..., None]  # [n, W, d]
        i = torch.arange(cfg.n_phase // 2, dtype=torch.float32)
        freq = 10000.0 ** (-2.0 * i / cfg.n_phase)
        ang = torch.from_numpy(pos.astype(np.float32))[:, None] * freq[None]
        phases = torch.cat([ang.sin(), ang.cos()], dim=1) / np.sqrt(cfg.n_phase / 2)
        return torch.cat([win.reshape(n, W * self.d), ok.float() / np.sqrt(W), phases], dim=1)

    def raw_sketch(self, ctx: np.ndarray, pos: np.ndarray) -> torch.Tensor:
        """CountSketch -> block SRHT of the raw vector, before normalisation ``[n, d_sketch]``."""
        ctx = np.asarray(ctx)
        pos = np.asarray(pos)
        if ctx.ndim != 2 or ctx.shape[1] != self.cfg.window:
            raise ShapeError(
                f"ctx must be [n, window={self.cfg.window}] token ids, got {ctx.shape}; cut "
                "the context to the window first."
            )
        cs, bs = self.sketch.ops
        assert isinstance(cs, CountSketch)
        # the CountSketch is linear: the dense block through the first d_dense columns of
        # its tables, the n-gram entries added into the same buckets (no sparse tensor to
        # build and coalesce); inputs built here skip the operators' checks (at batch 1 the
        # checks cost more than the sketches)
        y = self._cs_dense.apply(self._dense(ctx, pos), validate=False)
        rows, cols, vals = self._ngram_entries(ctx)
        y.view(-1).index_add_(0, torch.from_numpy(rows * cs.d_out + self._buckets[cols]),
                              torch.from_numpy(vals * self._signs[cols]))
        return bs.apply(y, validate=False)

    # ------------------------------------------------------------------ fitting
    def fit(self, ctx: np.ndarray, pos: np.ndarray, state: np.ndarray | None = None,
            batch: int = 2048) -> Featurizer:
        """Learn the z-scoring (or PCA) of the sketch, the state and the tail from training
        rows."""
        pca = StreamingPCA(self.cfg.pca, whiten=True, seed=self.cfg.seed) if self.cfg.pca \
            else None
        acc: dict[str, list[torch.Tensor]] = {k: [] for k in ("s", "s2", "t", "t2", "e", "e2",
                                                              "z", "z2")}
        n = len(ctx)
        for a in trimmed(range(0, n, batch), trim_every(batch)):  # the heap stays bounded
            x = self.raw_sketch(ctx[a:a + batch], pos[a:a + batch]).double()
            if pca is not None:
                pca.partial_fit(x)
            acc["s"].append(x.sum(0))
            acc["s2"].append((x * x).sum(0))
            t = self._tail_raw(ctx[a:a + batch]).double()
            acc["t"].append(t.sum(0))
            acc["t2"].append((t * t).sum(0))
            if self.cfg.exact:
                e = self._exact_raw(ctx[a:a + batch]).double()
                acc["e"].append(e.sum(0))
                acc["e2"].append((e * e).sum(0))
            if state is not None:  # read batch by batch: 1M rows of it are 2.3 GB in float32
                z = torch.from_numpy(np.asarray(state[a:a + batch], np.float32)).double()
                acc["z"].append(z.sum(0))
                acc["z2"].append((z * z).sum(0))
        parts = {"sketch": ("s", "s2"), "tail": ("t", "t2")}
        if self.cfg.exact:
            parts["exact"] = ("e", "e2")
        for key, (s, s2) in parts.items():
            m = torch.stack(acc[s]).sum(0) / n
            v = torch.stack(acc[s2]).sum(0) / n - m * m
            self.stats[key + "_mean"] = m.float()
            self.stats[key + "_std"] = v.clamp_min(1e-12).sqrt().float()
        if state is not None:  # the unbiased std, as torch.std gives it
            m = torch.stack(acc["z"]).sum(0) / n
            v = (torch.stack(acc["z2"]).sum(0) / n - m * m) * (n / max(1, n - 1))
            self.stats["state_mean"] = m.float()
            self.stats["state_std"] = v.clamp_min(0).sqrt().float().clamp_min(1e-6)
        self.pca = pca
        self.n_fitted = n
        return self

    def _exact_raw(self, ctx: np.ndarray) -> torch.Tensor:
        """The last ``exact`` token embeddings, unsketched ``[n, exact * d]`` (zeros where
        the window runs past the start)."""
        ids = torch.from_numpy(np.asarray(ctx)[:, : self.cfg.exact].astype(np.int64))
        ok = ids >= 0
        win = self.emb[ids.clamp_min(0)] * ok[..., None]
        return win.reshape(len(ids), self.cfg.exact * self.d)

    def _tail_raw(self, ctx: np.ndarray) -> torch.Tensor:
        T = self.cfg.tail
        ids = torch.from_numpy(np.asarray(ctx)[:, :T].astype(np.int64))
        ok = ids >= 0
        win = self.emb[ids.clamp_min(0)] * ok[..., None]
        return self.tail_sketch.apply(win.reshape(len(ids), T * self.d), validate=False)

    # ------------------------------------------------------------------ transforms
    @property
    def exact_columns(self) -> tuple[int, int] | None:
        """Where the unsketched last-token block sits in a Stage-1 row (``None`` without)."""
        if not self.cfg.exact:
            return None
        a = self.cfg.pca if self.cfg.pca else self.cfg.d_sketch
        return a, a + self.cfg.exact * self.d

    @property
    def d1(self) -> int:
        base = self.cfg.pca if self.cfg.pca else self.cfg.d_sketch
        return base + self.cfg.exact * self.d + (self.d if self.cfg.track == "B" else 0)

    def stage1(self, ctx: np.ndarray, pos: np.ndarray,
               state: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Normalised Stage-1 input ``[n, d1]`` (Track B needs the layer-l ``state``)."""
        if not self.stats:
            raise InputError("Featurizer is not fitted; call fit(train ctx, pos) first.")
        x = self.raw_sketch(ctx, pos)
        if self.pca is not None:
            x = self.pca.transform(x).float()
        else:
            x = (x - self.stats["sketch_mean"]) / self.stats["sketch_std"]
        if self.cfg.exact:
            e = self._exact_raw(ctx)
            x = torch.cat([x, (e - self.stats["exact_mean"]) / self.stats["exact_std"]], 1)
        if self.cfg.track == "B":
            if state is None:
                raise InputError("Track B features need the teacher state at layer l.")
            st = torch.as_tensor(np.asarray(state, np.float32))
            x = torch.cat([x, (st - self.stats["state_mean"]) / self.stats["state_std"]], 1)
        return x

    def tail(self, ctx: np.ndarray) -> torch.Tensor:
        """Normalised Stage-2 tail sketch ``[n, d_tail]``."""
        t = self._tail_raw(ctx)
        return (t - self.stats["tail_mean"]) / self.stats["tail_std"]

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)
