"""Simplex-volume CV of a small attention classifier across model width and head count.

The experiment: a token embedding, one multi-head self-attention block (with residual and
LayerNorm), mean pooling and a linear classifier learn to tell apart ``n_classes`` seeded
random token patterns, each sample a copy of its class pattern with a fraction of the
positions replaced by random tokens. For every model width ``dim`` and head count in a grid
we measure the coefficient of variation (CV) of pentachoron volumes
(:func:`hyperlens.functional.geometry.simplex_volume_cv`) of

* weights: the embedding table, the query, key and value projections (whole and per
  head), the attention output projection and the classifier;
* activations on the training inputs: the embedded tokens, per-head queries, keys, values,
  the per-head slices of the block output and the whole block output;

before training, halfway and after it, each with a bootstrap interval and against a
matched null model (by default a Gaussian with the same mean and covariance). A CV is
"in band" when it lies strictly inside ``band`` (0.13-0.30 by default, the range reported
for such sweeps); the null tells whether a band value says anything about learned structure
or merely about the dimension and the spectrum.

Everything is seeded: data, initialisation and simplex draws derive from one seed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, above, at_least, between, option
from ..errors import ConfigError
from ..functional.geometry import SimplexCV, simplex_volume_cv
from ..functional.stats import t_interval
from ..run import Cell, Executor, Ledger, Resources, Task, run_cells
from ..train import TrainConfig, fit
from ..utils import derive_seed, make_generator, resolve_device, stable_hash

__all__ = [
    "MHACVConfig",
    "MHAClassifier",
    "noise_patterns",
    "measure_cv",
    "train_and_measure",
    "run_mha_cv",
    "mha_cv_cell",
    "cell_fingerprint",
    "MHACVResult",
    "WEIGHT_QUANTITIES",
    "ACTIVATION_QUANTITIES",
    "PHASES",
]

#: Weight matrices measured (rows are the points): name -> description.
WEIGHT_QUANTITIES: dict[str, str] = {
    "emb": "token embedding table [vocab, dim]",
    "W_Q": "query projection [dim, dim]",
    "W_K": "key projection [dim, dim]",
    "W_V": "value projection [dim, dim]",
    "W_out": "attention output projection [dim, dim]",
    "W_cls": "classifier [n_classes, dim]",
    "W_Q/head": "query projection of one head [head_dim, dim], mean over heads",
    "W_K/head": "key projection of one head [head_dim, dim], mean over heads",
    "W_V/head": "value projection of one head [head_dim, dim], mean over heads",
}
#: Activations measured on the training inputs (one point per token position).
ACTIVATION_QUANTITIES: dict[str, str] = {
    "act_emb": "token + position embedding [B*S, dim]",
    "act_Q/head": "queries of one head [B*S, head_dim], mean over heads",
    "act_K/head": "keys of one head [B*S, head_dim], mean over heads",
    "act_V/head": "values of one head [B*S, head_dim], mean over heads",
    "act_post/head": "block output, one head's slice [B*S, head_dim], mean over heads",
    "act_post": "block output LayerNorm(h + attn) [B*S, dim]",
}
PHASES = ("pre", "mid", "post")


@dataclass(frozen=True, kw_only=True)
class MHACVConfig(Config):
    """Parameters of the sweep (the options of ``hyperlens mha-cv``); checked when built."""

    CONTEXT = frozenset({"device", "executor"})
    RANDOM = ""  # every draw (data, initialisation, simplices) derives from --seeds

    dims: tuple[int, ...] = option((64, 128), help="model widths (the original sweep used "
                                   "64 128 256)", check=at_least(1))
    heads: tuple[int, ...] = option((1, 2, 4, 8), help="head counts; each must divide every "
                                    "width", check=at_least(1))
    vocab: int = option(256, help="vocabulary size", check=at_least(2))
    seq_len: int = option(8, help="tokens per sample", check=at_least(1))
    n_classes: int = option(10, help="noise patterns (classes)", check=at_least(2),
                            aliases=("--classes",))
    samples_per_class: int = option(50, help="training samples per class", check=at_least(1),
                                    aliases=("--per-class",))
    test_per_class: int = option(20, help="held-out samples per class", check=at_least(1))
    noise: float = option(0.25, help="probability that a position is replaced by a random "
                          "token", check=between(0, 1))
    epochs: int = option(50, help="full-batch Adam steps", check=at_least(2))
    lr: float = option(1e-3, help="learning rate", check=above(0))
    k: int = option(4, help="simplex dimension (4: pentachora)", check=at_least(1))
    n_simplices: int = option(300, help="simplices sampled per measurement",
                              check=at_least(10), aliases=("--simplices",))
    n_boot: int = option(200, help="bootstrap resamples per interval", check=at_least(10),
                         aliases=("--boot",))
    null: Literal["gaussian", "norms", "isotropic", "none"] = option(
        "gaussian", help="null model for every CV (gaussian: same mean and covariance)")
    band: tuple[float, ...] = option((0.13, 0.30), help="CV band LO HI (strict inequalities)",
                                     min_items=2, metavar="LO HI")
    seeds: tuple[int, ...] = option((0,), help="replicate seeds: each grid cell is trained once "
                                    "per seed (two or more give t intervals over seeds)",
                                    check=at_least(0), unique=True)
    max_points: int = option(4000, help="rows sampled from an activation before measuring",
                             check=at_least(10))
    fresh: bool = option(False, help="ignore finished models in OUT/cells.jsonl and train "
                                     "everything again")

    def check(self) -> None:
        for d in self.dims:
            for h in self.heads:
                if d % h:
                    raise ConfigError(
                        f"--dims {' '.join(map(str, self.dims))} and --heads "
                        f"{' '.join(map(str, self.heads))} do not fit: width {d} is not "
                        f"divisible by {h} heads; pick head counts that divide every width."
                    )
        if len(self.band) != 2 or not self.band[0] < self.band[1]:
            raise ConfigError(
                f"--band takes two numbers LO < HI, e.g. 0.13 0.30; got "
                f"{' '.join(map(str, self.band))}."
            )

    @property
    def null_model(self) -> str | None:
        """The null passed to :func:`simplex_volume_cv` (``None`` for ``"none"``)."""
        return None if self.null == "none" else self.null


class MHAClassifier(nn.Module):
    """Embedding + learned positions + one self-attention block + mean pool + linear head.

    Shapes:
        forward: tokens ``[B, S]`` int64 -> logits ``[B, n_classes]``.
    """

    def __init__(self, vocab: int, dim: int, n_heads: int, seq_len: int, n_classes: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq_len, dim) * 0.02)
        self.mha = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.emb(tokens) + self.pos  # [B, S, dim]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        attn, _ = self.mha(h, h, h, need_weights=False)
        return self.head(self.norm(h + attn).mean(dim=1))

    @torch.no_grad()
    def activations(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-head queries/keys/values and block outputs.

        Shapes:
            returns ``act_emb`` / ``act_post``: ``[B*S, dim]``; ``act_Q`` ... ``act_post_heads``:
            ``[n_heads, B*S, head_dim]``.
        """
        h = self.embed(tokens)  # [B, S, D]
        B, S, D = h.shape
        hd = D // self.n_heads
        qkv = F.linear(h, self.mha.in_proj_weight, self.mha.in_proj_bias)  # [B, S, 3D]
        q, k, v = (t.reshape(B * S, self.n_heads, hd).transpose(0, 1) for t in qkv.chunk(3, dim=-1))
        attn, _ = self.mha(h, h, h, need_weights=False)
        post = self.norm(h + attn).reshape(B * S, D)
        return {
            "act_emb": h.reshape(B * S, D),
            "act_Q": q,
            "act_K": k,
            "act_V": v,
            "act_post_heads": post.reshape(B * S, self.n_heads, hd).transpose(0, 1),
            "act_post": post,
        }

    def weights(self) -> dict[str, torch.Tensor]:
        """Weight matrices (rows = points); per-head ones ``[n_heads, head_dim, dim]``."""
        w = self.mha.in_proj_weight.detach()
        D = w.shape[1]
        hd = D // self.n_heads
        wq, wk, wv = w[:D], w[D : 2 * D], w[2 * D :]
        return {
            "emb": self.emb.weight.detach(),
            "W_Q": wq,
            "W_K": wk,
            "W_V": wv,
            "W_out": self.mha.out_proj.weight.detach(),
            "W_cls": self.head.weight.detach(),
            "W_Q_heads": wq.reshape(self.n_heads, hd, D),
            "W_K_heads": wk.reshape(self.n_heads, hd, D),
            "W_V_heads": wv.reshape(self.n_heads, hd, D),
        }


def noise_patterns(
    n_classes: int, per_class: int, seq_len: int, vocab: int, *, noise: float = 0.25, seed: int = 0,
    patterns: torch.Tensor | None = None, device: Any = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded classification data: each class is a random token pattern; each sample copies
    its class pattern and replaces each position with a random token with probability ``noise``.

    Pass ``patterns`` to draw more samples (e.g. a test set) from the same classes.

    Shapes:
        returns tokens ``[n_classes * per_class, seq_len]``, labels ``[n_classes * per_class]``
        (shuffled together) and patterns ``[n_classes, seq_len]``.
    """
    gen = make_generator(seed, device)
    if patterns is None:
        patterns = torch.randint(0, vocab, (n_classes, seq_len), generator=gen, device=device)
    labels = torch.arange(n_classes, device=device).repeat_interleave(per_class)
    x = patterns[labels].clone()
    flip = torch.rand(x.shape, generator=gen, device=device) < noise
    x[flip] = torch.randint(0, vocab, (int(flip.sum()),), generator=gen, device=device)
    perm = torch.randperm(x.shape[0], generator=gen, device=device)
    return x[perm], labels[perm], patterns


@dataclass(frozen=True)
class _CVRow:
    """One measured quantity (or the mean over heads) at one phase."""

    cv: float | None
    lo: float | None
    hi: float | None
    null_cv: float | None = None
    null_lo: float | None = None
    null_hi: float | None = None
    ratio: float | None = None
    ratio_lo: float | None = None
    ratio_hi: float | None = None
    n_degenerate: int | None = None
    per_head: list[float] | None = None
    note: str = ""


def _from_simplex_cv(res: SimplexCV) -> _CVRow:
    return _CVRow(
        cv=res.cv.value, lo=res.cv.lo, hi=res.cv.hi,
        null_cv=None if res.null_cv is None else res.null_cv.value,
        null_lo=None if res.null_cv is None else res.null_cv.lo,
        null_hi=None if res.null_cv is None else res.null_cv.hi,
        ratio=None if res.ratio is None else res.ratio.value,
        ratio_lo=None if res.ratio is None else res.ratio.lo,
        ratio_hi=None if res.ratio is None else res.ratio.hi,
        n_degenerate=res.n_degenerate,
    )


_Z95 = 1.959963984540054


def _mean_over_heads(rows: list[_CVRow]) -> _CVRow:
    """Mean of per-head CVs; interval from the per-head bootstrap spreads (normal approximation,
    heads resampled independently): ``mean +- 1.96 sqrt(sum s_h^2) / H`` with ``s_h`` the
    half-width / 1.96 of head ``h``'s percentile interval."""
    ok = [r for r in rows if r.cv is not None]
    if not ok:
        return _CVRow(None, None, None, note=rows[0].note if rows else "")

    def agg(
        get: Callable[[_CVRow], float | None],
        lo: Callable[[_CVRow], float | None],
        hi: Callable[[_CVRow], float | None],
    ) -> tuple[float | None, float | None, float | None]:
        vals = [get(r) for r in ok]
        if any(v is None for v in vals):
            return None, None, None
        m = float(np.mean([float(v) for v in vals if v is not None]))
        s = [((hi(r) or 0.0) - (lo(r) or 0.0)) / (2 * _Z95) for r in ok]
        half = _Z95 * math.sqrt(sum(x * x for x in s)) / len(ok)
        return m, m - half, m + half

    cv, lo, hi = agg(lambda r: r.cv, lambda r: r.lo, lambda r: r.hi)
    ncv, nlo, nhi = agg(lambda r: r.null_cv, lambda r: r.null_lo, lambda r: r.null_hi)
    rt, rlo, rhi = agg(lambda r: r.ratio, lambda r: r.ratio_lo, lambda r: r.ratio_hi)
    return _CVRow(cv, lo, hi, ncv, nlo, nhi, rt, rlo, rhi,
                  n_degenerate=sum(r.n_degenerate or 0 for r in ok),
                  per_head=[float(r.cv) for r in ok])  # type: ignore[arg-type]


def _cv_or_none(X: torch.Tensor, cfg: MHACVConfig, seed: int) -> _CVRow:
    rows, cols = X.shape
    if rows < cfg.k + 2:  # k + 1 rows fit one simplex only: its volume has no spread
        return _CVRow(None, None, None, note=f"{rows} rows < k+2 = {cfg.k + 2}")
    if cols < cfg.k:
        return _CVRow(None, None, None, note=f"{cols} dims < k = {cfg.k}: every simplex is flat")
    if rows > cfg.max_points:
        sel = torch.randperm(rows, generator=make_generator(seed, X.device), device=X.device)[
            : cfg.max_points
        ]
        X = X[sel]
    res = simplex_volume_cv(X, k=cfg.k, n_samples=cfg.n_simplices, seed=seed, null=cfg.null_model,  # type: ignore[arg-type]
                            n_boot=cfg.n_boot)
    return _from_simplex_cv(res)


def measure_cv(
    model: MHAClassifier, tokens: torch.Tensor, cfg: MHACVConfig, *, seed: int = 0
) -> dict[str, _CVRow]:
    """CV (with interval and null) of every quantity in :data:`WEIGHT_QUANTITIES` and
    :data:`ACTIVATION_QUANTITIES` for the model's current state.

    Shapes:
        tokens: ``[B, S]``.
    """
    with _one_thread():
        return _measure(model, tokens, cfg, seed)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run a block on one intra-op thread (CPU). Every tensor here is small (a few hundred
    simplices, a 4,000 x 256 activation matrix, a 500-sample batch): splitting such ops over
    threads costs more in synchronisation than it saves (about 6x slower on a busy 2-core
    machine), so the sweep keeps its parallelism for the user and runs serially."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _measure(
    model: MHAClassifier, tokens: torch.Tensor, cfg: MHACVConfig, seed: int
) -> dict[str, _CVRow]:
    was_training = model.training
    model.eval()
    out: dict[str, _CVRow] = {}
    counter = iter(range(10_000))

    def sub() -> int:
        return derive_seed(seed, "simplices", next(counter))

    w = model.weights()
    for name in ("emb", "W_Q", "W_K", "W_V", "W_out", "W_cls"):
        out[name] = _cv_or_none(w[name], cfg, sub())
    for name in ("W_Q", "W_K", "W_V"):
        heads = w[f"{name}_heads"]
        out[f"{name}/head"] = _mean_over_heads([_cv_or_none(hw, cfg, sub()) for hw in heads])
    acts = model.activations(tokens)
    out["act_emb"] = _cv_or_none(acts["act_emb"], cfg, sub())
    for name, key in (("act_Q/head", "act_Q"), ("act_K/head", "act_K"), ("act_V/head", "act_V"),
                      ("act_post/head", "act_post_heads")):
        out[name] = _mean_over_heads([_cv_or_none(a, cfg, sub()) for a in acts[key]])
    out["act_post"] = _cv_or_none(acts["act_post"], cfg, sub())
    model.train(was_training)
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    from scipy.stats import binomtest

    with torch.no_grad():
        correct = int((model(x).argmax(-1) == y).sum())
    ci = binomtest(correct, x.shape[0]).proportion_ci(confidence_level=0.95, method="wilson")
    return correct / x.shape[0], float(ci.low), float(ci.high)


def train_and_measure(
    dim: int, n_heads: int, cfg: MHACVConfig, *, seed: int, device: torch.device
) -> dict[str, Any]:
    """Train one model (full-batch Adam through :func:`hyperlens.train.fit`) and measure CVs
    before, halfway and after training.

    Returns a JSON-ready dict: configuration, training curve summary, accuracies with Wilson
    intervals, and ``cv[phase][quantity]`` rows.
    """
    x, y, patterns = noise_patterns(cfg.n_classes, cfg.samples_per_class, cfg.seq_len, cfg.vocab,
                                    noise=cfg.noise, seed=seed, device=device)
    xt, yt, _ = noise_patterns(cfg.n_classes, cfg.test_per_class, cfg.seq_len, cfg.vocab,
                               noise=cfg.noise, seed=derive_seed(seed, "test-data"),
                               patterns=patterns, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = MHAClassifier(cfg.vocab, dim, n_heads, cfg.seq_len, cfg.n_classes).to(device)
    pre = measure_cv(model, x, cfg, seed=derive_seed(seed, "cv", "pre"))
    cv: dict[str, dict[str, Any]] = {"pre": _rows(pre)}
    mid = cfg.epochs // 2

    def at_mid(m: nn.Module) -> dict[str, float]:
        # evaluated every `mid` steps (one step per epoch); the first call is at epoch `mid`
        if "mid" not in cv:
            assert isinstance(m, MHAClassifier)
            cv["mid"] = _rows(measure_cv(m, x, cfg, seed=derive_seed(seed, "cv", "mid")))
        return {}

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(m(batch[0]), batch[1])

    # full-batch Adam in data order, one step per epoch
    train_cfg = TrainConfig(optimizer="adam", lr=cfg.lr, epochs=cfg.epochs, batch_size=None,
                            shuffle=False, seed=seed, eval_every=mid, progress=False)
    hist = fit(model, loss_fn, (x, y), train_cfg, eval_fn=at_mid)
    losses = hist.train_loss
    model.eval()
    cv["post"] = _rows(measure_cv(model, x, cfg, seed=derive_seed(seed, "cv", "post")))
    train_acc = _accuracy(model, x, y)
    test_acc = _accuracy(model, xt, yt)
    return {
        "dim": dim, "heads": n_heads, "head_dim": dim // n_heads, "seed": seed,
        "loss_first": losses[0], "loss_mid": losses[mid - 1], "loss_last": losses[-1],
        "train_acc": train_acc[0], "train_acc_ci": list(train_acc[1:]),
        "test_acc": test_acc[0], "test_acc_ci": list(test_acc[1:]),
        "cv": cv,
    }


def _rows(d: dict[str, _CVRow]) -> dict[str, Any]:
    return {k: asdict(v) for k, v in d.items()}


@dataclass
class MHACVResult:
    """All runs of a sweep plus the aggregated table.

    ``runs``: one dict per (dim, heads, seed) from :func:`train_and_measure`.
    ``summary[(dim, heads)][phase][quantity]``: CV with interval aggregated over seeds (a
    Student-t interval over seeds when there are several, else the bootstrap interval),
    the null's CV and the ratio, and band membership of both.
    """

    config: MHACVConfig
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[tuple[int, int], dict[str, dict[str, dict[str, Any]]]] = field(
        default_factory=dict
    )

    def cell(self, dim: int, heads: int, phase: str, quantity: str) -> dict[str, Any]:
        return self.summary[(dim, heads)][phase][quantity]


def _t_interval(vals: list[float]) -> tuple[float, float, float]:
    est = t_interval(vals, 0.95)
    return est.value, est.lo, est.hi


def _aggregate(rows: list[dict[str, Any]], band: tuple[float, float]) -> dict[str, Any]:
    lo_b, hi_b = band
    ok = [r for r in rows if r["cv"] is not None]
    if not ok:
        return {
            "cv": None,
            "lo": None,
            "hi": None,
            "null_cv": None,
            "null_lo": None,
            "null_hi": None,
            "ratio": None,
            "ratio_lo": None,
            "ratio_hi": None,
            "in_band": None,
            "null_in_band": None,
            "n_seeds": 0,
            "note": rows[0].get("note", "") if rows else "",
        }
    out: dict[str, Any] = {"n_seeds": len(ok), "note": ""}
    for key in ("", "null_", "ratio"):
        base = "cv" if key == "" else ("null_cv" if key == "null_" else "ratio")
        lo_k = "lo" if key == "" else ("null_lo" if key == "null_" else "ratio_lo")
        hi_k = "hi" if key == "" else ("null_hi" if key == "null_" else "ratio_hi")
        vals = [r[base] for r in ok]
        if any(v is None for v in vals):
            out[base], out[lo_k], out[hi_k] = None, None, None
        elif len(vals) >= 2:
            out[base], out[lo_k], out[hi_k] = _t_interval(vals)
        else:
            out[base], out[lo_k], out[hi_k] = vals[0], ok[0][lo_k], ok[0][hi_k]
    out["in_band"] = bool(lo_b < out["cv"] < hi_b)
    out["null_in_band"] = None if out["null_cv"] is None else bool(lo_b < out["null_cv"] < hi_b)
    return out


def mha_cv_cell(dim: int, heads: int, cfg: MHACVConfig, seed: int, device: str) -> dict[str, Any]:
    """One grid cell (one trained model); a pure function of its arguments, run in-process or
    as a Ray task. On CPU it runs on one intra-op thread (see :func:`_one_thread`)."""
    dev = torch.device(device)
    with _one_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return train_and_measure(dim, heads, cfg, seed=seed, device=dev)


def cell_fingerprint(cfg: MHACVConfig, device: Any) -> str:
    """Hash of the options that change a cell's numbers (not which cells run)."""
    d = {k: v for k, v in cfg.to_dict().items()
         if k not in ("dims", "heads", "seeds", "band", "fresh")}
    return stable_hash(d, torch.device(device).type, length=12)


def run_mha_cv(
    cfg: MHACVConfig, *, device: Any = "auto", show_progress: bool | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    executor: Executor | None = None, ledger: Ledger | None = None,
) -> MHACVResult:
    """Run the whole grid ``cfg.dims x cfg.heads`` once per replicate seed in ``cfg.seeds``.

    The same seed gives the same data, initialisation and simplex draws. Each trained
    model is a cell: ``executor`` computes the ones missing from ``ledger`` (default: in
    this process, nothing kept), the ledger records each as it finishes, and ``on_run`` is
    then called for every run in grid order.
    """
    dev = resolve_device(device)
    result = MHACVResult(cfg)
    ledger = ledger if ledger is not None else Ledger(None, cell_fingerprint(cfg, dev))
    jobs = [(d, h, s) for d in cfg.dims for h in cfg.heads for s in cfg.seeds]
    cells = [Cell({"kind": "mha-cv", "dim": d, "heads": h, "seed": s},
                  Task(mha_cv_cell, {"dim": d, "heads": h, "cfg": cfg, "seed": s,
                                     "device": str(dev)}, Resources.for_device(dev)))
             for d, h, s in jobs]
    run_cells(cells, ledger, executor, desc="mha-cv", show_progress=show_progress)
    for c in cells:
        run = ledger.get(c.key)
        assert run is not None
        result.runs.append(run)
        if on_run is not None:
            on_run(run)
    for dim in cfg.dims:
        for heads in cfg.heads:
            runs = [r for r in result.runs if r["dim"] == dim and r["heads"] == heads]
            result.summary[(dim, heads)] = {
                phase: {q: _aggregate([r["cv"][phase][q] for r in runs], tuple(cfg.band))  # type: ignore[arg-type]
                        for q in (*WEIGHT_QUANTITIES, *ACTIVATION_QUANTITIES)}
                for phase in PHASES
            }
    return result

